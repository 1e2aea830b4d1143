"""Reading AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from netwarden.dialects import load_text
from netwarden.errors import InputError
from netwarden.model import (
    TCP,
    UDP,
    Action,
    All,
    EndpointSelector,
    In,
    NetworkPeer,
    NodePeer,
    Nothing,
    Policy,
    PortMatch,
    PortRange,
)

ANP = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {app: db}}
  ingress:
  - name: allow-api
    action: Allow
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}]
    ports:
    - portNumber: {port: 5432}
    - portRange: {protocol: UDP, start: 9000, end: 9100}
    - namedPort: metrics
  - {action: Pass, from: [{namespaces: {matchLabels: {team: ops}}}]}
  egress:
  - name: no-internet
    action: Deny
    to: [{networks: [0.0.0.0/0, "::/0"]}, {nodes: {matchLabels: {role: worker}}}]
"""

BANP = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}]}
"""

CNP = """\
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: cnp}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {matchLabels: {env: dev}}}
  egress:
  - action: Accept
    to: [{pods: {podSelector: {}}}, {domainNames: [example.com]}]
    protocols:
    - tcp: {destinationPort: {number: 443}}
    - udp: {destinationPort: {range: {start: 5000, end: 5010}}}
    - destinationNamedPort: dns
    - sctp: {}
"""


def read(text: str) -> Policy:
    (policy,) = load_text(text, "anp.yaml").cluster.policies
    return policy


def test_admin_network_policy() -> None:
    policy = read(ANP)
    assert (policy.tier, policy.order, policy.namespace) == ("adminnetworkpolicy", 10.0, None)
    assert policy.subject == EndpointSelector(
        pods=In("app", frozenset({"db"})), namespaces=In("env", frozenset({"prod"}))
    )
    allow, passing = policy.ingress or ()
    assert (allow.action, allow.name, passing.action, passing.name) == (
        Action.ALLOW,
        "allow-api",
        Action.PASS,
        "ingress[1]",
    )
    assert allow.ports == (
        PortMatch(TCP, PortRange(5432, 5432)),
        PortMatch(UDP, PortRange(9000, 9100)),
        PortMatch(None, name="metrics"),
    )
    assert passing.peers == (EndpointSelector(namespaces=In("team", frozenset({"ops"}))),)
    (deny,) = policy.egress or ()
    assert deny.peers == (
        NetworkPeer(ip_network("0.0.0.0/0")),
        NetworkPeer(ip_network("::/0")),
        NodePeer(In("role", frozenset({"worker"}))),
    )


def test_baseline_and_cluster_network_policy() -> None:
    banp = read(BANP)
    assert banp.tier == "baselineadminnetworkpolicy" and banp.egress is None
    assert banp.subject == EndpointSelector(pods=All(), namespaces=All())
    cnp = read(CNP)
    assert (cnp.tier, cnp.order, cnp.ingress) == ("baselineadminnetworkpolicy", 3.0, None)
    (rule,) = cnp.egress or ()
    assert rule.action is Action.ALLOW
    # domainNames cannot be matched on addresses: fail closed, the peer matches nothing
    assert rule.peers[1] == EndpointSelector(pods=Nothing(), namespaces=Nothing())
    assert rule.ports == (
        PortMatch(TCP, PortRange(443, 443)),
        PortMatch(UDP, PortRange(5000, 5010)),
        PortMatch(None, name="dns"),
        PortMatch(132),
    )


@pytest.mark.parametrize(
    ("text", "old", "new", "line", "message"),
    [
        (ANP, "priority: 10", "priority: 1001", 5, "less than or equal to 1000"),
        (ANP, "  priority: 10\n", "", 5, "needs a priority"),
        (ANP, "action: Allow", "action: Accept", 12, "actions are Allow | Deny | Pass"),
        (BANP, "action: Deny", "action: Pass", 7, "actions are Allow | Deny"),
        (ANP, "0.0.0.0/0", "0.0.0.300/0", 22, "invalid CIDR"),
        (ANP, "start: 9000", "start: 9200", 16, "start 9200 is above end 9100"),
        (
            ANP,
            "from: [{namespaces: {matchLabels: {team: ops}}}]",
            "from: [{nodes: {}}]",
            18,
            "not an ingress peer",
        ),
        (
            ANP,
            "  - {action: Pass, from: [{namespaces: {matchLabels: {team: ops}}}]}\n",
            "  - {action: Pass}\n",
            18,
            "needs 'from'",
        ),
        (ANP, "subject:\n    pods:", "subject:\n    namespaces: {}\n    pods:", 7, "exactly one"),
        (CNP, "tier: Baseline", "tier: Middle", 5, "'Admin' or 'Baseline'"),
        (CNP, "end: 5010", "end: 5000", 13, "must be below end"),
        (CNP, "protocols:", "ports:", 12, "take 'protocols', not 'ports'"),
    ],
)
def test_errors_are_located(text: str, old: str, new: str, line: int, message: str) -> None:
    assert old in text
    with pytest.raises(InputError) as caught:
        read(text.replace(old, new))
    assert str(caught.value).startswith(f"anp.yaml:{line}: "), str(caught.value)
    assert message in str(caught.value), str(caught.value)

"""Reading Kubernetes NetworkPolicy: every field into the model, every error located."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from netwarden.dialects import load_text
from netwarden.errors import InputError
from netwarden.model import (
    SCTP,
    TCP,
    UDP,
    All,
    And,
    EndpointSelector,
    Has,
    In,
    NetworkPeer,
    Not,
    Nothing,
    NotIn,
    Policy,
    PortMatch,
    PortRange,
)

HEAD = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
"""


def read(spec: str) -> Policy:
    (policy,) = load_text(HEAD + spec, "np.yaml").cluster.policies
    return policy


def test_selectors_peers_and_ports() -> None:
    policy = read("""\
spec:
  podSelector:
    matchLabels: {app: db}
    matchExpressions:
    - {key: tier, operator: NotIn, values: [cache]}
    - {key: canary, operator: DoesNotExist}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: api}}
    - namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
    - namespaceSelector: {}
      podSelector: {matchLabels: {app: api}}
    - ipBlock: {cidr: 10.10.1.1/4, except: [10.10.0.0/16]}
    - ipBlock: {cidr: "2001:db8::/32"}
    ports:
    - {port: 5432}
    - {port: metrics, protocol: UDP}
    - {port: 8000, endPort: 8080, protocol: SCTP}
    - {protocol: UDP}
""")
    assert policy.subject == EndpointSelector(
        pods=And(
            (In("app", frozenset({"db"})), NotIn("tier", frozenset({"cache"})), Not(Has("canary")))
        ),
        namespace="shop",
    )
    (rule,) = policy.ingress or ()
    assert rule.peers == (
        EndpointSelector(pods=In("app", frozenset({"api"})), namespace="shop"),
        EndpointSelector(pods=All(), namespaces=Has("team")),
        EndpointSelector(pods=In("app", frozenset({"api"})), namespaces=All()),
        # a CIDR written with host bits set means its network
        NetworkPeer(ip_network("0.0.0.0/4"), (ip_network("10.10.0.0/16"),)),
        NetworkPeer(ip_network("2001:db8::/32")),
    )
    assert rule.ports == (
        PortMatch(TCP, PortRange(5432, 5432)),
        PortMatch(UDP, name="metrics"),
        PortMatch(SCTP, PortRange(8000, 8080)),
        PortMatch(UDP),
    )
    assert policy.egress is None
    assert rule.source is not None and rule.source.line == 11


@pytest.mark.parametrize(
    ("spec", "ingress", "egress"),
    [
        ("spec: {podSelector: {}}", 0, None),  # Ingress is always implied
        ("spec: {podSelector: {}, egress: [{}]}", 0, 1),  # Egress implied by egress rules
        ("spec: {podSelector: {}, egress: []}", 0, None),  # ... but not by an empty list
        ("spec: {podSelector: {}, policyTypes: [], egress: [{}]}", 0, 1),  # empty = absent
        ("spec: {podSelector: {}, policyTypes: [Egress]}", None, 0),
        ("spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}", None, 0),
        ("spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}]}", 1, 0),
    ],
)
def test_policy_types_defaulting(spec: str, ingress: int | None, egress: int | None) -> None:
    policy = read(spec)
    assert (None if policy.ingress is None else len(policy.ingress)) == ingress
    assert (None if policy.egress is None else len(policy.egress)) == egress


def test_empty_from_means_every_peer_and_in_without_values_is_rejected() -> None:
    policy = read("spec:\n  ingress: [{from: []}, {}]\n")
    assert [rule.peers for rule in policy.ingress or ()] == [(), ()]
    assert isinstance(In("a", frozenset()), In) and Nothing().matches({}) is False


def test_missing_namespace_is_default() -> None:
    (policy,) = load_text(HEAD.replace(", namespace: shop", "") + "spec: {}\n").cluster.policies
    assert policy.namespace == "default" and policy.subject.namespace == "default"


@pytest.mark.parametrize(
    ("spec", "line", "field", "message"),
    [
        (
            "spec:\n  ingress:\n  - ports: [{port: 70000}]",
            6,
            "spec.ingress[0].ports[0].port",
            "less than or equal to 65535",
        ),
        (
            "spec:\n  ingress:\n  - ports: [{port: 80, protocol: ICMP}]",
            6,
            "protocol",
            "'TCP', 'UDP' or 'SCTP'",
        ),
        (
            "spec:\n  ingress:\n  - ports: [{port: http, endPort: 90}]",
            6,
            "ports[0]",
            "endPort needs a numeric port",
        ),
        ("spec:\n  ingress:\n  - ports: [{port: 90, endPort: 80}]", 6, "ports[0]", "below port 90"),
        (
            "spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}",
            7,
            "ipBlock",
            "invalid CIDR '10.0.0.0/33'",
        ),
        (
            "spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.1}",
            7,
            "ipBlock",
            "missing prefix length",
        ),
        (
            "spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}",
            7,
            "ipBlock",
            "strict subset",
        ),
        (
            "spec:\n  podSelector:\n    matchExpressions:\n    - {key: a, operator: Equals}",
            7,
            "operator",
            "'In', 'NotIn'",
        ),
        (
            "spec:\n  podSelector:\n    matchExpressions:\n    - {key: a, operator: In}",
            7,
            "matchExpressions[0]",
            "needs at least one value",
        ),
        ("spec:\n  ingress:\n  - from:\n    - {}", 7, "from[0]", "needs podSelector"),
        (
            "spec:\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}",
            7,
            "from[0]",
            "cannot be combined",
        ),
        ("spec:\n  podSelector:\n    matchLabels: [a, b]", 6, "matchLabels", "valid dictionary"),
        ("spec:\n  policyTypes: [Both]", 5, "policyTypes[0]", "'Ingress' or 'Egress'"),
        ("spec:\n  ingress:\n  - ports: [{port: Web_Port}]", 6, "port", "invalid port name"),
    ],
)
def test_errors_are_located(spec: str, line: int, field: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read(spec)
    text = str(caught.value)
    assert text.startswith(f"np.yaml:{line}: NetworkPolicy shop/p: "), text
    assert field in text and message in text, text

"""Writing the model as Calico `projectcalico.org/v3` manifests: Kubernetes NetworkPolicies
converted as Calico converts them (cases of libcalico-go's own conversion tests), Calico
resources as themselves, golden files, and an error for what Calico cannot express.

Golden files live in fixtures/writers/expected/; `UPDATE_GOLDEN=1 pytest ...` rewrites them.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from netwarden.dialects import load_paths, load_text
from netwarden.dialects.calico_conversion import CalicoPort, simplify_ports
from netwarden.dialects.calico_writer import write_calico
from netwarden.dialects.k8s_writer import write_k8s
from netwarden.errors import WriteError
from netwarden.model import (
    Action,
    All,
    ClusterState,
    EndpointKind,
    EntityMatch,
    Global,
    Has,
    In,
    NodePeer,
    Or,
    Policy,
    PortMatch,
    Tier,
)

WRITERS = Path(__file__).parent / "fixtures" / "writers"
EXPECTED = WRITERS / "expected"


def read(name: str) -> ClusterState:
    return load_paths([WRITERS / f"{name}.yaml"]).cluster


def dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=1000)


def assert_golden(path: Path, text: str) -> None:
    """Compare with the golden file, or rewrite it when UPDATE_GOLDEN=1."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs: inspect, then run with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", ["k8s-policies", "calico-policies"])
def test_golden(name: str) -> None:
    assert_golden(EXPECTED / f"{name}.calico.yaml", dump(write_calico(read(name))))


def test_admin_policies_are_written_as_themselves() -> None:
    """Calico reads AdminNetworkPolicy & co natively: both targets write them alike."""
    cluster = read("admin-policies")
    assert write_calico(cluster) == write_k8s(cluster)


def test_calico_resources_round_trip_exactly() -> None:
    cluster = read("calico-policies")
    back = load_text(dump(write_calico(cluster))).cluster
    calico = [p for p in cluster.policies if p.kind != "NetworkPolicy"]
    assert [p for p in back.policies if not p.name.startswith("knp.default.")] == calico
    assert back.tiers == cluster.tiers
    assert back.network_sets == cluster.network_sets
    assert back.profiles == cluster.profiles
    assert back.endpoints == cluster.endpoints


def test_staged_kubernetes_policies_become_staged_calico_policies() -> None:
    """Set and Delete keep their meaning: they stage the converted policy of the same name."""
    written = {(d["kind"], d["metadata"]["name"]): d for d in write_calico(read("calico-policies"))}
    staged_set = written["StagedNetworkPolicy", "knp.default.api"]
    assert staged_set["spec"]["stagedAction"] == "Set"
    assert (
        staged_set["spec"]["selector"]
        == '(projectcalico.org/orchestrator == "k8s" && app == "api")'
    )
    assert written["StagedNetworkPolicy", "knp.default.old"]["spec"] == {"stagedAction": "Delete"}


# Calico's own conversion tests (libcalico-go lib/backend/k8s/conversion/conversion_test.go)

HEAD = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: test.policy, namespace: default}
spec:
  podSelector: {matchLabels: {label: value, label2: value2}}
"""
PEER = "{podSelector: {matchLabels: {k: v, k2: v2}}}"
SELECTOR = '(projectcalico.org/orchestrator == "k8s" && label == "value" && label2 == "value2")'
PEER_SELECTOR = '(projectcalico.org/orchestrator == "k8s" && k == "v" && k2 == "v2")'


def convert(spec: str) -> dict[str, Any]:
    (written,) = write_calico(load_text(HEAD + spec).cluster)
    return written


def test_basic_policy() -> None:
    """Name, tier, order, sorted matchLabels, TCP defaulted, ports kept as given."""
    written = convert(f"""\
  ingress: [{{ports: [{{port: 80}}, {{port: foo}}], from: [{PEER}]}}]
  policyTypes: [Ingress]
""")
    assert written["apiVersion"] == "projectcalico.org/v3"
    assert written["kind"] == "NetworkPolicy"
    assert written["metadata"] == {"name": "knp.default.test.policy", "namespace": "default"}
    assert written["spec"] == {
        "tier": "default",
        "order": 1000,
        "selector": SELECTOR,
        "types": ["Ingress"],
        "ingress": [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": PEER_SELECTOR},
                "destination": {"ports": [80, "foo"]},
            }
        ],
    }


def test_no_ports_means_no_protocol() -> None:
    written = convert(f"  ingress: [{{from: [{PEER}]}}]\n")
    assert written["spec"]["ingress"] == [
        {"action": "Allow", "source": {"selector": PEER_SELECTOR}}
    ]


def test_blank_port_means_every_tcp_port() -> None:
    written = convert(f"  ingress: [{{ports: [{{port: 80}}, {{}}], from: [{PEER}]}}]\n")
    assert written["spec"]["ingress"] == [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": PEER_SELECTOR}}
    ]


def test_egress_blank_ports() -> None:
    written = convert(f"""\
  egress:
  - {{ports: [{{}}, {{port: 80}}], to: [{PEER}]}}
  - {{ports: [{{port: 53, protocol: UDP}}]}}
  policyTypes: [Egress]
""")
    assert written["spec"]["types"] == ["Egress"]
    assert written["spec"]["egress"] == [
        {"action": "Allow", "protocol": "TCP", "destination": {"selector": PEER_SELECTOR}},
        {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
    ]


def test_one_rule_per_protocol_and_peer() -> None:
    """Protocols in name order, each with its ports merged; peers inside each protocol."""
    written = convert("""\
  ingress:
  - from:
    - podSelector: {}
    - namespaceSelector: {}
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchExpressions: [{key: role, operator: NotIn, values: [x]}]}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports:
    - {port: 82, protocol: UDP}
    - {port: 81}
    - {port: 80}
    - {port: 8000, endPort: 8100, protocol: SCTP}
""")
    peers = [
        {"selector": 'projectcalico.org/orchestrator == "k8s"'},
        {"selector": 'projectcalico.org/orchestrator == "k8s"', "namespaceSelector": "all()"},
        {
            "selector": '(projectcalico.org/orchestrator == "k8s" && role != "x")',
            "namespaceSelector": 'team == "a"',
        },
        {"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]},
    ]
    ports = {"SCTP": ["8000:8100"], "TCP": ["80:81"], "UDP": [82]}
    assert written["spec"]["ingress"] == [
        {
            "action": "Allow",
            "protocol": protocol,
            "source": peer,
            "destination": {"ports": ports[protocol]},
        }
        for protocol in ("SCTP", "TCP", "UDP")
        for peer in peers
    ]


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([80, 81, 82, 9090, "foo"], ["foo", "80:82", 9090]),
        ([80, "foo"], [80, "foo"]),
        ([80, 80], [80]),
        (["80:90", 85, 91, 93], ["80:91", 93]),
        ([443], [443]),
        ([], []),
    ],
)
def test_simplify_ports(ports: list[int | str], expected: list[int | str]) -> None:
    """Calico's SimplifyPorts: the fewest ranges, named ports first."""

    def port(value: int | str) -> CalicoPort:
        if isinstance(value, int):
            return CalicoPort(value, value)
        if ":" in value:
            start, end = value.split(":")
            return CalicoPort(int(start), int(end))
        return CalicoPort(name=value)

    assert [p.value() for p in simplify_ports([port(v) for v in ports])] == expected


# What Calico cannot express

GLOBAL_POLICY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: app == "web"}}]
"""


def global_policy() -> Policy:
    (policy,) = load_text(GLOBAL_POLICY, "gnp.yaml").cluster.policies
    return policy


def with_rule(policy: Policy, **changes: Any) -> Policy:
    assert policy.ingress is not None
    return replace(policy, ingress=(replace(policy.ingress[0], **changes),))


def test_node_peer_in_a_calico_rule() -> None:
    policy = with_rule(global_policy(), peers=(NodePeer(All()),))
    with pytest.raises(WriteError) as error:
        write_calico(ClusterState(policies=(policy,)))
    assert str(error.value) == (
        "gnp.yaml:1: GlobalNetworkPolicy g: cannot be written for Calico: ingress rule 0: "
        "a NodePeer peer (Calico rules have no node selector)"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"not_ports": (PortMatch(6, name="http"),)}, "notPorts in a rule without a protocol"),
        ({"ports": (PortMatch(None, name="http"),)}, "port any/http without a protocol"),
        ({"protocol": 17, "ports": (PortMatch(6, name="http"),)}, "port TCP/http in a UDP rule"),
        (
            {"protocol": 1, "ports": (PortMatch(1, name="x"),)},
            "ports need protocol TCP, UDP or SCTP",
        ),
    ],
)
def test_ports_calico_cannot_hold(changes: dict[str, Any], message: str) -> None:
    policy = with_rule(global_policy(), **changes)
    with pytest.raises(WriteError, match=message):
        write_calico(ClusterState(policies=(policy,)))


def test_selector_calico_cannot_quote() -> None:
    policy = global_policy()
    subject = replace(policy.subject, pods=In("app", frozenset({'it\'s "quoted"'})))
    with pytest.raises(WriteError, match=r"selector: value .* has both quote characters"):
        write_calico(ClusterState(policies=(replace(policy, subject=subject),)))


def test_network_policy_must_be_one() -> None:
    """A model policy of kind NetworkPolicy is first written as Kubernetes, then converted."""
    (policy,) = load_text(HEAD, "np.yaml").cluster.policies
    subject = replace(policy.subject, pods=Or((Has("a"), Has("b"))))
    with pytest.raises(
        WriteError, match=r"NetworkPolicy default/test\.policy: .*no label-selector form"
    ):
        write_calico(ClusterState(policies=(replace(policy, subject=subject),)))


def test_unknown_kind_and_neither_direction() -> None:
    with pytest.raises(WriteError, match="Widget is not a kind Calico reads"):
        write_calico(ClusterState(policies=(replace(global_policy(), kind="Widget"),)))
    with pytest.raises(WriteError, match="applies in neither direction"):
        write_calico(ClusterState(policies=(replace(global_policy(), ingress=None),)))


def test_tier_with_allow_default() -> None:
    tier = Tier("open", 5.0, Action.ALLOW)
    with pytest.raises(
        WriteError, match="Tier open: cannot be written for Calico: default action Allow"
    ):
        write_calico(ClusterState(tiers=(tier,)))


def test_host_endpoint_without_addresses() -> None:
    cluster = load_text(
        """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h}
spec: {node: n1, interfaceName: eth0}
""",
        "hep.yaml",
    ).cluster
    assert [e.kind for e in cluster.endpoints] == [EndpointKind.HOST_ENDPOINT]
    with pytest.raises(WriteError, match=r"hep.yaml:1: HostEndpoint h: .*no expectedIPs"):
        write_calico(cluster)


NAMESPACED_POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: n, namespace: prod}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: app == "web"}}]
"""


def namespaced_peer(peer: EntityMatch) -> ClusterState:
    (policy,) = load_text(NAMESPACED_POLICY, "np.yaml").cluster.policies
    return ClusterState(policies=(with_rule(policy, peers=(peer,)),))


def test_entity_scope() -> None:
    """A namespaced policy's selectors see its namespace; `all()` widens them to every
    namespace (never to host endpoints or global network sets)."""
    web = In("app", frozenset({"web"}))
    (written,) = write_calico(namespaced_peer(EntityMatch(selector=web, namespace="prod")))
    assert written["spec"]["ingress"][0]["source"] == {"selector": 'app == "web"'}
    (written,) = write_calico(namespaced_peer(EntityMatch(selector=web, namespaces=All())))
    assert written["spec"]["ingress"][0]["source"] == {
        "selector": 'app == "web"',
        "namespaceSelector": "all()",
    }
    (written,) = write_calico(namespaced_peer(EntityMatch(namespaces=Global())))
    assert written["spec"]["ingress"][0]["source"] == {"namespaceSelector": "global()"}


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        (EntityMatch(not_selector=Has("a")), "a notSelector over every namespace"),
        (EntityMatch(selector=Has("a")), "selectors over every namespace and the non-namespaced"),
        (EntityMatch(selector=Has("a"), namespace="dev"), "selectors scoped to namespace 'dev'"),
        (EntityMatch(namespaces=Or((Global(), Has("a")))), "global() combined"),
        (EntityMatch(selector=Global()), "global() outside an entity rule's namespaceSelector"),
    ],
)
def test_entity_scope_calico_cannot_hold(peer: EntityMatch, message: str) -> None:
    with pytest.raises(WriteError, match=re.escape(message)):
        write_calico(namespaced_peer(peer))

"""Writing the model as Kubernetes manifests: golden files, exact round trips, and an error
for everything Kubernetes cannot express.

Golden files live in fixtures/writers/expected/; `UPDATE_GOLDEN=1 pytest ...` rewrites them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import ip_network
from pathlib import Path

import pytest
import yaml

from netwarden.dialects import load_paths, load_text
from netwarden.dialects.calico_selector import selector_from_any
from netwarden.dialects.k8s_label_writer import NOTHING_KEY, label_selector
from netwarden.dialects.k8s_writer import write_k8s
from netwarden.errors import NetwardenError, WriteError
from netwarden.model import (
    Action,
    All,
    And,
    ClusterState,
    Contains,
    EndsWith,
    Global,
    Has,
    In,
    NetworkPeer,
    NodePeer,
    Not,
    Nothing,
    NotIn,
    Or,
    Policy,
    PortMatch,
    Rule,
    Selector,
    StartsWith,
)

WRITERS = Path(__file__).parent / "fixtures" / "writers"
EXPECTED = WRITERS / "expected"


def read(name: str) -> ClusterState:
    return load_paths([WRITERS / f"{name}.yaml"]).cluster


def dump(documents: list[dict[str, object]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=1000)


def assert_golden(path: Path, text: str) -> None:
    """Compare with the golden file, or rewrite it when UPDATE_GOLDEN=1."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs: inspect, then run with UPDATE_GOLDEN=1"


@pytest.mark.parametrize(
    ("name", "inventory"),
    [("k8s-policies", False), ("admin-policies", False), ("inventory", True)],
)
def test_golden(name: str, inventory: bool) -> None:
    text = dump(write_k8s(read(name), include_inventory=inventory))
    assert_golden(EXPECTED / f"{name}.k8s.yaml", text)


@pytest.mark.parametrize("name", ["k8s-policies", "admin-policies", "inventory"])
def test_round_trip_gives_the_model_back(name: str) -> None:
    """Reading what is written gives the same policies, pods, nodes and namespaces."""
    cluster = read(name)
    back = load_text(dump(write_k8s(cluster, include_inventory=True))).cluster
    assert back.policies == cluster.policies
    assert back.endpoints == cluster.endpoints
    assert back.nodes == cluster.nodes
    assert back.namespaces == cluster.namespaces


def test_policy_types_are_explicit() -> None:
    cluster = load_text("""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {}
  egress: [{}]
""").cluster
    (written,) = write_k8s(cluster)
    assert written["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "egress": [{}],
    }


# Label selectors

WEB = frozenset({"web"})
LABEL_SETS = [{}, {"app": "web"}, {"app": "db"}, {"app": "web", "canary": "1"}, {"canary": ""}]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (All(), {}),
        (In("app", WEB), {"matchLabels": {"app": "web"}}),
        (
            In("app", frozenset({"web", "api"})),
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "web"]}]},
        ),
        (
            NotIn("app", WEB),
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
        ),
        (Has("canary"), {"matchExpressions": [{"key": "canary", "operator": "Exists"}]}),
        (Not(Has("canary")), {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}),
        (
            Not(In("app", WEB)),
            {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
        ),
        (Not(NotIn("app", WEB)), {"matchLabels": {"app": "web"}}),
        (Not(Not(Has("canary"))), {"matchExpressions": [{"key": "canary", "operator": "Exists"}]}),
        (NotIn("app", frozenset()), {}),
        (
            Nothing(),
            {
                "matchExpressions": [
                    {"key": NOTHING_KEY, "operator": "Exists"},
                    {"key": NOTHING_KEY, "operator": "DoesNotExist"},
                ]
            },
        ),
        (Not(All()), label_selector(Nothing())),
        (In("app", frozenset()), label_selector(Nothing())),
        (
            And((Not(Has("canary")), In("app", WEB), And((In("app", frozenset({"db"})),)))),
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "app", "operator": "In", "values": ["db"]},
                ],
            },
        ),
    ],
)
def test_label_selector(selector: Selector, expected: dict[str, object]) -> None:
    written = label_selector(selector)
    assert written == expected
    read_back = selector_from_any(written)
    for labels in LABEL_SETS:
        assert read_back.matches(labels) == selector.matches(labels), labels


@pytest.mark.parametrize(
    "selector",
    [
        Or((Has("a"), Has("b"))),
        Contains("app", "we"),
        StartsWith("app", "w"),
        EndsWith("app", "b"),
        Global(),
        Not(And((Has("a"), Has("b")))),
        And((Has("a"), Or((Has("b"), Has("c"))))),
    ],
)
def test_label_selector_cannot_express(selector: Selector) -> None:
    policy = network_policy()
    policy = replace(policy, subject=replace(policy.subject, pods=selector))
    with pytest.raises(WriteError, match="has no label-selector form") as error:
        write_k8s(ClusterState(policies=(policy,)))
    assert "NetworkPolicy shop/p" in str(error.value)


# What Kubernetes cannot express

NETWORK_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
  egress: [{ports: [{port: 53, protocol: UDP}]}]
"""

ADMIN_POLICY = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: a}
spec:
  priority: 1
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
  egress: [{action: Deny, to: [{namespaces: {}}]}]
"""


def network_policy() -> Policy:
    (policy,) = load_text(NETWORK_POLICY, "np.yaml").cluster.policies
    return policy


def admin_policy() -> Policy:
    (policy,) = load_text(ADMIN_POLICY, "anp.yaml").cluster.policies
    return policy


def ingress(policy: Policy, **changes: object) -> Policy:
    assert policy.ingress is not None
    return replace(policy, ingress=(replace(policy.ingress[0], **changes),))


def egress(policy: Policy, **changes: object) -> Policy:
    assert policy.egress is not None
    return replace(policy, egress=(replace(policy.egress[0], **changes),))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (ingress(network_policy(), action=Action.DENY), "ingress rule 0: a Deny rule"),
        (ingress(network_policy(), protocol=6), "ingress rule 0: Calico rule fields protocol"),
        (
            ingress(network_policy(), peers=(NodePeer(All()),)),
            "ingress rule 0: peer 0: a NodePeer peer",
        ),
        (
            egress(network_policy(), ports=(PortMatch(1),)),
            "egress rule 0: port ICMP (protocol must be TCP, UDP or SCTP)",
        ),
        (
            egress(network_policy(), ports=(PortMatch(None, name="dns"),)),
            "protocol must be TCP, UDP or SCTP",
        ),
        (
            ingress(
                network_policy(),
                peers=(NetworkPeer(ip_network("10.0.0.0/8"), (ip_network("11.0.0.0/16"),)),),
            ),
            "except 11.0.0.0/16 is not a strict subset of 10.0.0.0/8",
        ),
        (replace(network_policy(), ingress=None, egress=None), "applies in neither direction"),
        (replace(network_policy(), order=10.0), "order 10.0"),
        (
            replace(network_policy(), subject=replace(network_policy().subject, namespace="other")),
            "a subject beyond a pod selector",
        ),
        (ingress(admin_policy(), action=Action.LOG), "ingress rule 0: action Log"),
        (ingress(admin_policy(), peers=()), "a rule without peers"),
        (
            ingress(admin_policy(), peers=(NodePeer(All()),)),
            "a NodePeer peer in an ingress rule",
        ),
        (
            egress(
                admin_policy(),
                peers=(NetworkPeer(ip_network("10.0.0.0/8"), (ip_network("10.1.0.0/16"),)),),
            ),
            "networks with exceptions",
        ),
        (
            egress(admin_policy(), ports=(PortMatch(6),)),
            "every port of a protocol",
        ),
        (replace(admin_policy(), order=2.5), "priority is a whole number"),
        (replace(admin_policy(), kind="BaselineAdminNetworkPolicy"), "tier 'adminnetworkpolicy'"),
    ],
)
def test_cannot_express(policy: Policy, message: str) -> None:
    with pytest.raises(WriteError) as error:
        write_k8s(ClusterState(policies=(policy,)))
    assert message in str(error.value)
    assert str(error.value).startswith(f"{policy.source}: ")
    assert isinstance(error.value, NetwardenError)


def test_baseline_cannot_pass() -> None:
    (policy,) = load_text(
        ADMIN_POLICY.replace("AdminNetworkPolicy", "BaselineAdminNetworkPolicy")
    ).cluster.policies
    with pytest.raises(WriteError, match="action Pass"):
        write_k8s(ClusterState(policies=(ingress(policy, action=Action.PASS),)))


def test_rule_of_an_unrelated_kind_is_named() -> None:
    rule = Rule(Action.ALLOW)
    policy = replace(network_policy(), ingress=(rule, replace(rule, action=Action.PASS)))
    with pytest.raises(WriteError, match="ingress rule 1: a Pass rule"):
        write_k8s(ClusterState(policies=(policy,)))


CALICO = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec: {selector: all(), ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: s, namespace: shop}
spec: {podSelector: {}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h}
spec: {node: n1, expectedIPs: [172.18.0.2]}
"""


def test_calico_resources_are_refused() -> None:
    cluster = load_text(CALICO, "calico.yaml").cluster
    for policy, message in zip(
        cluster.policies,
        ["GlobalNetworkPolicy is not a Kubernetes kind", "staged policies are Calico resources"],
        strict=True,
    ):
        with pytest.raises(WriteError, match=message) as error:
            write_k8s(ClusterState(policies=(policy,)))
        assert "(use the calico target)" in str(error.value)
        assert str(error.value).startswith("calico.yaml:")
    # Host endpoints are inventory: refused only when the inventory is written.
    assert write_k8s(replace(cluster, policies=())) == []
    with pytest.raises(WriteError, match=r"hostendpoint h: .*host endpoints are Calico"):
        write_k8s(replace(cluster, policies=()), include_inventory=True)

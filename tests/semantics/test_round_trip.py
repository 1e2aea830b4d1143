"""The writers, proved on the semantics corpus: a cluster written out and read back decides as
it did before.

- Every upstream case (network-policy-api conformance and Kubernetes e2e), its policies
  written by `write_calico` (Kubernetes NetworkPolicies converted as Calico converts them) and
  read back with the case's inventory: Kubernetes policies evaluated as Calico policies must
  give every expected verdict.
- The same cases through `write_k8s`: the model comes back unchanged, with and without the
  inventory written beside the policies.
- Every case, the Calico ones too (tiers, network sets, host endpoints, profiles, staged
  policies), read -> `write_calico` -> read: the expected verdicts, staged ones included, and
  every flow between two endpoints on the case's ports decided as before in each direction.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import yaml

from netwarden.dialects import load_text
from netwarden.dialects.calico_writer import write_calico
from netwarden.dialects.k8s_writer import write_k8s
from netwarden.engine import PolicyEngine
from netwarden.model import ClusterState, EndpointKind, Flow, parse_protocol
from tests.semantics.cases import Case, all_cases, kubernetes_cases, wrong_verdicts

KUBERNETES = kubernetes_cases()
ALL = all_cases()


def case_id(case: Case) -> str:
    return f"{case.path.parent.name}/{case.name}"


def inventory(case: Case) -> list[dict[str, Any]]:
    """The case's manifests without its `policies` (Calico resources there are written
    by the writer: tiers, network sets, host endpoints, profiles)."""
    manifests = case.manifests()
    return manifests[: len(manifests) - len(case.data.get("policies") or [])]


def read_back(
    case: Case, written: list[dict[str, Any]], with_inventory: bool = True
) -> ClusterState:
    documents = (inventory(case) if with_inventory else []) + written
    result = load_text(yaml.safe_dump_all(documents, sort_keys=False), f"written:{case.name}")
    assert not result.skipped, result.skipped
    return result.cluster


def disagreements(case: Case, before: ClusterState, after: ClusterState) -> list[str]:
    """Flows between every two endpoints, on every port the case probes, that the two
    clusters decide differently (per direction, and in the staged set)."""
    engines = PolicyEngine(before), PolicyEngine(after)
    ports = sorted({(e.port, e.protocol) for e in case.expectations()})
    endpoints = [e for e in before.endpoints if e.kind is not EndpointKind.EXTERNAL]
    found = []
    for src, dst in itertools.permutations(endpoints, 2):
        for port, protocol in ports:
            number = parse_protocol(protocol)
            assert number is not None
            verdicts = []
            for engine in engines:
                cluster = engine.cluster
                flow_src, flow_dst = cluster.endpoint(src.key), cluster.endpoint(dst.key)
                assert flow_src is not None and flow_dst is not None
                verdict = engine.decide(Flow(flow_src, flow_dst, port, number))
                staged = verdict.staged.allowed if verdict.staged else None
                verdicts.append((verdict.egress.allowed, verdict.ingress.allowed, staged))
            if verdicts[0] != verdicts[1]:
                found.append(
                    f"{src.key} -> {dst.key} {port}/{protocol}: {verdicts[0]} then {verdicts[1]}"
                )
    return found


@pytest.mark.parametrize("case", KUBERNETES, ids=case_id)
def test_kubernetes_policies_as_calico_policies(case: Case) -> None:
    original = case.cluster()
    written = write_calico(original)
    assert not [d for d in written if d["apiVersion"].startswith("networking.k8s.io/")]
    cluster = read_back(case, written)
    assert all(policy.kind != "NetworkPolicy" for policy in cluster.policies)
    assert len(cluster.policies) == len(original.policies)
    assert not wrong_verdicts(case, cluster)


@pytest.mark.parametrize("case", KUBERNETES, ids=case_id)
@pytest.mark.parametrize("with_inventory", [False, True], ids=["policies", "self-contained"])
def test_kubernetes_round_trip(case: Case, with_inventory: bool) -> None:
    """Policies only (with the case's own inventory), or the inventory written as well."""
    original = case.cluster()
    written = write_k8s(original, include_inventory=with_inventory)
    cluster = read_back(case, written, with_inventory=not with_inventory)
    assert cluster.policies == original.policies
    assert cluster.endpoints == original.endpoints
    assert cluster.namespace_labels == original.namespace_labels
    assert not wrong_verdicts(case, cluster)


@pytest.mark.parametrize("case", ALL, ids=case_id)
def test_calico_round_trip(case: Case) -> None:
    """Also every pod-to-pod flow on the case's ports: the Kubernetes cases here are the
    first test's conversion, checked beyond the expectations."""
    original = case.cluster()
    cluster = read_back(case, write_calico(original))
    assert len(cluster.policies) == len(original.policies)
    assert not wrong_verdicts(case, cluster)
    assert not disagreements(case, original, cluster)


TIE = """\
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: prod, labels: {app: a}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: prod, labels: {app: b}}
status: {podIP: 10.0.0.2}
"""
TIED_POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-allow, namespace: prod}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: c-deny, namespace: prod}
spec: {order: 1000, selector: app == "b", ingress: [{action: Deny}]}
"""


def test_order_ties_between_kubernetes_and_calico_policies() -> None:
    """At order 1000 in the default tier Calico puts `c-deny` before the converted
    `knp.default.b-allow` (ties go by Calico's names) and denies, before and after writing."""
    original = load_text(TIE + "---\n" + TIED_POLICIES).cluster
    converted = load_text(TIE + "---\n" + yaml.safe_dump_all(write_calico(original))).cluster
    verdicts = []
    for cluster in (original, converted):
        src, dst = cluster.endpoint("prod/a"), cluster.endpoint("prod/b")
        assert src is not None and dst is not None
        verdicts.append(PolicyEngine(cluster).decide(Flow(src, dst, 80, 6)).allowed)
    assert verdicts == [False, False]

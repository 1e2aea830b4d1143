"""The redundancy proof against the engines: removing a rule or policy that lint reports as
redundant (NW301/302/303, or one that matches nothing: NW201, NW202, NW501) changes no verdict
of any endpoint pair (IP atoms included) on any port atom; removing any other changes some.

The fixtures, the shop and the Calico semantics cases (tiers, Pass, Log, host endpoints and
profiles, entity rules, network sets, Services, staged policies) are decided flow by flow by
the reference engine (`PolicyEngine.decide`); the Kubernetes e2e cases and generated clusters,
too large for that in a test run, by the vectorized engine on every pair and atom.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from netwarden.analysis.lint import lint_cluster
from netwarden.analysis.lint_catalogue import Finding
from netwarden.analysis.lint_classes import RuleKey
from netwarden.analysis.lint_context import LintContext, policy_name
from netwarden.dialects import load_paths, load_text
from netwarden.engine.batch import ProbeBatch
from netwarden.engine.decide import PolicyEngine
from netwarden.engine.vectorized import evaluate
from netwarden.model import ClusterState, Direction, EndpointKind, Flow, Policy
from tests.semantics.cases import CALICO, K8S_E2E, Case, load_cases

FIXTURES = Path(__file__).parent / "fixtures" / "lint"
REPO = Path(__file__).resolve().parents[2]

Verdicts = Callable[[ClusterState], np.ndarray]


def claims(context: LintContext, findings: list[Finding]) -> tuple[set[str], set[str]]:
    """(policies, rules) lint says can go without changing a verdict, by name."""
    policies = {f.subject for f in findings if f.id in ("NW201", "NW303")}
    rules = {f.subject for f in findings if f.id in ("NW301", "NW302")}
    rules |= {
        f.subject.split(" peer ")[0]
        for f in findings
        if f.id == "NW202" and "(the rule matches nothing)" in f.message
    }
    undeclared: dict[str, int] = {}
    for f in findings:
        if f.id == "NW501":
            rule = f.subject.split(" port ")[0]
            undeclared[rule] = undeclared.get(rule, 0) + 1
    for position, policy in enumerate(context.policies):
        for direction in Direction:
            for k, rule in enumerate(policy.rules(direction) or ()):
                name = context.rule_name(RuleKey(position, direction, k))
                if rule.ports and undeclared.get(name) == len(rule.ports):
                    rules.add(name)
    return policies, rules


def without_policy(cluster: ClusterState, policy: Policy) -> ClusterState:
    return replace(cluster, policies=tuple(p for p in cluster.policies if p is not policy))


def without_rule(cluster: ClusterState, policy: Policy, key: RuleKey) -> ClusterState:
    rules = policy.rules(key.direction)
    assert rules is not None
    kept = rules[: key.number] + rules[key.number + 1 :]
    changed = replace(policy, **{key.direction.value: kept})
    return replace(cluster, policies=tuple(changed if p is policy else p for p in cluster.policies))


def removals(
    context: LintContext, findings: list[Finding]
) -> Iterator[tuple[str, ClusterState, bool]]:
    """(name, cluster without it, lint claims it redundant) for every policy and every rule
    of a policy lint does not already call redundant."""
    cluster = context.cluster
    policies, rules = claims(context, findings)
    for position, policy in enumerate(context.policies):
        typed = [r for d in Direction for r in policy.rules(d) or () if r.icmp or r.not_icmp]
        if not typed:  # ICMP types beyond echo are not in the atoms: never judged
            claimed = policy_name(policy) in policies
            yield policy_name(policy), without_policy(cluster, policy), claimed
        if policy_name(policy) in policies:
            continue
        for direction in Direction:
            for k, rule in enumerate(policy.rules(direction) or ()):
                if rule.icmp or rule.not_icmp:
                    continue
                key = RuleKey(position, direction, k)
                name = context.rule_name(key)
                yield name, without_rule(cluster, policy, key), name in rules


def reference_verdicts(context: LintContext) -> Verdicts:
    """Every (source, destination, atom) decided by the reference engine, flow by flow."""
    endpoints, atoms = context.endpoints, context.atoms
    flows = [
        Flow(src, dst, int(atoms.start[a]), int(atoms.protocol[a]))
        for src in endpoints
        for dst in endpoints
        if not (src.kind is EndpointKind.EXTERNAL and dst.kind is EndpointKind.EXTERNAL)
        for a in range(len(atoms))
    ]

    def decide_all(cluster: ClusterState) -> np.ndarray:
        engine = PolicyEngine(cluster)
        return np.array([engine.decide(flow).allowed for flow in flows], dtype=np.bool_)

    return decide_all


def vectorized_verdicts(context: LintContext) -> Verdicts:
    """Every (source, destination, atom) decided by the vectorized engine at once."""
    n, atoms = len(context.endpoints), context.atoms
    inside = np.arange(n) < context.pod_count
    src, dst = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    keep = inside[src] | inside[dst]
    src, dst = src[keep], dst[keep]
    count = len(atoms)
    batch = ProbeBatch(
        context.endpoints,
        np.repeat(src, count).astype(np.int32),
        np.repeat(dst, count).astype(np.int32),
        np.tile(atoms.start, src.shape[0]).astype(np.int32),
        np.tile(atoms.protocol, src.shape[0]).astype(np.int32),
    )

    def decide_all(cluster: ClusterState) -> np.ndarray:
        allowed: np.ndarray = evaluate(cluster, batch).allowed
        return allowed

    return decide_all


def check_claims(cluster: ClusterState, make: Callable[[LintContext], Verdicts]) -> int:
    """Asserts the proof for every removal; returns how many were claimed redundant."""
    context = LintContext(cluster)
    findings = lint_cluster(cluster)
    verdicts = make(context)
    base = verdicts(cluster)
    wrong, claimed = [], 0
    for name, smaller, redundant in removals(context, findings):
        changes = bool((verdicts(smaller) != base).any())
        claimed += redundant
        if changes == redundant:
            wrong.append(f"{name}: claimed redundant={redundant}, changes verdicts={changes}")
    assert not wrong, "\n".join(wrong)
    return claimed


@pytest.mark.parametrize(
    "fixture",
    ["shadowed", "other-side", "redundant-policy", "broad", "tiers", "pass", "named-ports"],
)
def test_redundancy_agrees_with_the_reference_engine(fixture: str) -> None:
    cluster = load_paths([FIXTURES / "inventory.yaml", FIXTURES / f"{fixture}.yaml"]).cluster
    assert check_claims(cluster, reference_verdicts) > 0


@pytest.mark.parametrize("case", load_cases(CALICO), ids=lambda case: case.name)
def test_redundancy_on_calico_cases_agrees_with_the_reference_engine(case: Case) -> None:
    check_claims(case.cluster(), reference_verdicts)


@pytest.mark.slow
def test_redundancy_on_kubernetes_cases_agrees_with_the_vectorized_engine() -> None:
    claimed = sum(check_claims(case.cluster(), vectorized_verdicts) for case in load_cases(K8S_E2E))
    assert claimed > 0


@pytest.mark.slow
def test_redundancy_on_the_shop_agrees_with_the_reference_engine() -> None:
    cluster = load_paths([REPO / "examples" / "shop"]).cluster
    assert check_claims(cluster, reference_verdicts) == 2


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_redundancy_on_generated_clusters_agrees_with_the_vectorized_engine(seed: int) -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.generate import generate_cluster

    cluster = load_text(generate_cluster(pods=60, policies=30, seed=seed)).cluster
    assert check_claims(cluster, vectorized_verdicts) > 0

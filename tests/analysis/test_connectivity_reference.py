"""The connectivity map agrees with the single-flow reference engine (`PolicyEngine.decide`)
on every pair of endpoints (pods, hosts, host endpoints and IP atoms) and every port atom's
representative flow, on random clusters and on every case of the semantics corpus."""

from __future__ import annotations

from ipaddress import ip_address

import numpy as np
import pytest
from benchmarks.generate import generate_cluster
from hypothesis import HealthCheck, given, settings

from netwarden.analysis import compute_connectivity
from netwarden.analysis.aggregate import class_rules
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.model import (
    Action,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    EntityMatch,
    In,
    Policy,
    Profile,
    Rule,
)
from tests.engine.test_vectorized import scenarios
from tests.engine.test_vectorized_calico import Odd
from tests.engine.test_vectorized_calico import scenarios as calico_scenarios
from tests.semantics.cases import Case, all_cases


def disagreements(cluster: ClusterState) -> list[str]:
    cmap = compute_connectivity(cluster)
    engine = PolicyEngine(cluster)
    size = cmap.size
    src, dst = np.divmod(np.arange(size * size), size)
    matrix = cmap.matrix(src, dst)
    wrong = []
    for row, (s, d) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
        for atom in range(len(cmap.atoms)):
            flow = cmap.flow(s, d, atom)
            expected = engine.decide(flow).allowed
            if bool(matrix[row, atom]) != expected:
                wrong.append(f"{flow}: map {bool(matrix[row, atom])}, engine {expected}")
    return wrong


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_agrees_with_reference_on_random_clusters(scenario: tuple[ClusterState, object]) -> None:
    cluster, _ = scenario
    assert disagreements(cluster) == []


@pytest.mark.parametrize(
    "case", all_cases(), ids=lambda case: f"{case.path.parent.name}/{case.name}"
)
def test_agrees_with_reference_on_semantics_case(case: Case) -> None:
    assert disagreements(case.cluster()) == []


@pytest.mark.slow
def test_agrees_with_reference_on_a_generated_cluster() -> None:
    """A realistic generated cluster (named ports, port ranges, ipBlock except, admin and
    baseline policies, hostNetwork agents): sampled pairs, every atom, against the reference;
    and the vectorized fw-rule grouping against a plain one."""
    cluster = load_text(generate_cluster(pods=300, policies=60, seed=7)).cluster
    cmap = compute_connectivity(cluster)
    engine = PolicyEngine(cluster)
    rng = np.random.default_rng(7)
    src = rng.integers(0, cmap.size, 250)
    dst = rng.integers(0, cmap.size, 250)
    matrix = cmap.matrix(src, dst)
    for row, (s, d) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
        for atom in range(len(cmap.atoms)):
            flow = cmap.flow(s, d, atom)
            assert bool(matrix[row, atom]) == engine.decide(flow).allowed, flow
    plain: dict[tuple[int, int], set[int]] = {}
    sizes = np.bincount(cmap.classes)
    pairs = cmap.class_pairs
    for s, d, p in zip(pairs.src.tolist(), pairs.dst.tolist(), pairs.pattern.tolist(), strict=True):
        if s != d or sizes[s] > 1:
            plain.setdefault((d, p), set()).add(s)
    grouped: dict[tuple[frozenset[int], int], set[int]] = {}
    for (d, p), sources in plain.items():
        grouped.setdefault((frozenset(sources), p), set()).add(d)
    vectorized = {(frozenset(s.tolist()), p): set(d.tolist()) for s, d, p in class_rules(cmap)}
    assert vectorized == grouped


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calico_scenarios())
def test_agrees_with_reference_on_random_calico_clusters(
    scenario: tuple[ClusterState, object],
) -> None:
    """Entity rules (nets, selectors, scopes, service accounts, Services), network sets, host
    endpoints with profiles and failsafe ports, tiers with Pass and Log."""
    cluster, _ = scenario
    assert disagreements(cluster) == []


def test_constructs_the_vectors_do_not_know_fall_back_to_the_reference_exactly() -> None:
    web = Endpoint(EndpointKind.POD, "web", "ns-a", {"app": "web"}, (ip_address("10.0.0.1"),))
    db = Endpoint(EndpointKind.POD, "db", "ns-a", {"app": "dbs"}, (ip_address("10.0.0.2"),))
    host = Endpoint(
        EndpointKind.HOST_ENDPOINT,
        "eth0",
        None,
        {"app": "db"},
        (ip_address("172.18.0.9"),),
        profiles=("odd",),
    )
    odd_peer = EntityMatch(selector=Odd("app"))
    subject = EndpointSelector(In("app", frozenset({"dbs", "db"})), host_endpoints=True)
    cluster = ClusterState(
        endpoints=(web, db, host),
        policies=(
            Policy(
                "p",
                "GlobalNetworkPolicy",
                "default",
                subject,
                order=1.0,
                ingress=(Rule(Action.DENY, (odd_peer,)),),
                egress=(),
            ),
        ),
        profiles=(Profile("odd", ingress=(Rule(Action.ALLOW, (odd_peer,)),)),),
    )
    assert disagreements(cluster) == []
    cmap = compute_connectivity(cluster)
    assert cmap.ports(cmap.index("ns-a/web"), cmap.index("ns-a/db")).is_empty  # "web" is odd

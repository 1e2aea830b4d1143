"""The benchmark generator makes what it is asked for, and it reads without a complaint."""

from __future__ import annotations

from collections import Counter

from benchmarks.generate import generate_cluster, generate_probes

from netwarden.dialects import load_text
from netwarden.engine import evaluate
from netwarden.engine.batch import resolve_probes
from netwarden.model import EndpointKind


def test_generated_cluster_loads_with_the_requested_counts() -> None:
    text = generate_cluster(pods=120, policies=30, seed=7)
    result = load_text(text, "generated.yaml")
    assert not result.skipped
    cluster = result.cluster
    assert len(cluster.endpoints) == 120
    assert len(cluster.policies) == 30
    kinds = Counter(policy.kind for policy in cluster.policies)
    assert kinds["AdminNetworkPolicy"] >= 1 and kinds["BaselineAdminNetworkPolicy"] == 1
    assert any(e.kind is EndpointKind.HOST for e in cluster.endpoints)
    assert generate_cluster(pods=120, policies=30, seed=7) == text  # seeded


def test_generated_probes_resolve_and_evaluate() -> None:
    cluster = load_text(generate_cluster(pods=60, policies=12, seed=3)).cluster
    probes = generate_probes(cluster, 500, seed=3)
    assert len(probes) == 500
    assert probes == generate_probes(cluster, 500, seed=3)
    result = evaluate(cluster, resolve_probes(cluster, probes))
    assert len(result.allowed) == 500

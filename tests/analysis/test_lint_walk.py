"""The lint walk decides each direction exactly as the connectivity map does: its final
verdicts, read back as tables, equal the map's for every endpoint pair and atom."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from netwarden.analysis import compute_connectivity
from netwarden.analysis.lint_context import LintContext
from netwarden.dialects import load_paths, load_text
from netwarden.model import ClusterState

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "lint"


def assert_same_tables(cluster: ClusterState) -> None:
    context = LintContext(cluster)
    cmap = compute_connectivity(cluster)
    assert [e.key for e in context.endpoints] == [e.key for e in cmap.endpoints]
    n = len(context.endpoints)
    src, dst = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    ours_egress = context.egress.table.words(src, dst)
    ours_ingress = context.ingress.table.words(dst, src)
    assert np.array_equal(ours_egress, cmap.egress.words(src, dst))
    assert np.array_equal(ours_ingress, cmap.ingress.words(dst, src))


@pytest.mark.parametrize("fixture", ["tiers", "pass", "named-ports", "other-side"])
def test_walk_matches_the_connectivity_map_on_fixtures(fixture: str) -> None:
    paths = [FIXTURES / "inventory.yaml", FIXTURES / f"{fixture}.yaml"]
    assert_same_tables(load_paths(paths).cluster)


def test_walk_matches_the_connectivity_map_on_the_examples() -> None:
    assert_same_tables(
        load_paths([REPO / "examples" / "shop", REPO / "examples" / "calico"]).cluster
    )


def test_walk_matches_the_connectivity_map_on_a_generated_cluster() -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.generate import generate_cluster

    assert_same_tables(load_text(generate_cluster(pods=120, policies=40, seed=5)).cluster)


def test_every_rule_of_a_selecting_policy_is_walked() -> None:
    cluster = load_paths([FIXTURES / "inventory.yaml", FIXTURES / "shadowed.yaml"]).cluster
    context = LintContext(cluster)
    walked = set(context.ingress.rules)
    for position, policy in enumerate(context.policies):
        for number, _ in enumerate(policy.ingress or ()):
            assert any(key.policy == position and key.number == number for key in walked)

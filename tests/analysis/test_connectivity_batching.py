"""The connectivity tables' fast paths against plain recomputations: `small_classes` on
packed rows, class pairs keyed by (egress row, ingress row), blocks shared by subject classes
whose programs read the same things."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.generate import generate_cluster

from netwarden.analysis import compute_connectivity
from netwarden.analysis.partition import small_classes
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.model import ClusterState


@pytest.fixture(scope="module")
def generated() -> ClusterState:
    return load_text(generate_cluster(pods=300, policies=60, seed=3)).cluster


def _first_appearance(rows: list[tuple[object, ...]]) -> list[int]:
    seen: dict[tuple[object, ...], int] = {}
    return [seen.setdefault(row, len(seen)) for row in rows]


@pytest.mark.parametrize("seed", range(6))
def test_small_classes_are_the_distinct_rows_numbered_by_first_appearance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 400))
    columns: list[np.ndarray] = []  # type: ignore[type-arg]
    for _ in range(int(rng.integers(0, 90))):
        if rng.random() < 0.2:
            columns.append(rng.integers(-3, 2**40, size) * (rng.random(size) < 0.5))
        else:
            columns.append(rng.random(size) < rng.random() * 0.2)
    columns += columns[:3]  # the same column object twice counts once
    rows = [tuple(int(c[i]) for c in columns) for i in range(size)]
    assert small_classes(columns, size).tolist() == _first_appearance(rows)


def test_small_classes_of_nothing_is_one_class() -> None:
    assert small_classes([], 4).tolist() == [0, 0, 0, 0]
    assert small_classes([np.zeros(0, dtype=np.bool_)], 0).tolist() == []


def test_class_pairs_are_every_allowed_pair_of_class_representatives(
    generated: ClusterState,
) -> None:
    cmap = compute_connectivity(generated)
    reps = cmap.class_reps
    count = reps.shape[0]
    src = np.repeat(np.arange(count), count)
    dst = np.tile(np.arange(count), count)
    words = cmap.words(reps[src], reps[dst])
    inside = cmap.pods[reps]
    keep = words.any(axis=1) & (inside[src] | inside[dst])
    pairs = cmap.class_pairs
    assert pairs.src.tolist() == src[keep].tolist()
    assert pairs.dst.tolist() == dst[keep].tolist()
    assert (pairs.patterns[pairs.pattern] == words[keep]).all()
    assert len({p.tobytes() for p in pairs.patterns}) == pairs.patterns.shape[0]


def test_subject_classes_sharing_a_block_decide_alike(generated: ClusterState) -> None:
    """Subject classes that share rows of a table (their programs read the same of them)
    still get what the engine decides for each of their own representatives."""
    cmap = compute_connectivity(generated)
    engine = PolicyEngine(generated)
    rng = np.random.default_rng(7)
    for table in (cmap.egress, cmap.ingress):
        offsets = table.offsets
        _, first, counts = np.unique(offsets, return_index=True, return_counts=True)
        shared = np.flatnonzero(np.isin(offsets, offsets[first[counts > 1]]))
        assert shared.shape[0] >= 2 or table is cmap.ingress  # egress always shares here
        for klass in shared[:12].tolist():
            subject = int(table.subject_reps[klass])
            peers = rng.choice(cmap.size, size=8, replace=False)
            for peer in peers.tolist():
                egress = table is cmap.egress
                src, dst = (subject, peer) if egress else (peer, subject)
                row = table.words(np.array([subject]), np.array([peer]))
                allowed = np.flatnonzero(
                    np.unpackbits(row.view(np.uint8), bitorder="little")[: len(cmap.atoms)]
                )
                for atom in range(len(cmap.atoms)):
                    flow = cmap.flow(src, dst, atom)
                    decided = engine.decide_direction(flow, table.direction).allowed
                    assert decided == (atom in set(allowed.tolist())), flow

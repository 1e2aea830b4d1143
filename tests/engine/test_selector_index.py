"""LabelTable must agree with Selector.matches on every label set, for every selector."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.engine.selector_index import LabelTable
from netwarden.model.selector import (
    And,
    Has,
    In,
    Or,
    Selector,
    StartsWith,
)
from tests.strategies import selectors

# A small alphabet so that keys and values collide often: shared, missing and unknown labels.
KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.sampled_from(["", "x", "y", "xy", "yx", "xyz"])
SELECTORS = selectors(KEYS, VALUES, width=4, max_leaves=10)
LABEL_SETS = st.lists(st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES), max_size=30)


@settings(max_examples=300)
@given(LABEL_SETS, st.lists(SELECTORS, min_size=1, max_size=5))
def test_agrees_with_selector_matches(
    label_sets: list[dict[str, str]], selectors: list[Selector]
) -> None:
    table = LabelTable(label_sets)
    for selector in selectors:  # several per table: the leaf cache is shared between them
        expected = [selector.matches(labels) for labels in label_sets]
        assert table.matches(selector).tolist() == expected


def test_duplicate_label_sets_share_a_class() -> None:
    table = LabelTable(
        [{"app": "web", "tier": "fe"}, {"tier": "fe", "app": "web"}, {}, {"app": "db"}]
    )
    assert len(table) == 4
    assert table.class_count == 3
    assert table.class_of_row.tolist() == [0, 0, 1, 2]
    assert table.class_matches(Has("app")).tolist() == [True, False, True]


def test_results_are_fresh_arrays() -> None:
    table = LabelTable([{"app": "web"}, {"app": "db"}])
    first = table.matches(Has("app"))
    first[:] = False  # the caller owns the result; the cache must not see this
    assert table.matches(Has("app")).tolist() == [True, True]
    assert table.matches(And((Has("app"),))).tolist() == [True, True]


def test_empty_table() -> None:
    table = LabelTable([])
    assert table.matches(Or((Has("a"), In("b", frozenset({"x"}))))).shape == (0,)


def test_unknown_node_is_refused() -> None:
    class Odd(Selector):
        def matches(self, labels: object) -> bool:
            return True

    with pytest.raises(TypeError):
        LabelTable([{}]).matches(Odd())


def test_large_vocabulary_membership() -> None:
    label_sets = [{"pod": f"p{i}", "app": f"a{i % 7}"} for i in range(1000)]
    table = LabelTable(label_sets)
    selector = And((In("app", frozenset({"a1", "a3", "zz"})), StartsWith("pod", "p9")))
    expected = np.array([selector.matches(labels) for labels in label_sets])
    assert np.array_equal(table.matches(selector), expected)

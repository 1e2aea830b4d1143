"""Hypothesis strategies shared by several test modules."""

from __future__ import annotations

from hypothesis import strategies as st

from netwarden.model import (
    All,
    And,
    Contains,
    EndsWith,
    Global,
    Has,
    In,
    Not,
    Nothing,
    NotIn,
    Or,
    Selector,
    StartsWith,
)


def selectors(
    keys: st.SearchStrategy[str], values: st.SearchStrategy[str], width: int, max_leaves: int
) -> st.SearchStrategy[Selector]:
    """Random selector trees over every node kind, with up to `width` terms per And/Or."""
    value_sets = st.frozensets(values, max_size=3)
    leaves: st.SearchStrategy[Selector] = st.one_of(
        st.just(All()),
        st.just(Nothing()),
        st.just(Global()),
        st.builds(Has, keys),
        st.builds(In, keys, value_sets),
        st.builds(NotIn, keys, value_sets),
        st.builds(Contains, keys, values),
        st.builds(StartsWith, keys, values),
        st.builds(EndsWith, keys, values),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(Not, children),
            st.builds(And, st.lists(children, max_size=width).map(tuple)),
            st.builds(Or, st.lists(children, max_size=width).map(tuple)),
        ),
        max_leaves=max_leaves,
    )

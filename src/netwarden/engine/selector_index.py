"""Match selectors against many label sets at once: dictionary-encoded label columns + numpy.

`LabelTable` encodes N label sets once: identical label sets collapse into one class (pods of
a Deployment share their labels), and each label key becomes an integer column over the
classes holding the code of its value (-1 where the label is missing). A selector is then a
handful of vector operations over the classes, never one Python call per label set:

- `In` / `NotIn` / `==` / `!=`: compare codes, or gather through a small boolean table over
  the key's distinct values;
- `Contains` / `StartsWith` / `EndsWith`: run the string test once per distinct value of the
  key into such a table, then gather;
- `Has`: the code is not -1; `And` / `Or` / `Not`: boolean array operations.

Agreement with `Selector.matches` is the contract (tests/engine/test_selector_index.py).

    >>> table = LabelTable([{"app": "web"}, {"app": "db"}, {}])
    >>> table.matches(In("app", frozenset({"web"}))).tolist()
    [True, False, False]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from netwarden.model.selector import (
    All,
    And,
    Contains,
    EndsWith,
    Global,
    Has,
    In,
    Labels,
    Not,
    Nothing,
    NotIn,
    Or,
    Selector,
    StartsWith,
)

BoolArray = NDArray[np.bool_]

#: Memory allowed for remembered leaf results. Policies repeat the same few comparisons
#: (`env == "prod"`, `has(app)`) across many selectors, so a leaf is evaluated once.
LEAF_CACHE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class _Column:
    """One label key over all classes. `codes[c]` indexes `values`, or is -1 when class `c`
    lacks the label; per-value tables get one extra slot at the end for -1 to land in."""

    codes: NDArray[np.int32]
    values: tuple[str, ...]
    code_of: dict[str, int]


class LabelTable:
    """N label sets, encoded once, against which selectors are evaluated as numpy vectors."""

    def __init__(self, label_sets: Sequence[Labels]) -> None:
        class_of: dict[frozenset[tuple[str, str]], int] = {}
        classes: list[Labels] = []
        rows = np.empty(len(label_sets), dtype=np.intp)
        for row, labels in enumerate(label_sets):
            identity = frozenset(labels.items())
            found = class_of.setdefault(identity, len(classes))
            if found == len(classes):
                classes.append(labels)
            rows[row] = found
        self._rows = rows
        self._class_count = len(classes)
        self._columns = _encode_columns(classes)
        self._leaf_cache: dict[Selector, BoolArray] = {}
        self._leaf_cache_limit = max(16, LEAF_CACHE_BYTES // max(1, self._class_count))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def class_count(self) -> int:
        """How many distinct label sets the table holds."""
        return self._class_count

    @property
    def class_of_row(self) -> NDArray[np.intp]:
        """For each of the N label sets, the index of its class (its distinct label set)."""
        return self._rows

    def matches(self, selector: Selector) -> BoolArray:
        """For each of the N label sets, in input order: does `selector` match it?"""
        return self.class_matches(selector)[self._rows]

    def class_matches(self, selector: Selector) -> BoolArray:
        """For each class (distinct label set): does `selector` match it? Read-only when it
        comes from the leaf cache; copy before changing it."""
        match selector:
            case And(terms=terms):
                return self._combine(terms, np.logical_and, identity=True)
            case Or(terms=terms):
                return self._combine(terms, np.logical_or, identity=False)
            case Not(term=term):
                return ~self.class_matches(term)
            case All():
                return np.ones(self._class_count, dtype=np.bool_)
            case Nothing() | Global():
                # Global() is a scope marker, matching no label set (see model.selector.Global).
                return np.zeros(self._class_count, dtype=np.bool_)
        return self._leaf(selector)

    def clear_cache(self) -> None:
        """Forget remembered leaf results (benchmarks use this to measure a cold start)."""
        self._leaf_cache.clear()

    def _combine(
        self,
        terms: tuple[Selector, ...],
        operation: Callable[..., BoolArray],
        identity: bool,
    ) -> BoolArray:
        if not terms:
            return np.full(self._class_count, identity, dtype=np.bool_)
        result = self.class_matches(terms[0])
        if len(terms) == 1:
            return result
        # The first operation allocates a fresh array, so children (maybe cached, read-only)
        # are never written to; later ones reuse it in place.
        result = operation(result, self.class_matches(terms[1]))
        for term in terms[2:]:
            operation(result, self.class_matches(term), out=result)
        return result

    def _leaf(self, selector: Selector) -> BoolArray:
        cached = self._leaf_cache.get(selector)
        if cached is not None:
            return cached
        result = self._evaluate_leaf(selector)
        result.flags.writeable = False
        if len(self._leaf_cache) >= self._leaf_cache_limit:
            self._leaf_cache.clear()
        self._leaf_cache[selector] = result
        return result

    def _evaluate_leaf(self, selector: Selector) -> BoolArray:
        match selector:
            case Has(key=key):
                column = self._columns.get(key)
                return self._absent() if column is None else column.codes >= 0
            case In(key=key, values=values):
                return self._member(key, values)
            case NotIn(key=key, values=values):
                # Exactly the complement of In: In is false on a missing label, NotIn true.
                return ~self._member(key, values)
            case Contains(key=key, value=value):
                return self._by_value(key, lambda actual: value in actual)
            case StartsWith(key=key, value=value):
                return self._by_value(key, lambda actual: actual.startswith(value))
            case EndsWith(key=key, value=value):
                return self._by_value(key, lambda actual: actual.endswith(value))
        raise TypeError(f"LabelTable cannot evaluate selector node {type(selector).__name__}")

    def _absent(self) -> BoolArray:
        return np.zeros(self._class_count, dtype=np.bool_)

    def _member(self, key: str, values: frozenset[str]) -> BoolArray:
        """Classes whose `key` label has one of `values` (false where the label is missing)."""
        column = self._columns.get(key)
        if column is None:
            return self._absent()
        codes = [column.code_of[value] for value in values if value in column.code_of]
        if not codes:
            return self._absent()
        if len(codes) == 1:
            equal: BoolArray = column.codes == codes[0]  # -1 (missing) never equals a code
            return equal
        table = np.zeros(len(column.values) + 1, dtype=np.bool_)
        table[codes] = True
        return table[column.codes]

    def _by_value(self, key: str, test: Callable[[str], bool]) -> BoolArray:
        """Classes whose `key` label passes `test`: one call per distinct value, then a gather
        (false where the label is missing: code -1 lands in the table's last, False, slot)."""
        column = self._columns.get(key)
        if column is None:
            return self._absent()
        table = np.zeros(len(column.values) + 1, dtype=np.bool_)
        table[:-1] = [test(value) for value in column.values]
        return table[column.codes]


def _encode_columns(classes: Sequence[Labels]) -> dict[str, _Column]:
    """One integer column per label key, values numbered in order of first appearance."""
    rows_by_key: dict[str, list[int]] = {}
    codes_by_key: dict[str, list[int]] = {}
    code_of_by_key: dict[str, dict[str, int]] = {}
    for row, labels in enumerate(classes):
        for key, value in labels.items():
            code_of = code_of_by_key.get(key)
            if code_of is None:
                code_of = code_of_by_key[key] = {}
                rows_by_key[key] = []
                codes_by_key[key] = []
            rows_by_key[key].append(row)
            codes_by_key[key].append(code_of.setdefault(value, len(code_of)))
    columns: dict[str, _Column] = {}
    for key, code_of in code_of_by_key.items():
        codes = np.full(len(classes), -1, dtype=np.int32)
        codes[rows_by_key[key]] = codes_by_key[key]
        columns[key] = _Column(codes, tuple(code_of), code_of)
    return columns

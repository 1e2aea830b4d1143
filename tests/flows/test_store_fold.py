"""`FlowStore.fold`: distinct key combinations with their record counts, first start and
counter totals, on DuckDB (hashed bundles of text keys) and chDB, checked against a count of
the records in Python."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from netwarden.errors import UsageError
from netwarden.flows import duckdb_fold
from netwarden.flows.duckdb_fold import fold_by_hash, fold_by_value, fold_duckdb
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store
from tests.flows.conftest import T0, sample_records

KEYS = (
    "source_namespace",
    "source_name",
    "dest_namespace",
    "dest_name",
    "dest_ip",
    "dest_port",
    "proto",
    "action",
)
SUMS = ("num_flows", "bytes_in", "bytes_out")


def expected_fold(
    records: list[dict[str, Any]], keys: tuple[str, ...], sums: tuple[str, ...]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """key values -> (records, first start, *sums), counted one record at a time."""
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], datetime] = {}
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(sums))
    for record in records:
        key = tuple(record.get(k) for k in keys)
        counts[key] += 1
        first[key] = min(first.get(key, record["start_time"]), record["start_time"])
        for i, name in enumerate(sums):
            totals[key][i] += record.get(name) or 0
    return {key: (counts[key], first[key], *totals[key]) for key in counts}


def folded_rows(
    table: Any, keys: tuple[str, ...], sums: tuple[str, ...]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """A fold's result as key values -> (records, first start, *sums); keys must not repeat."""
    rows = [table.column(k).to_pylist() for k in (*keys, "records", "first_start", *sums)]
    found = {}
    for values in zip(*rows, strict=True):
        key = values[: len(keys)]
        assert key not in found, f"key {key} folded twice"
        found[key] = values[len(keys) :]
    return found


def test_fold_counts_each_distinct_key_with_its_first_start_and_sums(
    store: FlowStore, sample_table: Any
) -> None:
    store.append(sample_table)
    folded = store.fold(KEYS, SUMS)
    assert folded.column_names == [*KEYS, "records", "first_start", *SUMS]
    expected = expected_fold(sample_records(), KEYS, SUMS)
    assert folded_rows(folded, KEYS, SUMS) == expected
    # External destinations have no namespace: null is a key value like any other.
    assert any(key[2] is None for key in expected)


def test_fold_reads_only_the_matching_records(store: FlowStore, sample_table: Any) -> None:
    store.append(sample_table)
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=2)
    condition = FlowFilter.parse('proto = "tcp"')
    folded = store.fold(("dest_name", "action"), ("bytes_out",), condition, since, until)
    chosen = [r for r in sample_records() if since <= r["start_time"] < until]
    chosen = [r for r in chosen if r["proto"] == "tcp"]
    expected = expected_fold(chosen, ("dest_name", "action"), ("bytes_out",))
    assert folded_rows(folded, ("dest_name", "action"), ("bytes_out",)) == expected
    assert sum(n for n, *_ in expected.values()) == store.count(condition, since, until)


def test_fold_of_nothing_is_an_empty_table(store: FlowStore) -> None:
    folded = store.fold(KEYS, SUMS)
    assert folded.num_rows == 0
    assert folded.column_names == [*KEYS, "records", "first_start", *SUMS]


@pytest.mark.parametrize(
    ("keys", "sums", "fragment"),
    [
        ((), (), "at least one key"),
        (("dest_name", "nonsense"), (), "unknown flow column"),
        (("dest_name", "dest_name"), (), "repeat"),
        (("dest_labels",), (), "list column"),
        (("dest_name",), ("dest_port",), "counter"),
    ],
)
def test_fold_rejects_what_it_cannot_fold(
    store: FlowStore, keys: tuple[str, ...], sums: tuple[str, ...], fragment: str
) -> None:
    with pytest.raises(UsageError, match=fragment):
        store.fold(keys, sums)


def awkward_records(count: int, seed: int) -> list[dict[str, Any]]:
    """Records whose text keys hold nulls, empty strings, quotes, unicode and long values,
    in combinations no bundle of columns sees twice alike."""
    rng = random.Random(seed)
    texts = [None, "", "-", "it's", 'say "hi"', "ünïcødé", "x" * 40, "a\\b", "a", "A"]
    texts += [f"pod-{i}" for i in range(30)]
    records = []
    for i in range(count):
        when = T0 + timedelta(seconds=rng.randrange(86_400))
        records.append(
            {
                "start_time": when,
                "end_time": when,
                "source_namespace": rng.choice(texts[:12]),
                "source_name": rng.choice(texts),
                "dest_namespace": rng.choice(texts[:6]),
                "dest_name": rng.choice(texts),
                "dest_ip": f"10.0.{rng.randrange(3)}.{rng.randrange(200)}",
                "dest_port": rng.choice([None, 53, 443, 65535]),
                "proto": rng.choice(["tcp", "udp", None]),
                "action": rng.choice(["allow", "deny"]),
                "num_flows": rng.randrange(5),
                "bytes_in": rng.randrange(1 << 40),
                "bytes_out": i,
            }
        )
    return records


def test_duckdb_hashed_fold_is_the_fold_by_value(tmp_path: Path) -> None:
    records = awkward_records(3000, seed=7)
    store = open_store(str(tmp_path / "flows.duckdb"))
    try:
        store.append(from_records(records))
        connection = store.connection  # type: ignore[attr-defined]
        hashed = fold_by_hash(connection, KEYS, SUMS, "", [])
        plain = fold_by_value(connection, KEYS, SUMS, "", [])
        assert hashed is not None
        # Text keys come dictionary-encoded from the hashed fold: the same values.
        assert pa.types.is_dictionary(hashed.schema.field("dest_name").type)
        expected = expected_fold(records, KEYS, SUMS)
        assert folded_rows(hashed, KEYS, SUMS) == expected == folded_rows(plain, KEYS, SUMS)
    finally:
        store.close()


def test_text_keys_are_hashed_in_bundles_within_the_limit() -> None:
    sizes = {"ip": 5000, "name": 800, "namespace": 50, "type": 3, "proto": 4, "action": 2}
    bundles = duckdb_fold._bundles(sizes)
    assert sorted(key for bundle in bundles for key in bundle) == sorted(sizes)
    assert len(bundles) < len(sizes)
    for bundle in bundles:
        product = 1
        for key in bundle:
            product *= sizes[key]
        assert product <= duckdb_fold._BUNDLE_LIMIT or len(bundle) == 1
    # A column bigger than the limit on its own is a bundle of its own.
    assert ["huge"] in duckdb_fold._bundles({"huge": 1 << 20, "small": 2})


def test_a_bundle_whose_hashes_collide_is_not_used() -> None:
    """Two combinations with one hash cannot be told apart: no hashed fold then."""
    connection = duckdb.connect()
    try:
        values = pa.array(["a", "b", None])
        found = duckdb_fold._combinations(connection, [values, values])
        assert found is not None
        hashes, positions = found
        # Nine combinations, nine hashes: (a, b) and (b, a) apart, null a value of its own.
        assert len(set(hashes.to_pylist())) == 9
        assert sorted(map(tuple, positions.tolist())) == [
            (i, j) for i in range(3) for j in range(3)
        ]
        # Two values with one hash (here: the same value twice) are refused.
        assert duckdb_fold._combinations(connection, [pa.array(["a", "b", "a"])]) is None
    finally:
        connection.close()


def test_duckdb_fold_falls_back_to_grouping_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = awkward_records(500, seed=3)
    store = open_store(str(tmp_path / "flows.duckdb"))
    try:
        store.append(from_records(records))
        connection = store.connection  # type: ignore[attr-defined]
        monkeypatch.setattr(duckdb_fold, "fold_by_hash", lambda *args: None)
        folded = fold_duckdb(connection, KEYS, SUMS, "", [])
        assert not pa.types.is_dictionary(folded.schema.field("dest_name").type)
        assert folded_rows(folded, KEYS, SUMS) == expected_fold(records, KEYS, SUMS)
        # The fold's transaction is over: the connection takes the next one.
        connection.execute("BEGIN TRANSACTION")
        connection.execute("COMMIT")
    finally:
        store.close()


def test_first_start_is_exact_to_the_microsecond(store: FlowStore) -> None:
    when = datetime(2026, 11, 27, 8, 0, 0, 123457, tzinfo=UTC)
    records = [
        {"start_time": when + timedelta(microseconds=d), "end_time": when, "dest_name": "db"}
        for d in (5, 0, 3)
    ]
    store.append(from_records(records))
    folded = store.fold(("dest_name",))
    assert folded.column("first_start").to_pylist() == [when]
    assert folded.column("records").to_pylist() == [3]

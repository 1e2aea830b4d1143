"""`FlowStore.scan_matching`: the records whose column holds one of many values, found by the
store with a join (a registered Arrow table in DuckDB, a temporary table in chDB running the
ClickHouse backend's SQL), checked against the same selection made in Python; the table of
values never outlives the scan, and bad requests are usage errors."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from netwarden.errors import UsageError
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import FLOW_SCHEMA, from_records
from netwarden.flows.store import FlowStore, open_store
from tests.flows.conftest import T0

ADDRESSES = [f"198.51.{i // 256}.{i % 256}" for i in range(600)]


def random_records(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """Records over three days between addresses drawn from ADDRESSES (a few null)."""
    rng = random.Random(seed)
    records = []
    for i in range(count):
        when = T0 + timedelta(minutes=rng.randrange(3 * 24 * 60))
        records.append(
            {
                "start_time": when,
                "end_time": when + timedelta(seconds=5),
                "source_ip": rng.choice(ADDRESSES),
                "dest_ip": None if i % 50 == 0 else rng.choice(ADDRESSES),
                "dest_port": rng.choice([53, 443, 5432, 8443]),
                "proto": "tcp",
                "action": rng.choice(["allow", "deny"]),
                "dest_name": f"db-{i}",
                "num_flows": 1 + i % 3,
            }
        )
    return records


def selected(records: list[dict[str, Any]], column: str, values: set[Any]) -> list[str]:
    return sorted(r["dest_name"] for r in records if r[column] in values)


def matched(batches: Any) -> list[str]:
    return sorted(name for batch in batches for name in batch.column("dest_name").to_pylist())


def test_many_values_match_like_python(store: FlowStore) -> None:
    records = random_records(3000)
    store.append(from_records(records))
    rng = random.Random(9)
    # 1,000 values: 300 of the stored addresses, repeats, a null, and 690 never stored.
    listed = rng.sample(ADDRESSES, 300)
    values = [*listed, *listed[:10], None, *(f"203.0.113.{i % 256}/{i}" for i in range(690))]
    batches = list(
        store.scan_matching(
            ["dest_name", "dest_ip", "start_time", "num_flows"], "dest_ip", values, batch_size=64
        )
    )
    expected = selected(records, "dest_ip", set(listed))
    assert len(expected) > 1000  # a real share of the records, not a corner
    assert matched(batches) == expected
    assert all(b.num_rows <= 64 for b in batches)
    assert batches[0].schema == pa.schema(
        [FLOW_SCHEMA.field(c) for c in ("dest_name", "dest_ip", "start_time", "num_flows")]
    )
    # Every column of a matched record comes back as stored.
    by_name = {r["dest_name"]: r for r in records}
    for batch in batches:
        for row in batch.to_pylist():
            stored = by_name[row["dest_name"]]
            assert (row["dest_ip"], row["start_time"], row["num_flows"]) == (
                stored["dest_ip"], stored["start_time"], stored["num_flows"]
            )  # fmt: skip


def test_filter_window_and_other_column_types(store: FlowStore) -> None:
    records = random_records(1500, seed=11)
    store.append(from_records(records))
    listed = set(ADDRESSES[::7])
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=2, hours=6)
    found = store.scan_matching(
        ["dest_name"],
        "source_ip",
        pa.chunked_array([pa.array(sorted(listed)[:40]), pa.array(sorted(listed)[40:])]),
        FlowFilter.parse("action = deny"),
        since,
        until,
    )
    expected = sorted(
        r["dest_name"]
        for r in records
        if r["source_ip"] in listed and r["action"] == "deny" and since <= r["start_time"] < until
    )
    assert expected and matched(found) == expected
    # An integer column: values are typed like it.
    assert matched(store.scan_matching(["dest_name"], "dest_port", [443, 8443])) == selected(
        records, "dest_port", {443, 8443}
    )


def test_nothing_to_match(store: FlowStore) -> None:
    store.append(from_records(random_records(50)))
    assert list(store.scan_matching(["dest_name"], "dest_ip", [])) == []
    assert list(store.scan_matching(["dest_name"], "dest_ip", [None])) == []
    assert list(store.scan_matching(["dest_name"], "dest_ip", ["192.0.2.1"])) == []


@pytest.mark.parametrize(
    ("columns", "column", "values", "message"),
    [
        (["dest_name"], "dest_labels", ["app=web"], "dest_labels: it holds lists"),
        (["dest_name"], "dest_address", ["192.0.2.1"], "unknown flow column: dest_address"),
        (["dest_name"], "dest_port", ["https"], "values to match in dest_port"),
        (["nope"], "dest_ip", ["192.0.2.1"], "unknown flow column"),
    ],
)
def test_bad_requests_are_usage_errors(
    store: FlowStore, columns: list[str], column: str, values: list[Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        list(store.scan_matching(columns, column, values))


def _value_tables(store: Any, backend: str) -> int:
    """How many tables of values the store holds at the moment."""
    if backend == "duckdb":
        sql = "SELECT count(*) FROM duckdb_views() WHERE view_name LIKE 'matching_values_%'"
        return int(store.connection.execute(sql).fetchall()[0][0])
    return int(store._scalar("SELECT count() FROM system.tables WHERE is_temporary") or 0)


@pytest.mark.parametrize("backend", ["duckdb", "chdb"])
def test_the_table_of_values_lives_as_long_as_the_scan(tmp_path: Path, backend: str) -> None:
    """Gone when the scan ends, and when its reader stops early; the store goes on."""
    url = f"duckdb:{tmp_path / 'f.duckdb'}" if backend == "duckdb" else f"chdb:{tmp_path / 'ch'}"
    store = open_store(url)
    try:
        records = random_records(400)
        store.append(from_records(records))
        scan = store.scan_matching(["dest_name"], "source_ip", ADDRESSES[:100], batch_size=5)
        assert next(scan).num_rows == 5
        if backend == "chdb":  # DuckDB takes no other query while a result is open
            assert _value_tables(store, backend) == 1
        scan.close()  # the reader stops early
        assert _value_tables(store, backend) == 0
        assert store.count() == 400
        full = matched(store.scan_matching(["dest_name"], "source_ip", ADDRESSES[:100]))
        assert full == selected(records, "source_ip", set(ADDRESSES[:100]))
        assert _value_tables(store, backend) == 0
    finally:
        store.close()

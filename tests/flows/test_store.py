"""The FlowStore contract, on DuckDB and on chDB (the ClickHouse backend's SQL)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netwarden.errors import UsageError
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import FLOW_SCHEMA, SCHEMA_VERSION
from netwarden.flows.store import Aggregate, FlowStore, open_store
from tests.flows.conftest import T0


def test_append_then_scan_returns_the_same_records(store: FlowStore, sample_table: Any) -> None:
    assert store.append(sample_table) == 60
    scanned = store.scan()
    assert scanned.schema == FLOW_SCHEMA
    assert scanned.num_rows == 60
    expected = sorted(sample_table.to_pylist(), key=lambda r: (r["start_time"], r["source_name"]))
    got = sorted(scanned.to_pylist(), key=lambda r: (r["start_time"], r["source_name"]))
    assert got == expected


def test_filter_and_time_window(store: FlowStore, sample_table: Any) -> None:
    store.append(sample_table)
    denied_pci = FlowFilter.parse('dest_namespace = "pci" AND action = "deny"')
    assert store.count(denied_pci) == 15
    day_two = store.count(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
    assert day_two == 20
    both = store.scan(denied_pci, since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
    assert both.num_rows == 5
    assert set(both.column("dest_name").to_pylist()) == {"card-0"}
    assert store.count(FlowFilter.parse('dest_labels = "pci=*"')) == 15
    assert store.count(FlowFilter.parse("dest_port IN (53, 443)")) == 30
    # != keeps records where the column is null (external destinations have no namespace)
    assert store.count(FlowFilter.parse('dest_namespace != "shop"')) == 45


def test_scan_columns_limit_and_batches(store: FlowStore, sample_table: Any) -> None:
    store.append(sample_table)
    few = store.scan(columns=["start_time", "dest_port"], limit=7)
    assert few.column_names == ["start_time", "dest_port"]
    assert few.num_rows == 7
    assert few.column("start_time").to_pylist() == sorted(few.column("start_time").to_pylist())
    batches = list(store.scan_batches(FlowFilter.parse("action = allow"), batch_size=8))
    assert all(b.num_rows <= 8 for b in batches)
    assert sum(b.num_rows for b in batches) == 45
    with pytest.raises(UsageError, match="unknown flow column"):
        store.scan(columns=["nope"])


def test_aggregate_groups_and_orders(store: FlowStore, sample_table: Any) -> None:
    store.append(sample_table)
    groups = store.aggregate(Aggregate(("dest_namespace", "action"), order_by="records"))
    rows = {(r["dest_namespace"], r["action"]): r for r in groups.to_pylist()}
    assert rows[("pci", "deny")]["records"] == 15
    assert rows[("shop", "allow")]["bytes_in"] == 15 * 5000
    assert groups.column("records").to_pylist() == sorted(
        groups.column("records").to_pylist(), reverse=True
    )
    top = store.aggregate(Aggregate(("dest_name_aggr",), order_by="bytes_in", limit=1))
    assert top.to_pylist()[0]["dest_name_aggr"] is None  # the external destination
    assert top.num_rows == 1


def test_parquet_round_trip(store: FlowStore, sample_table: Any, tmp_path: Path) -> None:
    store.append(sample_table)
    path = tmp_path / "export.parquet"
    assert store.export_parquet(str(path), FlowFilter.parse("action = deny")) == 15
    assert pq.read_schema(path).names == FLOW_SCHEMA.names
    second = open_store(str(tmp_path / "second.duckdb"))
    try:
        assert second.import_parquet(str(path)) == 15
        assert second.count(FlowFilter.parse('dest_namespace = "pci"')) == 15
    finally:
        second.close()


def test_retention_by_age_and_size(store: FlowStore, sample_table: Any) -> None:
    store.append(sample_table)
    result = store.apply_retention(max_age=timedelta(days=2), now=T0 + timedelta(days=3))
    assert result.deleted_rows == 20
    assert result.remaining_rows == 40
    assert store.count(until=T0 + timedelta(days=1)) == 0
    # A size smaller than what is stored drops whole oldest days until it fits.
    result = store.apply_retention(max_bytes=1)
    assert result.remaining_rows == 0


def test_retention_by_size_keeps_the_newest_days(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rows = 40_000
    store = open_store(str(tmp_path / "big.duckdb"))
    try:
        for day in range(6):  # one append per day, as a collector writes them
            start = pa.array(
                np.sort(rng.integers(0, 86_400_000_000, rows))
                + int((T0 + timedelta(days=day)).timestamp() * 1e6),
                pa.timestamp("us", tz="UTC"),
            )
            store.append(
                pa.table(
                    {
                        "start_time": start,
                        "end_time": start,
                        "source_ip": pa.array(
                            [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (rows, 3))]
                        ),
                        "bytes_out": pa.array(rng.integers(0, 1 << 40, rows)),
                        "bytes_in": pa.array(rng.integers(0, 1 << 40, rows)),
                    }
                )
            )
        used = store.used_bytes()
        result = store.apply_retention(max_bytes=used * 6 // 10)
        assert result.remaining_bytes <= used * 6 // 10
        assert result.remaining_rows in (2 * rows, 3 * rows)  # whole days, newest kept
        assert result.deleted_rows + result.remaining_rows == 6 * rows
        oldest = store.scan(columns=["start_time"], limit=1).column("start_time")[0].as_py()
        assert oldest >= T0 + timedelta(days=6 - result.remaining_rows // rows)
    finally:
        store.close()


def test_schema_version_is_recorded(store: FlowStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION


def test_append_rejects_columns_outside_the_schema(store: FlowStore) -> None:
    table = pa.table(
        {
            "start_time": pa.array([0], pa.timestamp("us", tz="UTC")),
            "end_time": pa.array([0], pa.timestamp("us", tz="UTC")),
            "srcip": ["x"],
        }
    )
    with pytest.raises(ValueError, match="srcip"):
        store.append(table)
    assert store.count() == 0


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(UsageError, match="unknown scheme 'postgres'"):
        open_store("postgres://db/flows")

"""Flow stores written by older netwarden open at the current schema version with their
records kept: DuckDB from v0 (before versioning) and v1 (before the DNS columns), ClickHouse
(chDB) from v1. Old records have no DNS data: null names, empty answers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from netwarden.errors import InputError
from netwarden.flows.clickhouse_store import ClickHouseFlowStore, _clickhouse_type
from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import FLOW_SCHEMA, SCHEMA_VERSION, from_records
from tests.flows.conftest import T0

DNS_COLUMNS = ("dns_qname", "dns_qtype", "dns_rcode", "dns_answers")

# The v0 layout: no schema_version table, the reporting node in `node`, no staged policies,
# no started/completed counts.
V0_DDL = """
CREATE TABLE flows (
  start_time TIMESTAMPTZ NOT NULL, end_time TIMESTAMPTZ NOT NULL,
  source_ip VARCHAR, dest_ip VARCHAR, source_port INTEGER, dest_port INTEGER, proto VARCHAR,
  source_type VARCHAR, source_namespace VARCHAR, source_name VARCHAR, source_name_aggr VARCHAR,
  source_labels VARCHAR[],
  dest_type VARCHAR, dest_namespace VARCHAR, dest_name VARCHAR, dest_name_aggr VARCHAR,
  dest_labels VARCHAR[],
  action VARCHAR, reporter VARCHAR, node VARCHAR, policies_enforced VARCHAR[],
  bytes_in BIGINT NOT NULL DEFAULT 0, bytes_out BIGINT NOT NULL DEFAULT 0,
  packets_in BIGINT NOT NULL DEFAULT 0, packets_out BIGINT NOT NULL DEFAULT 0,
  num_flows BIGINT NOT NULL DEFAULT 0
)
"""

# The v1 layout: v0 with `host`, staged policies and started/completed counts; no DNS.
V1_DDL = """
CREATE TABLE flows (
  start_time TIMESTAMPTZ NOT NULL, end_time TIMESTAMPTZ NOT NULL,
  source_ip VARCHAR, dest_ip VARCHAR, source_port INTEGER, dest_port INTEGER, proto VARCHAR,
  source_type VARCHAR, source_namespace VARCHAR, source_name VARCHAR, source_name_aggr VARCHAR,
  source_labels VARCHAR[],
  dest_type VARCHAR, dest_namespace VARCHAR, dest_name VARCHAR, dest_name_aggr VARCHAR,
  dest_labels VARCHAR[],
  action VARCHAR, reporter VARCHAR, host VARCHAR, policies_enforced VARCHAR[],
  policies_pending VARCHAR[],
  bytes_in BIGINT NOT NULL DEFAULT 0, bytes_out BIGINT NOT NULL DEFAULT 0,
  packets_in BIGINT NOT NULL DEFAULT 0, packets_out BIGINT NOT NULL DEFAULT 0,
  num_flows BIGINT NOT NULL DEFAULT 0, num_flows_started BIGINT NOT NULL DEFAULT 0,
  num_flows_completed BIGINT NOT NULL DEFAULT 0
)
"""

_ROW_START = (
    "('2026-11-01 10:00:00+00', '2026-11-01 10:00:30+00', '10.0.0.1', '10.0.0.2', 40000, 443,"
    " 'tcp', 'workload', 'shop', 'web-0', 'web-*', ['app=web'], 'workload', 'shop', 'api-0',"
    " 'api-*', ['app=api'], 'allow', 'src', 'node-a',"
    " ['0|default|shop/knp.default.allow-api|allow|0'], "
)
V0_ROW = _ROW_START + "10, 20, 1, 2, 1)"
V1_ROW = _ROW_START + "[], 10, 20, 1, 2, 1, 1, 1)"  # policies_pending, then two more counters


def _write_duckdb(path: Path, ddl: str, row: str, version: int | None) -> None:
    connection = duckdb.connect(str(path))
    connection.execute(ddl)
    connection.execute(f"INSERT INTO flows VALUES {row}")
    if version is not None:
        connection.execute(
            "CREATE TABLE schema_version (version INTEGER NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL)"
        )
        connection.execute("INSERT INTO schema_version VALUES ($1, now())", [version])
    connection.close()


def _dns_record() -> dict[str, object]:
    return {
        "start_time": T0,
        "end_time": T0,
        "source_ip": "10.0.0.1",
        "dest_ip": "10.96.0.10",
        "dest_port": 53,
        "proto": "udp",
        "dns_qname": "evil.example",
        "dns_qtype": "A",
        "dns_rcode": "NOERROR",
        "dns_answers": ["203.0.113.9"],
        "num_flows": 1,
    }


def _assert_old_record_kept(store: DuckDBFlowStore | ClickHouseFlowStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION == 2
    table = store.scan()
    assert table.schema == FLOW_SCHEMA
    (record,) = table.to_pylist()
    assert record["host"] == "node-a"
    assert record["source_labels"] == ["app=web"] and record["bytes_out"] == 20
    assert {c: record[c] for c in DNS_COLUMNS} == {
        "dns_qname": None,
        "dns_qtype": None,
        "dns_rcode": None,
        "dns_answers": [],
    }
    # New records go in with every v2 column, and come back with their DNS data.
    assert store.append(from_records([_dns_record()])) == 1
    assert store.count() == 2
    assert store.count(FlowFilter.parse('dns_qname = "evil.example"')) == 1
    answered = store.scan(FlowFilter.parse('dns_answers = "203.0.113.9"')).to_pylist()
    assert [r["dns_rcode"] for r in answered] == ["NOERROR"]


def test_v0_duckdb_store_is_migrated_to_v2_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _write_duckdb(path, V0_DDL, V0_ROW, version=None)
    store = DuckDBFlowStore(str(path))
    try:
        record = store.scan().to_pylist()[0]
        assert record["policies_pending"] == [] and record["num_flows_started"] == 0
        assert store.count(FlowFilter.parse('host = "node-a"')) == 1  # renamed from `node`
        _assert_old_record_kept(store)
    finally:
        store.close()
    # Opening again does not migrate twice.
    again = DuckDBFlowStore(str(path))
    try:
        versions = again.connection.execute("SELECT version FROM schema_version").fetchall()
        assert sorted(versions) == [(1,), (2,)]
        assert again.count() == 2
    finally:
        again.close()


def test_v1_duckdb_store_is_migrated_to_v2(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    _write_duckdb(path, V1_DDL, V1_ROW, version=1)
    store = DuckDBFlowStore(str(path))
    try:
        _assert_old_record_kept(store)
        versions = store.connection.execute("SELECT version FROM schema_version").fetchall()
        assert sorted(versions) == [(1,), (2,)]
    finally:
        store.close()


def _write_clickhouse_v1(path: Path) -> None:
    """A chDB store as the v1 backend left it: the v1 columns in the ClickHouse types it used,
    version 1 recorded, one record."""
    from chdb import session

    v1_fields = [f for f in FLOW_SCHEMA if f.name not in DNS_COLUMNS]
    columns = ", ".join(f"{f.name} {_clickhouse_type(f)}" for f in v1_fields)
    raw = session.Session(str(path))  # type: ignore[no-untyped-call]
    try:
        raw.query(
            "CREATE TABLE schema_version (version UInt32, applied_at DateTime64(6, 'UTC'))"
            " ENGINE = MergeTree ORDER BY version"
        )
        raw.query("INSERT INTO schema_version VALUES (1, now64(6))")
        raw.query(
            f"CREATE TABLE flows ({columns}) ENGINE = MergeTree"
            " PARTITION BY toDate(start_time) ORDER BY start_time"
        )
        raw.query(f"INSERT INTO flows VALUES {V1_ROW.replace('+00', '')}")
    finally:
        raw.close()


def test_v1_clickhouse_store_is_migrated_to_v2(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    _write_clickhouse_v1(path)
    store = ClickHouseFlowStore.embedded(str(path))
    try:
        _assert_old_record_kept(store)
    finally:
        store.close()
    again = ClickHouseFlowStore.embedded(str(path))
    try:
        versions = again.executor.query_arrow("SELECT version FROM schema_version ORDER BY 1")
        assert versions.column(0).to_pylist() == [1, 2]
        assert again.count() == 2
    finally:
        again.close()


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    DuckDBFlowStore(str(path)).close()
    connection = duckdb.connect(str(path))
    connection.execute("INSERT INTO schema_version VALUES (99, now())")
    connection.close()
    with pytest.raises(InputError, match="schema version 99"):
        DuckDBFlowStore(str(path))

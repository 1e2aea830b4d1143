"""A DuckDB flow store written by netwarden before schema versioning (v0) opens as v1."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from netwarden.errors import InputError
from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import FLOW_SCHEMA, SCHEMA_VERSION

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


def _write_v0(path: Path) -> None:
    connection = duckdb.connect(str(path))
    connection.execute(V0_DDL)
    connection.execute(
        "INSERT INTO flows VALUES ('2026-11-01 10:00:00+00', '2026-11-01 10:00:30+00',"
        " '10.0.0.1', '10.0.0.2', 40000, 443, 'tcp', 'workload', 'shop', 'web-0', 'web-*',"
        " ['app=web'], 'workload', 'shop', 'api-0', 'api-*', ['app=api'], 'allow', 'src',"
        " 'node-a', ['0|default|shop/knp.default.allow-api|allow|0'], 10, 20, 1, 2, 1)"
    )
    connection.close()


def test_v0_store_is_migrated_to_v1_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _write_v0(path)
    store = DuckDBFlowStore(str(path))
    try:
        assert store.schema_version() == SCHEMA_VERSION == 1
        table = store.scan()
        assert table.schema == FLOW_SCHEMA
        record = table.to_pylist()[0]
        assert record["host"] == "node-a"  # renamed from `node`
        assert record["policies_pending"] == []
        assert record["num_flows_started"] == 0
        assert record["bytes_out"] == 20
        assert store.count(FlowFilter.parse('host = "node-a"')) == 1
        # New records go in with every v1 column.
        store.append(table)
        assert store.count() == 2
    finally:
        store.close()
    # Opening again does not migrate twice.
    again = DuckDBFlowStore(str(path))
    try:
        versions = again.connection.execute("SELECT version FROM schema_version").fetchall()
        assert versions == [(1,)]
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

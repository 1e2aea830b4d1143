"""The flows table in ClickHouse: its column types, its DDL, and its schema version with the
migrations that bring an older table to the current one.

The table is a MergeTree partitioned by day (`toDate(start_time)`) and ordered by start_time:
retention drops whole partitions where it can. A `schema_version` table records the version
the flows table is at; `migrate` runs when a store opens. docs/clickhouse.md has the same DDL
for a cluster (ReplicatedMergeTree + Distributed, TTL) and the statements each migration
needs there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.clickhouse_client import ClickHouseExecutor, query_scalar
from netwarden.flows.schema import FLOW_SCHEMA, SCHEMA_VERSION
from netwarden.model.location import Location

#: Low-cardinality text columns: dictionary-encoded by ClickHouse.
_LOW_CARDINALITY = frozenset(
    {
        "proto",
        "source_type",
        "dest_type",
        "source_namespace",
        "dest_namespace",
        "action",
        "reporter",
        "host",
    }
)


def clickhouse_type(field: Any) -> str:
    """The ClickHouse type of a flow column (a field of `FLOW_SCHEMA`)."""
    if pa.types.is_timestamp(field.type):
        return "DateTime64(6, 'UTC')"
    if pa.types.is_list(field.type):
        return "Array(String)"
    if pa.types.is_int32(field.type):
        return "Nullable(Int32)"
    if pa.types.is_int64(field.type):
        return "Int64"
    if field.name in _LOW_CARDINALITY:
        return "LowCardinality(Nullable(String))"
    return "Nullable(String)"


def column_definitions() -> str:
    """The flow columns in ClickHouse types, for CREATE TABLE (also used by docs/clickhouse.md)."""
    return ",\n  ".join(f"{f.name} {clickhouse_type(f)}" for f in FLOW_SCHEMA)


def flows_ddl(table: str = "flows", engine: str = "MergeTree") -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n  {column_definitions()}\n)"
        f" ENGINE = {engine} PARTITION BY toDate(start_time) ORDER BY start_time"
    )


def _migrate_v1_to_v2(executor: ClickHouseExecutor) -> None:
    """v2 added the DNS columns; records stored before have none (null, and [] for the
    answers). `IF NOT EXISTS`: ClickHouse has no transaction around DDL, so a migration cut
    short before its version row is written runs again harmlessly."""
    added = ", ".join(
        f"ADD COLUMN IF NOT EXISTS {name} {clickhouse_type(FLOW_SCHEMA.field(name))}"
        for name in ("dns_qname", "dns_qtype", "dns_rcode", "dns_answers")
    )
    executor.command(f"ALTER TABLE flows {added}")


#: from-version -> migration to the next version (the ClickHouse backend started at 1).
MIGRATIONS: dict[int, Callable[[ClickHouseExecutor], None]] = {1: _migrate_v1_to_v2}


def stored_version(executor: ClickHouseExecutor) -> int:
    """The schema version the database records (0 when it records none)."""
    return int(query_scalar(executor, "SELECT max(version) FROM schema_version") or 0)


def migrate(executor: ClickHouseExecutor, where: str) -> None:
    """Create the flows and version tables, or bring an older flows table to SCHEMA_VERSION;
    a database newer than this netwarden is refused (InputError at `where`)."""
    executor.command(
        "CREATE TABLE IF NOT EXISTS schema_version (version UInt32,"
        " applied_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY version"
    )
    has_flows = query_scalar(
        executor,
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'flows'",
    )
    version = query_scalar(executor, "SELECT max(version) FROM schema_version")
    if not has_flows:
        executor.command(flows_ddl())
        if not version:
            _record_version(executor, SCHEMA_VERSION)
        return
    # A flows table without a version row was cut short right after its creation, which
    # only the first (version 1) backend did without recording the version.
    version = int(version or 1)
    if version > SCHEMA_VERSION:
        raise InputError(
            Location(where),
            f"flow store has schema version {version}; this netwarden reads up to {SCHEMA_VERSION}",
        )
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](executor)
        version += 1
        _record_version(executor, version)


def _record_version(executor: ClickHouseExecutor, version: int) -> None:
    executor.command("INSERT INTO schema_version VALUES ({v:UInt32}, now64(6))", {"v": version})

"""The DuckDB flow store's tables: the `flows` table for the current `FLOW_SCHEMA`, the
`schema_version` table, and the migrations that bring an older store forward."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.schema import FLOW_SCHEMA, SCHEMA_VERSION
from netwarden.model.location import Location


def _duckdb_type(field: Any) -> str:
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMPTZ NOT NULL"
    if pa.types.is_list(field.type):
        return "VARCHAR[]"
    if pa.types.is_int32(field.type):
        return "INTEGER"
    if pa.types.is_int64(field.type):
        return "BIGINT NOT NULL DEFAULT 0"
    return "VARCHAR"


def flows_ddl(table: str = "flows") -> str:
    """CREATE TABLE for the current FLOW_SCHEMA."""
    columns = ",\n  ".join(f"{f.name} {_duckdb_type(f)}" for f in FLOW_SCHEMA)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n)"


def _migrate_v0_to_v1(connection: duckdb.DuckDBPyConnection) -> None:
    """v0 (before versioning) had no staged-policy column and no flow start/complete counts,
    and called the reporting node `node`."""
    connection.execute("ALTER TABLE flows RENAME COLUMN node TO host")
    connection.execute("ALTER TABLE flows ADD COLUMN policies_pending VARCHAR[] DEFAULT []")
    for column in ("num_flows_started", "num_flows_completed"):
        connection.execute(f"ALTER TABLE flows ADD COLUMN {column} BIGINT NOT NULL DEFAULT 0")


def _migrate_v1_to_v2(connection: duckdb.DuckDBPyConnection) -> None:
    """v2 added the DNS columns; records stored before have none."""
    for column in ("dns_qname", "dns_qtype", "dns_rcode"):
        connection.execute(f"ALTER TABLE flows ADD COLUMN {column} VARCHAR")
    connection.execute("ALTER TABLE flows ADD COLUMN dns_answers VARCHAR[] DEFAULT []")


#: from-version -> migration to the next version. Each runs in the transaction that records it.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    0: _migrate_v0_to_v1,
    1: _migrate_v1_to_v2,
}


def stored_version(connection: duckdb.DuckDBPyConnection) -> int:
    """The store's schema version (0: before versioning)."""
    rows = connection.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def migrate(connection: duckdb.DuckDBPyConnection, path: str) -> None:
    """Create the tables of a new store, or bring an older one to SCHEMA_VERSION, one
    migration per transaction; a newer store is refused."""
    tables = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'flows'"
    has_flows = bool(connection.execute(tables).fetchall()[0][0])
    connection.execute(
        "CREATE TABLE IF NOT EXISTS schema_version"
        " (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    if not has_flows:
        connection.execute(flows_ddl())
        if stored_version(connection) == 0:
            connection.execute("INSERT INTO schema_version VALUES ($1, now())", [SCHEMA_VERSION])
        return
    version = stored_version(connection)
    if version > SCHEMA_VERSION:
        raise InputError(
            Location(path),
            f"flow store has schema version {version}; this netwarden reads up to {SCHEMA_VERSION}",
        )
    while version < SCHEMA_VERSION:
        with transaction(connection):
            MIGRATIONS[version](connection)
            connection.execute("INSERT INTO schema_version VALUES ($1, now())", [version + 1])
        version += 1


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block's statements as one transaction: committed at its end, rolled back if it
    raises (KeyboardInterrupt too)."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")

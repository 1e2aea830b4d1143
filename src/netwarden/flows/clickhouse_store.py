"""`ClickHouseFlowStore`: flow records in ClickHouse, for users beyond one machine.

The same interface and, as far as the engines allow, the same SQL as the DuckDB store; the
filter compiler emits ClickHouse's typed parameters (`{p1:String}`) so user text is never
part of a query. Two ways to reach ClickHouse:

- `ClickHouseFlowStore.server("clickhouse://user:password@host:8123/db")` via clickhouse-connect
  (an optional extra: `pip install netwarden[clickhouse]`; imported only here);
- `ClickHouseFlowStore.embedded(DIR)` via chDB, the ClickHouse engine in-process (how the tests
  run the same SQL without a server).

The table is a MergeTree partitioned by day (`toDate(start_time)`) and ordered by start_time:
retention drops whole partitions where it can. docs/clickhouse.md has the cluster DDL
(ReplicatedMergeTree + Distributed, TTL).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.flows.duckdb_fold import check_fold_columns, fold_schema
from netwarden.flows.duckdb_store import (
    MATCH_VALUE,
    matching_values,
    read_parquet_flows,
    write_parquet_flows,
)
from netwarden.flows.filter import FlowFilter, to_micros
from netwarden.flows.schema import (
    COUNTER_COLUMNS,
    FLOW_COLUMNS,
    FLOW_SCHEMA,
    SCHEMA_VERSION,
    conform,
)
from netwarden.flows.store import FOLD_FIRST, FOLD_RECORDS, Aggregate, RetentionResult
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


def _clickhouse_type(field: Any) -> str:
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
    return ",\n  ".join(f"{f.name} {_clickhouse_type(f)}" for f in FLOW_SCHEMA)


def flows_ddl(table: str = "flows", engine: str = "MergeTree") -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n  {column_definitions()}\n)"
        f" ENGINE = {engine} PARTITION BY toDate(start_time) ORDER BY start_time"
    )


def _migrate_v1_to_v2(executor: _Executor) -> None:
    """v2 added the DNS columns; records stored before have none (null, and [] for the
    answers). `IF NOT EXISTS`: ClickHouse has no transaction around DDL, so a migration cut
    short before its version row is written runs again harmlessly."""
    added = ", ".join(
        f"ADD COLUMN IF NOT EXISTS {name} {_clickhouse_type(FLOW_SCHEMA.field(name))}"
        for name in ("dns_qname", "dns_qtype", "dns_rcode", "dns_answers")
    )
    executor.command(f"ALTER TABLE flows {added}")


#: from-version -> migration to the next version (the ClickHouse backend started at 1).
MIGRATIONS: dict[int, Callable[[_Executor], None]] = {1: _migrate_v1_to_v2}


class _Executor(Protocol):
    """What the store needs from a ClickHouse client."""

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def insert_arrow(self, table_name: str, table: Any) -> None: ...

    def close(self) -> None: ...


def _escape_parameter(value: Any) -> Any:
    # ClickHouse reads parameter values in its escaped text format: a backslash starts an
    # escape sequence, so it and the control characters must be escaped themselves.
    if not isinstance(value, str):
        return value
    for raw, escaped in (
        ("\\", "\\\\"),
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\0", "\\0"),
    ):
        value = value.replace(raw, escaped)
    return value


class _ChdbExecutor:
    def __init__(self, path: str) -> None:
        from chdb import session

        self.path = path
        # chDB's Session is not annotated; Any keeps mypy --strict honest about that.
        self.session: Any = session.Session(path)  # type: ignore[no-untyped-call]

    def _run(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> Any:
        escaped = {k: _escape_parameter(v) for k, v in (params or {}).items()}
        try:
            return self.session.query(sql, fmt, params=escaped or None)
        except Exception as error:  # chDB raises its own error types for SQL failures
            raise InputError(Location(self.path), f"ClickHouse: {error}") from None

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, "CSV", params)

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        data = self._run(sql, "ArrowStream", params).bytes()
        return pa.ipc.open_stream(data).read_all() if data else None

    def insert_arrow(self, table_name: str, table: Any) -> None:
        # chDB reads files in-process: a Parquet file is the zero-parse path for Arrow data.
        handle, path = tempfile.mkstemp(suffix=".parquet", prefix="netwarden-flows-")
        os.close(handle)
        try:
            pq.write_table(table, path, compression="lz4")
            self.command(
                f"INSERT INTO {table_name} SELECT * FROM file({{path:String}}, Parquet)",
                {"path": path},
            )
        finally:
            os.unlink(path)

    def close(self) -> None:
        self.session.close()


class _ServerExecutor:
    def __init__(self, url: str) -> None:
        try:
            import clickhouse_connect
        except ImportError:
            raise UsageError(
                "the ClickHouse flow store needs clickhouse-connect:"
                " pip install netwarden[clickhouse]"
            ) from None
        self.url = url
        self.client = clickhouse_connect.get_client(dsn=url)

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self.client.command(sql, parameters=dict(params or {}))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.client.query_arrow(sql, parameters=dict(params or {}))

    def insert_arrow(self, table_name: str, table: Any) -> None:
        self.client.insert_arrow(table_name, table)

    def close(self) -> None:
        self.client.close()


def _where(
    where: FlowFilter | None, since: datetime | None, until: datetime | None
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    if where is not None:
        sql, values = where.to_sql("clickhouse")
        clauses.append(sql)
    for op, moment in ((">=", since), ("<", until)):
        if moment is not None:
            values.append(to_micros(moment))
            clauses.append(
                f"start_time {op} fromUnixTimestamp64Micro({{p{len(values)}:Int64}}, 'UTC')"
            )
    params = {f"p{index}": value for index, value in enumerate(values, start=1)}
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _column_list(columns: Sequence[str] | None) -> list[str]:
    chosen = list(columns) if columns else list(FLOW_COLUMNS)
    unknown = [c for c in chosen if c not in FLOW_COLUMNS]
    if unknown:
        raise UsageError(f"unknown flow column(s): {', '.join(unknown)}")
    return chosen


def _typed(table: Any, columns: Sequence[str]) -> Any:
    if table is None:
        return pa.schema([FLOW_SCHEMA.field(c) for c in columns]).empty_table()
    return table.cast(pa.schema([FLOW_SCHEMA.field(c) for c in columns]))


class ClickHouseFlowStore:
    """A FlowStore in ClickHouse (a server via clickhouse-connect, or embedded chDB)."""

    def __init__(self, executor: _Executor, where: str) -> None:
        self.executor = executor
        self.where_label = where
        self._migrate()

    @classmethod
    def embedded(cls, path: str) -> ClickHouseFlowStore:
        return cls(_ChdbExecutor(path), path)

    @classmethod
    def server(cls, url: str) -> ClickHouseFlowStore:
        return cls(_ServerExecutor(url), re.sub(r"//[^@/]*@", "//", url))

    def _scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        table = self.executor.query_arrow(sql, params)
        return table.column(0)[0].as_py() if table is not None and table.num_rows else None

    def _migrate(self) -> None:
        self.executor.command(
            "CREATE TABLE IF NOT EXISTS schema_version (version UInt32,"
            " applied_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY version"
        )
        has_flows = self._scalar(
            "SELECT count() FROM system.tables WHERE database = currentDatabase()"
            " AND name = 'flows'"
        )
        version = self._scalar("SELECT max(version) FROM schema_version")
        if not has_flows:
            self.executor.command(flows_ddl())
            if not version:
                self._record_version(SCHEMA_VERSION)
            return
        # A flows table without a version row was cut short right after its creation, which
        # only the first (version 1) backend did without recording the version.
        version = int(version or 1)
        if version > SCHEMA_VERSION:
            raise InputError(
                Location(self.where_label),
                f"flow store has schema version {version}; this netwarden reads up to"
                f" {SCHEMA_VERSION}",
            )
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](self.executor)
            version += 1
            self._record_version(version)

    def _record_version(self, version: int) -> None:
        self.executor.command(
            "INSERT INTO schema_version VALUES ({v:UInt32}, now64(6))", {"v": version}
        )

    def schema_version(self) -> int:
        return int(self._scalar("SELECT max(version) FROM schema_version") or 0)

    def append(self, table: Any) -> int:
        incoming = conform(table)
        if incoming.num_rows:
            self.executor.insert_arrow("flows", incoming)
        return int(incoming.num_rows)

    def scan(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Any:
        chosen = _column_list(columns)
        clause, params = _where(where, since, until)
        sql = f"SELECT {', '.join(chosen)} FROM flows{clause} ORDER BY start_time"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return _typed(self.executor.query_arrow(sql, params), chosen)

    def scan_batches(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = 1_000_000,
    ) -> Iterator[Any]:
        # One day at a time keeps memory bounded by a partition, not by the whole store.
        for low, high in self._days(where, since, until):
            table = self.scan(where, low, high, columns)
            yield from table.to_batches(max_chunksize=batch_size)

    def _days(
        self, where: FlowFilter | None, since: datetime | None, until: datetime | None
    ) -> list[tuple[datetime, datetime]]:
        """The [low, high) window of each day holding matching records, oldest first."""
        clause, params = _where(where, since, until)
        days = self.executor.query_arrow(
            f"SELECT DISTINCT toDate(start_time) AS day FROM flows{clause} ORDER BY day", params
        )
        windows = []
        for day in days.column(0).to_pylist() if days is not None else []:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            low = max(start, since) if since else start
            high = min(start + timedelta(days=1), until) if until else start + timedelta(days=1)
            windows.append((low, high))
        return windows

    def scan_matching(
        self,
        columns: Sequence[str],
        column: str,
        values: Any,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batch_size: int = 1_000_000,
    ) -> Iterator[Any]:
        # The values go to a temporary table (of the session: clickhouse-connect opens one per
        # client unless told not to; chDB's is the process) and the records are found with
        # `IN (SELECT ...)`, which ClickHouse turns into a hash set and reads in PREWHERE: the
        # other columns only of the matching rows. Bound values would be one parameter each.
        # chDB and a server run the same statements. One day at a time, as scan_batches.
        wanted = matching_values(column, values)
        chosen = _column_list(columns)
        if wanted.num_rows == 0:
            return
        name = f"netwarden_values_{uuid.uuid4().hex}"
        value_type = _clickhouse_type(FLOW_SCHEMA.field(column))
        self.executor.command(
            f"CREATE TEMPORARY TABLE {name} ({MATCH_VALUE} {value_type}) ENGINE = Memory"
        )
        try:
            self.executor.insert_arrow(name, wanted)
            match = f"{column} IN (SELECT {MATCH_VALUE} FROM {name})"
            for low, high in self._days(where, since, until):
                clause, params = _where(where, low, high)
                sql = f"SELECT {', '.join(chosen)} FROM flows{clause} AND {match}"
                table = _typed(self.executor.query_arrow(sql, params), chosen)
                yield from table.to_batches(max_chunksize=batch_size)
        finally:
            self.executor.command(f"DROP TEMPORARY TABLE IF EXISTS {name}")

    def count(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        clause, params = _where(where, since, until)
        return int(self._scalar(f"SELECT count() FROM flows{clause}", params) or 0)

    def aggregate(
        self,
        request: Aggregate,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        clause, params = _where(where, since, until)
        keys = ", ".join(_column_list(request.group_by))
        if request.order_by != "records" and request.order_by not in COUNTER_COLUMNS:
            raise UsageError(
                f"cannot order groups by {request.order_by!r}: use records or a counter column"
            )
        sums = ", ".join(f"toInt64(sum({c})) AS {c}" for c in COUNTER_COLUMNS)
        sql = (
            f"SELECT {keys}, toInt64(count()) AS records, {sums} FROM flows{clause}"
            f" GROUP BY {keys} ORDER BY {request.order_by} DESC, {keys}"
        )
        if request.limit is not None:
            sql += f" LIMIT {int(request.limit)}"
        table = self.executor.query_arrow(sql, params)
        fields = [FLOW_SCHEMA.field(k) for k in request.group_by]
        fields += [pa.field(name, pa.int64()) for name in ("records", *COUNTER_COLUMNS)]
        schema = pa.schema(fields)
        return schema.empty_table() if table is None else table.cast(schema)

    def fold(
        self,
        keys: Sequence[str],
        sums: Sequence[str] = (),
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        # ClickHouse groups LowCardinality text on its dictionary codes already.
        check_fold_columns(keys, sums)
        clause, params = _where(where, since, until)
        listed = ", ".join(keys)
        totals = "".join(f", toInt64(sum({s})) AS {s}" for s in sums)
        sql = (
            f"SELECT {listed}, toInt64(count()) AS {FOLD_RECORDS},"
            f" min(start_time) AS {FOLD_FIRST}{totals} FROM flows{clause} GROUP BY {listed}"
        )
        table = self.executor.query_arrow(sql, params)
        schema = fold_schema(keys, sums)
        return schema.empty_table() if table is None else table.cast(schema)

    def export_parquet(
        self,
        path: str,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        return write_parquet_flows(self.scan_batches(where, since, until), path)

    def import_parquet(self, path: str) -> int:
        return self.append(read_parquet_flows(path))

    def apply_retention(
        self,
        max_age: timedelta | None = None,
        max_bytes: int | None = None,
        now: datetime | None = None,
    ) -> RetentionResult:
        before = self.count()
        if max_age is not None:
            cutoff = (now or datetime.now(UTC)) - max_age
            self._drop_partitions_before(cutoff)
            # The cutoff's own day is partial: a lightweight delete, applied synchronously.
            self.executor.command(
                "DELETE FROM flows WHERE start_time < fromUnixTimestamp64Micro({c:Int64}, 'UTC')",
                {"c": to_micros(cutoff)},
            )
        if max_bytes is not None:
            parts = self._partitions()
            used = sum(size for _, size in parts)
            for partition, size in parts:
                if used <= max_bytes:
                    break
                self._drop_partition(partition)
                used -= size
        remaining = self.count()
        return RetentionResult(before - remaining, remaining, self.used_bytes())

    def _partitions(self) -> list[tuple[str, int]]:
        """(partition id, bytes on disk) of the flows table, oldest first."""
        table = self.executor.query_arrow(
            "SELECT partition_id, toInt64(sum(bytes_on_disk)) FROM system.parts"
            " WHERE database = currentDatabase() AND table = 'flows' AND active"
            " GROUP BY partition_id ORDER BY partition_id"
        )
        if table is None:
            return []
        return list(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))

    def _drop_partitions_before(self, cutoff: datetime) -> None:
        first_kept = cutoff.astimezone(UTC).strftime("%Y%m%d")
        for partition, _size in self._partitions():
            if partition < first_kept:
                self._drop_partition(partition)

    def _drop_partition(self, partition: str) -> None:
        # Partition ids come from system.parts and are YYYYMMDD (toDate): checked, then quoted.
        if not re.fullmatch(r"[0-9]{8}", str(partition)):
            raise InputError(Location(self.where_label), f"unexpected partition id {partition!r}")
        self.executor.command(f"ALTER TABLE flows DROP PARTITION ID '{partition}'")

    def used_bytes(self) -> int:
        return sum(size for _, size in self._partitions())

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> ClickHouseFlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

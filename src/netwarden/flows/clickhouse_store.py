"""`ClickHouseFlowStore`: flow records in ClickHouse, for users beyond one machine.

The same interface and, as far as the engines allow, the same SQL as the DuckDB store; the
filter compiler emits ClickHouse's typed parameters (`{p1:String}`) so user text is never
part of a query. Two ways to reach ClickHouse (`clickhouse_client`):

- `ClickHouseFlowStore.server("clickhouse://user:password@host:8123/db")` via clickhouse-connect
  (an optional extra: `pip install netwarden[clickhouse]`);
- `ClickHouseFlowStore.embedded(DIR)` via chDB, the ClickHouse engine in-process (how the tests
  run the same SQL without a server).

The table, its DDL and its migrations are `clickhouse_schema`'s (re-exported here); this
module reads, writes and expires records. Retention drops whole day partitions where it can.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.flows.clickhouse_client import (
    ChdbExecutor,
    ClickHouseExecutor,
    ServerExecutor,
    query_scalar,
)
from netwarden.flows.clickhouse_schema import (
    MIGRATIONS,
    clickhouse_type,
    column_definitions,
    flows_ddl,
    migrate,
    stored_version,
)
from netwarden.flows.filter import FlowFilter, to_micros
from netwarden.flows.schema import COUNTER_COLUMNS, FLOW_COLUMNS, FLOW_SCHEMA, conform
from netwarden.flows.store import FOLD_FIRST, FOLD_RECORDS, Aggregate, RetentionResult
from netwarden.flows.store_common import (
    MATCH_VALUE,
    check_fold_columns,
    fold_schema,
    matching_values,
    read_parquet_flows,
    write_parquet_flows,
)
from netwarden.model.location import Location

# The schema side lived here before clickhouse_schema: its names stay importable from here.
__all__ = ["MIGRATIONS", "ClickHouseFlowStore", "column_definitions", "flows_ddl"]
_clickhouse_type = clickhouse_type


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

    def __init__(self, executor: ClickHouseExecutor, where: str) -> None:
        self.executor = executor
        self.where_label = where
        migrate(executor, where)

    @classmethod
    def embedded(cls, path: str) -> ClickHouseFlowStore:
        return cls(ChdbExecutor(path), path)

    @classmethod
    def server(cls, url: str) -> ClickHouseFlowStore:
        return cls(ServerExecutor(url), re.sub(r"//[^@/]*@", "//", url))

    def _scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return query_scalar(self.executor, sql, params)

    def schema_version(self) -> int:
        return stored_version(self.executor)

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
        value_type = clickhouse_type(FLOW_SCHEMA.field(column))
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

"""`DuckDBFlowStore`: flow records in one embedded DuckDB file.

Time partitioning: one `flows` table whose rows are in (roughly) start_time order, because
flow logs are written and imported in time order. DuckDB keeps min/max zone maps per row
group (122,880 rows), so a `--since/--until` scan skips every row group outside the window
without a separate table or partition column per day. Sorting each append (`ORDER BY
start_time`) would make the order exact but halves ingest speed, so it is left to the
compaction that size retention runs (which rewrites the table in start_time order).
Retention deletes by start_time; a checkpoint returns fully deleted row groups' blocks to the
file's free list. One table per day would make retention a DROP, but every query would need a
UNION over a changing set of tables, and the zone maps already give the pruning.

Ingest goes through DuckDB's Arrow scan (the Arrow table is registered as a view and inserted
with one INSERT ... SELECT), never row by row. The tables and their migrations are in
`duckdb_schema`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.flows.duckdb_fold import fold_duckdb
from netwarden.flows.duckdb_schema import migrate, stored_version, transaction
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import (
    COUNTER_COLUMNS,
    FLOW_COLUMNS,
    FLOW_SCHEMA,
    conform,
)
from netwarden.flows.store import Aggregate, RetentionResult
from netwarden.flows.store_common import (
    MATCH_VALUE,
    matching_values,
    read_parquet_flows,
    write_parquet_flows,
)
from netwarden.model.location import Location


def _where(
    where: FlowFilter | None, since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where is not None:
        sql, params = where.to_sql("duckdb")
        clauses.append(sql)
    if since is not None:
        params.append(_aware(since))
        clauses.append(f"start_time >= ${len(params)}")
    if until is not None:
        params.append(_aware(until))
        clauses.append(f"start_time < ${len(params)}")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _scalar(
    connection: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> Any:
    """The first value of the first row; fetchall() so the result is complete (DuckDB 2 keeps
    a connection busy until its last result is read)."""
    rows = connection.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _column_list(columns: Sequence[str] | None) -> str:
    chosen = list(columns) if columns else list(FLOW_COLUMNS)
    unknown = [c for c in chosen if c not in FLOW_COLUMNS]
    if unknown:
        raise UsageError(f"unknown flow column(s): {', '.join(unknown)}")
    return ", ".join(chosen)


class DuckDBFlowStore:
    """A FlowStore in one DuckDB file (or `:memory:`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.connection = duckdb.connect(path)
        except duckdb.Error as error:
            raise InputError(Location(path), f"cannot open flow store: {error}") from None
        self.connection.execute("SET TimeZone = 'UTC'")
        migrate(self.connection, path)

    # -------------------------------------------------------------------- schema version

    def schema_version(self) -> int:
        return stored_version(self.connection)

    # ---------------------------------------------------------------------- FlowStore

    def append(self, table: Any) -> int:
        incoming = conform(table)
        if incoming.num_rows == 0:
            return 0
        columns = ", ".join(FLOW_COLUMNS)
        self.connection.register("incoming_flows", _whole_row_group_batches(incoming))
        try:
            self.connection.execute(
                f"INSERT INTO flows ({columns}) SELECT {columns} FROM incoming_flows"
            )
        finally:
            self.connection.unregister("incoming_flows")
        return int(incoming.num_rows)

    def scan(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Any:
        clause, params = _where(where, since, until)
        chosen = _column_list(columns)
        if limit is None:
            sql = f"SELECT {chosen} FROM flows{clause} ORDER BY start_time"
        else:
            # Late materialization: find the first `limit` rows by (start_time, rowid) alone,
            # then read every column of just those rows (not of every match).
            sql = (
                f"SELECT {chosen} FROM flows WHERE rowid IN (SELECT rowid FROM flows{clause}"
                f" ORDER BY start_time, rowid LIMIT {int(limit)}) ORDER BY start_time, rowid"
            )
        result = self.connection.sql(sql, params=params).to_arrow_table()
        return _typed(result)

    def scan_batches(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = 1_000_000,
    ) -> Iterator[Any]:
        clause, params = _where(where, since, until)
        sql = f"SELECT {_column_list(columns)} FROM flows{clause}"
        reader = self.connection.sql(sql, params=params).to_arrow_reader(batch_size)
        for batch in reader:
            yield batch.cast(pa.schema([FLOW_SCHEMA.field(name) for name in batch.schema.names]))

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
        # The values are an Arrow table registered as a view: a hash semi join on both cores
        # instead of an `IN` list of bound values (1,000 values over 11M records: 0.5 s
        # against 1.3 s; 16 values: 0.5 s against 1.0 s). Late materialization, as in `scan`:
        # the join reads `column` alone, the other columns only of the rows it keeps.
        wanted = matching_values(column, values)
        chosen = _column_list(columns)
        if wanted.num_rows == 0:
            return
        clause, params = _where(where, since, until)
        view = f"matching_values_{uuid.uuid4().hex}"
        match = f"{column} IN (SELECT {MATCH_VALUE} FROM {view})"
        clause = f"{clause} AND {match}" if clause else f" WHERE {match}"
        sql = f"SELECT {chosen} FROM flows WHERE rowid IN (SELECT rowid FROM flows{clause})"
        self.connection.register(view, wanted)
        try:
            reader = self.connection.sql(sql, params=params).to_arrow_reader(batch_size)
            try:
                for batch in reader:
                    yield batch.cast(pa.schema([FLOW_SCHEMA.field(n) for n in batch.schema.names]))
            finally:
                reader.close()  # a reader stopped early: the connection is free again
        finally:
            self.connection.unregister(view)

    def count(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        clause, params = _where(where, since, until)
        return int(_scalar(self.connection, f"SELECT count(*) FROM flows{clause}", params))

    def aggregate(
        self,
        request: Aggregate,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        clause, params = _where(where, since, until)
        keys = _column_list(request.group_by)
        sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in COUNTER_COLUMNS)
        order = _order_column(request.order_by)
        sql = (
            f"SELECT {keys}, count(*) AS records, {sums} FROM flows{clause}"
            f" GROUP BY {keys} ORDER BY {order} DESC, {keys}"
        )
        if request.limit is not None:
            sql += f" LIMIT {int(request.limit)}"
        return self.connection.sql(sql, params=params).to_arrow_table()

    def fold(
        self,
        keys: Sequence[str],
        sums: Sequence[str] = (),
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        clause, params = _where(where, since, until)
        return fold_duckdb(self.connection, keys, sums, clause, params)

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
        deleted = 0
        if max_age is not None:
            cutoff = _aware(now or datetime.now(UTC)) - max_age
            deleted += self._delete_before(cutoff)
        if max_bytes is not None:
            deleted += self._shrink_to(max_bytes)
        return RetentionResult(deleted, self.count(), self.used_bytes())

    def _shrink_to(self, max_bytes: int) -> int:
        """Delete whole days, oldest first, until the used blocks fit `max_bytes`.

        A day is the unit users reason about ("we keep 30 days"). Rows per day stand in for
        bytes per day; after deleting, the table is rewritten in start_time order because
        partly deleted row groups keep their blocks (and the rewrite restores zone-map order).
        """
        deleted = 0
        for _attempt in range(8):
            used = self.used_bytes()
            total = self.count()
            if used <= max_bytes or total == 0:
                break
            keep_rows = int(total * max_bytes / used)
            days = self.connection.execute(
                "SELECT date_trunc('day', start_time) AS day, count(*) FROM flows"
                " GROUP BY day ORDER BY day DESC"
            ).fetchall()
            kept = 0
            cutoff = days[0][0] + timedelta(days=1)  # nothing fits: drop every day
            for day, rows in days:
                if kept + rows > keep_rows:
                    break
                kept += rows
                cutoff = day
            removed = _scalar(self.connection, "DELETE FROM flows WHERE start_time < $1", [cutoff])
            deleted += int(removed or 0)
            self._compact()
        return deleted

    def _compact(self) -> None:
        connection = self.connection
        with transaction(connection):
            connection.execute("CREATE TABLE flows_compacted AS FROM flows ORDER BY start_time")
            connection.execute("DROP TABLE flows")
            connection.execute("ALTER TABLE flows_compacted RENAME TO flows")
        connection.execute("CHECKPOINT")

    def _delete_before(self, cutoff: datetime) -> int:
        deleted = _scalar(self.connection, "DELETE FROM flows WHERE start_time < $1", [cutoff])
        self.connection.execute("CHECKPOINT")
        return int(deleted or 0)

    def used_bytes(self) -> int:
        """Bytes in use by the database (blocks holding data, not free ones)."""
        used = _scalar(
            self.connection,
            "SELECT block_size * (total_blocks - free_blocks) FROM pragma_database_size()",
        )
        return int(used or 0)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> DuckDBFlowStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Rows in a DuckDB row group (its default `row_group_size`).
_ROW_GROUP_ROWS = 122_880


def _whole_row_group_batches(table: Any) -> Any:
    """`table` as record batches of whole row groups (the last one excepted).

    DuckDB inserts each batch on its own thread and writes full row groups as it goes;
    batches that straddle row groups (an importer's CSV blocks, concatenated files) leave
    partial groups that the next checkpoint merges and rewrites, which costs as much CPU
    as the insert itself. Columns in several chunks are copied into one first.
    """
    whole = table.combine_chunks()
    return pa.Table.from_batches(whole.to_batches(max_chunksize=_ROW_GROUP_ROWS), whole.schema)


def _order_column(order_by: str) -> str:
    if order_by != "records" and order_by not in COUNTER_COLUMNS:
        raise UsageError(f"cannot order groups by {order_by!r}: use records or a counter column")
    return order_by


def _typed(table: Any) -> Any:
    """DuckDB names list children `l` and marks counters nullable: cast to FLOW_SCHEMA types."""
    fields = [FLOW_SCHEMA.field(name) for name in table.column_names]
    return table.cast(pa.schema(fields))

"""The flow store interface and `open_store`, which picks a backend from a path or URL.

A store keeps flow records (Arrow tables with `schema.FLOW_SCHEMA`) and answers filtered,
time-bounded scans. Two backends implement it with the same SQL as far as the engines allow:

| spelling                                  | backend                                   |
|-------------------------------------------|-------------------------------------------|
| `flows.duckdb`, `duckdb:flows.duckdb`     | `DuckDBFlowStore`: one embedded file      |
| `chdb:DIR`                                | `ClickHouseFlowStore` on embedded chDB    |
| `clickhouse://user:pw@host:8123/database` | `ClickHouseFlowStore` on a server         |

Adding a backend: one module implementing `FlowStore`, one row in `_BACKENDS` below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from netwarden.errors import UsageError

if TYPE_CHECKING:
    from netwarden.flows.filter import FlowFilter


#: The columns `FlowStore.fold` adds to its keys (its sums are named like their counters).
FOLD_RECORDS = "records"
FOLD_FIRST = "first_start"


@dataclass(frozen=True)
class RetentionResult:
    """What a retention pass removed and what is left."""

    deleted_rows: int
    remaining_rows: int
    remaining_bytes: int


@dataclass(frozen=True)
class Aggregate:
    """One `group by` request: sum the counters per group, biggest first."""

    group_by: tuple[str, ...]
    order_by: str = "num_flows"  # a counter column, or "records"
    limit: int | None = None


class FlowStore(Protocol):
    """Flow records kept by a database. Tables in and out are Arrow with FLOW_SCHEMA.

    `where` is a parsed filter (never SQL text); `since` is inclusive and `until` exclusive,
    both compared with `start_time`.
    """

    def append(self, table: Any) -> int:
        """Store the records of `table` (an Arrow table); returns the number stored."""
        ...

    def scan(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> Any:
        """The matching records as one Arrow table, oldest first."""
        ...

    def scan_batches(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = 1_000_000,
    ) -> Iterator[Any]:
        """The matching records as Arrow record batches (bounded memory), in no set order."""
        ...

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
        """The records whose `column` (a flow column that is not a list) holds one of
        `values` (an Arrow array or a sequence; null never matches), as Arrow record batches
        of `columns`, in no set order. The store joins its records with the values (a semi
        join against a table of them): thousands of values cost one hash lookup per record,
        where an `IN` list of bound values costs a comparison per value."""
        ...

    def count(
        self,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """The number of matching records."""
        ...

    def aggregate(
        self,
        request: Aggregate,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        """Per group: `records` and the sum of every counter column, as an Arrow table."""
        ...

    def fold(
        self,
        keys: Sequence[str],
        sums: Sequence[str] = (),
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Any:
        """Every distinct combination of `keys` (null is a value like any other) among the
        matching records, in no set order, as an Arrow table: the key columns (text ones may
        come dictionary-encoded), `records` (how many records), `first_start` (the earliest
        start_time) and, per counter column in `sums`, its total. What a replay reads instead
        of every record (`netwarden preview`)."""
        ...

    def export_parquet(
        self,
        path: str,
        where: FlowFilter | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Write the matching records to one Parquet file; returns the number written."""
        ...

    def import_parquet(self, path: str) -> int:
        """Append the records of a Parquet file written by `export_parquet` (or any file with
        the flow columns); returns the number stored."""
        ...

    def apply_retention(
        self,
        max_age: timedelta | None = None,
        max_bytes: int | None = None,
        now: datetime | None = None,
    ) -> RetentionResult:
        """Drop records that started before `now - max_age` (now: the wall clock unless
        given), then whole oldest days until the stored data fits `max_bytes`."""
        ...

    def schema_version(self) -> int:
        """The schema version the database is at (SCHEMA_VERSION once opened)."""
        ...

    def used_bytes(self) -> int:
        """Bytes the stored records take (what `max_bytes` retention compares with)."""
        ...

    def close(self) -> None:
        """Flush and release the database."""
        ...


def _open_duckdb(target: str) -> FlowStore:
    from netwarden.flows.duckdb_store import DuckDBFlowStore

    return DuckDBFlowStore(target)


def _open_chdb(target: str) -> FlowStore:
    from netwarden.flows.clickhouse_store import ClickHouseFlowStore

    return ClickHouseFlowStore.embedded(target)


def _open_clickhouse(target: str) -> FlowStore:
    from netwarden.flows.clickhouse_store import ClickHouseFlowStore

    return ClickHouseFlowStore.server(target)


#: URL scheme -> opener. A bare path is DuckDB.
_BACKENDS: dict[str, Callable[[str], FlowStore]] = {
    "duckdb:": _open_duckdb,
    "chdb:": _open_chdb,
    "clickhouse://": _open_clickhouse,
    "clickhouses://": _open_clickhouse,
}


def open_store(url_or_path: str) -> FlowStore:
    """Open (creating if needed) the flow store at a path or URL; see the module table.

    >>> store = open_store(":memory:")
    >>> store.count()
    0
    """
    for prefix, opener in _BACKENDS.items():
        if url_or_path.startswith(prefix):
            target = url_or_path if prefix.endswith("//") else url_or_path[len(prefix) :]
            if not target:
                raise UsageError(f"flow store {url_or_path!r}: no path after {prefix!r}")
            return opener(target)
    if "://" in url_or_path:
        scheme = url_or_path.split("://", 1)[0]
        known = ", ".join(sorted(_BACKENDS))
        raise UsageError(f"flow store {url_or_path!r}: unknown scheme {scheme!r} (known: {known})")
    return _open_duckdb(url_or_path)

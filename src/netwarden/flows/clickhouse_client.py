"""How the ClickHouse flow store talks to ClickHouse: the few calls it needs
(`ClickHouseExecutor`) and the two ways to make them.

- `ServerExecutor`: a server via clickhouse-connect (an optional extra: `pip install
  netwarden[clickhouse]`; imported only here, only when a server is opened);
- `ChdbExecutor`: chDB, the ClickHouse engine in-process (how the tests run the same SQL
  without a server).

Both take ClickHouse's typed query parameters (`{p1:String}`), so user text is never part of
a query, and both answer queries with Arrow tables.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.model.location import Location


class ClickHouseExecutor(Protocol):
    """What the store needs from a ClickHouse client."""

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def insert_arrow(self, table_name: str, table: Any) -> None: ...

    def close(self) -> None: ...


def query_scalar(
    executor: ClickHouseExecutor, sql: str, params: Mapping[str, Any] | None = None
) -> Any:
    """The first column of the query's first row; None when it returns no row."""
    table = executor.query_arrow(sql, params)
    return table.column(0)[0].as_py() if table is not None and table.num_rows else None


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


class ChdbExecutor:
    """ClickHouse in-process (chDB), its data in the directory `path`."""

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


class ServerExecutor:
    """A ClickHouse server over HTTP(S) via clickhouse-connect, at a `clickhouse://` URL."""

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

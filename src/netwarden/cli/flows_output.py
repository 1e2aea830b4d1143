"""How `flows` commands write records: a terminal table, JSON, CSV or Parquet."""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from rich.table import Table

from netwarden.cli.common import stderr_console, stdout_console

#: What a terminal table shows of each record (json, csv and parquet get every column).
TABLE_COLUMNS = (
    "start_time", "source_namespace", "source_name", "source_ip", "dest_namespace", "dest_name",
    "dest_ip", "dest_port", "proto", "action", "reporter", "policies_enforced", "bytes_out",
    "bytes_in",
)  # fmt: skip


class QueryOutput(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


def plain_columns(table: Any) -> Any:
    """Lists joined with `,` and times in ISO form: what CSV and a terminal table can show."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):
            column = pc.binary_join(column, ",")
        elif pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S.%fZ")
        columns[name] = column
    return pa.table(columns) if columns else table


def emit(table: Any, output: QueryOutput, out: Path | None) -> None:
    if output is QueryOutput.PARQUET:
        assert out is not None
        pq.write_table(table, str(out), compression="zstd")
        stderr_console().print(f"wrote {table.num_rows} rows to {out}", markup=False)
        return
    if output is QueryOutput.JSON:
        text = json.dumps(table.to_pylist(), default=json_default, indent=1) + "\n"
    elif output is QueryOutput.CSV:
        buffer = io.BytesIO()
        pcsv.write_csv(plain_columns(table), buffer)
        text = buffer.getvalue().decode()
    else:
        print_table(table)
        return
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_table(table: Any) -> None:
    plain = plain_columns(table)
    shown = Table(*plain.column_names, show_lines=False)
    for row in plain.to_pylist():
        shown.add_row(*("" if v is None else str(v) for v in row.values()))
    console = stdout_console()
    console.print(shown)
    console.print(f"{table.num_rows} rows", style="dim", markup=False)

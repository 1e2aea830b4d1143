"""What both flow-store backends share: the checks and result schema of `fold`, the table of
values `scan_matching` joins with, and Parquet files of flow records (export and import)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.flows.schema import (
    COUNTER_COLUMNS,
    FLOW_COLUMNS,
    FLOW_SCHEMA,
    LIST_COLUMNS,
    conform,
)
from netwarden.flows.store import FOLD_FIRST, FOLD_RECORDS
from netwarden.model.location import Location


def check_fold_columns(keys: Sequence[str], sums: Sequence[str]) -> None:
    """Keys are distinct scalar flow columns (at least one), sums are counter columns."""
    if not keys:
        raise UsageError("a fold needs at least one key column")
    unknown = [k for k in (*keys, *sums) if k not in FLOW_COLUMNS]
    if unknown:
        raise UsageError(f"unknown flow column(s): {', '.join(unknown)}")
    if len(set(keys)) < len(keys):
        raise UsageError(f"fold keys repeat a column: {', '.join(keys)}")
    lists = [k for k in keys if k in LIST_COLUMNS]
    if lists:
        raise UsageError(f"cannot fold by list column(s): {', '.join(lists)}")
    not_counters = [s for s in sums if s not in COUNTER_COLUMNS]
    if not_counters:
        raise UsageError(f"only counter columns add up: not {', '.join(not_counters)}")


def fold_schema(keys: Sequence[str], sums: Sequence[str]) -> Any:
    """The Arrow schema of a fold's result (text keys as plain strings)."""
    fields = [FLOW_SCHEMA.field(k) for k in keys]
    fields.append(pa.field(FOLD_RECORDS, pa.int64()))
    fields.append(pa.field(FOLD_FIRST, FLOW_SCHEMA.field("start_time").type))
    fields += [pa.field(s, pa.int64()) for s in sums]
    return pa.schema(fields)


#: The one column of the table of values `scan_matching` joins with.
MATCH_VALUE = "value"


def matching_values(column: str, values: Any) -> Any:
    """`values` as the one-column Arrow table `scan_matching` joins with: typed like the
    flow column `column`, without nulls (which never match) and without repeats."""
    if column not in FLOW_COLUMNS:
        raise UsageError(f"unknown flow column: {column}")
    field = FLOW_SCHEMA.field(column)
    if pa.types.is_list(field.type):
        raise UsageError(f"cannot match values of {column}: it holds lists")
    try:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        array = values if isinstance(values, pa.Array) else pa.array(list(values), field.type)
        array = array.cast(field.type)
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise UsageError(f"values to match in {column}: {error}") from None
    return pa.table({MATCH_VALUE: pc.unique(array.drop_null())})


def write_parquet_flows(batches: Iterable[Any], path: str) -> int:
    """Write Arrow record batches of flow records to one Parquet file; returns the row count."""
    written = 0
    with pq.ParquetWriter(path, FLOW_SCHEMA, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            written += batch.num_rows
    return written


def read_parquet_flows(path: str) -> Any:
    """A Parquet file's flow columns, conformed to FLOW_SCHEMA (errors name the file)."""
    if not os.path.exists(path):
        raise InputError(Location(path), "no such file")
    try:
        table = pq.read_table(path)
        return conform(table.select([c for c in table.column_names if c in FLOW_COLUMNS]))
    except (pa.ArrowException, ValueError) as error:
        raise InputError(Location(path), f"not a flow Parquet file: {error}") from None

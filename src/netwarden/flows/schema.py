"""The flow record schema: one Arrow schema every importer writes and every store keeps.

Column names follow Calico's flow logs (`source_namespace`, `dest_port`, `action`, ...) so the
query language reads like a Calico GlobalAlert query. `schemas/flow-record.schema.json`
documents the same columns as JSON Schema; a test keeps the two in step.

`SCHEMA_VERSION` is bumped whenever a column is added, renamed or retyped; stores migrate
older databases forward (see `duckdb_schema.MIGRATIONS`, `clickhouse_schema.MIGRATIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

#: Version of the column layout below; stored in each database's `schema_version` table.
SCHEMA_VERSION = 2

#: Endpoint kinds, as in Calico flow logs (wep/hep/ns/net) but spelled out.
ENDPOINT_TYPES = ("workload", "host", "networkset", "external")
ACTIONS = ("allow", "deny")
REPORTERS = ("src", "dst")

_TIME = pa.timestamp("us", tz="UTC")
_LABELS = pa.list_(pa.string())


def _endpoint_fields(side: str) -> list[Any]:
    return [
        pa.field(f"{side}_type", pa.string()),
        pa.field(f"{side}_namespace", pa.string()),
        pa.field(f"{side}_name", pa.string()),
        pa.field(f"{side}_name_aggr", pa.string()),
        pa.field(f"{side}_labels", _LABELS),
    ]


#: Every flow record, column by column, in this order.
FLOW_SCHEMA = pa.schema(
    [
        pa.field("start_time", _TIME, nullable=False),
        pa.field("end_time", _TIME, nullable=False),
        pa.field("source_ip", pa.string()),
        pa.field("dest_ip", pa.string()),
        pa.field("source_port", pa.int32()),
        pa.field("dest_port", pa.int32()),
        pa.field("proto", pa.string()),
        *_endpoint_fields("source"),
        *_endpoint_fields("dest"),
        pa.field("action", pa.string()),
        pa.field("reporter", pa.string()),
        pa.field("host", pa.string()),
        pa.field("policies_enforced", _LABELS),
        pa.field("policies_pending", _LABELS),
        pa.field("bytes_in", pa.int64(), nullable=False),
        pa.field("bytes_out", pa.int64(), nullable=False),
        pa.field("packets_in", pa.int64(), nullable=False),
        pa.field("packets_out", pa.int64(), nullable=False),
        pa.field("num_flows", pa.int64(), nullable=False),
        pa.field("num_flows_started", pa.int64(), nullable=False),
        pa.field("num_flows_completed", pa.int64(), nullable=False),
        # DNS, for records of a DNS exchange (Hubble's `l7.dns`, Calico's DNS logs): the name
        # asked (lower case, no trailing dot), its type, the answer's rcode, and the answers'
        # values (addresses and CNAME targets). Null / empty for other records.
        pa.field("dns_qname", pa.string()),
        pa.field("dns_qtype", pa.string()),
        pa.field("dns_rcode", pa.string()),
        pa.field("dns_answers", _LABELS),
    ]
)

#: Column names in schema order.
FLOW_COLUMNS: tuple[str, ...] = tuple(FLOW_SCHEMA.names)

#: Counter columns: int64, never null, 0 when a source does not report them.
COUNTER_COLUMNS: tuple[str, ...] = (
    "bytes_in",
    "bytes_out",
    "packets_in",
    "packets_out",
    "num_flows",
    "num_flows_started",
    "num_flows_completed",
)

#: List-of-string columns (labels `key=value` sorted; policy hits in Calico's format).
LIST_COLUMNS: tuple[str, ...] = (
    "source_labels",
    "dest_labels",
    "policies_enforced",
    "policies_pending",
    "dns_answers",
)


def conform(table: Any) -> Any:
    """`table` with exactly FLOW_SCHEMA: columns reordered and cast, missing ones filled.

    Missing counters become 0, missing or null lists empty (ClickHouse arrays cannot be
    null: both backends then return the same thing), other missing columns null; the two
    time columns must be present. Extra columns are an error (a typo would otherwise vanish
    silently).

    >>> conform(pa.table({"start_time": [0], "end_time": [0]}).cast(
    ...     pa.schema([("start_time", _TIME), ("end_time", _TIME)]))).num_columns
    35
    """
    extra = [name for name in table.column_names if name not in FLOW_COLUMNS]
    if extra:
        raise ValueError(f"columns not in the flow schema: {', '.join(extra)}")
    rows = table.num_rows
    arrays = []
    for field in FLOW_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            column = column.cast(field.type)
            if column.null_count and field.name in COUNTER_COLUMNS:
                column = column.fill_null(0)
            elif column.null_count and field.name in LIST_COLUMNS:
                column = _empty_where_null(column)
            arrays.append(column)
        elif field.name in COUNTER_COLUMNS:
            arrays.append(pa.array(np.zeros(rows, dtype=np.int64)))
        elif field.name in LIST_COLUMNS:
            empty_lists = np.zeros(rows + 1, dtype=np.int32)  # every list starts and ends at 0
            arrays.append(pa.ListArray.from_arrays(empty_lists, pa.array([], pa.string())))
        elif not field.nullable:
            raise ValueError(f"flow records need the column {field.name}")
        else:
            arrays.append(pa.nulls(rows, field.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


def _empty_where_null(column: Any) -> Any:
    """Null lists as empty lists, from lengths (fill_null with a list scalar is slow)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(column) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(column), type=_LABELS)


def empty_table() -> Any:
    """A flow table with no rows."""
    return FLOW_SCHEMA.empty_table()


def from_records(records: list[Mapping[str, Any]]) -> Any:
    """A flow table from Python dicts (tests and small inputs; importers build columns)."""
    columns = {name: [record.get(name) for record in records] for name in FLOW_COLUMNS}
    present = {
        name: values for name, values in columns.items() if any(v is not None for v in values)
    }
    present.setdefault("start_time", columns["start_time"])
    present.setdefault("end_time", columns["end_time"])
    table = pa.table(
        {name: pa.array(values, FLOW_SCHEMA.field(name).type) for name, values in present.items()}
    )
    return conform(table)

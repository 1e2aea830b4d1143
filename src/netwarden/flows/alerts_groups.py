"""What threat-feed alerts sum up: the listed records of one group (a source-destination
pair, or a DNS lookup of one listed name), read in batches and summed over them, and the
second pass that has the store find the records holding a listed address.

`add_batch` works on a whole Arrow table at once (Arrow's group-by); only one Python object
per group is made, never one per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.store import FlowStore

#: Columns the second pass reads of a listed record.
DETAIL_COLUMNS = (
    "start_time",
    "end_time",
    "source_ip",
    "dest_ip",
    "dest_port",
    "proto",
    "source_namespace",
    "source_name",
    "source_name_aggr",
    "dest_namespace",
    "dest_name",
    "dest_name_aggr",
    "action",
    "policies_enforced",
    "num_flows",
)
#: The key of a pair's group.
PAIR = ("source_ip", "dest_ip")


@dataclass
class Group:
    """One group's listed records (a source-destination pair, or a DNS lookup of one
    listed name), summed over batches."""

    source: str
    dest: str
    first_seen: int  # microseconds since the epoch (cheaper out of Arrow than datetimes)
    last_seen: int
    records: int = 0
    flows: int = 0
    actions: set[str] = field(default_factory=set)
    policies: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)


def chunks(batches: Iterable[Any], rows: int) -> Iterator[Any]:
    """Record batches gathered into tables of at least `rows` rows (a store may yield small
    batches, e.g. DuckDB one per row group; per-chunk work is then amortised)."""
    gathered: list[Any] = []
    count = 0
    for batch in batches:
        gathered.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(gathered)
            gathered, count = [], 0
    if gathered:
        yield pa.Table.from_batches(gathered)


def listed_records(
    store: FlowStore,
    listed: Mapping[str, set[str]],
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> dict[str, dict[tuple[str, ...], Group]]:
    """Pass 2: per address column, the records whose address there is listed, grouped per
    (source, dest). The store finds them (`scan_matching`: a join with the listed
    addresses), reading the detail columns of those records alone, however many are listed."""
    groups: dict[str, dict[tuple[str, ...], Group]] = {column: {} for column in listed}
    for column, addresses in listed.items():
        if not addresses:
            continue  # the common case: one pass over two columns was all
        values = pa.array(sorted(addresses), pa.string())
        found = store.scan_matching(DETAIL_COLUMNS, column, values, None, since, until, batch_size)
        for chunk in chunks(found, batch_size):
            add_batch(groups[column], chunk, PAIR)
    return groups


def add_batch(groups: dict[tuple[str, ...], Group], table: Any, keys: tuple[str, ...]) -> None:
    """Sum `table`'s records into `groups`, per distinct value of the `keys` columns."""
    table = table.append_column("deciding", _last_hits(table.column("policies_enforced")))
    table = table.append_column("port", _ports(table))
    table = table.append_column("source", _endpoint(table, "source"))
    table = table.append_column("dest", _endpoint(table, "dest"))
    summary = table.group_by(list(keys)).aggregate(
        [
            ("start_time", "min"),
            ("end_time", "max"),
            ("num_flows", "sum"),
            ("num_flows", "count"),
            ("action", "distinct"),
            ("deciding", "distinct"),
            ("port", "distinct"),
            ("source", "min"),
            ("dest", "min"),
        ]
    )
    # Column by column into Python (a row-wise to_pylist builds a dict per group: slower).
    for name in ("start_time_min", "end_time_max"):
        at = summary.schema.get_field_index(name)
        summary = summary.set_column(at, name, pc.cast(summary.column(name), pa.int64()))
    values = {name: summary.column(name).to_pylist() for name in summary.column_names}
    for key, first, last, source, dest, count, flows, actions, deciding, ports in zip(
        zip(*(values[k] for k in keys), strict=True),
        values["start_time_min"],
        values["end_time_max"],
        values["source_min"],
        values["dest_min"],
        values["num_flows_count"],
        values["num_flows_sum"],
        values["action_distinct"],
        values["deciding_distinct"],
        values["port_distinct"],
        strict=True,
    ):
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(source, dest, first, last)
        # The least name over every batch: the same whatever order the store yields them in.
        group.source = min(group.source, source)
        group.dest = min(group.dest, dest)
        group.first_seen = min(group.first_seen, first)
        group.last_seen = max(group.last_seen, last)
        group.records += count
        group.flows += flows
        group.actions.update(a for a in actions if a)
        group.policies.update(p for p in deciding if p)
        group.ports.update(p for p in ports if p)


def _last_hits(column: Any) -> Any:
    """The last hit of each record's `policies_enforced`, without its `<index>|` (null when
    the record names none)."""
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = np.asarray(lists.offsets.to_numpy(), dtype=np.int64)[:-1]
    values = lists.values
    present = lengths > 0
    if len(values) == 0:
        return pa.nulls(len(lists), pa.string())
    picked = pc.take(values, pa.array(np.where(present, offsets + lengths - 1, 0)))
    hits = pc.if_else(pa.array(present), picked, pa.scalar(None, pa.string()))
    return pc.replace_substring_regex(hits, r"^-?\d+\|", "")


def _ports(table: Any) -> Any:
    port = pc.cast(table.column("dest_port"), pa.string())
    proto = pc.fill_null(table.column("proto"), "?")
    return pc.binary_join_element_wise(proto, pc.fill_null(port, "-"), "/")


def _endpoint(table: Any, side: str) -> Any:
    """`namespace/name`; an aggregated record (Calico's `-` name) shows its `name_aggr`."""
    namespace = pc.fill_null(table.column(f"{side}_namespace"), "-")
    named = pc.coalesce(table.column(f"{side}_name"), table.column(f"{side}_name_aggr"))
    name = pc.fill_null(named, "-")
    joined = pc.binary_join_element_wise(namespace, name, "/")
    return pc.if_else(pc.equal(joined, "-/-"), "-", joined)

"""Flow records (Arrow columns) as a batch of probes for the vectorized engine.

Millions of stored flows repeat a few thousand conversations: the same pods, the same ports,
other times and source ports. So records are never turned into Python objects: they are
folded into their distinct identity rows (both ends' identity columns, port, protocol and the
caller's extra columns, `replay_keys`) with each row's record count, first record and counter
sums, and only those rows are looked at further. A flow store folds its records itself
(`FlowStore.fold`, then `group_folded`); a table in memory is folded by Arrow's hash
aggregation in one multi-threaded pass (`group_flows`). Each distinct endpoint identity is
resolved against the inventory once, and each distinct (source, destination, port, protocol,
*extra) becomes one probe, so a replay costs one pass over the records plus one engine
evaluation per distinct conversation.

    groups = group_flows(cluster, table, extra=("action",), sums=("bytes_out",))
    result = VectorEngine(cluster).evaluate(groups.batch)
    denied_records = groups.records[~result.allowed].sum()

An end is resolved by its `namespace/name` (the pod), else by its address (an inventory
endpoint, or an external address), else, for an aggregated record (`name` `-`, `name_aggr`
`frontend-7d4f-*`), by the first pod of that namespace whose name starts with the prefix: pods
of one workload share their labels, so any of them is decided alike. A workload record whose
pod the inventory does not hold is not replayed, and is counted as such.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.engine.batch import ProbeBatch
from netwarden.model import ClusterState, Endpoint, EndpointKind, external_endpoint
from netwarden.model.ports import parse_protocol

Ints = npt.NDArray[np.int64]

#: What Calico writes for a field that does not apply (an external end's name or namespace).
NOT_APPLICABLE = frozenset({"", "-"})
#: Packed keys stay below this so that they fit int64 with room to spare.
_KEY_LIMIT = 1 << 62
#: Above this many (namespace, name) cells, pairs are hashed instead of looked up in a grid.
_GRID_LIMIT = 1 << 24


@dataclass(frozen=True)
class Codes:
    """A column as dense codes (-1 for null) and the distinct values they index."""

    codes: Ints
    values: list[Any]


@dataclass(frozen=True)
class SkippedFlows:
    """Records that cannot be replayed, for one reason: how many, and the first one's row."""

    reason: str
    count: int
    first_row: int


@dataclass(frozen=True)
class FlowGroups:
    """Records grouped by distinct (source, destination, port, protocol, *extra).

    `batch` has one probe per group; `extra` holds each group's codes of the extra columns
    (indices into `extra_values`, -1 for null); `records` counts each group's records and
    `sums` adds up the requested counter columns per group. `first` places each group's
    first record: its row in a table, or (folded by a store) its start time in microseconds,
    which `row_of` turns into the row a time-ordered scan would put it at. Records that cannot
    be replayed are in no group: `skipped` says how many, why, and where the first one is."""

    batch: ProbeBatch
    extra: Ints
    extra_values: tuple[list[Any], ...]
    records: Ints
    first: Ints
    sums: dict[str, Ints]
    skipped: tuple[SkippedFlows, ...]
    row_of: Callable[[int], int] = int

    @property
    def replayed(self) -> int:
        return int(self.records.sum())

    def first_row(self, mask: npt.NDArray[np.bool_]) -> int:
        """The row of the first record of the groups in `mask` (at least one)."""
        return self.row_of(int(self.first[mask].min()))


def encode(column: Any) -> Codes:
    """Dictionary-encode an Arrow column (array or chunked) into dense int64 codes."""
    if isinstance(column, pa.ChunkedArray) and column.num_chunks == 1:
        column = column.chunk(0)
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    if not chunks:
        return Codes(np.zeros(0, np.int64), [])
    # Chunks of one encoding share a growing dictionary: the last one holds all the others.
    values = chunks[-1].dictionary
    parts = []
    for chunk in chunks:
        dictionary = chunk.dictionary
        indices = chunk.indices.fill_null(-1) if chunk.indices.null_count else chunk.indices
        codes = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if dictionary is not values and not dictionary.equals(values.slice(0, len(dictionary))):
            remap = {value: i for i, value in enumerate(values.to_pylist())}
            lookup = np.array([remap[v] for v in dictionary.to_pylist()] + [-1], np.int64)
            codes = lookup[codes]  # -1 indexes the appended -1
        parts.append(codes)
    return Codes(np.concatenate(parts), values.to_pylist())


def combine(parts: Sequence[tuple[Ints, int]]) -> tuple[Ints, Ints]:
    """Rows of codes (each -1..cardinality-1) -> (per row a dense group id, per group its codes
    as a (groups, len(parts)) array). Hashing, not sorting: groups are in first-seen order.
    Codes are packed into one int64 per row; when the next column would overflow it, what is
    packed so far is numbered densely first and stands in as one column."""
    rows = parts[0][0].shape[0]
    key = np.zeros(rows, dtype=np.int64)
    radix: list[int] = []
    taken = 0
    for codes, cardinality in parts:
        size = cardinality + 1  # room for -1 (null)
        if radix and int(np.prod(radix, dtype=object)) * size >= _KEY_LIMIT:
            break
        key = key * size + (codes + 1)
        radix.append(size)
        taken += 1
    group, unique_keys = _dense(key)
    table = _unpack(unique_keys, radix)
    if taken == len(parts):
        return group, table
    rest_group, rest_table = combine([(group, table.shape[0]), *parts[taken:]])
    return rest_group, np.hstack([table[rest_table[:, 0]], rest_table[:, 1:]])


def _dense(key: Ints) -> tuple[Ints, Ints]:
    encoded = pc.dictionary_encode(pa.array(key, pa.int64()))
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_numpy()


def _unpack(keys: Ints, radix: list[int]) -> Ints:
    out = np.empty((keys.shape[0], len(radix)), dtype=np.int64)
    rest = keys.copy()
    for j in range(len(radix) - 1, -1, -1):
        rest, digit = np.divmod(rest, radix[j])
        out[:, j] = digit - 1
    return out


class _Ends:
    """Endpoint positions for a batch: the cluster's endpoints, then external ones."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.endpoints: list[Endpoint] = list(cluster.endpoints)
        self.position = {endpoint.key: i for i, endpoint in enumerate(self.endpoints)}
        self.external: dict[str, int] = {}
        self._by_prefix: dict[tuple[str, str], int] = {}

    def resolve(
        self,
        kind: str | None,
        namespace: str | None,
        name: str | None,
        aggr: str | None,
        ip: str | None,
    ) -> int:
        """The endpoint a record names, or -1 (see the module docstring for the order)."""
        named = namespace not in (None, *NOT_APPLICABLE) and name not in (None, *NOT_APPLICABLE)
        if named:
            found = self.position.get(f"{namespace}/{name}")
            if found is not None:
                return found
        by_ip = self._by_ip(ip)
        if by_ip is not None:
            endpoint = self.endpoints[by_ip]
            if not named or endpoint.kind is EndpointKind.EXTERNAL:
                if named and kind == "workload":
                    return -1  # a pod the inventory does not hold, not an outside address
                return by_ip
            return -1  # the address is another endpoint's now: not the pod the record names
        if not named and namespace is not None and aggr is not None and aggr.endswith("*"):
            return self._aggregated(namespace, aggr[:-1])
        return -1

    def _by_ip(self, text: str | None) -> int | None:
        if text is None or text in NOT_APPLICABLE:
            return None
        try:
            address = ip_address(text)
        except ValueError:
            return None
        known = self.cluster.endpoints_by_ip.get(address)
        if known is not None:
            return self.position[known.key]
        found = self.external.get(str(address))
        if found is None:
            found = self.external[str(address)] = len(self.endpoints)
            self.endpoints.append(external_endpoint(address))
        return found

    def _aggregated(self, namespace: str, prefix: str) -> int:
        key = (namespace, prefix)
        if key not in self._by_prefix:
            chosen = sorted(
                (e.name, i)
                for i, e in enumerate(self.cluster.endpoints)
                if e.namespace == namespace
                and e.kind is EndpointKind.POD
                and e.name.startswith(prefix)
            )
            self._by_prefix[key] = chosen[0][1] if chosen else -1
        return self._by_prefix[key]


def _side(table: Any, side: str, ends: _Ends, namespace: Codes, name: Codes) -> Ints:
    """Per record, the endpoint position of one end (`source` or `dest`), -1 if unknown.

    Each distinct (namespace, name) is resolved once: the pairs are cells of a grid indexed
    by the two codes (no hashing: a scatter marks the cells used, a gather reads the answer),
    or hashed when the grid would be too big. Records whose pair names no inventory pod
    (external addresses, hosts, aggregated or unknown pods) go through `_side_full`."""
    name_size = len(name.values) + 1
    cell = (namespace.codes + 1) * name_size + (name.codes + 1)
    if (len(namespace.values) + 1) * name_size <= _GRID_LIMIT:
        used = np.zeros((len(namespace.values) + 1) * name_size, dtype=np.bool_)
        used[cell] = True
        keys = np.arange(used.shape[0], dtype=np.int64)
        cells = np.flatnonzero(used)
    else:
        cell, keys = _dense(cell)
        cells = np.arange(keys.shape[0], dtype=np.int64)
    lookup = np.full(keys.shape[0], -2, dtype=np.int64)  # -2: `_side_full` decides
    for at in cells.tolist():
        ns_code, name_code = divmod(int(keys[at]), name_size)
        ns = namespace.values[ns_code - 1] if ns_code else None
        pod = name.values[name_code - 1] if name_code else None
        if ns not in (None, *NOT_APPLICABLE) and pod not in (None, *NOT_APPLICABLE):
            lookup[at] = ends.position.get(f"{ns}/{pod}", -2)
    resolved: Ints = lookup[cell]
    slow = np.flatnonzero(resolved == -2)
    if slow.shape[0]:
        resolved[slow] = _side_full(table, side, ends, slow, namespace, name)
    return resolved


def _side_full(
    table: Any, side: str, ends: _Ends, rows: Ints, namespace: Codes, name: Codes
) -> Ints:
    """Every identity column of the records at `rows`: `_Ends.resolve` once per distinct
    combination."""
    ip_column = "source_ip" if side == "source" else "dest_ip"
    others = [f"{side}_type", f"{side}_name_aggr", ip_column]
    taken = pa.array(rows)
    columns = [encode(_column(table, column).take(taken)) for column in others]
    encoded = [
        columns[0],
        Codes(namespace.codes[rows], namespace.values),
        Codes(name.codes[rows], name.values),
        columns[1],
        columns[2],
    ]
    group, combos = combine([(e.codes, len(e.values)) for e in encoded])
    lookup = np.empty(combos.shape[0] + 1, dtype=np.int64)
    lookup[-1] = -1
    for g, row in enumerate(combos.tolist()):
        values = [e.values[c] if c >= 0 else None for e, c in zip(encoded, row, strict=True)]
        lookup[g] = ends.resolve(*values)
    resolved: Ints = lookup[group]
    return resolved


def _column(table: Any, name: str, kind: Any = None) -> Any:
    """A column of `table`, or nulls (of `kind`, strings by default) when it has none."""
    if name in table.column_names:
        return table.column(name)
    return pa.nulls(table.num_rows, kind or pa.string())


def _protocols(encoded: Codes) -> Ints:
    """Per record the IANA protocol number, -1 when unknown or missing."""
    numbers = [parse_protocol(str(value)) for value in encoded.values]
    lookup = np.array([-1 if n is None else n for n in numbers] + [-1], dtype=np.int64)
    protocol: Ints = lookup[encoded.codes]
    return protocol


#: The columns that say who an end is, per side.
IDENTITY = ("type", "namespace", "name", "name_aggr", "ip")
_ROW = "__row"


def group_flows(
    cluster: ClusterState, table: Any, extra: Sequence[str] = (), sums: Sequence[str] = ()
) -> FlowGroups:
    """Group a flow table (FLOW_SCHEMA columns; missing ones read as null) for replay.

    Arrow's hash aggregation first folds the records into distinct identity rows (every
    identity column of both ends, port, protocol, `extra`) with their count, first row and
    the sums of `sums`, in one multi-threaded pass; everything after works on those rows.
    (A store folds its records itself: `FlowStore.fold` then `group_folded`.)"""
    keys = replay_keys(extra)
    columns = {name: _column(table, name) for name in keys}
    columns.update({name: _column(table, name, pa.int64()) for name in sums})
    columns[_ROW] = pa.array(np.arange(table.num_rows, dtype=np.int64))
    aggregations = [(_ROW, "min"), (_ROW, "count")] + [(name, "sum") for name in sums]
    folded = pa.table(columns).group_by(keys, use_threads=True).aggregate(aggregations)
    count = folded.column(f"{_ROW}_count").to_numpy().astype(np.int64)
    first = folded.column(f"{_ROW}_min").to_numpy().astype(np.int64)
    totals = {name: pc.fill_null(folded.column(f"{name}_sum"), 0).to_numpy() for name in sums}
    return group_folded(cluster, folded, extra, count, first, totals)


def replay_keys(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns records are folded by for a replay: who each end is, port, protocol, and
    the caller's `extra` columns."""
    identity = [f"{side}_{name}" for side in ("source", "dest") for name in IDENTITY]
    return (*identity, "dest_port", "proto", *extra)


def group_folded(
    cluster: ClusterState,
    table: Any,
    extra: Sequence[str],
    count: Ints,
    first: Ints,
    totals: dict[str, Any],
    row_of: Callable[[int], int] = int,
) -> FlowGroups:
    """Distinct identity rows (the `replay_keys(extra)` columns of `table`, each standing for
    `count` records, the first at `first`, with counter `totals`) resolved to endpoints and
    grouped into probes; see `FlowGroups` for `first` and `row_of`."""
    rows = table.num_rows
    ends = _Ends(cluster)
    wanted = ["source_namespace", "source_name", "dest_namespace", "dest_name", "proto", *extra]
    codes = [encode(_column(table, name)) for name in wanted]
    src = _side(table, "source", ends, codes[0], codes[1])
    dst = _side(table, "dest", ends, codes[2], codes[3])
    protocol = _protocols(codes[4])
    port_column = _column(table, "dest_port")
    if pa.types.is_null(port_column.type):
        port = np.zeros(rows, dtype=np.int64)
    else:
        port = pc.fill_null(port_column, 0).to_numpy().astype(np.int64)
    invalid_port = (port < 0) | (port > 65535)
    replayable = (src >= 0) & (dst >= 0) & (protocol >= 0) & ~invalid_port
    skipped = _skipped(src, dst, protocol, invalid_port, count, first, row_of)
    size = len(ends.endpoints)
    extras = codes[5:]
    parts = [
        (np.where(replayable, src, -1), size),
        (np.where(replayable, dst, -1), size),
        (np.where(replayable, port, -1), 65536),
        (np.where(replayable, protocol, -1), 256),
    ] + [(e.codes, len(e.values)) for e in extras]
    empty = (np.zeros(0, np.int64), np.zeros((0, len(parts)), np.int64))
    group, combos = combine(parts) if rows else empty
    # The group of unreplayable records (all -1) is dropped: it has no probe.
    keep = combos[:, 0] >= 0
    renumber = np.full(combos.shape[0], -1, dtype=np.int64)
    renumber[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    kept = combos[keep].astype(np.int64)
    group = renumber[group]
    inside = group >= 0
    groups = int(keep.sum())

    def per_group(weights: Any) -> Ints:
        added = np.zeros(groups, dtype=np.int64)
        np.add.at(added, group[inside], np.asarray(weights, dtype=np.int64)[inside])
        return added

    batch = ProbeBatch(
        tuple(ends.endpoints),
        kept[:, 0].astype(np.int32),
        kept[:, 1].astype(np.int32),
        kept[:, 2].astype(np.int32),
        kept[:, 3].astype(np.int32),
    )
    values = tuple(e.values for e in extras)
    sums = {name: per_group(total) for name, total in totals.items()}
    first_seen = np.full(groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, group[inside], first[inside])
    return FlowGroups(
        batch, kept[:, 4:], values, per_group(count), first_seen, sums, skipped, row_of
    )


def _skipped(
    src: Ints,
    dst: Ints,
    protocol: Ints,
    invalid_port: npt.NDArray[np.bool_],
    count: Ints,
    first: Ints,
    row_of: Callable[[int], int],
) -> tuple[SkippedFlows, ...]:
    found = []
    for reason, mask in (
        ("source endpoint not in the inventory", src < 0),
        ("destination endpoint not in the inventory", (src >= 0) & (dst < 0)),
        ("unknown protocol", (src >= 0) & (dst >= 0) & (protocol < 0)),
        ("port out of range", (src >= 0) & (dst >= 0) & (protocol >= 0) & invalid_port),
    ):
        if mask.any():
            found.append(
                SkippedFlows(reason, int(count[mask].sum()), row_of(int(first[mask].min())))
            )
    return tuple(found)

"""Endpoint identity for flow records, from the inventory valid at each record's time.

Inventory changes (pods come and go, IPs are reused), so identity comes from snapshots: each
`InventorySnapshot` is a `ClusterState` with the time it was taken, and a record gets the
latest snapshot taken at or before its start (the earliest one for older records). In a
snapshot an address is, in this order: a pod or host endpoint (`workload` / `host`, with
namespace, name, owner and labels), a node address (`host`), inside a network set
(`networkset`, longest prefix wins; threat-feed sets are network sets too), else `external`.

Only records whose side has no type yet are filled: Calico and Hubble already know their
endpoints, VPC logs do not. Work is per distinct address, not per record: the address
column is dictionary-encoded, the distinct addresses are parsed on columns (IPv4 by Arrow,
only IPv6 one by one) into 16-byte keys, looked up with `searchsorted` in the snapshot's
sorted keys, and the answers are gathered back with `take`. Without snapshots there is
nothing to look up: untyped sides become `external` without parsing anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.schema import FLOW_SCHEMA, conform
from netwarden.model import ClusterState
from netwarden.model.endpoints import EndpointKind, NetworkSet
from netwarden.threatintel.match import address_columns

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_NO_KEY = b"\xff" * 16  # sorts last, matches nothing real (not a unicast address)


def _ip_key(address: IPv4Address | IPv6Address) -> bytes:
    """16 big-endian bytes for an address (IPv4 mapped into ::ffff:0:0/96)."""
    return _V4_MAPPED + address.packed if address.version == 4 else address.packed


def _keys(texts: Any) -> Any:
    """`_ip_key` of every value of an Arrow string array as "S16" (`_NO_KEY` where it is no
    address), on columns: IPv4 parsed by Arrow (`address_columns`), only IPv6 one by one."""
    columns = address_columns(texts)
    raw = np.full((len(texts), 16), 0xFF, dtype=np.uint8)  # _NO_KEY unless parsed
    raw[columns.rows4, :10] = 0
    raw[columns.rows4, 10:12] = 0xFF
    raw[columns.rows4, 12:] = columns.keys4.astype(">u4").view(np.uint8).reshape(-1, 4)
    raw[columns.rows6] = columns.keys6.view(np.uint8).reshape(-1, 16)
    return raw.view("S16").ravel()


def _masked(keys: Any, prefix: int) -> Any:
    """Keys with every bit after the first `prefix` cleared."""
    halves = keys.view(">u8").reshape(-1, 2).copy()
    high_bits, low_bits = min(prefix, 64), max(prefix - 64, 0)
    high_mask = (
        np.uint64(0) if high_bits == 0 else np.uint64(((1 << high_bits) - 1) << (64 - high_bits))
    )
    low_mask = (
        np.uint64(0) if low_bits == 0 else np.uint64(((1 << low_bits) - 1) << (64 - low_bits))
    )
    halves[:, 0] &= high_mask
    halves[:, 1] &= low_mask
    return halves.astype(">u8").view("S16").reshape(-1)


@dataclass(frozen=True)
class Identity:
    """What an address is, as the flow schema spells it."""

    type: str
    namespace: str | None
    name: str | None
    name_aggr: str | None
    labels: tuple[str, ...]


def _labels(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(f"{k}={v}" for k, v in labels.items()))


@dataclass(frozen=True)
class InventorySnapshot:
    """The inventory as it was at `taken_at`."""

    taken_at: datetime
    cluster: ClusterState
    extra_sets: tuple[NetworkSet, ...] = field(default=())  # e.g. threat-feed sets

    @cached_property
    def _exact(self) -> tuple[Any, list[Identity]]:
        """Sorted keys of endpoint and node addresses, and their identities."""
        found: dict[bytes, Identity] = {}
        for endpoint in self.cluster.endpoints:
            if endpoint.kind is EndpointKind.EXTERNAL:
                continue
            kind = "workload" if endpoint.kind is EndpointKind.POD else "host"
            owner = endpoint.workload.rpartition("/")[2] if endpoint.workload else endpoint.name
            identity = Identity(
                kind, endpoint.namespace, endpoint.name, owner, _labels(endpoint.labels)
            )
            for ip in endpoint.ips:
                found.setdefault(_ip_key(ip), identity)
        for node in self.cluster.nodes:
            identity = Identity("host", None, node.name, node.name, _labels(node.labels))
            for ip in node.ips:
                found.setdefault(_ip_key(ip), identity)
        keys = sorted(found)
        return np.array(keys, dtype="S16"), [found[k] for k in keys]

    @cached_property
    def _nets(self) -> list[tuple[int, Any, list[Identity]]]:
        """Per prefix length (longest first): sorted network keys and their sets."""
        by_length: dict[int, dict[bytes, Identity]] = {}
        for network_set in (*self.cluster.network_sets, *self.extra_sets):
            identity = Identity(
                "networkset",
                network_set.namespace,
                network_set.name,
                network_set.name,
                _labels(network_set.labels),
            )
            for net in network_set.nets:
                length = net.prefixlen + (96 if net.version == 4 else 0)
                key = _ip_key(net.network_address)
                by_length.setdefault(length, {}).setdefault(key, identity)
        result = []
        for length in sorted(by_length, reverse=True):
            keys = sorted(by_length[length])
            result.append(
                (length, np.array(keys, dtype="S16"), [by_length[length][k] for k in keys])
            )
        return result

    def identify(self, keys: Any) -> list[Identity | None]:
        """The identity of each address key (None: external, nothing known)."""
        found: list[Identity | None] = [None] * len(keys)
        exact_keys, exact_ids = self._exact
        _fill(found, keys, keys, exact_keys, exact_ids)
        for length, net_keys, net_ids in self._nets:
            _fill(found, keys, _masked(keys, length), net_keys, net_ids)
        return found


def _fill(
    found: list[Identity | None], keys: Any, probes: Any, table: Any, ids: list[Identity]
) -> None:
    """Set found[i] from `ids` where probes[i] is in the sorted `table` and found[i] is unset."""
    if len(table) == 0 or len(keys) == 0:
        return
    positions = np.searchsorted(table, probes)
    clipped = np.minimum(positions, len(table) - 1)
    hits = (table[clipped] == probes) & (keys != _NO_KEY)
    for index in np.flatnonzero(hits):
        if found[index] is None:
            found[index] = ids[clipped[index]]


def enrich(table: Any, snapshots: Sequence[InventorySnapshot]) -> Any:
    """`table` with endpoint identity filled in where a side has no type yet.

    Without snapshots, untyped sides become `external`.
    """
    table = conform(table)
    if table.num_rows == 0:
        return table
    ordered = sorted(snapshots, key=lambda s: s.taken_at)
    if ordered:
        times = np.array([np.datetime64(s.taken_at.replace(tzinfo=None), "us") for s in ordered])
        starts = table.column("start_time").to_numpy().astype("datetime64[us]")
        which = np.clip(np.searchsorted(times, starts, side="right") - 1, 0, len(ordered) - 1)
    else:
        which = np.zeros(table.num_rows, dtype=np.int64)
    for side in ("source", "dest"):
        table = _enrich_side(table, side, ordered, which)
    return table


def _enrich_side(table: Any, side: str, snapshots: list[InventorySnapshot], which: Any) -> Any:
    untyped = np.asarray(pc.is_null(table.column(f"{side}_type")).to_numpy(zero_copy_only=False))
    if not untyped.any():
        return table
    encoded = pc.dictionary_encode(table.column(f"{side}_ip")).combine_chunks()
    distinct = encoded.dictionary
    codes = np.asarray(
        pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    keys = _keys(distinct) if snapshots else None  # without snapshots: all external
    # One answer table per snapshot over the distinct addresses; row -1 means external.
    identities: list[Identity] = []
    answer = np.full((max(len(snapshots), 1), len(distinct) + 1), -1, dtype=np.int64)
    for s, snapshot in enumerate(snapshots):
        for d, identity in enumerate(snapshot.identify(keys)):
            if identity is not None:
                answer[s, d] = len(identities)
                identities.append(identity)
    chosen = answer[which, codes]  # codes == -1 (null address) reads the last column: -1
    chosen = np.where(untyped, chosen, -2)  # -2: keep what the record had
    index = pa.array(np.where(chosen >= 0, chosen, len(identities)))
    known = bool((chosen >= 0).any())
    keep = None if untyped.all() else pa.array(chosen == -2)
    columns = {}
    for part in ("type", "namespace", "name", "name_aggr", "labels"):
        name = f"{side}_{part}"
        kind = FLOW_SCHEMA.field(name).type
        if known:
            values: list[Any] = [getattr(i, part) for i in identities]
            if part == "labels":
                values = [list(v) for v in values]
            filled = pa.array([*values, [] if part == "labels" else None], kind).take(index)
        else:  # no address is known: nothing to gather (VPC logs without an inventory)
            filled = _nothing(kind, len(chosen))
        if part == "type":
            filled = pc.fill_null(filled, "external")
        columns[name] = (
            filled
            if keep is None
            else pc.if_else(keep, table.column(name).combine_chunks(), filled)
        )
    for name, column in columns.items():
        table = table.set_column(
            table.schema.get_field_index(name), FLOW_SCHEMA.field(name), column
        )
    return table


def _nothing(kind: Any, rows: int) -> Any:
    """`rows` nulls of `kind`, or empty lists for a list type (labels are never null)."""
    if pa.types.is_list(kind):
        return pa.ListArray.from_arrays(
            np.zeros(rows + 1, dtype=np.int32), pa.array([], kind.value_type)
        )
    return pa.nulls(rows, kind)

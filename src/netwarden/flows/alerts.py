"""Threat-feed alerts on stored flow records: every record to or from an address a feed lists.

Two passes over the store, both batched (`FlowStore.scan_batches`): memory grows with the
batch size and the number of distinct addresses, never with the number of records.

1. only `source_ip` and `dest_ip` are read; each batch's distinct addresses are parsed and
   looked up in the feeds at once (`threatintel.match.address_columns`,
   `threatintel.check.FeedIndex.lookup`), which yields the addresses that are listed, per
   side. Nothing listed (the usual case): done.
2. the records holding a listed address are read with the columns an alert shows and
   grouped per (source, destination): found by the store (`dest_ip IN (...)`) when a few
   addresses are listed, else by one more scan filtered with Arrow's hash lookup.

A record whose destination is listed alerts `to` the indicator, one whose source is listed
`from` it (both when both are). Alerts are aggregated per (feed, indicator, direction,
source, destination): how many records and flows, first and last seen, the actions and the
deciding policies seen. The indicator is the feed's entry that holds the address (feeds keep
their minimal CIDR cover, so exactly one does).

Domain feeds need DNS names, and no importer keeps them: the flow schema has no DNS column
(the Hubble importer drops `l7.dns`). They are reported as unchecked, never silently passed.

    report = scan_alerts(open_store("flows.duckdb"), FeedStore(Path("feeds")))
    for alert in report.alerts: print(alert.feed, alert.indicator, alert.direction)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.filter import FlowFilter, InList
from netwarden.flows.store import FlowStore
from netwarden.model import FeedContent
from netwarden.threatintel.aggregate import cidr_texts
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import address_columns
from netwarden.threatintel.parse import parse_ip_texts
from netwarden.threatintel.state import FeedStore

#: Up to this many listed addresses per side, the second pass lets the store find their
#: records (`IN`, one bound parameter each: a filter the store evaluates per record); beyond,
#: it reads every record once and looks them up with Arrow.
PUSHDOWN_ADDRESSES = 16
#: Columns the second pass reads of a listed record.
_DETAIL_COLUMNS = (
    "start_time",
    "end_time",
    "source_ip",
    "dest_ip",
    "dest_port",
    "proto",
    "source_namespace",
    "source_name",
    "dest_namespace",
    "dest_name",
    "action",
    "policies_enforced",
    "num_flows",
)
#: Which end of a record a direction reads: `to` a listed destination, `from` a listed source.
SIDES = {"from": "source_ip", "to": "dest_ip"}


@dataclass(frozen=True)
class Alert:
    """Records between one source and one destination where `feed` lists one end.

    `direction` is `to` when the destination is listed, `from` when the source is.
    `policies` are the deciding hits (`<tier>|<policy>|<action>|<rule>`, as Calico writes the
    last of `policies_enforced`); `ports` are `proto/port` of the destinations."""

    feed: str
    indicator: str
    direction: str
    source_ip: str
    dest_ip: str
    source: str  # namespace/name, or "-" when the record names no endpoint
    dest: str
    actions: tuple[str, ...]
    policies: tuple[str, ...]
    ports: tuple[str, ...]
    records: int
    flows: int
    first_seen: datetime
    last_seen: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "indicator": self.indicator,
            "direction": self.direction,
            "source_ip": self.source_ip,
            "dest_ip": self.dest_ip,
            "source": self.source,
            "dest": self.dest,
            "actions": list(self.actions),
            "policies": list(self.policies),
            "ports": list(self.ports),
            "records": self.records,
            "flows": self.flows,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
        }


@dataclass(frozen=True)
class AlertReport:
    """The alerts, and what was looked at: records scanned, the IP feeds checked, the domain
    feeds that could not be (no DNS data in flow records)."""

    alerts: tuple[Alert, ...]
    records: int
    ip_feeds: tuple[str, ...]
    unchecked_domain_feeds: tuple[str, ...]
    seconds: float


@dataclass
class _Group:
    """One (source, destination) pair's listed records, summed over batches."""

    source: str
    dest: str
    first_seen: datetime
    last_seen: datetime
    records: int = 0
    flows: int = 0
    actions: set[str] = field(default_factory=set)
    policies: set[str] = field(default_factory=set)
    ports: set[str] = field(default_factory=set)


def scan_alerts(
    store: FlowStore,
    feeds: FeedStore,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 1_000_000,
) -> AlertReport:
    """Alerts for the records of `store` starting in [since, until), against the sets in
    force in the feed state directory `feeds`."""
    started = time.perf_counter()
    ip_feeds, domain_feeds = _feeds_by_content(feeds)
    index = FeedIndex.from_store(feeds)
    listed, records = _listed_addresses(store, index, since, until, batch_size)
    groups = _listed_records(store, listed, since, until, batch_size)
    indicators = _Indicators(feeds, index, set().union(*listed.values()))
    alerts: list[Alert] = []
    for direction, column in SIDES.items():
        for (source_ip, dest_ip), group in groups[column].items():
            address = source_ip if direction == "from" else dest_ip
            for feed, indicator in indicators.of(address):
                alerts.append(_alert(feed, indicator, direction, source_ip, dest_ip, group))
    alerts.sort(key=lambda a: (a.first_seen, a.feed, a.indicator, a.direction, a.source_ip))
    return AlertReport(
        tuple(alerts),
        records,
        ip_feeds,
        domain_feeds,
        time.perf_counter() - started,
    )


def _feeds_by_content(feeds: FeedStore) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ip_feeds: list[str] = []
    domain_feeds: list[str] = []
    for name in feeds.names():
        status = feeds.status(name)
        if status is None or feeds.entries(name) is None:
            continue  # never synced successfully: nothing in force
        content = status.content == FeedContent.DOMAIN_SET.value
        (domain_feeds if content else ip_feeds).append(name)
    return tuple(ip_feeds), tuple(domain_feeds)


def _listed_addresses(
    store: FlowStore,
    index: FeedIndex,
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> tuple[dict[str, set[str]], int]:
    """Pass 1: per address column, the distinct addresses some feed lists; records read."""
    listed: dict[str, set[str]] = {column: set() for column in SIDES.values()}
    # Flow records repeat their addresses, within a batch and across batches: each distinct
    # text is parsed and looked up once.
    seen: dict[str, set[str]] = {column: set() for column in SIDES.values()}
    records = 0
    columns = list(SIDES.values())
    for chunk in _chunks(store.scan_batches(None, since, until, columns, batch_size), batch_size):
        records += chunk.num_rows
        for column in columns:
            distinct = pc.unique(chunk.column(column)).drop_null().to_pylist()
            new = [text for text in distinct if text not in seen[column]]
            if new:
                seen[column].update(new)
                listed[column].update(_listed(index, pa.array(new, pa.string())))
    return listed, records


def _chunks(batches: Iterable[Any], rows: int) -> Iterator[Any]:
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


def _listed(index: FeedIndex, texts: Any) -> list[str]:
    """The texts (an Arrow string array) that are addresses some feed lists."""
    parsed = address_columns(texts)
    found: list[str] = []
    for rows, keys in ((parsed.rows4, parsed.keys4), (parsed.rows6, parsed.keys6)):
        if len(rows):
            hits = rows[np.flatnonzero(index.lookup(keys))]
            found += pc.take(texts, pa.array(hits, pa.int64())).to_pylist()
    return found


def _listed_records(
    store: FlowStore,
    listed: dict[str, set[str]],
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> dict[str, dict[tuple[str, str], _Group]]:
    """Pass 2: per address column, the records whose address there is listed, grouped per
    (source, dest). A few listed addresses are looked for by the store (`IN`, pushed down);
    more would make that filter slower than reading every record once, which is then done
    with the detail columns and Arrow's hash lookup (`is_in`)."""
    groups: dict[str, dict[tuple[str, str], _Group]] = {column: {} for column in listed}
    if not any(listed.values()):
        return groups  # the common case: one pass over two columns was all
    if max(len(addresses) for addresses in listed.values()) <= PUSHDOWN_ADDRESSES:
        for column, addresses in listed.items():
            if not addresses:
                continue
            chosen = tuple(sorted(addresses))
            where = FlowFilter(f"{column} IN (...)", InList(column, chosen, False))
            for batch in store.scan_batches(
                where, since, until, columns=_DETAIL_COLUMNS, batch_size=batch_size
            ):
                _add_batch(groups[column], batch)
        return groups
    value_sets = {
        column: pa.array(sorted(addresses), pa.string()) for column, addresses in listed.items()
    }
    for batch in store.scan_batches(
        None, since, until, columns=_DETAIL_COLUMNS, batch_size=batch_size
    ):
        for column, values in value_sets.items():
            if len(values):
                rows = pc.fill_null(pc.is_in(batch.column(column), value_set=values), False)
                if pc.any(rows).as_py():
                    _add_batch(groups[column], batch.filter(rows))
    return groups


def _add_batch(groups: dict[tuple[str, str], _Group], batch: Any) -> None:
    table = pa.Table.from_batches([batch])
    table = table.append_column("deciding", _last_hits(table.column("policies_enforced")))
    table = table.append_column("port", _ports(table))
    table = table.append_column("source", _endpoint(table, "source"))
    table = table.append_column("dest", _endpoint(table, "dest"))
    summary = table.group_by(["source_ip", "dest_ip"]).aggregate(
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
    for row in summary.to_pylist():
        key = (row["source_ip"], row["dest_ip"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(
                row["source_min"], row["dest_min"], row["start_time_min"], row["end_time_max"]
            )
        group.first_seen = min(group.first_seen, row["start_time_min"])
        group.last_seen = max(group.last_seen, row["end_time_max"])
        group.records += row["num_flows_count"]
        group.flows += row["num_flows_sum"]
        group.actions.update(a for a in row["action_distinct"] if a)
        group.policies.update(p for p in row["deciding_distinct"] if p)
        group.ports.update(p for p in row["port_distinct"] if p)


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
    namespace = pc.fill_null(table.column(f"{side}_namespace"), "-")
    name = pc.fill_null(table.column(f"{side}_name"), "-")
    joined = pc.binary_join_element_wise(namespace, name, "/")
    return pc.if_else(pc.equal(joined, "-/-"), "-", joined)


def _alert(
    feed: str, indicator: str, direction: str, source_ip: str, dest_ip: str, group: _Group
) -> Alert:
    return Alert(
        feed,
        indicator,
        direction,
        source_ip,
        dest_ip,
        group.source,
        group.dest,
        tuple(sorted(group.actions)),
        tuple(sorted(group.policies)),
        tuple(sorted(group.ports)),
        group.records,
        group.flows,
        group.first_seen,
        group.last_seen,
    )


class _Indicators:
    """Per listed address: the feeds that list it and the entry (CIDR) of each that holds
    it. Feeds keep their minimal CIDR cover, so the entries are disjoint: the one holding an
    address is the last that starts at or before it (one `searchsorted` per feed)."""

    def __init__(self, feeds: FeedStore, index: FeedIndex, addresses: Iterable[str]) -> None:
        texts = pa.array(sorted(set(addresses)), pa.string())
        parsed = address_columns(texts)
        found: dict[str, list[tuple[str, str]]] = {}
        families = ((4, parsed.rows4, parsed.keys4), (6, parsed.rows6, parsed.keys6))
        for family, rows, keys in families:
            if len(rows) == 0:
                continue
            masks = index.lookup(keys)
            for bit, feed in enumerate(index.names):
                has = np.flatnonzero(masks & np.uint64(1 << bit))
                if len(has) == 0:
                    continue
                networks, cidrs = self._entries(feeds, feed, family)
                wanted = keys[has].astype(np.uint64) if family == 4 else keys[has]
                at = np.searchsorted(networks, wanted, side="right") - 1
                listed = pc.take(texts, pa.array(rows[has], pa.int64())).to_pylist()
                for address, position in zip(listed, at.tolist(), strict=True):
                    found.setdefault(address, []).append((feed, cidrs[position]))
        self._found = found

    @staticmethod
    def _entries(feeds: FeedStore, feed: str, family: int) -> tuple[Any, list[str]]:
        """The feed's prefixes of one family, sorted by network, and their CIDR texts."""
        parsed = parse_ip_texts(feeds.entries(feed) or [])
        prefixes = parsed.v4 if family == 4 else parsed.v6
        order = np.argsort(prefixes.networks, kind="stable")
        networks = prefixes.networks[order]
        return networks, cidr_texts(family, networks, prefixes.lengths[order])

    def of(self, address: str) -> list[tuple[str, str]]:
        return self._found.get(address, [])


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def alert_rows(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """Alerts as JSON-ready dicts (what `flows alerts -o json` prints)."""
    return [alert.as_json() for alert in alerts]

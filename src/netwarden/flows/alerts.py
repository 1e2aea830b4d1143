"""Threat-feed alerts on stored flow records: every record to or from an address a feed lists,
every DNS lookup of a name a domain feed lists, and every record to or from an address such a
lookup returned.

Two passes over the store, both batched (`FlowStore.scan_batches`): memory grows with the
batch size and the number of distinct addresses and names, never with the number of records.

1. only `source_ip` and `dest_ip` are read; each batch's distinct addresses are parsed and
   looked up in the IP feeds at once (`threatintel.match.address_columns`,
   `threatintel.check.FeedIndex.lookup`). With a domain feed in force, `dns_qname` and
   `dns_answers` of the DNS records alone (the store selects them) are read too, and each
   batch's distinct names (queries and answers) looked up at once (`threatintel.match
   .dns_name_hits`). That yields the listed addresses per side, the queries of DNS records
   holding a listed name, and the addresses those records' answers returned. Nothing listed
   (the usual case): done.
2. the records holding a listed or answered address, and the DNS records of those queries,
   are read with the columns an alert shows and grouped: found by the store (`IN`) when a few
   values are looked for, else by one more scan filtered with Arrow's hash lookup.

A record whose destination is listed alerts `to` the indicator, one whose source is listed
`from` it (both when both are). Alerts are aggregated per (feed, indicator, direction,
source, destination): how many records and flows, first and last seen, the actions and the
deciding policies seen. For an IP feed the indicator is the feed's entry that holds the
address (feeds keep their minimal CIDR cover, so exactly one does).

Domain feeds match DNS names exactly, after lower-casing and dropping the trailing dot, as
Calico Enterprise does (exact terms on a DNS log's `qname`, `rrsets.name` and `rrsets.rdata`):
a subdomain of a listed name is not listed, but a CNAME answer that is (a chain through the
listed name) is. Each DNS record holding a listed name alerts with direction `dns`, per (feed,
name, client, server, query asked). The addresses among the answers of such records belong to
the listed name (answers are kept as one flat list, so every address of a matching answer
does): records to or from one of them alert `to`/`from` with the domain as the indicator.
Answers count from anywhere in the scanned window, before or after the record: the store is
what is known of what the name resolved to. A domain feed is reported unchecked when the
scanned records hold no DNS record, never silently passed.

    report = scan_alerts(open_store("flows.duckdb"), FeedStore(Path("feeds")))
    for alert in report.alerts: print(alert.feed, alert.indicator, alert.direction)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.filter import FlowFilter, InList
from netwarden.flows.store import FlowStore
from netwarden.model import FeedContent
from netwarden.threatintel.aggregate import cidr_texts
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import DomainSets, address_columns, dns_name_hits
from netwarden.threatintel.parse import parse_ip_texts
from netwarden.threatintel.state import FeedStore

#: Up to this many listed addresses per side (or DNS queries), the second pass lets the store
#: find their records (`IN`, one bound parameter each: a filter the store evaluates per
#: record); beyond, it reads every record once and looks them up with Arrow.
PUSHDOWN_ADDRESSES = 16
PUSHDOWN_NAMES = 16
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
    "source_name_aggr",
    "dest_namespace",
    "dest_name",
    "dest_name_aggr",
    "action",
    "policies_enforced",
    "num_flows",
)
_DNS_COLUMNS = ("dns_qname", "dns_answers")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Which end of a record a direction reads: `to` a listed destination, `from` a listed source.
SIDES = {"from": "source_ip", "to": "dest_ip"}
#: The key of a pair's group, and of a DNS lookup's group (per feed and listed name).
_PAIR = ("source_ip", "dest_ip")
_LOOKUP = ("feed", "indicator", "source_ip", "dest_ip", "dns_qname")


@dataclass(frozen=True)
class Alert:
    """Records between one source and one destination where `feed` lists one end, or DNS
    lookups where it lists the name asked or answered.

    `direction` is `to` when the destination is listed (or was answered for a listed domain,
    then the domain is the indicator), `from` when the source is, `dns` for DNS records whose
    query or answers hold the listed name; `query` is the name those asked (null otherwise).
    `policies` are the deciding hits (`<tier>|<policy>|<action>|<rule>`, as Calico writes the
    last of `policies_enforced`); `ports` are `proto/port` of the destinations."""

    feed: str
    indicator: str
    direction: str
    source_ip: str  # "-" when the record has none (an aggregated DNS client)
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
    query: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "indicator": self.indicator,
            "direction": self.direction,
            "query": self.query,
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
    feeds checked against `dns_records` DNS records, and those that could not be (the scanned
    records hold no DNS record)."""

    alerts: tuple[Alert, ...]
    records: int
    ip_feeds: tuple[str, ...]
    unchecked_domain_feeds: tuple[str, ...]
    seconds: float
    domain_feeds: tuple[str, ...] = ()
    dns_records: int = 0


@dataclass
class _Group:
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


@dataclass
class _DnsFindings:
    """What the DNS part of pass 1 found: the queries of DNS records holding a listed name;
    per address, the listed names whose DNS answers returned it; how many DNS records."""

    queries: set[str] = field(default_factory=set)
    answered: dict[str, set[str]] = field(default_factory=dict)
    records: int = 0


#: The DNS records (a flow record of another kind has no query name).
_DNS_RECORDS = FlowFilter.parse('dns_qname = "*"')


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
    index = FeedIndex.from_sets({name: feeds.entries(name) or [] for name in ip_feeds})
    domains = DomainSets({name: feeds.entries(name) or [] for name in domain_feeds})
    listed: dict[str, set[str]] = {column: set() for column in SIDES.values()}
    if ip_feeds:
        listed, records = _listed_addresses(store, index, since, until, batch_size)
    else:  # nothing to look addresses up in: the store counts the records
        records = store.count(None, since, until)
    dns = _DnsFindings()
    if domain_feeds:
        dns = _dns_findings(store, domains, since, until, batch_size)
    wanted = {column: addresses | set(dns.answered) for column, addresses in listed.items()}
    groups = _listed_records(store, wanted, since, until, batch_size)
    indicators = _Indicators(feeds, index, set().union(*listed.values()))
    alerts: list[Alert] = []
    for direction, column in SIDES.items():
        for (source_ip, dest_ip), group in groups[column].items():
            address = source_ip if direction == "from" else dest_ip
            for feed, indicator in indicators.of(address):
                alerts.append(_alert(feed, indicator, direction, source_ip, dest_ip, group))
            for name in sorted(dns.answered.get(address, ())):
                for feed in domains.feeds_of(name):
                    alerts.append(_alert(feed, name, direction, source_ip, dest_ip, group))
    lookups = _dns_lookups(store, domains, dns.queries, since, until, batch_size)
    for (feed, name, source_ip, dest_ip, query), group in lookups.items():
        alerts.append(_alert(feed, name, "dns", source_ip, dest_ip, group, query))
    alerts.sort(
        key=lambda a: (
            a.first_seen, a.feed, a.indicator, a.direction, a.source_ip, a.dest_ip, a.query or ""
        )
    )  # fmt: skip
    return AlertReport(
        tuple(alerts),
        records,
        ip_feeds,
        () if dns.records else domain_feeds,
        time.perf_counter() - started,
        domain_feeds if dns.records else (),
        dns.records,
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


def _dns_findings(
    store: FlowStore,
    domains: DomainSets,
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> _DnsFindings:
    """Pass 1 over the DNS records alone (the store selects them): count them, and keep
    the queries of those holding a listed name and the addresses among their answers, per
    listed name (distinct pairs only)."""
    found = _DnsFindings()
    batches = store.scan_batches(_DNS_RECORDS, since, until, _DNS_COLUMNS, batch_size)
    for chunk in _chunks(batches, batch_size):
        found.records += chunk.num_rows
        qnames = chunk.column("dns_qname").combine_chunks()
        answers = chunk.column("dns_answers").combine_chunks()
        hits = dns_name_hits(domains, qnames, answers)
        if len(hits) == 0:
            continue
        rows = np.unique(hits.rows)
        found.queries.update(pc.unique(pc.take(qnames, pa.array(rows))).to_pylist())
        matching = pc.take(answers, pa.array(rows))
        values = pc.list_flatten(matching)
        owners = rows[np.asarray(pc.list_parent_indices(matching).to_numpy(), dtype=np.int64)]
        parsed = address_columns(values)
        positions = np.concatenate([parsed.rows4, parsed.rows6])
        if len(positions) == 0:
            continue  # only CNAME targets (or an NXDOMAIN): no address to follow
        addresses = pa.table(
            {
                "row": pa.array(owners[positions]),
                "address": pc.utf8_lower(pc.take(values, pa.array(positions))),
            }
        )
        names = pa.table({"row": pa.array(hits.rows), "name": hits.names})
        pairs = names.join(addresses, "row").group_by(["name", "address"]).aggregate([])
        for name, address in zip(
            pairs.column("name").to_pylist(), pairs.column("address").to_pylist(), strict=True
        ):
            found.answered.setdefault(address, set()).add(name)
    return found


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
) -> dict[str, dict[tuple[str, ...], _Group]]:
    """Pass 2: per address column, the records whose address there is listed, grouped per
    (source, dest). A few listed addresses are looked for by the store (`IN`, pushed down);
    more would make that filter slower than reading every record once, which is then done
    with the detail columns and Arrow's hash lookup (`is_in`)."""
    groups: dict[str, dict[tuple[str, ...], _Group]] = {column: {} for column in listed}
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
                _add_batch(groups[column], pa.Table.from_batches([batch]), _PAIR)
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
                    _add_batch(groups[column], pa.Table.from_batches([batch.filter(rows)]), _PAIR)
    return groups


def _dns_lookups(
    store: FlowStore,
    domains: DomainSets,
    queries: set[str],
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> dict[tuple[str, ...], _Group]:
    """Pass 2 for DNS: the records of the queries pass 1 saw with a listed name, grouped per
    (feed, listed name, client, server, query). A record of such a query may hold no listed
    name (its answers changed): the names are looked up again, per record."""
    groups: dict[tuple[str, ...], _Group] = {}
    if not queries:
        return groups
    columns = (*_DETAIL_COLUMNS, *_DNS_COLUMNS)
    chosen = tuple(sorted(queries))
    if len(chosen) <= PUSHDOWN_NAMES:
        where = FlowFilter("dns_qname IN (...)", InList("dns_qname", chosen, False))
        batches: Iterable[Any] = store.scan_batches(where, since, until, columns, batch_size)
    else:
        value_set = pa.array(chosen, pa.string())
        batches = (
            batch.filter(pc.fill_null(pc.is_in(batch.column("dns_qname"), value_set), False))
            for batch in store.scan_batches(_DNS_RECORDS, since, until, columns, batch_size)
        )
    for batch in batches:
        hits = dns_name_hits(domains, batch.column("dns_qname"), batch.column("dns_answers"))
        if len(hits) == 0:
            continue
        listed = pc.unique(hits.names).to_pylist()
        by_feed = [(name, feed) for name in listed for feed in domains.feeds_of(name)]
        feeds_of = pa.table(
            {
                "indicator": pa.array([name for name, _ in by_feed], pa.string()),
                "feed": pa.array([feed for _, feed in by_feed], pa.string()),
            }
        )
        pairs = pa.table({"row": pa.array(hits.rows), "indicator": hits.names})
        pairs = pairs.join(feeds_of, "indicator")
        table = pa.Table.from_batches([batch]).take(pairs.column("row"))
        table = table.append_column("indicator", pairs.column("indicator"))
        table = table.append_column("feed", pairs.column("feed"))
        for column in _PAIR:  # an aggregated Calico DNS log names no client address
            at = table.schema.get_field_index(column)
            table = table.set_column(at, column, pc.fill_null(table.column(column), "-"))
        _add_batch(groups, table, _LOOKUP)
    return groups


def _add_batch(groups: dict[tuple[str, ...], _Group], table: Any, keys: tuple[str, ...]) -> None:
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
            group = groups[key] = _Group(source, dest, first, last)
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


def _alert(
    feed: str,
    indicator: str,
    direction: str,
    source_ip: str,
    dest_ip: str,
    group: _Group,
    query: str | None = None,
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
        _EPOCH + timedelta(microseconds=group.first_seen),
        _EPOCH + timedelta(microseconds=group.last_seen),
        query,
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

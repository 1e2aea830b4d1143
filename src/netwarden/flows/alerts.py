"""Threat-feed alerts on stored flow records: every record to or from an address a feed lists,
every DNS lookup of a name a domain feed lists, and every record to or from an address such a
lookup returned.

Two passes over the store, both batched: memory grows with the batch size and the number of
distinct addresses and names, never with the number of records.

1. only `source_ip` and `dest_ip` are read; each batch's distinct addresses are parsed and
   looked up in the IP feeds at once (`alerts_ip`). With a domain feed in force, `dns_qname`
   and `dns_answers` of the DNS records alone (the store selects them) are read too, and each
   batch's distinct names (queries and answers) looked up at once (`alerts_dns`). That yields
   the listed addresses per side, the queries of DNS records holding a listed name, and the
   addresses those records' answers returned. Nothing listed (the usual case): done.
2. the records holding a listed or answered address, and the DNS records of those queries,
   are read with the columns an alert shows and grouped (`alerts_groups`). The store finds
   them (`FlowStore.scan_matching`: a join with a table of the addresses or queries), so
   only those records' detail columns are read, whether one value is looked for or 50,000.

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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from netwarden.flows.alerts_dns import DnsFindings, dns_findings, dns_lookups
from netwarden.flows.alerts_groups import Group, listed_records
from netwarden.flows.alerts_ip import SIDES, Indicators, listed_addresses
from netwarden.flows.store import FlowStore
from netwarden.model import FeedContent
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import DomainSets
from netwarden.threatintel.state import FeedStore

__all__ = ["SIDES", "Alert", "AlertReport", "alert_rows", "scan_alerts"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        listed, records = listed_addresses(store, index, since, until, batch_size)
    else:  # nothing to look addresses up in: the store counts the records
        records = store.count(None, since, until)
    dns = DnsFindings()
    if domain_feeds:
        dns = dns_findings(store, domains, since, until, batch_size)
    wanted = {column: addresses | set(dns.answered) for column, addresses in listed.items()}
    groups = listed_records(store, wanted, since, until, batch_size)
    indicators = Indicators(feeds, index, set().union(*listed.values()))
    alerts: list[Alert] = []
    for direction, column in SIDES.items():
        for (source_ip, dest_ip), group in groups[column].items():
            address = source_ip if direction == "from" else dest_ip
            for feed, indicator in indicators.of(address):
                alerts.append(_alert(feed, indicator, direction, source_ip, dest_ip, group))
            for name in sorted(dns.answered.get(address, ())):
                for feed in domains.feeds_of(name):
                    alerts.append(_alert(feed, name, direction, source_ip, dest_ip, group))
    lookups = dns_lookups(store, domains, dns.queries, since, until, batch_size)
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


def _alert(
    feed: str,
    indicator: str,
    direction: str,
    source_ip: str,
    dest_ip: str,
    group: Group,
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


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def alert_rows(alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """Alerts as JSON-ready dicts (what `flows alerts -o json` prints)."""
    return [alert.as_json() for alert in alerts]

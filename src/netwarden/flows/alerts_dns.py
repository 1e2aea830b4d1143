"""The domain-feed part of threat-feed alerts: DNS records whose query or answers hold a
listed name, and the addresses those records' answers returned.

Pass 1 (`dns_findings`) reads `dns_qname` and `dns_answers` of the DNS records alone (the
store selects them) and looks each batch's distinct names up at once
(`threatintel.match.dns_name_hits`). Pass 2 (`dns_lookups`) has the store find the records
of the queries pass 1 saw with a listed name (`FlowStore.scan_matching` on `dns_qname`),
reads them with the columns an alert shows, and groups them per (feed, listed name, client,
server, query asked). The answered addresses go to the address pass
(`alerts_groups.listed_records`) with the listed ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.alerts_groups import DETAIL_COLUMNS, PAIR, Group, add_batch, chunks
from netwarden.flows.filter import FlowFilter
from netwarden.flows.store import FlowStore
from netwarden.threatintel.match import DomainSets, address_columns, dns_name_hits

DNS_COLUMNS = ("dns_qname", "dns_answers")
#: The key of a DNS lookup's group (per feed and listed name).
LOOKUP = ("feed", "indicator", "source_ip", "dest_ip", "dns_qname")
#: The DNS records (a flow record of another kind has no query name).
DNS_RECORDS = FlowFilter.parse('dns_qname = "*"')


@dataclass
class DnsFindings:
    """What the DNS part of pass 1 found: the queries of DNS records holding a listed name;
    per address, the listed names whose DNS answers returned it; how many DNS records."""

    queries: set[str] = field(default_factory=set)
    answered: dict[str, set[str]] = field(default_factory=dict)
    records: int = 0


def dns_findings(
    store: FlowStore,
    domains: DomainSets,
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> DnsFindings:
    """Pass 1 over the DNS records alone (the store selects them): count them, and keep
    the queries of those holding a listed name and the addresses among their answers, per
    listed name (distinct pairs only)."""
    found = DnsFindings()
    batches = store.scan_batches(DNS_RECORDS, since, until, DNS_COLUMNS, batch_size)
    for chunk in chunks(batches, batch_size):
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


def dns_lookups(
    store: FlowStore,
    domains: DomainSets,
    queries: set[str],
    since: datetime | None,
    until: datetime | None,
    batch_size: int,
) -> dict[tuple[str, ...], Group]:
    """Pass 2 for DNS: the records of the queries pass 1 saw with a listed name, grouped per
    (feed, listed name, client, server, query). A record of such a query may hold no listed
    name (its answers changed): the names are looked up again, per record."""
    groups: dict[tuple[str, ...], Group] = {}
    if not queries:
        return groups
    columns = (*DETAIL_COLUMNS, *DNS_COLUMNS)
    values = pa.array(sorted(queries), pa.string())
    found = store.scan_matching(columns, "dns_qname", values, None, since, until, batch_size)
    for batch in chunks(found, batch_size):
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
        table = batch.take(pairs.column("row"))
        table = table.append_column("indicator", pairs.column("indicator"))
        table = table.append_column("feed", pairs.column("feed"))
        for column in PAIR:  # an aggregated Calico DNS log names no client address
            at = table.schema.get_field_index(column)
            table = table.set_column(at, column, pc.fill_null(table.column(column), "-"))
        add_batch(groups, table, LOOKUP)
    return groups

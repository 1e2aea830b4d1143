"""Threat-feed alert throughput over a DuckDB flow store (medians over repeats).

    python benchmarks/bench_alerts.py            # 10,000,000 stored flows
    python benchmarks/bench_alerts.py --quick    # 200,000, seconds

The store holds a day of flows: pods to pods, 10% to public IPv4 addresses (about a million
distinct) and 1% to IPv6 ones; the feed (synced from a local file by `threatintel`, as
`feeds sync` does) lists 50,000 public /32s and /24s, so about 1% of the public flows alert.
Figures: `flows.alerts.scan_alerts` end to end (both passes, aggregation), in flows/s, wall
and CPU (`process_time`: the machine is shared, CPU seconds move less than wall ones).
Peer, measured in the same run: the feeds module's per-row matcher
(`threatintel.match.flow_hits`) over every batch of the same scan (lookup only, no
aggregation, no second pass).

DNS: the store also holds one DNS record per 10 flows (lookups of 100,000 names, a quarter
through a CNAME, each answered with a public address of the flows' pool); a domain feed (in
a state directory of its own) lists 1,000 of those names and CNAME targets plus 49,000
names never looked up, so about 1% of the lookups alert (as 1% of the public flows do).
Figure: `scan_alerts` with that feed alone (DNS lookups of listed names, then flows to and
from the addresses they returned), in records/s. Peer, measured in the same run: a
per-record Python loop over the same scans (each name lower-cased and looked up in a set,
the answered addresses kept in a set, then each flow's two addresses looked up), which
counts the same alerting records.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from netwarden.flows.alerts import scan_alerts
from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import FileSource, NewlineFormat
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import flow_hits
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed

T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
FEED_ENTRIES = 50_000


#: Public destinations: key k (0 <= k < POOL) is address 11.0.0.0 + (k * SPREAD) mod 200 * 2**24,
#: computed alike by DuckDB (the store) and numpy (the feed).
POOL = 1_000_003
SPREAD = 2654435761


def public_address(keys: np.ndarray) -> np.ndarray:
    """Spread keys over 11.0.0.0 - 210.255.255.255 (public, never a protected range)."""
    spread = keys.astype(np.uint64) * np.uint64(SPREAD)
    return spread % np.uint64(200 << 24) + np.uint64(11 << 24)


def dotted(values: np.ndarray) -> list[str]:
    v = values.astype(np.uint64)
    return [
        f"{a}.{b}.{c}.{d}"
        for a, b, c, d in zip(
            (v >> 24).tolist(),
            ((v >> 16) & 255).tolist(),
            ((v >> 8) & 255).tolist(),
            (v & 255).tolist(),
            strict=True,
        )
    ]


def public_address_sql(key: str) -> str:
    """SQL for `public_address` of the integer expression `key`, as dotted text."""
    public = f"(({key})::UBIGINT * {SPREAD} % {200 << 24} + {11 << 24})"
    return (
        f"(({public} >> 24)::VARCHAR || '.' || (({public} >> 16) & 255)::VARCHAR || '.' ||"
        f" (({public} >> 8) & 255)::VARCHAR || '.' || ({public} & 255)::VARCHAR)"
    )


def generate_store(path: Path, n: int) -> None:
    """`n` records written by DuckDB itself: the same public pool the feed draws from."""
    store = DuckDBFlowStore(str(path))
    dotted_sql = public_address_sql(f"(i % {POOL})")
    store.connection.execute(
        f"""INSERT INTO flows (start_time, end_time, source_ip, dest_ip, source_port, dest_port,
              proto, source_namespace, source_name, dest_namespace, dest_name, action,
              reporter, policies_enforced, num_flows)
        SELECT to_timestamp({T0} + i / 116.0), to_timestamp({T0} + i / 116.0 + 30),
               '10.244.' || (i % 251) || '.' || (i % 241),
               CASE WHEN i % 100 = 7 THEN '2001:db8:' || printf('%x', i % 65521) || '::1'
                    WHEN i % 10 = 3 THEN {dotted_sql}
                    ELSE '10.245.' || (i % 239) || '.' || (i % 233) END,
               (i % 50000 + 1024)::INTEGER, [443, 80, 5432, 53, 8443][i % 5 + 1]::INTEGER, 'tcp',
               'shop', 'web-' || (i % 97), 'shop', 'db-' || (i % 13),
               CASE WHEN i % 17 = 0 THEN 'deny' ELSE 'allow' END, 'src',
               ['0|default|shop/knp.default.web|allow|0'], 1
        FROM range({n}) t(i)"""
    )
    store.close()


def sync_feed_file(work: Path, rng: np.random.Generator) -> FeedStore:
    """A feed of public /32s and /24s drawn from the store's pool, plus IPv6 /64s."""
    sample = rng.choice(np.arange(POOL, dtype=np.uint64), FEED_ENTRIES, replace=False)
    values = public_address(sample)
    texts = [f"{t}/32" if k % 5 else f"{t.rsplit('.', 1)[0]}.0/24" for t, k in
             zip(dotted(values), sample.tolist(), strict=True)]  # fmt: skip
    texts += [f"2001:db8:{k:x}::/64" for k in range(0, 65521, 97)]
    path = work / "feed.txt"
    path.write_text("\n".join(texts) + "\n")
    feeds = FeedStore(work / "feeds")
    feed = ThreatFeed("bench", FeedContent.IP_SET, FileSource(str(path), NewlineFormat()))
    status = sync_feed(feed, feeds, SyncOptions())
    assert status.last_error is None, status.last_error
    return feeds


#: DNS: names looked up (`h<k>.example`, a quarter via `c<k>.cdn.example`), one DNS record
#: per DNS_EVERY flows; name k is answered with the pool's public address of key k.
NAMES = 100_000
DNS_EVERY = 10
LISTED_NAMES = 1_000
UNSEEN_NAMES = 49_000


def add_dns_records(path: Path, n: int) -> int:
    """`n // DNS_EVERY` DNS records, written by DuckDB like the flows."""
    store = DuckDBFlowStore(str(path))
    rows = n // DNS_EVERY
    key = f"(i * 7919 % {NAMES})"
    dotted_sql = public_address_sql(key)
    store.connection.execute(
        f"""INSERT INTO flows (start_time, end_time, source_ip, dest_ip, dest_port, proto,
              source_namespace, source_name, dest_namespace, dest_name, num_flows,
              dns_qname, dns_qtype, dns_rcode, dns_answers)
        SELECT to_timestamp({T0} + i * {DNS_EVERY} / 116.0),
               to_timestamp({T0} + i * {DNS_EVERY} / 116.0 + 1),
               '10.244.' || (i % 251) || '.' || (i % 241), '10.96.0.10', 53, 'udp',
               'shop', 'web-' || (i % 97), 'kube-system', 'coredns-0', 1,
               'h' || {key} || '.example', 'A', 'NOERROR',
               CASE WHEN {key} % 4 = 0 THEN ['c' || {key} || '.cdn.example', {dotted_sql}]
                    ELSE [{dotted_sql}] END
        FROM range({rows}) t(i)"""
    )
    store.close()
    return rows


def sync_domain_feed(work: Path, rng: np.random.Generator) -> tuple[FeedStore, set[str]]:
    """Listed: names looked up (half as `h<k>`, half as the CNAME target of a `k % 4 == 0`
    name), and names nobody looks up."""
    keys = rng.choice(np.arange(0, NAMES, 4), LISTED_NAMES // 2, replace=False).tolist()
    # No name listed twice over (as itself and as its CNAME): each lookup alerts once.
    unaliased = np.flatnonzero(np.arange(NAMES) % 4)
    others = rng.choice(unaliased, LISTED_NAMES // 2, replace=False).tolist()
    names = [f"c{k}.cdn.example" for k in keys] + [f"h{k}.example" for k in others]
    names += [f"never{k}.example" for k in range(UNSEEN_NAMES)]
    path = work / "domains.txt"
    path.write_text("\n".join(names) + "\n")
    feeds = FeedStore(work / "domain-feeds")
    feed = ThreatFeed("names", FeedContent.DOMAIN_SET, FileSource(str(path), NewlineFormat()))
    status = sync_feed(feed, feeds, SyncOptions())
    assert status.last_error is None, status.last_error
    return feeds, set(names)


def dns_peer_seconds(store: DuckDBFlowStore, listed: set[str]) -> tuple[float, float, int, int]:
    """The per-record loop: DNS records holding a listed name, then records to or from an
    address such a record's answers returned (each counted once). Wall and CPU seconds."""
    began = time.perf_counter()
    began_cpu = time.process_time()
    answered: set[str] = set()
    lookups = 0
    for batch in store.scan_batches(columns=["dns_qname", "dns_answers"]):
        for qname, answers in zip(
            batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
        ):
            if qname is None:
                continue
            names = [qname, *answers]
            if any(name.lower().rstrip(".") in listed for name in names):
                lookups += 1
                answered.update(a for a in answers if a[:1].isdigit() or ":" in a)
    flows = 0
    for batch in store.scan_batches(columns=["source_ip", "dest_ip"]):
        for source, dest in zip(
            batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
        ):
            if source in answered or dest in answered:
                flows += 1
    return time.perf_counter() - began, time.process_time() - began_cpu, lookups, flows


def run_dns(path: Path, n: int, repeats: int, rng: np.random.Generator) -> bool:
    """The DNS figure and its peer; False when they disagree."""
    began = time.perf_counter()
    rows = add_dns_records(path, n)
    feeds, listed = sync_domain_feed(path.parent, rng)
    print(f"added {rows:,} DNS records, synced {len(listed):,} names in"
          f" {time.perf_counter() - began:.1f} s")  # fmt: skip
    store = DuckDBFlowStore(str(path))
    try:
        scan_alerts(store, feeds)  # warm-up
        runs = []
        for _ in range(repeats):
            began_cpu = time.process_time()
            report = scan_alerts(store, feeds)
            runs.append((report.seconds, time.process_time() - began_cpu))
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        lookups = sum(a.records for a in report.alerts if a.direction == "dns")
        # A record between two answered addresses alerts twice (to and from): count it once.
        pairs = {(a.source_ip, a.dest_ip): a.records for a in report.alerts if a.direction != "dns"}
        flows = sum(pairs.values())
        total = n + rows
        print(
            f"dns alerts: {len(report.alerts):,} alerts ({lookups:,} lookups of listed names,"
            f" {flows:,} records to or from their addresses) from {report.dns_records:,} DNS"
            f" records and {n:,} flows; {total / wall:,.0f} records/s ({wall:.2f} s wall,"
            f" {cpu:.2f} CPU-s, median of {repeats})"
        )
        peer, peer_cpu, peer_lookups, peer_flows = dns_peer_seconds(store, listed)
    finally:
        store.close()
    print(
        f"  peer per-record Python loop: {total / peer:,.0f} records/s ({peer:.2f} s wall,"
        f" {peer_cpu:.2f} CPU-s)"
    )
    print(f"  dns ratio to peer: {peer / wall:,.1f}x wall, {peer_cpu / cpu:,.1f}x CPU")
    if (peer_lookups, peer_flows) != (lookups, flows):
        print(f"  MISMATCH: peer found {peer_lookups:,} lookups and {peer_flows:,} records")
        return False
    return True


def peer_seconds(store: DuckDBFlowStore, index: FeedIndex) -> tuple[float, float, int]:
    """The feeds module's matcher over every batch: wall and CPU seconds, hits."""
    began = time.perf_counter()
    began_cpu = time.process_time()
    hits = 0
    for batch in store.scan_batches(columns=["source_ip", "dest_ip"]):
        hits += len(
            flow_hits(
                index, batch.column("source_ip").to_pylist(), batch.column("dest_ip").to_pylist()
            )
        )
    return time.perf_counter() - began, time.process_time() - began_cpu, hits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="200,000 flows, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--stored", type=int, default=None, help="flows in the store")
    args = parser.parse_args(argv)
    n = args.stored or (200_000 if args.quick else 10_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="netwarden-bench-alerts-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        generate_store(work / "flows.duckdb", n)
        print(f"generated {n:,} stored flows in {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        feeds = sync_feed_file(work, rng)
        entries = len(feeds.entries("bench") or [])
        print(f"synced a feed of {entries:,} entries in {time.perf_counter() - began:.1f} s")
        store = DuckDBFlowStore(str(work / "flows.duckdb"))
        try:
            scan_alerts(store, feeds)  # warm-up: lazy imports and Arrow kernels
            runs = []
            for _ in range(repeats):
                began_cpu = time.process_time()
                report = scan_alerts(store, feeds)
                runs.append((report.seconds, time.process_time() - began_cpu))
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            records = sum(a.records for a in report.alerts)
            print(
                f"alerts: {len(report.alerts):,} alerts from {records:,} listed records;"
                f" {n / wall:,.0f} flows/s ({wall:.2f} s wall, {cpu:.2f} CPU-s, median of"
                f" {repeats})"
            )
            peer, peer_cpu, hits = peer_seconds(store, FeedIndex.from_store(feeds))
        finally:
            store.close()
        print(
            f"  peer flow_hits per batch: {n / peer:,.0f} flows/s ({peer:.2f} s wall,"
            f" {peer_cpu:.2f} CPU-s, {hits:,} hits)"
        )
        print(f"  ratio to peer: {peer / wall:,.1f}x wall, {peer_cpu / cpu:,.1f}x CPU")
        if hits != records:
            print(f"  MISMATCH: peer found {hits:,} listed records, alerts {records:,}")
            return 1
        if not run_dns(work / "flows.duckdb", n, repeats, rng):
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Threat-feed alerts on stored flows: feed state made by a real `threatintel` sync from local
files, records in a real DuckDB file (and in chDB), exact alerts for IPv4 and IPv6, prefix
containment, both directions, two feeds listing one address, and no false positives."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.flows.alerts import scan_alerts
from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import FileSource, NewlineFormat
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.flows.conftest import T0

FEEDS = {
    # Two /25s the sync aggregates into one /24: the alert names the entry in force.
    "blocklist": (
        FeedContent.IP_SET,
        "198.51.100.0/25\n198.51.100.128/25\n203.0.113.7\n2001:db8:bad::/48\n192.0.2.66\n",
    ),
    "c2": (FeedContent.IP_SET, "203.0.113.0/24\n2001:db8:bad:1::5\n"),
    "domains": (FeedContent.DOMAIN_SET, "evil.example\n"),
}


def synced_feeds(tmp_path: Path) -> Path:
    """Feed state as `feeds sync` leaves it, from local files."""
    state = tmp_path / "feeds"
    store = FeedStore(state)
    for name, (content, body) in FEEDS.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(body)
        status = sync_feed(
            ThreatFeed(name, content, FileSource(str(path), NewlineFormat())), store, SyncOptions()
        )
        assert status.last_error is None, status
    assert store.entries("blocklist") == [
        "192.0.2.66/32",
        "198.51.100.0/24",
        "203.0.113.7/32",
        "2001:db8:bad::/48",
    ]
    return state


def record(
    minute: int,
    src: str,
    dst: str,
    port: int,
    action: str = "allow",
    proto: str = "tcp",
    **fields: Any,
) -> dict[str, Any]:
    when = T0 + timedelta(minutes=minute)
    return {
        "start_time": when,
        "end_time": when + timedelta(seconds=20),
        "source_ip": src,
        "dest_ip": dst,
        "source_port": 40000 + minute,
        "dest_port": port,
        "proto": proto,
        "action": action,
        "reporter": "src",
        "policies_enforced": [f"0|default|shop/knp.default.web|{action}|0"],
        "num_flows": 1,
        **fields,
    }


WEB = {"source_namespace": "shop", "source_name": "web-0"}
RECORDS = [
    record(0, "10.244.1.10", "198.51.100.200", 443, **WEB),  # to a listed /24 (from two /25s)
    record(1, "10.244.1.10", "198.51.100.200", 443, "deny", num_flows=3, **WEB),
    record(2, "203.0.113.7", "10.244.1.10", 8080, "deny", dest_namespace="shop", dest_name="web-0"),
    record(3, "10.244.1.11", "2001:db8:bad::1", 53, proto="udp"),  # IPv6 inside a /48
    record(4, "2001:db8:bad:1::5", "10.244.1.11", 22, "deny"),  # listed by both feeds
    # Near misses: neighbours of every listed range, never an alert.
    record(5, "10.244.1.10", "198.51.101.0", 443),
    record(6, "10.244.1.10", "198.51.99.255", 443),
    record(7, "203.0.114.1", "10.244.1.10", 443),
    record(8, "10.244.1.10", "192.0.2.65", 443),
    record(9, "10.244.1.10", "2001:db8:bae::1", 443),
    record(10, "10.244.1.10", "2001:db8:bac:ffff:ffff:ffff:ffff:ffff", 443),
    record(11, "10.244.1.10", "not-an-address", 443),
    record(12, "10.244.1.10", None, 443),  # type: ignore[arg-type]
    record(-60, "10.244.1.12", "192.0.2.66", 443),  # an hour earlier: outside --since
]

HIT = "default|shop/knp.default.web"


def expected(with_early: bool) -> list[tuple[Any, ...]]:
    rows = [
        ("blocklist", "198.51.100.0/24", "to", "10.244.1.10", "198.51.100.200", "shop/web-0",
         "-", ("allow", "deny"), (f"{HIT}|allow|0", f"{HIT}|deny|0"), ("tcp/443",), 2, 4, 0, 1),
        ("blocklist", "203.0.113.7/32", "from", "203.0.113.7", "10.244.1.10", "-",
         "shop/web-0", ("deny",), (f"{HIT}|deny|0",), ("tcp/8080",), 1, 1, 2, 2),
        ("c2", "203.0.113.0/24", "from", "203.0.113.7", "10.244.1.10", "-", "shop/web-0",
         ("deny",), (f"{HIT}|deny|0",), ("tcp/8080",), 1, 1, 2, 2),
        ("blocklist", "2001:db8:bad::/48", "to", "10.244.1.11", "2001:db8:bad::1", "-", "-",
         ("allow",), (f"{HIT}|allow|0",), ("udp/53",), 1, 1, 3, 3),
        ("blocklist", "2001:db8:bad::/48", "from", "2001:db8:bad:1::5", "10.244.1.11", "-",
         "-", ("deny",), (f"{HIT}|deny|0",), ("tcp/22",), 1, 1, 4, 4),
        ("c2", "2001:db8:bad:1::5/128", "from", "2001:db8:bad:1::5", "10.244.1.11", "-", "-",
         ("deny",), (f"{HIT}|deny|0",), ("tcp/22",), 1, 1, 4, 4),
    ]  # fmt: skip
    if with_early:
        rows.insert(
            0,
            ("blocklist", "192.0.2.66/32", "to", "10.244.1.12", "192.0.2.66", "-", "-",
             ("allow",), (f"{HIT}|allow|0",), ("tcp/443",), 1, 1, -60, -60),
        )  # fmt: skip
    return rows


def as_rows(report: Any) -> list[tuple[Any, ...]]:
    rows = []
    for a in report.alerts:
        first = round((a.first_seen - T0).total_seconds() / 60)
        last = int((a.last_seen - T0 - timedelta(seconds=20)).total_seconds() // 60)
        rows.append(
            (a.feed, a.indicator, a.direction, a.source_ip, a.dest_ip, a.source, a.dest,
             a.actions, a.policies, a.ports, a.records, a.flows, first, last)
        )  # fmt: skip
    return rows


def test_exact_alerts_on_both_backends(store: FlowStore, tmp_path: Path) -> None:
    feeds = FeedStore(synced_feeds(tmp_path))
    assert store.append(from_records(RECORDS)) == len(RECORDS)
    report = scan_alerts(store, feeds, batch_size=4)  # several batches per pass
    assert as_rows(report) == expected(with_early=True)
    assert report.records == len(RECORDS)
    assert report.ip_feeds == ("blocklist", "c2")
    assert report.unchecked_domain_feeds == ("domains",)

    windowed = scan_alerts(store, feeds, since=T0, until=T0 + timedelta(minutes=4))
    assert as_rows(windowed) == expected(with_early=False)[:4]
    assert windowed.records == 4  # minutes 0 to 3


def test_many_listed_addresses_on_both_backends(store: FlowStore, tmp_path: Path) -> None:
    """300 listed addresses and a /24, far more than an `IN` list would hold: the store finds
    their records with a join, and every record to or from one alerts, as counted here one
    record at a time against the synced feed's entries."""
    rng = random.Random(3)
    pool = [f"198.18.{i // 200}.{i % 200}" for i in range(1000)]
    body = "".join(f"{a}\n" for a in sorted(rng.sample(pool, 300))) + "198.18.7.0/24\n"
    path = tmp_path / "many.txt"
    path.write_text(body)
    feeds = FeedStore(tmp_path / "feeds")
    source = FileSource(str(path), NewlineFormat())
    status = sync_feed(ThreatFeed("many", FeedContent.IP_SET, source), feeds, SyncOptions())
    assert status.last_error is None, status
    networks = [ipaddress.ip_network(entry) for entry in feeds.entries("many") or []]
    addresses = [*pool, *(f"198.18.7.{i}" for i in range(20)), "198.18.8.1"]
    pods = [f"10.244.1.{i}" for i in range(30)]
    records = []
    for minute in range(2000):
        pod, other = rng.choice(pods), rng.choice(addresses)
        src, dst = (other, pod) if minute % 3 == 0 else (pod, other)  # a third inbound
        records.append(record(minute, src, dst, 443, num_flows=1 + minute % 4))
    store.append(from_records(records))

    expected: dict[tuple[str, ...], list[int]] = {}
    for r in records:
        for direction, column in (("from", "source_ip"), ("to", "dest_ip")):
            address = ipaddress.ip_address(r[column])
            for network in networks:
                if address in network:
                    key = (str(network), direction, r["source_ip"], r["dest_ip"])
                    counts = expected.setdefault(key, [0, 0])
                    counts[0] += 1
                    counts[1] += r["num_flows"]
    report = scan_alerts(store, feeds, batch_size=500)
    got = {
        (a.indicator, a.direction, a.source_ip, a.dest_ip): [a.records, a.flows]
        for a in report.alerts
    }
    assert len(got) == len(report.alerts) and {a.feed for a in report.alerts} == {"many"}
    assert len(expected) > 300 and got == expected


def test_no_alert_without_listed_traffic(tmp_path: Path) -> None:
    feeds = FeedStore(synced_feeds(tmp_path))
    store = open_store(str(tmp_path / "clean.duckdb"))
    try:
        store.append(from_records(RECORDS[5:13]))
        report = scan_alerts(store, feeds)
    finally:
        store.close()
    assert report.alerts == () and report.records == 8


def test_alerts_cli(tmp_path: Path) -> None:
    state = synced_feeds(tmp_path)
    path = tmp_path / "flows.duckdb"
    store = open_store(str(path))
    store.append(from_records(RECORDS))
    store.close()
    runner = CliRunner()
    base = ["flows", "alerts", "--store", str(path), "--state-dir", str(state)]

    result = runner.invoke(app, [*base, "-o", "json", "--exit-code"])
    assert result.exit_code == 1, result.output
    shown = json.loads(result.stdout)
    assert [(a["feed"], a["indicator"], a["direction"]) for a in shown] == [
        (row[0], row[1], row[2]) for row in expected(with_early=True)
    ]
    assert shown[1]["first_seen"] == "2026-11-01T00:00:00Z"
    assert shown[1]["records"] == 2 and shown[1]["flows"] == 4
    assert "not checked: domain feed(s) domains" in result.stderr

    wide = {"COLUMNS": "300"}
    table = runner.invoke(app, [*base, "--since", "2026-11-01T00:00:00Z"], env=wide)
    assert table.exit_code == 0, table.output
    assert "198.51.100.0/24" in table.stdout and "192.0.2.66" not in table.stdout
    assert "6 alerts from 13 records against 2 IP feed(s)" in table.stdout

    quiet = runner.invoke(app, [*base, "--since", "2026-11-01T00:05:00Z", "--exit-code"])
    assert quiet.exit_code == 0, quiet.output

    empty = runner.invoke(app, [*base[:4], "--state-dir", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "no feed synced" in empty.output
    assert "Traceback" not in empty.output


@pytest.mark.parametrize("bad", ["--since", "--until"])
def test_bad_time_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    state = synced_feeds(tmp_path)
    result = CliRunner().invoke(
        app,
        ["flows", "alerts", "--store", str(tmp_path / "f.duckdb"), "--state-dir", str(state),
         bad, "yesterday-ish"],
    )  # fmt: skip
    assert result.exit_code == 2 and "expected an ISO 8601 time" in result.output

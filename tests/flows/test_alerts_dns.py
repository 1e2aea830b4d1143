"""Domain-feed alerts on stored flows: feed state from a real `threatintel` sync of local
files, DNS records imported from the Calico Enterprise DNS log sample (and built with
`from_records`), in a real DuckDB file and in chDB. Names match exactly (as Calico Enterprise
matches qname, rrsets.name and rrsets.rdata): a listed name, one reached through a CNAME, a
subdomain that is not listed, an unlisted name, flows to and from answered addresses (alerts
naming the domain) and to an unanswered one (none)."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.flows.alerts import scan_alerts
from netwarden.flows.importers import calico_dns
from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import FileSource, NewlineFormat
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.flows.conftest import FIXTURES, T0

FEEDS = {
    "blocklist": (FeedContent.IP_SET, "192.0.2.44\n"),
    "domains": (FeedContent.DOMAIN_SET, "evil.example\ntracker.bad.example\n"),
    "phishing": (FeedContent.DOMAIN_SET, "Tracker.Bad.Example.\nlogin.phish.example\n"),
}
NINE = T0 + timedelta(hours=9)  # the DNS sample's lines are from 09:00 to 09:15


def synced_feeds(tmp_path: Path, feeds: dict[str, tuple[FeedContent, str]] = FEEDS) -> Path:
    state = tmp_path / "feeds"
    store = FeedStore(state)
    for name, (content, body) in feeds.items():
        path = tmp_path / f"{name}.txt"
        path.write_text(body)
        source = FileSource(str(path), NewlineFormat())
        status = sync_feed(ThreatFeed(name, content, source), store, SyncOptions())
        assert status.last_error is None, status
    return state


def flow(minute: int, src: str, dst: str, port: int, action: str = "allow", **fields: Any) -> Any:
    when = NINE + timedelta(minutes=minute)
    return {
        "start_time": when,
        "end_time": when + timedelta(seconds=10),
        "source_ip": src,
        "dest_ip": dst,
        "dest_port": port,
        "proto": "tcp",
        "action": action,
        "reporter": "src",
        "policies_enforced": [f"0|default|shop/knp.default.web|{action}|0"],
        "num_flows": 1,
        **fields,
    }


WEB = {"source_namespace": "shop", "source_name": "web-0"}
FLOWS = [
    flow(20, "10.244.1.10", "203.0.113.66", 443, **WEB),  # answered for evil.example
    flow(21, "10.244.2.20", "192.0.2.44", 443, "deny"),  # via a CNAME; also an IP feed's
    flow(22, "203.0.113.67", "10.244.1.10", 51000, dest_namespace="shop", dest_name="web-0"),
    flow(23, "10.244.1.10", "2001:db8:e71::1", 443, **WEB),  # an AAAA answer
    flow(24, "10.244.1.10", "198.51.100.10", 443, **WEB),  # answered for an unlisted name
    flow(25, "10.244.1.10", "203.0.113.99", 443, **WEB),  # next to answers, never answered
    flow(26, "10.244.1.10", "203.0.113.66", 443, **WEB),  # the first pair again
]

CORE = "kube-system/coredns-5d78c9869d-8tq4z"
WEB_POD = "shop/web-7d9f8b6c5d-x2x9q"
HIT = "default|shop/knp.default.web"
# feed, indicator, direction, query, source ip, dest ip, source, dest, actions, policies,
# ports, records, flows, minute first seen
EXPECTED = [
    ("domains", "evil.example", "dns", "evil.example", "-", "10.244.0.5",
     "shop/web-7d9f8b6c5d-*", CORE, (), (), ("udp/53",), 1, 2, 0),
    ("domains", "tracker.bad.example", "dns", "img.partner.example", "10.244.2.20",
     "10.244.0.5", "shop/api-6c8d7f9b4-q7w2e", CORE, (), (), ("udp/53",), 1, 1, 0),
    ("phishing", "tracker.bad.example", "dns", "img.partner.example", "10.244.2.20",
     "10.244.0.5", "shop/api-6c8d7f9b4-q7w2e", CORE, (), (), ("udp/53",), 1, 1, 0),
    ("domains", "evil.example", "dns", "evil.example", "fd00:10:244:1::a", "fd00:10:96::a",
     WEB_POD, CORE, (), (), ("udp/53",), 1, 1, 5),
    ("domains", "evil.example", "dns", "files.evil.example", "10.244.4.9", "10.0.0.2",
     "jobs/batch-28391-abcde", "-/pvt", (), (), ("udp/53",), 1, 2, 10),
    ("domains", "evil.example", "to", None, "10.244.1.10", "203.0.113.66", "shop/web-0", "-",
     ("allow",), (f"{HIT}|allow|0",), ("tcp/443",), 2, 2, 20),
    ("blocklist", "192.0.2.44/32", "to", None, "10.244.2.20", "192.0.2.44", "-", "-",
     ("deny",), (f"{HIT}|deny|0",), ("tcp/443",), 1, 1, 21),
    ("domains", "tracker.bad.example", "to", None, "10.244.2.20", "192.0.2.44", "-", "-",
     ("deny",), (f"{HIT}|deny|0",), ("tcp/443",), 1, 1, 21),
    ("phishing", "tracker.bad.example", "to", None, "10.244.2.20", "192.0.2.44", "-", "-",
     ("deny",), (f"{HIT}|deny|0",), ("tcp/443",), 1, 1, 21),
    ("domains", "evil.example", "from", None, "203.0.113.67", "10.244.1.10", "-", "shop/web-0",
     ("allow",), (f"{HIT}|allow|0",), ("tcp/51000",), 1, 1, 22),
    ("domains", "evil.example", "to", None, "10.244.1.10", "2001:db8:e71::1", "shop/web-0",
     "-", ("allow",), (f"{HIT}|allow|0",), ("tcp/443",), 1, 1, 23),
]  # fmt: skip


def as_rows(report: Any) -> list[tuple[Any, ...]]:
    return [
        (a.feed, a.indicator, a.direction, a.query, a.source_ip, a.dest_ip, a.source, a.dest,
         a.actions, a.policies, a.ports, a.records, a.flows,
         int((a.first_seen - NINE).total_seconds() // 60))
        for a in report.alerts
    ]  # fmt: skip


def dns_sample() -> Any:
    result = calico_dns.read(str(FIXTURES / "calico-dns.log"))
    assert result.stored == 9
    return result.table


def test_dns_lookups_and_answered_addresses_alert(store: FlowStore, tmp_path: Path) -> None:
    feeds = FeedStore(synced_feeds(tmp_path))
    store.append(dns_sample())
    store.append(from_records(FLOWS))
    report = scan_alerts(store, feeds, batch_size=3)  # several batches per pass
    assert as_rows(report) == EXPECTED
    assert report.records == 9 + len(FLOWS) and report.dns_records == 9
    assert report.ip_feeds == ("blocklist",)
    assert report.domain_feeds == ("domains", "phishing")
    assert report.unchecked_domain_feeds == ()

    # The window holds the flows but not the DNS records: nothing answered, nothing checked.
    late = scan_alerts(store, feeds, since=NINE + timedelta(minutes=20))
    assert [(a.feed, a.indicator) for a in late.alerts] == [("blocklist", "192.0.2.44/32")]
    assert late.dns_records == 0 and late.unchecked_domain_feeds == ("domains", "phishing")


def test_names_are_compared_lower_case_without_trailing_dot(tmp_path: Path) -> None:
    """Records from another source (not normalized by an importer): the same exact matching.
    A subdomain of a listed name and a name that merely ends like it are not listed."""
    feeds = FeedStore(synced_feeds(tmp_path))
    lookups = [
        flow(0, "10.244.1.10", "10.96.0.10", 53, dns_qname="Login.Phish.Example.",
             dns_answers=["192.0.2.200"]),
        flow(1, "10.244.1.10", "10.96.0.10", 53, dns_qname="www.login.phish.example",
             dns_answers=["192.0.2.201"]),  # a subdomain: not listed
        flow(2, "10.244.1.10", "10.96.0.10", 53, dns_qname="notevil.example",
             dns_answers=["192.0.2.202"]),
        flow(3, "10.244.1.10", "10.96.0.10", 53, dns_qname="cdn.shop.example",
             dns_answers=["edge.cdn.example", "EVIL.EXAMPLE.", "192.0.2.203"]),  # via CNAME
        flow(4, "10.244.1.10", "10.96.0.10", 53, dns_qname="nx.evil.example",
             dns_rcode="NXDOMAIN"),  # asked, nothing answered: a subdomain, not listed
    ]  # fmt: skip
    later = [flow(10 + i, "10.244.1.10", f"192.0.2.{200 + i}", 443) for i in range(4)]
    store = open_store(str(tmp_path / "mixed.duckdb"))
    try:
        store.append(from_records(lookups + later))
        report = scan_alerts(store, feeds)
    finally:
        store.close()
    assert [(a.feed, a.indicator, a.direction, a.query, a.dest_ip) for a in report.alerts] == [
        ("phishing", "login.phish.example", "dns", "Login.Phish.Example.", "10.96.0.10"),
        ("domains", "evil.example", "dns", "cdn.shop.example", "10.96.0.10"),
        ("phishing", "login.phish.example", "to", None, "192.0.2.200"),
        ("domains", "evil.example", "to", None, "192.0.2.203"),
    ]
    assert report.dns_records == 5


def test_many_listed_names_on_both_backends(store: FlowStore, tmp_path: Path) -> None:
    """120 listed names (some reached through a CNAME) and the addresses they were answered
    with, far more than an `IN` list would hold: the store finds the lookups and the records
    to and from those addresses with a join, and the alerts are those counted here one
    record at a time."""
    rng = random.Random(4)
    names = [f"h{k}.example" for k in range(400)]
    listed = set(rng.sample(names, 120))
    feeds = FeedStore(
        synced_feeds(
            tmp_path,
            {
                "many": (FeedContent.DOMAIN_SET, "".join(f"{n.upper()}.\n" for n in listed)),
                "ips": (FeedContent.IP_SET, "192.0.2.1\n"),  # its own pass, no record
            },
        )
    )

    def answer(k: int) -> str:
        return f"198.18.{k // 250}.{k % 250}"

    records = []
    for i in range(600):  # lookups, every fifth through a CNAME to the name that answers
        k = rng.randrange(len(names))
        qname, answers = names[k], [answer(k)]
        if i % 5 == 0:
            qname, answers = f"alias{k}.example", [names[k], answer(k)]
        client = f"10.244.1.{i % 7}"
        records.append(
            flow(0, client, "10.96.0.10", 53, dns_qname=qname, dns_answers=answers, num_flows=2)
        )
    for i in range(900):  # flows out to answered addresses, a third of them inbound
        pod, other = f"10.244.2.{i % 9}", answer(rng.randrange(len(names) + 50))
        src, dst = (other, pod) if i % 3 == 0 else (pod, other)
        records.append(flow(1 + i % 30, src, dst, 443))
    store.append(from_records(records))

    expected: dict[tuple[Any, ...], list[int]] = {}

    def count(key: tuple[Any, ...], r: dict[str, Any]) -> None:
        counts = expected.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += r["num_flows"]

    answered: dict[str, set[str]] = {}
    for r in records:
        hits = {n for n in (r.get("dns_qname"), *r.get("dns_answers", ())) if n in listed}
        for name in hits:
            count(("many", name, "dns", r["source_ip"], r["dest_ip"], r["dns_qname"]), r)
            for address in r["dns_answers"]:
                if address[0].isdigit():
                    answered.setdefault(address, set()).add(name)
    for r in records:
        for direction, column in (("from", "source_ip"), ("to", "dest_ip")):
            for name in answered.get(r[column], ()):
                count(("many", name, direction, r["source_ip"], r["dest_ip"], None), r)

    report = scan_alerts(store, feeds, batch_size=256)
    got = {
        (a.feed, a.indicator, a.direction, a.source_ip, a.dest_ip, a.query): [a.records, a.flows]
        for a in report.alerts
    }
    assert len(got) == len(report.alerts) and report.dns_records == 600
    assert len({key[1] for key in expected}) > 80 and len(expected) > 300
    assert got == expected


def test_no_dns_records_is_said(tmp_path: Path) -> None:
    feeds = FeedStore(synced_feeds(tmp_path))
    store = open_store(str(tmp_path / "flows-only.duckdb"))
    try:
        store.append(from_records(FLOWS))
        report = scan_alerts(store, feeds)
    finally:
        store.close()
    assert [(a.feed, a.direction) for a in report.alerts] == [("blocklist", "to")]
    assert report.unchecked_domain_feeds == ("domains", "phishing")
    assert report.domain_feeds == () and report.dns_records == 0


def test_alerts_cli_with_dns_logs(tmp_path: Path) -> None:
    state = synced_feeds(tmp_path)
    path = tmp_path / "flows.duckdb"
    runner = CliRunner()
    imported = runner.invoke(
        app,
        ["flows", "import", "--store", str(path), "--format", "calico-dns",
         str(FIXTURES / "calico-dns.log")],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    store = open_store(str(path))
    store.append(from_records(FLOWS))
    store.close()
    base = ["flows", "alerts", "--store", str(path), "--state-dir", str(state)]

    shown = runner.invoke(app, [*base, "-o", "json", "--exit-code"])
    assert shown.exit_code == 1, shown.output
    rows = json.loads(shown.stdout)
    assert [(r["feed"], r["indicator"], r["direction"], r["query"]) for r in rows] == [
        (row[0], row[1], row[2], row[3]) for row in EXPECTED
    ]
    assert rows[0]["source_ip"] == "-" and rows[0]["flows"] == 2
    assert "not checked" not in shown.stderr

    table = runner.invoke(app, base, env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "query img.partner.example" in table.stdout and "tracker.bad.example" in table.stdout
    assert "11 alerts from 16 records against 1 IP feed(s) and 2 domain feed(s)" in table.stdout
    assert "(9 DNS records)" in table.stdout

    late = runner.invoke(app, [*base, "--since", "2026-11-01T09:30:00Z", "--exit-code"])
    assert late.exit_code == 0, late.output
    assert "not checked: domain feed(s) domains, phishing (no DNS record" in late.stderr
    assert "Traceback" not in late.output

"""The Calico Enterprise DNS log importer on a hand-written sample of Felix's dns.log (RFC 3339
times, label objects) with Elasticsearch-style lines (Unix seconds, label lists) and malformed
lines: every line is stored or rejected with its number, the DNS columns are normalized."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.errors import InputError
from netwarden.flows.importers import calico_dns, importer
from netwarden.flows.schema import FLOW_SCHEMA
from netwarden.flows.store import open_store
from tests.flows.conftest import FIXTURES

SAMPLE = FIXTURES / "calico-dns.log"


def test_sample_records_and_rejections() -> None:
    result = calico_dns.read(str(SAMPLE))
    assert result.table.schema == FLOW_SCHEMA
    assert (result.records_in, result.stored) == (15, 9)  # line 6 is blank: not a record
    assert [(r.line, r.reason.split(":")[0]) for r in result.rejected] == [
        (10, "type unlogged"),
        (11, "not a valid record"),
        (12, "qname"),
        (13, "start_time"),
        (14, "count"),
        (15, "rrsets"),
    ]
    assert "DNSLogsFilePerNodeLimit" in result.rejected[0].reason
    www, evil, chain, sub, aaaa, idn, mx, epoch, via_cname = result.table.to_pylist()

    assert www["start_time"] == datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)  # ns cut
    assert (www["source_ip"], www["source_name"], www["source_namespace"]) == (
        "10.244.1.10",
        "web-7d9f8b6c5d-x2x9q",
        "shop",
    )
    assert www["source_labels"] == ["app=web", "pod-template-hash=7d9f8b6c5d"]  # sorted
    assert (www["dest_ip"], www["dest_port"], www["proto"]) == ("10.244.0.5", 53, "udp")
    assert (www["dest_type"], www["dest_namespace"], www["dest_name_aggr"]) == (
        "workload",
        "kube-system",
        "coredns-5d78c9869d-*",
    )
    assert www["num_flows"] == 4  # count
    assert (www["dns_qname"], www["dns_qtype"], www["dns_rcode"]) == (
        "www.shop.example",
        "A",
        "NOERROR",
    )
    assert www["dns_answers"] == ["shop.cdn.example", "198.51.100.10", "198.51.100.11"]

    # An aggregated client: no address, no name, the name prefix; qname lower-cased.
    assert evil["source_ip"] is None and evil["source_name"] is None
    assert evil["source_name_aggr"] == "web-7d9f8b6c5d-*" and evil["dns_qname"] == "evil.example"
    # A CNAME target is lower-cased and loses its trailing dot.
    assert chain["dns_answers"] == ["tracker.bad.example", "192.0.2.44"]
    assert (sub["dns_rcode"], sub["dns_answers"]) == ("NXDOMAIN", [])
    assert aaaa["dns_qtype"] == "AAAA" and aaaa["dns_answers"] == ["2001:db8:e71::1"]
    assert aaaa["source_ip"] == "fd00:10:244:1::a"
    assert idn["dns_qname"] == "xn--bcher-kva.example"  # Felix writes U-labels
    # MX and unknown-type (numeric) rrsets are not addresses nor CNAME targets.
    assert mx["dns_answers"] == [] and mx["dns_qtype"] == "MX"
    assert (mx["dest_ip"], mx["dest_type"], mx["dest_name"], mx["dest_name_aggr"]) == (
        "8.8.8.8",
        "external",
        None,
        "pub",
    )
    # Elasticsearch style: Unix seconds, labels as a list, an upper-case type.
    assert epoch["start_time"] == datetime(2026, 11, 1, 9, 5, tzinfo=UTC)
    assert epoch["end_time"] == datetime(2026, 11, 1, 9, 10, tzinfo=UTC)
    assert epoch["source_labels"] == ["app=api", "team=payments"]
    assert epoch["dns_qname"] == "db.shop.svc.cluster.local"  # trailing dot dropped
    assert via_cname["dest_type"] == "external" and via_cname["dest_name_aggr"] == "pvt"
    assert via_cname["dns_answers"] == ["evil.example", "203.0.113.66"]
    assert via_cname["source_labels"] == []


def test_registered_and_imported_by_the_cli(tmp_path: Path) -> None:
    assert importer("calico-dns").read(str(SAMPLE)).stored == 9
    store = tmp_path / "flows.duckdb"
    result = CliRunner().invoke(
        app, ["flows", "import", "--store", str(store), "--format", "calico-dns", str(SAMPLE)]
    )
    assert result.exit_code == 0, result.output
    assert f"{SAMPLE}:10: rejected: type unlogged" in result.stderr
    assert f"{SAMPLE}:11: rejected: not a valid record: not JSON" in result.stderr
    opened = open_store(str(store))
    try:
        assert opened.count() == 9
        rows = opened.scan(columns=["dns_qname", "num_flows"]).to_pylist()
    finally:
        opened.close()
    assert sum(r["num_flows"] for r in rows) == 4 + 2 + 1 + 3 + 1 + 1 + 1 + 6 + 2

    queried = CliRunner().invoke(
        app,
        ["flows", "query", "--store", str(store), 'dns_answers = "203.0.113.66"', "-o", "json"],
    )
    assert queried.exit_code == 0, queried.output
    names = sorted(r["dns_qname"] for r in json.loads(queried.stdout))
    assert names == ["evil.example", "files.evil.example"]


def test_a_bad_line_deep_in_a_large_file_is_located(tmp_path: Path) -> None:
    line = SAMPLE.read_text().splitlines()[0]
    lines = [line] * 20_000
    lines[12_345] = line[:-30]  # truncated mid-record
    lines[17_000] = line.replace('"web-7d9f8b6c5d-x2x9q"', '"web-\xff"', 1)
    path = tmp_path / "big.log"
    path.write_bytes("\n".join(lines).encode().replace("\xff".encode(), b"\xff"))  # no newline
    result = calico_dns.read(str(path))
    assert [(r.line, r.reason) for r in result.rejected] == [
        (12_346, "not a valid record: not JSON"),
        (17_001, "not UTF-8 text"),
    ]
    assert result.stored == 19_998
    assert result.table.column("num_flows").to_pylist()[-1] == 4  # the last line, unended


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("\n\n")
    result = calico_dns.read(str(empty))
    assert (result.records_in, result.stored, result.rejected) == (0, 0, ())
    with pytest.raises(InputError, match="no such file"):
        calico_dns.read(str(tmp_path / "missing.log"))

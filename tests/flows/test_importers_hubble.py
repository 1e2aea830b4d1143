"""The Hubble importer: DNS seen by Cilium's DNS proxy (`l7.dns`), and the two ways a file is
read (one DuckDB pass over a clean file; pyarrow's bisecting reader when a line is not JSON)
giving the same records and the same rejections, each with its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from netwarden.flows.importers import hubble
from netwarden.flows.schema import FLOW_SCHEMA
from tests.flows.conftest import FIXTURES

SAMPLE = FIXTURES / "hubble-observe.json"
#: Sample lines that are not valid JSON for the fields read (a truncated line, a port as
#: text): with them the file takes the bisecting path, without them the single pass.
NOT_JSON_RECORDS = (10, 13)


def _flow_line(time: str = "2026-11-27T09:40:12Z", **flow: Any) -> str:
    base = {
        "time": time,
        "verdict": "FORWARDED",
        "IP": {"source": "10.244.1.12", "destination": "10.244.0.5"},
        "l4": {"UDP": {"source_port": 45123, "destination_port": 53}},
        "source": {"namespace": "shop", "labels": ["k8s:app=web"], "pod_name": "web-0"},
        "destination": {"namespace": "kube-system", "pod_name": "coredns-0"},
        "Type": "L7",
        "traffic_direction": "EGRESS",
    }
    return json.dumps({"flow": base | flow, "node_name": "kind-worker", "time": time})


def test_dns_request_answer_and_nxdomain_from_the_sample() -> None:
    result = hubble.read(str(SAMPLE))
    request, answer, nxdomain = result.table.to_pylist()[-3:]
    assert request["dns_qname"] == "api.payments.example.com"  # lower case, no trailing dot
    assert (request["dns_qtype"], request["dns_rcode"], request["dns_answers"]) == ("A", None, [])
    assert (request["source_name_aggr"], request["dest_name_aggr"]) == ("web", "coredns")
    assert (request["proto"], request["dest_port"]) == ("udp", 53)
    assert answer["dns_qname"] == "api.payments.example.com"
    assert answer["dns_rcode"] == "NOERROR"  # protojson leaves the zero rcode out
    assert answer["dns_answers"] == ["203.0.113.10", "203.0.113.11", "edge.payments.example.net"]
    assert (answer["source_name_aggr"], answer["source_port"]) == ("coredns", 53)
    assert nxdomain["dns_qname"] == "qx7rk2vd9t.example-c2.net"
    assert (nxdomain["dns_qtype"], nxdomain["dns_rcode"]) == ("AAAA", "NXDOMAIN")
    assert nxdomain["dns_answers"] == []
    for other in result.table.to_pylist()[:-3]:  # flows without l7.dns have no DNS columns
        assert (other["dns_qname"], other["dns_rcode"], other["dns_answers"]) == (None, None, [])


@pytest.mark.parametrize(
    ("l7", "expected"),
    [
        ({"type": "RESPONSE", "dns": {"query": "a.example.", "rcode": 2}}, "SERVFAIL"),
        ({"type": "RESPONSE", "dns": {"query": "a.example.", "rcode": 5}}, "REFUSED"),
        ({"type": "RESPONSE", "dns": {"query": "a.example.", "rcode": 23}}, "BADCOOKIE"),
        ({"type": "RESPONSE", "dns": {"query": "a.example.", "rcode": 14}}, "14"),  # unassigned
        ({"type": "RESPONSE", "dns": {"query": "a.example."}}, "NOERROR"),
        ({"type": "REQUEST", "dns": {"query": "a.example."}}, None),
        ({"type": "REQUEST", "http": {"method": "GET"}}, None),  # L7 but not DNS
    ],
)
def test_rcode_names(tmp_path: Path, l7: dict[str, Any], expected: str | None) -> None:
    path = tmp_path / "dns.json"
    path.write_text(_flow_line(l7=l7) + "\n")
    (record,) = hubble.read(str(path)).table.to_pylist()
    assert record["dns_rcode"] == expected
    assert record["dns_qname"] == ("a.example" if "dns" in l7 else None)


def test_clean_file_and_bisected_file_give_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = SAMPLE.read_text().splitlines(keepends=True)
    clean = [line for number, line in enumerate(lines, 1) if number not in NOT_JSON_RECORDS]
    one_pass = tmp_path / "clean.json"
    one_pass.write_text("".join(clean))
    bisected = tmp_path / "with-a-bad-line.json"
    bisected.write_text("".join([*clean, "{not json\n"]))

    with monkeypatch.context() as patch:  # the clean file never reaches the bisecting reader
        patch.setattr(hubble, "read_json_lines", None)
        first = hubble.read(str(one_pass))
    second = hubble.read(str(bisected))
    assert first.table.schema == FLOW_SCHEMA
    assert first.table.equals(second.table)
    assert (first.records_in, first.stored) == (14, 10)
    # The blank line 8 is no record; lines 9-12 fail a check; numbering survives both paths.
    assert [(r.line, r.reason) for r in first.rejected] == [
        (9, "no flow object (not a flow event)"),
        (10, "time: missing or not RFC 3339"),
        (11, "verdict: missing or unknown"),
        (12, "IP: missing source or destination"),
    ]
    assert second.rejected[:4] == first.rejected
    assert second.rejected[4].line == 16 and "not a valid record" in second.rejected[4].reason


def test_a_time_shaped_like_rfc3339_that_is_no_date_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "times.json"
    path.write_text(
        _flow_line("2026-13-40T09:40:12Z")
        + "\n\n"
        + _flow_line("2026-11-27T09:40:12.123456789+01:00")
        + "\n"
    )
    result = hubble.read(str(path))
    assert [(r.line, r.reason) for r in result.rejected] == [(1, "time: missing or not RFC 3339")]
    (kept,) = result.table.to_pylist()
    assert kept["start_time"].isoformat() == "2026-11-27T08:40:12.123456+00:00"  # truncated


def test_a_bad_line_deep_in_a_large_file_is_located(tmp_path: Path) -> None:
    good = _flow_line()
    lines = [good] * 20_000
    lines[12_345] = good[:-30]  # truncated mid-record
    path = tmp_path / "big.json"
    path.write_text("\n".join(lines) + "\n")
    result = hubble.read(str(path))
    assert (result.records_in, result.stored) == (20_000, 19_999)
    assert [r.line for r in result.rejected] == [12_346]


def test_empty_and_blank_files_hold_no_records(tmp_path: Path) -> None:
    for text in ("", "\n\n  \n"):
        path = tmp_path / "empty.json"
        path.write_text(text)
        result = hubble.read(str(path))
        assert (result.records_in, result.stored, result.rejected) == (0, 0, ())

"""Importers on hand-written samples of each published format, malformed lines included:
every record is stored or rejected with its line, never lost."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netwarden.errors import InputError, UsageError
from netwarden.flows.importers import ImportResult, calico, hubble, importer, vpc
from netwarden.flows.schema import FLOW_SCHEMA
from tests.flows.conftest import FIXTURES


def _check_counts(result: ImportResult) -> None:
    assert result.records_in == result.stored + len(result.rejected)
    assert result.table.schema == FLOW_SCHEMA


def test_calico_flow_logs() -> None:
    result = calico.read(str(FIXTURES / "calico-flows.log"))
    _check_counts(result)
    assert (result.records_in, result.stored) == (10, 6)
    assert [r.line for r in result.rejected] == [7, 8, 9, 11]
    assert "action" in result.rejected[1].reason and "dest_port" in result.rejected[3].reason
    first, second, denied, dns, host, external = result.table.to_pylist()
    assert first["source_labels"] == ["app=web", "pod-template-hash=7d9f8b6c5d"]  # sorted
    assert first["policies_enforced"] == ["0|default|shop/knp.default.allow-db|allow|0"]
    assert second["policies_pending"] == ["0|security|security.staged:lockdown|deny|-1"]
    assert (first["bytes_in"], first["packets_out"], first["num_flows_started"]) == (18230, 38, 2)
    assert denied["source_type"] == "external" and denied["source_namespace"] is None
    assert denied["policies_enforced"] == [
        "0|security|pci/security.pci-isolation|deny|1"
    ]  # all_policies
    assert (
        dns["proto"] == "udp" and dns["dest_name"] is None and dns["dest_name_aggr"] == "kube-dns-*"
    )
    assert host["source_type"] == "host" and host["proto"] == "tcp"  # "6" -> tcp
    assert external["dest_type"] == "external" and external["dest_labels"] == []
    assert first["start_time"].isoformat() == "2025-11-27T09:40:00+00:00"


def test_hubble_observe_json() -> None:
    result = hubble.read(str(FIXTURES / "hubble-observe.json"))
    _check_counts(result)
    assert (result.records_in, result.stored) == (16, 10)
    assert [r.line for r in result.rejected] == [9, 10, 11, 12, 13, 14]
    egress, ingress, dropped, dns, icmp, world, sctp = result.table.to_pylist()[:7]
    assert (egress["source_name"], egress["source_name_aggr"]) == ("web-7d9f8b6c5d-x2x9q", "web")
    assert egress["source_labels"] == ["app=web", "pod-template-hash=7d9f8b6c5d"]
    assert egress["reporter"] == "src" and ingress["reporter"] == "dst"
    assert egress["policies_enforced"] == ["0|default|shop/knp.default.allow-db|allow|0"]
    assert egress["num_flows_started"] == 1 and world["num_flows_started"] == 0  # SYN-ACK
    assert egress["start_time"].microsecond == 123456
    assert dropped["action"] == "deny" and dropped["policies_enforced"] == [
        "0|default|pci/pci-isolation|deny|0"
    ]
    assert dns["proto"] == "udp" and dns["dest_port"] == 53 and dns["dest_name_aggr"] == "coredns"
    assert icmp["proto"] == "icmp" and icmp["dest_port"] is None and icmp["source_type"] == "host"
    assert world["dest_type"] == "external"
    assert sctp["proto"] == "sctp" and sctp["source_ip"] == "fd00:10:244:1::c"


def test_vpc_default_v2_text_with_nodata_and_skipdata() -> None:
    result = vpc.read(str(FIXTURES / "vpc-default-v2.log"))
    _check_counts(result)
    assert (result.records_in, result.stored) == (11, 5)
    reasons = {r.line: r.reason for r in result.rejected}
    assert "NODATA" in reasons[7] and "SKIPDATA" in reasons[8]
    assert reasons[10] == "13 fields, the log format has 14"
    assert "srcport" in reasons[11] and "action" in reasons[12] and "dstport" in reasons[13]
    rows = result.table.to_pylist()
    assert (
        rows[0]["bytes_out"] == 4249
        and rows[0]["packets_out"] == 20
        and rows[0]["action"] == "allow"
    )
    assert rows[2]["action"] == "deny" and rows[2]["dest_port"] == 22
    assert rows[4]["proto"] == "icmp" and rows[4]["dest_port"] is None


def test_vpc_custom_v5_format_prefers_packet_addresses() -> None:
    result = vpc.read(str(FIXTURES / "vpc-custom-v5.log"))
    _check_counts(result)
    assert [r.line for r in result.rejected] == [6]
    egress, ingress, v6, _dynamodb = result.table.to_pylist()
    assert egress["reporter"] == "src" and egress["host"] == "i-0abc123def4567890"
    assert ingress["reporter"] == "dst" and ingress["source_ip"] == "192.0.2.44"  # pkt-srcaddr
    assert v6["host"] == "eni-0a1b2c3d4e5f60009" and v6["dest_ip"] == "2001:db8:2::20"


def test_vpc_headerless_text_with_an_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "cloudwatch.log"
    path.write_text(
        "i-0abc 10.0.1.15 10.0.2.20 49152 443 6 1764236400 1764236460 ACCEPT egress\n"
        "i-0abc 10.0.2.20 10.0.1.15 443 49152 6 1764236400 1764236460 REJECT ingress\n"
    )
    fmt = "${instance-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${start} ${end} ${action} ${flow-direction}"
    result = importer("vpc").read(str(path), vpc_format=fmt)
    assert result.stored == 2
    assert result.table.column("reporter").to_pylist() == ["src", "dst"]
    assert result.table.column("bytes_out").to_pylist() == [0, 0]


def test_vpc_parquet(tmp_path: Path) -> None:
    path = tmp_path / "vpc.parquet"
    pq.write_table(
        pa.table(
            {
                "version": pa.array([5, 5, 5], pa.int32()),
                "account_id": ["123456789012"] * 3,
                "interface_id": ["eni-1", "eni-1", "eni-2"],
                "srcaddr": ["10.0.1.15", "10.0.2.20", None],
                "dstaddr": ["10.0.2.20", "10.0.1.15", None],
                "srcport": pa.array([49152, 443, None], pa.int32()),
                "dstport": pa.array([443, 49152, None], pa.int32()),
                "protocol": pa.array([6, 6, None], pa.int32()),
                "packets": pa.array([20, 18, None], pa.int64()),
                "bytes": pa.array([4249, 15210, None], pa.int64()),
                "start": pa.array([1764236400] * 3, pa.int64()),
                "end": pa.array([1764236460] * 3, pa.int64()),
                "action": ["ACCEPT", "ACCEPT", None],
                "log_status": ["OK", "OK", "NODATA"],
                "flow_direction": ["egress", "ingress", None],
            }
        ),
        path,
    )
    result = vpc.read(str(path))
    _check_counts(result)
    assert (
        result.stored == 2
        and result.rejected[0].line == 3
        and "NODATA" in result.rejected[0].reason
    )
    assert result.table.column("bytes_out").to_pylist() == [4249, 15210]


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("${version} ${bogus}", "unknown field"),
        ("version srcaddr", "expected"),
        ("${srcaddr} ${dstaddr}", "needs the field"),
    ],
)
def test_vpc_bad_formats_are_usage_errors(fmt: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        vpc.parse_format(fmt)


def test_header_that_disagrees_with_the_format_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"vpc-default-v2.log:1: header names"):
        vpc.read(
            str(FIXTURES / "vpc-default-v2.log"),
            log_format="${srcaddr} ${dstaddr} ${start} ${end} ${action}",
        )


def test_missing_file_and_unknown_format() -> None:
    with pytest.raises(InputError, match="no such file"):
        calico.read("/nonexistent/flows.log")
    with pytest.raises(UsageError, match="known: calico, calico-dns, hubble, vpc"):
        importer("netflow")


def test_a_bad_line_deep_in_a_large_file_is_located(tmp_path: Path) -> None:
    line = (FIXTURES / "calico-flows.log").read_text().splitlines()[0]
    lines = [line] * 5000
    lines[3210] = line[:-40]  # truncated mid-record
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    result = calico.read(str(path))
    assert result.stored == 4999
    assert [r.line for r in result.rejected] == [3211]

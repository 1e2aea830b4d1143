"""The VPC text reader at sizes where the CSV reader splits the body into blocks and parses
them on several threads: records keep their order and their line numbers, a bad line deep in
the file is found, and files that hold no records say so."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest

from netwarden.errors import InputError
from netwarden.flows.importers import vpc
from netwarden.flows.importers.common import protocol_names

HEADER = (
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes"
    " start end action log-status\n"
)
START = 1764236400


def _record(i: int) -> str:
    return (
        f"2 123456789012 eni-0a1b2c3d4e5f6{i % 7:04d} 10.0.{i // 250 % 250}.{i % 250}"
        f" 10.1.0.{i % 200} {1024 + i % 60000} 443 6 {1 + i % 40} {100 + i} {START + i}"
        f" {START + i + 60} ACCEPT OK\n"
    )


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """60,000 records, about 7 MB: several of the CSV reader's blocks."""
    return [_record(i) for i in range(60_000)]


def test_a_large_file_keeps_record_order_across_blocks(tmp_path: Path, big_log: list[str]) -> None:
    path = tmp_path / "big.log"
    path.write_text(HEADER + "".join(big_log))
    result = vpc.read(str(path))
    assert (result.records_in, result.stored, result.rejected) == (60_000, 60_000, ())
    assert result.table.column("bytes_out").to_pylist() == [100 + i for i in range(60_000)]
    assert result.table.column("proto").unique().to_pylist() == ["tcp"]


def test_a_bad_line_deep_in_a_large_file_is_located(tmp_path: Path, big_log: list[str]) -> None:
    lines = list(big_log)
    lines[41_000] = lines[41_000].replace(" 443 ", " https ")  # a port that is no number
    lines[52_000] = lines[52_000].replace(" ACCEPT OK", " ACCEPT")  # a field short
    path = tmp_path / "big.log"
    path.write_text(HEADER + "".join(lines))
    result = vpc.read(str(path))
    assert (result.records_in, result.stored) == (60_000, 59_998)
    # Line numbers count the header: record i is on line i + 2.
    assert [(r.line, r.reason) for r in result.rejected] == [
        (41_002, "dstport: not a number"),
        (52_002, "13 fields, the log format has 14"),
    ]
    kept = result.table.column("bytes_out").to_pylist()
    assert kept[41_000] == 100 + 41_001 and kept[-1] == 100 + 59_999


def test_blank_lines_between_records_keep_the_numbering(tmp_path: Path) -> None:
    path = tmp_path / "gaps.log"
    path.write_text(HEADER + _record(0) + "\n" + _record(1) + "   \n" + _record(2).rstrip("\n"))
    result = vpc.read(str(path))
    assert (result.records_in, result.stored, result.rejected) == (3, 3, ())
    assert result.table.column("bytes_out").to_pylist() == [100, 101, 102]


@pytest.mark.parametrize("text", ["", HEADER, HEADER.rstrip("\n"), HEADER + "\n \n\n", "\n\n"])
def test_files_without_records(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.log"
    path.write_text(text)
    result = vpc.read(str(path))
    assert (result.records_in, result.stored, result.rejected) == (0, 0, ())


def test_protocol_names_by_lookup_and_beyond_the_table() -> None:
    expected = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 47: "47", None: None}
    numbers = pa.array(list(expected), pa.int64())
    assert protocol_names(numbers).to_pylist() == list(expected.values())
    out_of_range = pa.chunked_array([[6], [300]], pa.int64())
    assert protocol_names(out_of_range).to_pylist() == ["tcp", "300"]


def test_windows_line_endings_are_read_on_the_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "crlf.log"
    path.write_bytes(
        (HEADER + "".join(_record(i) for i in range(5))).replace("\n", "\r\n").encode()
    )
    result = vpc.read(str(path))
    assert (result.records_in, result.stored, result.rejected) == (5, 5, ())
    assert result.table.column("action").unique().to_pylist() == ["allow"]


def test_a_stray_carriage_return_is_one_bad_line_with_its_number(tmp_path: Path) -> None:
    # The CSV reader ends a row at a lone `\r`: two good records joined by one make two rows
    # for the reader but one line (of 27 fields) for the log, and later lines keep their numbers.
    lines = [_record(i) for i in range(6)]
    lines[3] = _record(3).rstrip("\n") + "\r" + _record(99)
    path = tmp_path / "cr.log"
    path.write_text(HEADER + "".join(lines), newline="")
    result = vpc.read(str(path))
    assert (result.records_in, result.stored) == (6, 5)
    assert [(r.line, r.reason) for r in result.rejected] == [
        (5, "27 fields, the log format has 14")
    ]
    assert result.table.column("bytes_out").to_pylist() == [100, 101, 102, 104, 105]


def test_gzip_files_as_s3_delivers_them(tmp_path: Path, big_log: list[str]) -> None:
    lines = list(big_log)
    lines[30_000] = lines[30_000].replace(" ACCEPT OK", " ACCEPT")
    text = HEADER + "".join(lines)
    plain, packed = tmp_path / "flows.log", tmp_path / "123_vpcflowlogs_eu-west-1_fl-1.log.gz"
    plain.write_text(text)
    packed.write_bytes(gzip.compress(text.encode()))
    expected, result = vpc.read(str(plain)), vpc.read(str(packed))
    assert (result.records_in, result.stored) == (60_000, 59_999)
    assert result.rejected == expected.rejected
    assert [(r.line, r.reason) for r in result.rejected] == [
        (30_002, "13 fields, the log format has 14")
    ]
    assert result.table.equals(expected.table)


def test_a_plain_file_named_gz_and_a_broken_gzip_file(tmp_path: Path) -> None:
    named = tmp_path / "plain.log.gz"  # the bytes decide, not the name
    named.write_text(HEADER + _record(0))
    assert vpc.read(str(named)).stored == 1
    broken = tmp_path / "broken.log.gz"
    broken.write_bytes(gzip.compress((HEADER + _record(0)).encode())[:30])
    with pytest.raises(InputError, match=r"broken\.log\.gz: not a readable gzip file"):
        vpc.read(str(broken))

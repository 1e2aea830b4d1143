"""Reading probes: the CSV file of `evaluate --probes` and the `--probe` form."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwarden.dialects.probes import parse_probe, probe_location, read_probes
from netwarden.engine.batch import Probe
from netwarden.errors import InputError, UsageError
from netwarden.model import ICMP, ICMPV6, SCTP, TCP, UDP, Location

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop" / "probes.csv"
HEADER = "src,dst,port,protocol\n"


def write(tmp_path: Path, text: str, name: str = "probes.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_the_example_in_file_order() -> None:
    probes = read_probes(EXAMPLE)
    assert len(probes) == 24
    assert probes[0] == Probe("203.0.113.7", "shop/frontend-0", 443, TCP)
    assert Probe("10.244.2.20", "10.244.2.30", 5432, TCP) in probes  # `tcp` in any case
    assert Probe("shop/backend-0", "shop/db-0", 0, ICMP) in probes
    assert probes[-1] == Probe("203.0.113.7", "tenant-b/web-0", 8080, TCP)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("a/b,c/d,80,TCP", Probe("a/b", "c/d", 80, TCP)),
        ("a/b,c/d,53,udp", Probe("a/b", "c/d", 53, UDP)),
        ("a/b,c/d,3868,Sctp", Probe("a/b", "c/d", 3868, SCTP)),
        ("a/b,c/d,443,6", Probe("a/b", "c/d", 443, TCP)),
        ("a/b,c/d,53,17", Probe("a/b", "c/d", 53, UDP)),
        ("a/b,10.0.0.1,0,ICMP", Probe("a/b", "10.0.0.1", 0, ICMP)),
        ("a/b,10.0.0.1,,icmp", Probe("a/b", "10.0.0.1", 0, ICMP)),
        ("2001:db8::1,a/b,0,ICMPv6", Probe("2001:db8::1", "a/b", 0, ICMPV6)),
        ("a/b,c/d,0,47", Probe("a/b", "c/d", 0, 47)),
        ('"a/b","c/d","65535","TCP"', Probe("a/b", "c/d", 65535, TCP)),
        ("kube-system/coredns-0,my-app/pod.name-1,1,TCP", None),
    ],
)
def test_reads_a_row(tmp_path: Path, row: str, expected: Probe | None) -> None:
    (probe,) = read_probes(write(tmp_path, HEADER + row + "\n"))
    if expected is not None:
        assert probe == expected


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("a/b,c/d,99999,TCP", "port", "invalid port '99999' for TCP: expected 1..65535"),
        ("a/b,c/d,0,TCP", "port", "invalid port '0' for TCP"),
        ("a/b,c/d,-1,UDP", "port", "invalid port '-1' for UDP"),
        ("a/b,c/d,http,TCP", "port", "invalid port 'http'"),
        ("a/b,c/d,,TCP", "port", "invalid port ''"),
        ("a/b,c/d,80,ICMP", "port", "ICMP has no ports: port must be 0, not '80'"),
        ("a/b,c/d,80,FOO", "protocol", "unknown protocol 'FOO'"),
        ("a/b,c/d,80,256", "protocol", "unknown protocol '256'"),
        ("a/b,c/d,80,", "protocol", "unknown protocol ''"),
        ("frontend,c/d,80,TCP", "src", "invalid endpoint 'frontend'"),
        ("a/b,Shop/Web,80,TCP", "dst", "invalid endpoint 'Shop/Web'"),
        ("a/b,300.1.1.1,80,TCP", "dst", "invalid endpoint '300.1.1.1'"),
        ("a/b,,80,TCP", "dst", "invalid endpoint ''"),
        ("a/b, c/d,80,TCP", "dst", "invalid endpoint ' c/d'"),
        ("my.app/pod,c/d,80,TCP", "src", "invalid endpoint 'my.app/pod'"),
    ],
)
def test_bad_row_names_file_line_and_column(
    tmp_path: Path, row: str, column: str, message: str
) -> None:
    path = write(tmp_path, HEADER + "# a comment\n\nok/a,ok/b,80,TCP\n" + row + "\n")
    with pytest.raises(InputError) as error:
        read_probes(path)
    assert error.value.location == Location(str(path), 5)
    assert error.value.field == column
    assert message in error.value.message
    assert str(error.value).startswith(f"{path}:5: {column}: ")


@pytest.mark.parametrize(("row", "found"), [("a/b,c/d,80", 3), ("a/b,c/d,80,TCP,x", 5), ("a/b", 1)])
def test_wrong_number_of_columns(tmp_path: Path, row: str, found: int) -> None:
    path = write(tmp_path, HEADER + row + "\n")
    with pytest.raises(InputError, match=rf"expected 4 columns .*found {found}") as error:
        read_probes(path)
    assert error.value.location == Location(str(path), 2)


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "src,dst,port\na/b,c/d,80\n", "dst,src,port,protocol\n", "a/b,c/d,80,TCP\n"],
)
def test_header_is_required(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError, match="header src,dst,port,protocol") as error:
        read_probes(path)
    assert str(error.value).startswith(f"{path}:")


def test_header_only_is_no_probes_and_bom_is_accepted(tmp_path: Path) -> None:
    assert read_probes(write(tmp_path, HEADER)) == []
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "a/b,c/d,80,TCP\r\n").encode())
    assert read_probes(path) == [Probe("a/b", "c/d", 80, TCP)]


def test_broken_csv_quoting_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + 'a/b,c/d,80,TCP\n"a/b,c/d,80,TCP\n')
    with pytest.raises(InputError, match="invalid CSV") as error:
        read_probes(path)
    assert error.value.location is not None and error.value.location.path == str(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read") as error:
        read_probes(tmp_path / "missing.csv")
    assert str(error.value).startswith(str(tmp_path / "missing.csv"))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(HEADER.encode() + b"\xff\xfe,a,b\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_probes(binary)


def test_probe_location_counts_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "# first\na/b,c/d,80,TCP\n\n# second\na/b,c/d,81,TCP\n")
    assert probe_location(path, 0) == Location(str(path), 3)
    assert probe_location(path, 1) == Location(str(path), 6)


@pytest.mark.parametrize(
    ("text", "port", "protocol"),
    [
        ("80/TCP", 80, TCP),
        ("53/udp", 53, UDP),
        ("443", 443, TCP),
        ("3868/SCTP", 3868, SCTP),
        ("ICMP", 0, ICMP),
        ("icmpv6", 0, ICMPV6),
        ("0/ICMP", 0, ICMP),
        ("443/6", 443, TCP),
    ],
)
def test_parse_probe(text: str, port: int, protocol: int) -> None:
    assert parse_probe("shop/a-0", "10.0.0.1", text) == Probe(
        "shop/a-0", "10.0.0.1", port, protocol
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TCP", "invalid port '' for TCP"),
        ("80/FOO", "unknown protocol 'FOO'"),
        ("70000/TCP", "invalid port '70000'"),
        ("80/ICMP", "ICMP has no ports"),
        ("", "unknown protocol ''"),
        ("http", "unknown protocol 'http'"),
    ],
)
def test_parse_probe_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match="expected PORT/PROTO") as error:
        parse_probe("shop/a-0", "shop/b-0", text)
    assert message in str(error.value)


def test_parse_probe_checks_endpoint_names() -> None:
    with pytest.raises(UsageError, match="invalid endpoint 'frontend'"):
        parse_probe("frontend", "shop/b-0", "80/TCP")

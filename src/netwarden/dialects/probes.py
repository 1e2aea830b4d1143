"""Probes: the flows a user asks about, from a CSV file or from the command line.

A probes file has the header `src,dst,port,protocol` and one probe a row:

    src,dst,port,protocol
    shop/frontend-0,shop/backend-0,8080,TCP
    203.0.113.7,shop/frontend-0,443,tcp
    shop/frontend-0,10.0.0.10,0,ICMP

`src` / `dst` are `namespace/pod` or an IPv4/IPv6 address; `protocol` is a name (any case) or
an IANA number; `port` is 1..65535 for TCP/UDP/SCTP and 0 (or empty) for portless protocols.
Blank lines and lines starting with `#` are skipped. Every bad row is an `InputError` naming
the file, the line and the column.

Rows are checked through small caches (a file names few distinct endpoints and port/protocol
pairs), so a million rows read in about a second.
"""

from __future__ import annotations

import csv
import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Protocol

from netwarden.engine.batch import Probe
from netwarden.errors import InputError, UsageError
from netwarden.model import PORTED_PROTOCOLS, TCP, Location, parse_protocol, protocol_name

HEADER = ("src", "dst", "port", "protocol")

# A namespace is a DNS-1123 label, a pod name a DNS-1123 subdomain.
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_ENDPOINT_NAME = re.compile(rf"{_LABEL}/{_LABEL}(\.{_LABEL})*")


@dataclass(frozen=True)
class FieldProblem:
    """A value that cannot be used, and the column it was found in."""

    column: str
    message: str


def check_endpoint(name: str) -> str | None:
    """Why `name` is neither `namespace/pod` nor an IP address; None when it is one."""
    namespace, _, pod = name.partition("/")
    if _ENDPOINT_NAME.fullmatch(name) and len(namespace) <= 63 and len(pod) <= 253:
        return None
    try:
        ip_address(name)
    except ValueError:
        return f"invalid endpoint {name!r}: expected namespace/pod or an IP address"
    return None


def check_port(port_text: str, protocol_text: str) -> tuple[int, int] | FieldProblem:
    """(port, protocol) from their text, or the problem with them."""
    protocol = parse_protocol(protocol_text)
    if protocol is None:
        return FieldProblem(
            "protocol",
            f"unknown protocol {protocol_text!r}: expected TCP, UDP, SCTP, ICMP, ICMPv6 "
            "or a number 0..255",
        )
    text = port_text.strip()
    if protocol not in PORTED_PROTOCOLS:
        if text in ("", "0"):
            return 0, protocol
        name = protocol_name(protocol)
        return FieldProblem("port", f"{name} has no ports: port must be 0, not {port_text!r}")
    if text.isdigit() and 1 <= int(text) <= 65535:
        return int(text), protocol
    name = protocol_name(protocol)
    return FieldProblem("port", f"invalid port {port_text!r} for {name}: expected 1..65535")


def read_probes(path: str | Path) -> list[Probe]:
    """All probes of a CSV file, in file order; the first bad row raises InputError."""
    where = str(path)
    probes: list[Probe] = []
    append = probes.append
    valid: set[str] = set()  # endpoint names already checked
    ports: dict[tuple[str, str], tuple[int, int] | FieldProblem] = {}
    with _open(path) as reader, _collector_paused():
        for row in reader:
            if len(row) != len(HEADER):
                if _is_blank_or_comment(row):
                    continue
                raise InputError(
                    Location(where, reader.line_num),
                    f"expected {len(HEADER)} columns ({','.join(HEADER)}), found {len(row)}",
                )
            src, dst, port_text, protocol_text = row
            if src not in valid or dst not in valid:
                if _is_blank_or_comment(row):
                    continue
                for column, name in (("src", src), ("dst", dst)):
                    problem = check_endpoint(name)
                    if problem is not None:
                        raise InputError(Location(where, reader.line_num), problem, column)
                    valid.add(name)
            checked = ports.get((port_text, protocol_text))
            if checked is None:
                checked = ports[port_text, protocol_text] = check_port(port_text, protocol_text)
            if isinstance(checked, FieldProblem):
                raise InputError(Location(where, reader.line_num), checked.message, checked.column)
            append(Probe(src, dst, checked[0], checked[1]))
    return probes


def probe_location(path: str | Path, index: int) -> Location:
    """Where the `index`-th probe (0-based) of a file is written, for problems found after
    reading, such as an endpoint the inventory does not know."""
    count = 0
    with _open(path) as reader:
        for row in reader:
            if _is_blank_or_comment(row):
                continue
            if count == index:
                return Location(str(path), reader.line_num)
            count += 1
    return Location(str(path))


class _Reader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...


@contextmanager
def _open(path: str | Path) -> Iterator[_Reader]:
    """A CSV reader positioned after the header; read and CSV errors become InputError."""
    where = str(path)
    reader = None
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, strict=True)
            header = next((row for row in reader if not _is_blank_or_comment(row)), None)
            if header is None:
                message = f"empty probes file: expected the header {','.join(HEADER)}"
                raise InputError(Location(where, 1), message)
            if tuple(field.strip() for field in header) != HEADER:
                found = ",".join(header)
                raise InputError(
                    Location(where, reader.line_num),
                    f"expected the header {','.join(HEADER)}, found {found!r}",
                )
            yield reader
    except csv.Error as error:
        line = reader.line_num if reader is not None else 0
        raise InputError(Location(where, line), f"invalid CSV: {error}") from None
    except OSError as error:
        raise InputError(Location(where), f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(Location(where), f"cannot read: not UTF-8 ({error.reason})") from None


def _is_blank_or_comment(row: list[str]) -> bool:
    return not row or row == [""] or row[0].lstrip().startswith("#")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a million new objects that hold no cycles would
    otherwise trigger full collections over the growing list, making reading 3-4x slower."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_probe(src: str, dst: str, port_protocol: str) -> Probe:
    """A probe from the command line: `PORT/PROTO`, `PORT` (TCP), or a portless protocol alone.

    >>> parse_probe("shop/frontend-0", "shop/backend-0", "8080/tcp")
    Probe(src='shop/frontend-0', dst='shop/backend-0', port=8080, protocol=6)
    >>> parse_probe("shop/frontend-0", "10.0.0.1", "ICMP").protocol
    1
    """
    for name in (src, dst):
        problem = check_endpoint(name)
        if problem is not None:
            raise UsageError(problem)
    port_text, slash, protocol_text = port_protocol.partition("/")
    if not slash:
        if port_text.strip().isdigit():
            protocol_text = protocol_name(TCP)
        else:
            port_text, protocol_text = "", port_protocol
    checked = check_port(port_text, protocol_text)
    if isinstance(checked, FieldProblem):
        raise UsageError(
            f"invalid probe {port_protocol!r}: {checked.message} "
            "(expected PORT/PROTO such as 443/TCP, or ICMP)"
        )
    return Probe(src, dst, checked[0], checked[1])

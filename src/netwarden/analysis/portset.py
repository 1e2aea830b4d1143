"""`PortSet`: which protocols and destination ports a connection is open on.

A set is per protocol a sorted tuple of disjoint inclusive port ranges, plus `others`: whether
every protocol it does not list is open on every port. The form is canonical (two equal sets
compare equal): a protocol is listed only where it differs from `others`, ranges are merged.
Ported protocols (TCP, UDP, SCTP) use ports 1-65535 (port 0 is not a connection); a portless
protocol (ICMP, anything else) is open or not, written as the one range 0-0.

    >>> tcp = PortSet.of(TCP, [PortRange(80, 80), PortRange(81, 90), PortRange(443, 443)])
    >>> str(tcp)
    'TCP 80-90,443'
    >>> str(PortSet.everything()), str(PortSet.nothing())
    ('All connections', 'No connections')
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from netwarden.model import PORTED_PROTOCOLS, PortRange, protocol_name

#: The ports of a ported protocol a connection can use.
PORTED_RANGE = PortRange(1, 65535)
#: How a portless protocol (ICMP, GRE, ...) that is open is held.
PORTLESS_RANGE = PortRange(0, 0)
#: Protocol numbers (IANA, 0-255).
PROTOCOLS = range(256)


def full_range(protocol: int) -> PortRange:
    return PORTED_RANGE if protocol in PORTED_PROTOCOLS else PORTLESS_RANGE


def merge_ranges(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping and adjacent ranges merged."""
    merged: list[PortRange] = []
    for current in sorted(ranges):
        if merged and current.start <= merged[-1].end + 1:
            if current.end > merged[-1].end:
                merged[-1] = PortRange(merged[-1].start, current.end)
        else:
            merged.append(current)
    return tuple(merged)


class ProtocolPorts(NamedTuple):
    """One protocol of a set: its number and open ranges (empty: closed)."""

    protocol: int
    ranges: tuple[PortRange, ...]


@dataclass(frozen=True)
class PortSet:
    """Open protocols and ports. `listed` holds the protocols that differ from `others`."""

    listed: tuple[ProtocolPorts, ...] = ()
    others: bool = False

    @classmethod
    def everything(cls) -> PortSet:
        return cls((), True)

    @classmethod
    def nothing(cls) -> PortSet:
        return cls((), False)

    @classmethod
    def of(cls, protocol: int, ranges: Iterable[PortRange] | None = None) -> PortSet:
        """One protocol: `ranges` (every port when None)."""
        return cls.build({protocol: list(ranges) if ranges is not None else None}, False)

    @classmethod
    def build(cls, open_ports: Mapping[int, Iterable[PortRange] | None], others: bool) -> PortSet:
        """From protocol -> open ranges (None: every port), for protocols that differ from
        `others` (the rest are all open or all closed)."""
        listed: list[ProtocolPorts] = []
        for protocol in sorted(open_ports):
            full = full_range(protocol)
            given = open_ports[protocol]
            ranges = (full,) if given is None else _clip(merge_ranges(given), full)
            if ranges != ((full,) if others else ()):
                listed.append(ProtocolPorts(protocol, ranges))
        return cls(tuple(listed), others)

    def ports(self, protocol: int) -> tuple[PortRange, ...]:
        """The open ranges of `protocol`."""
        for entry in self.listed:
            if entry.protocol == protocol:
                return entry.ranges
        return (full_range(protocol),) if self.others else ()

    @property
    def is_all(self) -> bool:
        return self.others and not self.listed

    @property
    def is_empty(self) -> bool:
        return not self.others and not self.listed

    def __bool__(self) -> bool:
        return not self.is_empty

    def protocols(self) -> Iterator[ProtocolPorts]:
        """Every open protocol with its ranges, by number (all 256 when `others`)."""
        numbers: Iterable[int] = PROTOCOLS if self.others else (e.protocol for e in self.listed)
        for protocol in numbers:
            ranges = self.ports(protocol)
            if ranges:
                yield ProtocolPorts(protocol, ranges)

    def rows(self) -> Iterator[tuple[str, str]]:
        """(protocol, ports) as the CSV contract writes them: `*` for everything, else one
        row per open protocol with its sorted ports and ranges (empty for portless ones)."""
        if self.is_all:
            yield "*", ""
            return
        for protocol, ranges in self.protocols():
            yield protocol_name(protocol), format_ranges(protocol, ranges)

    def __str__(self) -> str:
        """NCA-like: `All connections`, `TCP 80,443; UDP 53`, `All but TCP 22`."""
        if self.is_all:
            return "All connections"
        if self.is_empty:
            return "No connections"
        if not self.others:
            return "; ".join(_describe(e) for e in self.listed)
        # Everything open but the listed protocols' missing ports: say what is closed.
        closed = [
            ProtocolPorts(e.protocol, _complement(e.ranges, full_range(e.protocol)))
            for e in self.listed
        ]
        return "All but " + "; ".join(_describe(e) for e in closed)

    def to_json(self) -> dict[str, object]:
        """`{"all": true}`, or `{"protocols": {"TCP": "80,443"}, "others": false}` where
        `others` says whether every unlisted protocol is open on every port."""
        if self.is_all:
            return {"all": True}
        return {
            "all": False,
            "protocols": {
                protocol_name(e.protocol): format_ranges(e.protocol, e.ranges) for e in self.listed
            },
            "others": self.others,
        }


def format_ranges(protocol: int, ranges: tuple[PortRange, ...]) -> str:
    """`53,80,8000-8080`; empty for a portless protocol."""
    if protocol not in PORTED_PROTOCOLS:
        return ""
    return ",".join(str(r) for r in ranges)


def _describe(entry: ProtocolPorts) -> str:
    name = protocol_name(entry.protocol)
    if entry.protocol not in PORTED_PROTOCOLS:
        return name
    if entry.ranges == (PORTED_RANGE,):
        return f"{name} (all ports)"
    return f"{name} {format_ranges(entry.protocol, entry.ranges)}"


def _clip(ranges: tuple[PortRange, ...], full: PortRange) -> tuple[PortRange, ...]:
    clipped = []
    for r in ranges:
        start, end = max(r.start, full.start), min(r.end, full.end)
        if start <= end:
            clipped.append(PortRange(start, end))
    return tuple(clipped)


def _complement(ranges: tuple[PortRange, ...], full: PortRange) -> tuple[PortRange, ...]:
    found, at = [], full.start
    for r in ranges:
        if r.start > at:
            found.append(PortRange(at, r.start - 1))
        at = max(at, r.end + 1)
    if at <= full.end:
        found.append(PortRange(at, full.end))
    return tuple(found)

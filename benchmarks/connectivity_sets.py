"""Connectivity maps as exact sets, so two tools' answers compare without sampling.

A map says, for each ordered (source, destination), which destination ports are open per
ported protocol (TCP, UDP, SCTP) and which other protocols are open (they carry no port).
It is the set of (src, dst, protocol, port) flows, kept as interval sets so that
"All connections" between 10,000 pairs stays small. Ends are `namespace/pod` names or
IPv4 ranges; two maps that cut the address space differently are compared after both are
split at the union of their boundaries (`split_ranges`).

    left = read_connectivity_csv(Path("netwarden.csv").read_text())
    right = reference_connectivity(cluster)        # connectivity_oracle: the engine, per pair
    report = compare(left, right, "netwarden csv", "reference engine")
    print(report.render())

Readers: `read_connectivity_csv` (the `netwarden connectivity --by pod -o csv` contract);
`connectivity_oracle` (netwarden's engines, pair by pair); `peer_nca.read_nca_txt` (NCA).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_address, ip_network
from typing import NamedTuple

from netwarden.model.ports import SCTP, TCP, UDP, parse_protocol, protocol_name

Interval = tuple[int, int]
Intervals = tuple[Interval, ...]

PORTED = (TCP, UDP, SCTP)
#: Destination ports a TCP/UDP/SCTP connection can use; port 0 is not one.
PORT_SPACE: Intervals = ((1, 65535),)
#: Every protocol number, and those without ports (whole protocols are open or not).
PROTOCOL_SPACE: Intervals = ((0, 255),)


def normalize(intervals: Iterable[Interval]) -> Intervals:
    """Sorted, disjoint, with touching intervals merged: the one form of a set."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def subtract(left: Intervals, right: Intervals) -> Intervals:
    """`left` minus `right`, both normalized."""
    result: list[Interval] = []
    for start, end in left:
        for cut_start, cut_end in right:
            if cut_end < start or cut_start > end:
                continue
            if cut_start > start:
                result.append((start, cut_start - 1))
            start = cut_end + 1
            if start > end:
                break
        if start <= end:
            result.append((start, end))
    return tuple(result)


def intersect(left: Intervals, right: Intervals) -> Intervals:
    return subtract(left, subtract(left, right))


def size(intervals: Intervals) -> int:
    return sum(end - start + 1 for start, end in intervals)


NON_PORTED: Intervals = subtract(PROTOCOL_SPACE, normalize((p, p) for p in PORTED))


def render_intervals(intervals: Intervals) -> str:
    return ",".join(str(s) if s == e else f"{s}-{e}" for s, e in intervals)


def render_protocols(intervals: Intervals) -> str:
    if intervals == NON_PORTED:
        return "every protocol but TCP/UDP/SCTP"
    names = [protocol_name(p) for s, e in intervals for p in range(s, e + 1)]
    return ", ".join(names) if len(names) <= 6 else f"protocols {render_intervals(intervals)}"


class IPRange(NamedTuple):
    """An inclusive IPv4 range, as integers."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{IPv4Address(self.first)}-{IPv4Address(self.last)}"


End = str | IPRange


def parse_end(text: str) -> End | None:
    """`ns/pod` -> the name; `a.b.c.d-e.f.g.h`, an address or a CIDR -> an IPRange; None for
    IPv6 (both tools print IPv6 only on request; the comparison is IPv4)."""
    text = text.strip()
    try:
        if "-" in text and ":" not in text.split("-")[0] and text.count("-") == 1:
            low, high = (ip_address(part) for part in text.split("-"))
            if low.version == 6:
                return None
            return IPRange(int(low), int(high))
        if "/" in text and text.split("/")[0].replace(".", "").isdigit():
            network = ip_network(text, strict=False)
            return IPRange(int(network[0]), int(network[-1]))
        address = ip_address(text)
    except ValueError:
        if ":" in text:  # an IPv6 range or network
            return None
        return text
    return None if address.version == 6 else IPRange(int(address), int(address))


@dataclass
class ConnectivityMap:
    """Allowed flows: per (src, dst, ported protocol) the open ports; per (src, dst) the open
    protocols that carry no port."""

    ports: dict[tuple[End, End, int], Intervals] = field(default_factory=dict)
    protocols: dict[tuple[End, End], Intervals] = field(default_factory=dict)

    def allow(self, src: End, dst: End, protocols: Intervals, ports: Intervals) -> None:
        """Open `ports` of each ported protocol in `protocols`, and every other protocol in
        `protocols` (ports do not apply to them)."""
        for protocol in PORTED:
            if intersect(protocols, ((protocol, protocol),)) and ports:
                key = (src, dst, protocol)
                self.ports[key] = normalize(self.ports.get(key, ()) + ports)
        others = intersect(protocols, NON_PORTED)
        if others:
            self.protocols[(src, dst)] = normalize(self.protocols.get((src, dst), ()) + others)

    def allows(self, src: End, dst: End, port: int, protocol: str | int) -> bool:
        """Whether the map holds this one flow (port ignored for a portless protocol)."""
        number = parse_protocol(protocol)
        if number in PORTED:
            return any(s <= port <= e for s, e in self.ports.get((src, dst, number), ()))
        return any(s <= (number or 0) <= e for s, e in self.protocols.get((src, dst), ()))

    def pods(self) -> set[str]:
        found = {end for key in self.ports for end in key[:2] if isinstance(end, str)}
        return found | {end for key in self.protocols for end in key if isinstance(end, str)}

    def flow_count(self) -> int:
        """How many (src, dst, protocol, port) flows the map holds; a portless protocol counts
        once. IP ranges count as one end each."""
        return sum(size(p) for p in self.ports.values()) + sum(
            size(p) for p in self.protocols.values()
        )

    def restrict(self, keep: Callable[[End], bool]) -> ConnectivityMap:
        """Only the entries both of whose ends `keep` accepts."""
        return ConnectivityMap(
            {k: v for k, v in self.ports.items() if keep(k[0]) and keep(k[1])},
            {k: v for k, v in self.protocols.items() if keep(k[0]) and keep(k[1])},
        )

    def rename(self, names: dict[str, str]) -> ConnectivityMap:
        def new(end: End) -> End:
            return names.get(end, end) if isinstance(end, str) else end

        renamed = ConnectivityMap()
        for (src, dst, protocol), ports in self.ports.items():
            renamed.allow(new(src), new(dst), ((protocol, protocol),), ports)
        for (src, dst), protocols in self.protocols.items():
            renamed.allow(new(src), new(dst), protocols, PORT_SPACE)
        return renamed

    def boundaries(self) -> set[int]:
        """Where this map's IP ranges start and end (+1): the cuts another map must share."""
        cuts: set[int] = set()
        for key in itertools.chain(self.ports, self.protocols):
            for end in key[:2]:
                if isinstance(end, IPRange):
                    cuts.update((end.first, end.last + 1))
        return cuts

    def split_ranges(self, cuts: set[int]) -> ConnectivityMap:
        """The same flows with every IP range cut at `cuts` (a range becomes its atoms)."""
        ordered = sorted(cuts)
        split = ConnectivityMap()

        def atoms(end: End) -> list[End]:
            if not isinstance(end, IPRange):
                return [end]
            inner = [c for c in ordered if end.first < c <= end.last]
            starts = [end.first, *inner]
            stops = [c - 1 for c in inner] + [end.last]
            return [IPRange(s, e) for s, e in zip(starts, stops, strict=True)]

        for (src, dst, protocol), ports in self.ports.items():
            for a, b in itertools.product(atoms(src), atoms(dst)):
                split.allow(a, b, ((protocol, protocol),), ports)
        for (src, dst), protocols in self.protocols.items():
            for a, b in itertools.product(atoms(src), atoms(dst)):
                split.allow(a, b, protocols, PORT_SPACE)
        return split


class Difference(NamedTuple):
    """Flows one side allows and the other does not, for one (src, dst, protocol)."""

    src: End
    dst: End
    protocol: int | None  # None: the portless protocols in `values`
    values: Intervals  # ports, or protocol numbers when `protocol` is None

    def __str__(self) -> str:
        if self.protocol is None:
            return f"{self.src} -> {self.dst} {render_protocols(self.values)}"
        ports = render_intervals(self.values)
        return f"{self.src} -> {self.dst} {protocol_name(self.protocol)} {ports}"

    @property
    def flows(self) -> int:
        return size(self.values)


@dataclass(frozen=True)
class ParityReport:
    left_name: str
    right_name: str
    only_left: tuple[Difference, ...]
    only_right: tuple[Difference, ...]
    common_flows: int
    pods: int

    @property
    def equal(self) -> bool:
        return not self.only_left and not self.only_right

    def render(self, limit: int = 40) -> str:
        lines = [
            f"{self.pods} pods compared; {self.common_flows:,} (src, dst, protocol, port) flows "
            f"in both; {sum(d.flows for d in self.only_left):,} only in {self.left_name}, "
            f"{sum(d.flows for d in self.only_right):,} only in {self.right_name}"
        ]
        for name, differences in (
            (self.left_name, self.only_left),
            (self.right_name, self.only_right),
        ):
            if differences:
                lines.append(f"only in {name} ({len(differences)} entries):")
                lines += [f"  {d}" for d in differences[:limit]]
                if len(differences) > limit:
                    lines.append(f"  ... {len(differences) - limit} more")
        return "\n".join(lines)


def _sort_key(end: End) -> tuple[int, str, int]:
    return (1, "", end.first) if isinstance(end, IPRange) else (0, end, 0)


def _differences(left: ConnectivityMap, right: ConnectivityMap) -> Iterator[Difference]:
    for key in sorted(left.ports, key=lambda k: (_sort_key(k[0]), _sort_key(k[1]), k[2])):
        missing = subtract(left.ports[key], right.ports.get(key, ()))
        if missing:
            yield Difference(key[0], key[1], key[2], missing)
    for pair in sorted(left.protocols, key=lambda k: (_sort_key(k[0]), _sort_key(k[1]))):
        missing = subtract(left.protocols[pair], right.protocols.get(pair, ()))
        if missing:
            yield Difference(pair[0], pair[1], None, missing)


def compare(
    left: ConnectivityMap,
    right: ConnectivityMap,
    left_name: str,
    right_name: str,
    pods: int | None = None,
) -> ParityReport:
    """Both maps cut at the same IP boundaries, then flow sets compared exactly. `pods`: how
    many pods the comparison covers (default: those either map mentions)."""
    cuts = left.boundaries() | right.boundaries()
    left, right = left.split_ranges(cuts), right.split_ranges(cuts)
    only_left = tuple(_differences(left, right))
    only_right = tuple(_differences(right, left))
    common = left.flow_count() - sum(d.flows for d in only_left)
    if pods is None:
        pods = len(left.pods() | right.pods())
    return ParityReport(left_name, right_name, only_left, only_right, common, pods)


CSV_HEADER = ["src", "dst", "protocol", "ports"]


def read_connectivity_csv(text: str) -> ConnectivityMap:
    """The `netwarden connectivity --by pod -o csv` contract: `src,dst,protocol,ports`, one
    row per (src, dst, protocol); `*` is every protocol and port; ports like `53,8000-8080`
    (empty: every port, or none for a portless protocol). IPv6 rows are left out."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header != CSV_HEADER:
        raise ValueError(f"expected the header {','.join(CSV_HEADER)}, got {header}")
    found = ConnectivityMap()
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 4:
            raise ValueError(f"line {number}: expected 4 columns, got {row}")
        src, dst = parse_end(row[0]), parse_end(row[1])
        if src is None or dst is None:
            continue
        protocol_text, ports_text = row[2].strip(), row[3].strip()
        if protocol_text == "*":
            found.allow(src, dst, PROTOCOL_SPACE, PORT_SPACE)
            continue
        protocol = parse_protocol(protocol_text)
        if protocol is None:
            raise ValueError(f"line {number}: unknown protocol {protocol_text!r}")
        ports = parse_ports(ports_text) if ports_text else PORT_SPACE
        found.allow(src, dst, ((protocol, protocol),), ports)
    return found


def parse_ports(text: str) -> Intervals:
    """`53,80,8000-8080` -> intervals."""
    parts = []
    for item in text.split(","):
        low, _, high = item.strip().partition("-")
        parts.append((int(low), int(high or low)))
    return normalize(parts)

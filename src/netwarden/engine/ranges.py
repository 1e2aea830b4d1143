"""Address and port range arithmetic for the resolved form: inclusive address ranges, the
whole space of a family, and merging atoms or port spans into as few ranges as possible.

    >>> atoms = [AddressRange(address_at(4, low), address_at(4, high)) for low, high in
    ...          [(0, 9), (10, 10), (11, 20), (21, 30)]]
    >>> [str(r) for r in merge_atoms(zip(atoms, (True, None, True, False)))]
    ['0.0.0.0-0.0.0.20']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from netwarden.model import IPAddress, PortRange

#: Address width per family.
ADDRESS_BITS = {4: 32, 6: 128}


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family."""

    start: IPAddress
    end: IPAddress

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def full_range(family: int) -> AddressRange:
    """Every address of `family`."""
    kind = IPv4Address if family == 4 else IPv6Address
    return AddressRange(kind(0), kind(2 ** ADDRESS_BITS[family] - 1))


def address_at(family: int, value: int) -> IPAddress:
    """The address of `family` whose integer value is `value`."""
    return IPv4Address(value) if family == 4 else IPv6Address(value)


def merge_atoms(atoms: Iterable[tuple[AddressRange, bool | None]]) -> tuple[AddressRange, ...]:
    """The matching atoms (in address order) as ranges; a don't-care atom (None) joins two
    matching neighbours but is never kept at a range's end."""
    merged: list[AddressRange] = []
    pending: AddressRange | None = None  # don't-care atoms right after the last range
    for atom, matched in atoms:
        if matched is None:
            if merged and (pending is not None or int(merged[-1].end) + 1 == int(atom.start)):
                pending = AddressRange(pending.start if pending else atom.start, atom.end)
            continue
        if matched:
            gap_start = pending.start if pending is not None else atom.start
            if merged and int(merged[-1].end) + 1 == int(gap_start):
                merged[-1] = AddressRange(merged[-1].start, atom.end)
            else:
                merged.append(atom)
        pending = None
    return tuple(merged)


def merge_ports(spans: list[PortRange]) -> list[PortRange]:
    """`spans` sorted, with overlapping or adjacent spans joined."""
    merged: list[PortRange] = []
    for span in sorted(spans):
        if merged and span.start <= merged[-1].end + 1:
            merged[-1] = PortRange(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged

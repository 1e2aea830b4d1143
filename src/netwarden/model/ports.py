"""Protocols, port ranges and the port part of a rule.

Protocols are IANA numbers (TCP is 6) so that they vectorize; `protocol_name` gives the name
users write. A rule's ports are a tuple of `PortMatch`; an empty tuple means every protocol and
port.
"""

from __future__ import annotations

from dataclasses import dataclass

TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58

PROTOCOL_NUMBERS = {"TCP": TCP, "UDP": UDP, "SCTP": SCTP, "ICMP": ICMP, "ICMPV6": ICMPV6}
_PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
_PROTOCOL_NAMES[ICMPV6] = "ICMPv6"

#: Protocols whose flows carry a destination port.
PORTED_PROTOCOLS = frozenset({TCP, UDP, SCTP})


def protocol_name(number: int) -> str:
    """`6` -> `"TCP"`; numbers without a common name print as digits."""
    return _PROTOCOL_NAMES.get(number, str(number))


def parse_protocol(text: str | int) -> int | None:
    """A protocol name (any case) or number 0..255 -> its number; None when unknown."""
    if isinstance(text, int):
        return text if 0 <= text <= 255 else None
    upper = text.strip().upper()
    if upper in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[upper]
    if upper.isdigit() and int(upper) <= 255:
        return int(upper)
    return None


@dataclass(frozen=True, order=True)
class PortRange:
    """An inclusive range of port numbers."""

    start: int
    end: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


ALL_PORTS = PortRange(0, 65535)


@dataclass(frozen=True)
class PortMatch:
    """One entry of a rule's ports.

    `protocol` None means any protocol. `ports` None means every port of the protocol. `name`
    is a named port, resolved on the destination endpoint: it matches when that endpoint
    declares a port of this name whose number is the flow's port and whose protocol is the
    flow's protocol (and equals `protocol` when one is given).
    """

    protocol: int | None = None
    ports: PortRange | None = None
    name: str | None = None

    def __str__(self) -> str:
        proto = protocol_name(self.protocol) if self.protocol is not None else "any"
        if self.name is not None:
            return f"{proto}/{self.name}"
        return proto if self.ports is None else f"{proto}/{self.ports}"

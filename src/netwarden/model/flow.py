"""A flow: the unit every verdict is about."""

from __future__ import annotations

from dataclasses import dataclass

from netwarden.model.endpoints import Endpoint, IPAddress
from netwarden.model.ports import ICMP, ICMPV6, PORTED_PROTOCOLS, protocol_name


@dataclass(frozen=True)
class Flow:
    """A new connection from `src` to `dst` on destination `port` (0 for portless protocols).

    `src_ip` / `dst_ip` pick the address family on a dual-stack endpoint; they default to the
    endpoint's first address (None for an endpoint without one: no CIDR can match it).
    """

    src: Endpoint
    dst: Endpoint
    port: int
    protocol: int
    src_ip: IPAddress | None = None
    dst_ip: IPAddress | None = None
    icmp_type: int | None = None  # ICMP flows: echo request unless given
    icmp_code: int | None = None

    def __post_init__(self) -> None:
        given = self.src_ip or self.dst_ip
        version = given.version if given else None
        if self.src_ip is None:
            object.__setattr__(self, "src_ip", _address(self.src, version))
        if self.dst_ip is None:
            object.__setattr__(self, "dst_ip", _address(self.dst, version))
        if self.protocol in (ICMP, ICMPV6) and self.icmp_type is None:
            echo_request = 8 if self.protocol == ICMP else 128
            object.__setattr__(self, "icmp_type", echo_request)
            object.__setattr__(self, "icmp_code", 0)

    def __str__(self) -> str:
        proto = protocol_name(self.protocol)
        where = f"{self.port}/{proto}" if self.protocol in PORTED_PROTOCOLS else proto
        return f"{self.src.key} -> {self.dst.key} {where}"


def _address(endpoint: Endpoint, version: int | None) -> IPAddress | None:
    """The endpoint's first address, of the given family when one is asked for."""
    for ip in endpoint.ips:
        if version is None or ip.version == version:
            return ip
    return None

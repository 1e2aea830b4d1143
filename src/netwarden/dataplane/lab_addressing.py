"""How the lab links and addresses its parts: the point-to-point link from a router to a
leaf with its addresses, /32 routes and permanent neighbours, and free addresses and pod
CIDRs taken from the pools (see `lab_topology` for the topology they make).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from netwarden.dataplane.lab_topology import (
    GATEWAY,
    ROUTER_MAC,
    LabAddress,
    LabLink,
    LabNeighbor,
    LabRoute,
)
from netwarden.errors import LabError

#: Addresses for nodes without an InternalIP, and the /24 pod CIDRs for pods without an IP.
NODE_POOL = IPv4Network("172.31.0.0/16")
POD_POOL = IPv4Network("10.244.0.0/14")


@dataclass(frozen=True)
class LeafParts:
    """A point-to-point link from a router to a leaf, with the routes and neighbours both
    ways."""

    link: LabLink
    addresses: tuple[LabAddress, ...]
    routes: tuple[LabRoute, ...]
    neighbors: tuple[LabNeighbor, ...]


def leaf_parts(
    router: str,
    ifname: str,
    leaf: str,
    mac: str,
    ips: Sequence[IPv4Address],
    src: IPv4Address | None = None,
) -> LeafParts:
    return LeafParts(
        LabLink(router, ifname, leaf, "eth0", mac),
        tuple(LabAddress(leaf, "eth0", ip) for ip in ips),
        (
            *(LabRoute(router, host_network(ip), ifname, src=src) for ip in ips),
            LabRoute(leaf, None, "eth0", via=GATEWAY),
        ),
        (
            *(LabNeighbor(router, ifname, ip, mac) for ip in ips),
            LabNeighbor(leaf, "eth0", GATEWAY, ROUTER_MAC),
        ),
    )


def host_network(ip: IPv4Address) -> IPv4Network:
    """The /32 of one address: routers reach each leaf address on its own."""
    return IPv4Network(f"{ip}/32")


def free_hosts(network: IPv4Network, used: set[IPv4Address]) -> Iterator[IPv4Address]:
    """Host addresses of `network` from .2 on that no one uses yet; marks each one used."""

    def hosts() -> Iterator[IPv4Address]:
        for ip in network.hosts():
            if int(ip) & 0xFF in (0, 1, 255) or ip in used:
                continue
            used.add(ip)
            yield ip
        raise LabError(f"no free address left in {network}")

    return hosts()


def free_cidrs(pool: IPv4Network, used: set[IPv4Address]) -> Iterator[IPv4Network]:
    """/24 networks of `pool` (from its second one) that hold no address in use."""

    def cidrs() -> Iterator[IPv4Network]:
        for subnet in list(pool.subnets(new_prefix=24))[1:]:
            if not any(ip in subnet for ip in used):
                yield subnet
        raise LabError(f"no free /24 left in {pool} for pod addresses")

    return cidrs()

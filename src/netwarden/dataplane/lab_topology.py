"""The lab plan's records: namespaces, veth links, addresses, neighbours, routes, nodes,
endpoints and servers, and the text forms of served ports and external endpoints.

Topology, Calico style (pure L3, no bridge, no ARP):

    pod ns  eth0 POD/32 ─veth─ nwXXXXXXXXXX  node ns  eth0 NODE/32 ─veth─ nwYYYYYYYYYY  fabric ns
    ext ns  eth0 EXT/32 ─────────────────────────────────────────────veth─ nwZZZZZZZZZZ  fabric ns

Every link is point to point. The router end (node side of a pod link, fabric side of a node or
external link) has the MAC ee:ee:ee:ee:ee:ee and no address; the leaf end holds the leaf's
addresses and a default route via 169.254.1.1, the router end's fixed MAC, through a permanent
neighbour entry (what Calico does, without proxy ARP). Routers reach each leaf through a /32
route and a permanent neighbour entry, so no ARP ever runs. The fabric namespace joins the
nodes (one link per node, not a mesh) and is the gateway of the external endpoints; it routes
each pod /32 via its node. hostNetwork pods live in their node's namespace at its addresses,
and so do Calico host endpoints: their `expectedIPs` join the node's addresses (on the node's
link to the fabric), and the node namespace serves their named ports and Felix's failsafe
inbound ports, so that probes to them cross the node's compiled host endpoint chains.
Nothing is connected to the root namespace: lab traffic cannot leave the lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, ip_address

from netwarden.errors import LabError
from netwarden.model import (
    PORTED_PROTOCOLS,
    TCP,
    UDP,
    EndpointKind,
    parse_protocol,
    protocol_name,
)

#: Protocols the lab serves and probes (this kernel has no SCTP sockets).
LAB_PROTOCOLS = (TCP, UDP)
#: The router end of every link: Calico's MAC and gateway address.
ROUTER_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY = IPv4Address("169.254.1.1")


class Role(StrEnum):
    FABRIC = "fabric"
    NODE = "node"
    POD = "pod"
    EXTERNAL = "external"


@dataclass(frozen=True, order=True)
class ServedPort:
    """A port a lab server listens on."""

    port: int
    protocol: int

    def __str__(self) -> str:
        return f"{self.port}/{protocol_name(self.protocol)}"


@dataclass(frozen=True)
class LabNamespace:
    name: str
    role: Role
    forwarding: bool  # routers (fabric, nodes) forward between their links


@dataclass(frozen=True)
class LabLink:
    """A veth pair, created from the router's namespace with the leaf end moved at once."""

    router_netns: str
    router_ifname: str
    leaf_netns: str
    leaf_ifname: str
    leaf_mac: str


@dataclass(frozen=True)
class LabAddress:
    netns: str
    ifname: str
    ip: IPv4Address


@dataclass(frozen=True)
class LabNeighbor:
    """A permanent neighbour entry: `ip` is reached at `mac` on `ifname`."""

    netns: str
    ifname: str
    ip: IPv4Address
    mac: str


@dataclass(frozen=True)
class LabRoute:
    """`destination` (None: default) out of `ifname`, via a next hop or on-link, from `src`."""

    netns: str
    destination: IPv4Network | None
    ifname: str
    via: IPv4Address | None = None
    src: IPv4Address | None = None


@dataclass(frozen=True)
class LabNode:
    name: str
    netns: str
    ips: tuple[IPv4Address, ...]
    pod_cidr: IPv4Network


@dataclass(frozen=True)
class LabEndpoint:
    """An endpoint as the lab runs it: `key` is the name probes use (`ns/pod` or the address)."""

    key: str
    kind: EndpointKind
    netns: str
    ips: tuple[IPv4Address, ...]
    node: str | None
    served: tuple[ServedPort, ...]


@dataclass(frozen=True)
class LabServer:
    """One server process: every port of every endpoint in `netns`, on each of `ips`."""

    netns: str
    ips: tuple[IPv4Address, ...]
    ports: tuple[ServedPort, ...]


@dataclass(frozen=True)
class LabPlan:
    name: str
    prefix: str  # every namespace and process of the lab carries it: `nw-<name>-`
    namespaces: tuple[LabNamespace, ...]
    links: tuple[LabLink, ...]
    addresses: tuple[LabAddress, ...]
    neighbors: tuple[LabNeighbor, ...]
    routes: tuple[LabRoute, ...]
    nodes: tuple[LabNode, ...]
    endpoints: tuple[LabEndpoint, ...]
    servers: tuple[LabServer, ...]
    warnings: tuple[str, ...] = ()

    def endpoint(self, name: str) -> LabEndpoint | None:
        """`ns/pod`, or an address: an endpoint's, else a node's (the node namespace itself)."""
        for endpoint in self.endpoints:
            if endpoint.key == name:
                return endpoint
        try:
            ip = ip_address(name)
        except ValueError:
            return None
        if not isinstance(ip, IPv4Address):
            return None
        for endpoint in self.endpoints:
            if ip in endpoint.ips:
                return endpoint
        for node in self.nodes:
            if ip in node.ips:
                return LabEndpoint(name, EndpointKind.HOST, node.netns, (ip,), node.name, ())
        return None


@dataclass(frozen=True)
class ExternalSpec:
    """An external endpoint asked for with `--external IP[=PORT/PROTO,...]`; no ports means
    it serves every port some pod serves, so probes to it test policies, not the lab."""

    ip: IPv4Address
    ports: tuple[ServedPort, ...] | None = None


def parse_external(text: str) -> ExternalSpec:
    """`203.0.113.7` or `203.0.113.7=443/TCP,53/UDP`.

    >>> parse_external("203.0.113.7=443/tcp").ports
    (ServedPort(port=443, protocol=6),)
    """
    address, _, ports_text = text.partition("=")
    try:
        ip = ip_address(address.strip())
    except ValueError:
        raise LabError(f"invalid external {text!r}: expected IP[=PORT/PROTO,...]") from None
    if not isinstance(ip, IPv4Address):
        raise LabError(f"external {ip}: the lab is IPv4 only")
    return ExternalSpec(ip, parse_ports(ports_text) if ports_text else None)


def parse_ports(text: str) -> tuple[ServedPort, ...]:
    """`8080/TCP,5353/udp,80` (TCP when no protocol is given) -> sorted distinct ports.

    >>> [str(p) for p in parse_ports("53/udp, 80")]
    ['53/UDP', '80/TCP']
    """
    ports = set()
    for item in text.split(","):
        port, _, protocol_text = item.strip().partition("/")
        protocol = parse_protocol(protocol_text.strip() or "TCP")
        if not port.isdigit() or not 1 <= int(port) <= 65535 or protocol not in PORTED_PROTOCOLS:
            raise LabError(
                f"invalid port {item.strip()!r}: expected PORT/TCP, PORT/UDP or PORT/SCTP"
            )
        ports.add(ServedPort(int(port), protocol))
    return tuple(sorted(ports))

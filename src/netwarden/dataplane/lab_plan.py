"""The lab's plan: a cluster turned into namespaces, veth links, addresses, routes and servers.

`plan_lab` is pure (no root, no I/O): everything `apply_lab` creates is decided here, so that it
can be unit-tested, printed (`lab up --dry-run`) and saved for `lab probe` / `lab down`.

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

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, ip_address

from netwarden.engine.decide import FAILSAFE_INBOUND
from netwarden.errors import LabError
from netwarden.model import (
    PORTED_PROTOCOLS,
    TCP,
    UDP,
    ClusterState,
    Endpoint,
    EndpointKind,
    IPAddress,
    parse_protocol,
    protocol_name,
)

#: Protocols the lab serves and probes (this kernel has no SCTP sockets).
LAB_PROTOCOLS = (TCP, UDP)
#: The router end of every link: Calico's MAC and gateway address.
ROUTER_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY = IPv4Address("169.254.1.1")
#: Names of everything a lab creates start with `<prefix>-<lab>-`.
DEFAULT_PREFIX = "nw"
#: Nodes made when the inventory names none, so that cross-node paths are still exercised.
DEFAULT_NODES = 2
#: Addresses for nodes without an InternalIP, and the /24 pod CIDRs for pods without an IP.
NODE_POOL = IPv4Network("172.31.0.0/16")
POD_POOL = IPv4Network("10.244.0.0/14")

_LAB_NAME = re.compile(r"[a-z0-9]{1,12}")
_PREFIX = re.compile(r"[a-z]{1,5}")
_SAFE_PART = re.compile(r"[a-z0-9][a-z0-9.-]*")
_MAX_NETNS = 200  # /run/netns/<name> must stay a valid file name (255 bytes)
#: Endpoints that live in their node's namespace, at its addresses.
_ON_NODE = (EndpointKind.HOST, EndpointKind.HOST_ENDPOINT)


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


def check_lab_name(name: str) -> str:
    """Lab names are 1-12 lower-case letters and digits: no `-`, so `nw-<name>-` never is the
    prefix of another lab's names."""
    if not _LAB_NAME.fullmatch(name):
        raise LabError(f"invalid lab name {name!r}: expected 1-12 lower-case letters and digits")
    return name


def lab_prefix(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`nw-<name>-`: the start of every namespace name of the lab."""
    if not _PREFIX.fullmatch(prefix):
        raise LabError(f"invalid lab prefix {prefix!r}: expected 1-5 lower-case letters")
    return f"{prefix}-{check_lab_name(name)}-"


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


def plan_lab(
    cluster: ClusterState,
    name: str,
    *,
    served: Mapping[str, Sequence[ServedPort]] | None = None,
    externals: Sequence[ExternalSpec] = (),
    prefix: str = DEFAULT_PREFIX,
    default_nodes: int = DEFAULT_NODES,
) -> LabPlan:
    """Everything the lab for `cluster` creates.

    `served` gives the ports each endpoint (by key) serves; without it, pods serve their named
    ports (the only ones the model keeps) and host endpoints theirs and the failsafe inbound
    ports. Pods keep their addresses; pods without one get the
    next free address of their node's pod CIDR; pods without a node are spread over the nodes
    in inventory order. IPv6 addresses are left out with a warning (the lab is IPv4 only).
    """
    builder = _Builder(lab_prefix(name, prefix), name, prefix)
    builder.place(cluster, default_nodes)
    builder.build(cluster, served, externals)
    return builder.plan()


@dataclass
class _Placed:
    endpoint: Endpoint
    node: str | None
    ips: list[IPv4Address]


@dataclass
class _Builder:
    """Collects the plan's parts; used once by `plan_lab`."""

    lab_prefix: str
    name: str
    prefix: str
    warnings: list[str] = field(default_factory=list)
    node_ips: dict[str, list[IPv4Address]] = field(default_factory=dict)
    placed: list[_Placed] = field(default_factory=list)
    used: set[IPv4Address] = field(default_factory=set)
    namespaces: list[LabNamespace] = field(default_factory=list)
    links: list[LabLink] = field(default_factory=list)
    addresses: list[LabAddress] = field(default_factory=list)
    neighbors: list[LabNeighbor] = field(default_factory=list)
    routes: list[LabRoute] = field(default_factory=list)
    nodes: list[LabNode] = field(default_factory=list)
    endpoints: list[LabEndpoint] = field(default_factory=list)
    servers: list[LabServer] = field(default_factory=list)
    ifnames: dict[tuple[str, str], str] = field(default_factory=dict)

    def place(self, cluster: ClusterState, default_nodes: int) -> None:
        """Decide nodes, node addresses and each endpoint's node and IPv4 addresses."""
        for node in cluster.nodes:
            self.node_ips[node.name] = self._ipv4(node.ips, f"node {node.name}")
        for endpoint in cluster.endpoints:
            if endpoint.node is not None and endpoint.node not in self.node_ips:
                self.node_ips[endpoint.node] = []  # named by a pod, not declared: made here
        for endpoint in cluster.endpoints:
            ips = self._ipv4(endpoint.ips, endpoint.key)
            if endpoint.ips and not ips:
                raise LabError(f"{endpoint.key}: has only IPv6 addresses; the lab is IPv4 only")
            if endpoint.kind is EndpointKind.HOST_ENDPOINT and not ips:
                self.warnings.append(
                    f"host endpoint {endpoint.key}: no expectedIPs, so no flow is its own; "
                    "left out of the lab"
                )
                continue
            on = endpoint.node
            if on is None and endpoint.kind is EndpointKind.HOST:
                on = next((n for n, a in self.node_ips.items() if set(ips) & set(a)), None)
            self.placed.append(_Placed(endpoint, on, ips))
        if not self.node_ips:
            for i in range(default_nodes):
                self.node_ips[f"node-{i}"] = []
        names = list(self.node_ips)
        unplaced = [
            p
            for p in self.placed
            if p.node is None and p.endpoint.kind is not EndpointKind.EXTERNAL
        ]
        for i, item in enumerate(unplaced):
            item.node = names[i % len(names)]
        self._check_addresses()
        hosts = [p for p in self.placed if p.endpoint.kind in _ON_NODE]
        for item in hosts:  # a hostNetwork pod's or host endpoint's addresses are its node's
            assert item.node is not None
            node_ips = self.node_ips[item.node]
            node_ips.extend(ip for ip in item.ips if ip not in node_ips)
        node_pool = _free_hosts(NODE_POOL, self.used)
        for ips in self.node_ips.values():
            if not ips:
                ips.append(next(node_pool))
        for item in hosts:
            item.ips = item.ips or list(self.node_ips[item.node or ""])

    def _ipv4(self, ips: Iterable[IPAddress], what: str) -> list[IPv4Address]:
        kept = [ip for ip in ips if isinstance(ip, IPv4Address)]
        dropped = [str(ip) for ip in ips if not isinstance(ip, IPv4Address)]
        if dropped and kept:
            self.warnings.append(f"{what}: IPv6 {', '.join(dropped)} not set up (IPv4-only lab)")
        return kept

    def _check_addresses(self) -> None:
        """An address belongs to one pod or external, or to one node and its host pods."""
        owners: dict[IPv4Address, str] = {GATEWAY: "the lab's gateway"}
        for node_name, ips in self.node_ips.items():
            for ip in ips:
                self._own(owners, ip, f"node/{node_name}")
        for item in self.placed:
            for ip in item.ips:
                if item.endpoint.kind in _ON_NODE:
                    if owners.get(ip) == f"node/{item.node}":
                        continue
                    self._own(owners, ip, f"node/{item.node}")
                else:
                    self._own(owners, ip, item.endpoint.key)
        self.used.update(owners)

    @staticmethod
    def _own(owners: dict[IPv4Address, str], ip: IPv4Address, owner: str) -> None:
        if ip in owners and owners[ip] != owner:
            raise LabError(f"address {ip} is used by both {owners[ip]} and {owner}")
        owners[ip] = owner

    def build(
        self,
        cluster: ClusterState,
        served: Mapping[str, Sequence[ServedPort]] | None,
        externals: Sequence[ExternalSpec],
    ) -> None:
        fabric = self.lab_prefix + "fabric"
        self.namespaces.append(LabNamespace(fabric, Role.FABRIC, forwarding=True))
        pod_cidrs = _free_cidrs(POD_POOL, self.used)
        node_by_name: dict[str, LabNode] = {}
        for node_name, ips in self.node_ips.items():
            node = LabNode(node_name, self._netns("node", node_name), tuple(ips), next(pod_cidrs))
            node_by_name[node_name] = node
            self.nodes.append(node)
            self.namespaces.append(LabNamespace(node.netns, Role.NODE, forwarding=True))
            self._leaf(fabric, ("node", node_name), node.netns, node.ips)
        pod_hosts = {n.name: _free_hosts(n.pod_cidr, self.used) for n in self.nodes}
        sctp = 0
        for item in self.placed:
            endpoint = item.endpoint
            ports, dropped = self._served(endpoint, served)
            sctp += dropped
            if endpoint.kind is EndpointKind.EXTERNAL:
                self._external(fabric, ExternalSpec(IPv4Address(item.ips[0]), ports or None))
                continue
            assert item.node is not None
            node = node_by_name[item.node]
            if endpoint.kind in _ON_NODE:
                self.endpoints.append(
                    LabEndpoint(
                        endpoint.key, endpoint.kind, node.netns, tuple(item.ips), node.name, ports
                    )
                )
                continue
            ips = item.ips or [next(pod_hosts[node.name])]
            netns = self._netns("pod", f"{endpoint.namespace}.{endpoint.name}")
            self.namespaces.append(LabNamespace(netns, Role.POD, forwarding=False))
            self._leaf(node.netns, ("pod", endpoint.key), netns, tuple(ips), src=node.ips[0])
            for ip in ips:  # the fabric reaches a pod through its node
                self.routes.append(
                    LabRoute(fabric, _host(ip), self._ifname(("node", node.name)), node.ips[0])
                )
            self.endpoints.append(
                LabEndpoint(endpoint.key, endpoint.kind, netns, tuple(ips), node.name, ports)
            )
        if sctp:
            self.warnings.append(f"{sctp} SCTP port(s) not served: the lab serves TCP and UDP only")
        every_port = tuple(sorted({p for e in self.endpoints for p in e.served}))
        for spec in externals:
            if spec.ip in self.used:
                raise LabError(f"external {spec.ip} is already an address of the lab's inventory")
            self.used.add(spec.ip)
            self._external(fabric, spec)
        self.endpoints = [
            e if e.kind is not EndpointKind.EXTERNAL or e.served else _with_ports(e, every_port)
            for e in self.endpoints
        ]
        self._servers()

    def _served(
        self, endpoint: Endpoint, served: Mapping[str, Sequence[ServedPort]] | None
    ) -> tuple[tuple[ServedPort, ...], int]:
        """The TCP/UDP ports the endpoint serves, and how many SCTP ports were left out."""
        if served is not None and endpoint.key in served:
            ports = set(served[endpoint.key])
        else:
            ports = {ServedPort(p.port, p.protocol) for p in endpoint.ports}
            if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                ports |= {ServedPort(port, protocol) for protocol, port in FAILSAFE_INBOUND}
        kept = tuple(sorted(p for p in ports if p.protocol in LAB_PROTOCOLS))
        return kept, len(ports) - len(kept)

    def _external(self, fabric: str, spec: ExternalSpec) -> None:
        netns = self._netns("ext", str(spec.ip))
        self.namespaces.append(LabNamespace(netns, Role.EXTERNAL, forwarding=False))
        self._leaf(fabric, ("ext", str(spec.ip)), netns, (spec.ip,))
        self.endpoints.append(
            LabEndpoint(
                str(spec.ip), EndpointKind.EXTERNAL, netns, (spec.ip,), None, spec.ports or ()
            )
        )

    def _leaf(
        self,
        router: str,
        what: tuple[str, str],
        leaf: str,
        ips: Sequence[IPv4Address],
        src: IPv4Address | None = None,
    ) -> None:
        """A point-to-point link from `router` to `leaf`, with the routes both ways."""
        parts = leaf_parts(
            router, self._ifname(what), leaf, _leaf_mac(self.lab_prefix, what), ips, src
        )
        self.links.append(parts.link)
        self.addresses += parts.addresses
        self.routes += parts.routes
        self.neighbors += parts.neighbors

    def _ifname(self, what: tuple[str, str]) -> str:
        if what not in self.ifnames:
            name = interface_name(self.lab_prefix, self.prefix, what)
            if name in self.ifnames.values():
                raise LabError(f"interface name clash for {what[0]} {what[1]}: rename the lab")
            self.ifnames[what] = name
        return self.ifnames[what]

    def _netns(self, role: str, name: str) -> str:
        return netns_name(self.lab_prefix, role, name)

    def _servers(self) -> None:
        by_netns: dict[str, LabServer] = {}
        for endpoint in self.endpoints:
            if not endpoint.served:
                continue
            known = by_netns.get(endpoint.netns)
            ips = tuple(dict.fromkeys((*(known.ips if known else ()), *endpoint.ips)))
            ports = tuple(sorted({*(known.ports if known else ()), *endpoint.served}))
            by_netns[endpoint.netns] = LabServer(endpoint.netns, ips, ports)
        self.servers = list(by_netns.values())

    def plan(self) -> LabPlan:
        return LabPlan(
            name=self.name,
            prefix=self.lab_prefix,
            namespaces=tuple(self.namespaces),
            links=tuple(self.links),
            addresses=tuple(self.addresses),
            neighbors=tuple(self.neighbors),
            routes=tuple(self.routes),
            nodes=tuple(self.nodes),
            endpoints=tuple(self.endpoints),
            servers=tuple(self.servers),
            warnings=tuple(self.warnings),
        )


def netns_name(lab_prefix: str, role: str, name: str) -> str:
    """The namespace of a lab part: `<lab prefix><role>-<name>` (a digest when the name is
    not safe as a file name, shortened when too long)."""
    part = name if _SAFE_PART.fullmatch(name) else _digest(name)
    full = f"{lab_prefix}{role}-{part}"
    if len(full) > _MAX_NETNS:
        full = f"{full[: _MAX_NETNS - 11]}-{_digest(full)}"
    return full


def interface_name(lab_prefix: str, prefix: str, what: tuple[str, str]) -> str:
    """`nw` + 10 hex digits: within the 15 characters Linux allows, unique per lab."""
    digest = hashlib.sha256(f"{lab_prefix}{what[0]}/{what[1]}".encode()).hexdigest()
    return f"{prefix}{digest[: 15 - len(prefix) - 3]}"


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
            *(LabRoute(router, _host(ip), ifname, src=src) for ip in ips),
            LabRoute(leaf, None, "eth0", via=GATEWAY),
        ),
        (
            *(LabNeighbor(router, ifname, ip, mac) for ip in ips),
            LabNeighbor(leaf, "eth0", GATEWAY, ROUTER_MAC),
        ),
    )


def leaf_mac(lab_prefix: str, what: tuple[str, str]) -> str:
    return _leaf_mac(lab_prefix, what)


def free_hosts(network: IPv4Network, used: set[IPv4Address]) -> Iterator[IPv4Address]:
    return _free_hosts(network, used)


def _with_ports(endpoint: LabEndpoint, ports: tuple[ServedPort, ...]) -> LabEndpoint:
    return LabEndpoint(
        endpoint.key, endpoint.kind, endpoint.netns, endpoint.ips, endpoint.node, ports
    )


def _host(ip: IPv4Address) -> IPv4Network:
    return IPv4Network(f"{ip}/32")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _leaf_mac(lab_prefix: str, what: tuple[str, str]) -> str:
    """A locally administered unicast MAC (02:...), stable for the same lab and endpoint."""
    digest = hashlib.sha256(f"{lab_prefix}{what[0]}/{what[1]}/mac".encode()).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


def _free_hosts(network: IPv4Network, used: set[IPv4Address]) -> Iterator[IPv4Address]:
    """Host addresses of `network` from .2 on that no one uses yet; marks each one used."""

    def hosts() -> Iterator[IPv4Address]:
        for ip in network.hosts():
            if int(ip) & 0xFF in (0, 1, 255) or ip in used:
                continue
            used.add(ip)
            yield ip
        raise LabError(f"no free address left in {network}")

    return hosts()


def _free_cidrs(pool: IPv4Network, used: set[IPv4Address]) -> Iterator[IPv4Network]:
    """/24 networks of `pool` (from its second one) that hold no address in use."""

    def cidrs() -> Iterator[IPv4Network]:
        for subnet in list(pool.subnets(new_prefix=24))[1:]:
            if not any(ip in subnet for ip in used):
                yield subnet
        raise LabError(f"no free /24 left in {pool} for pod addresses")

    return cidrs()

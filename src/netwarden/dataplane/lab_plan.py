"""The lab's plan: a cluster turned into namespaces, veth links, addresses, routes and servers.

`plan_lab` is pure (no root, no I/O): everything `apply_lab` creates is decided here, so that it
can be unit-tested, printed (`lab up --dry-run`) and saved for `lab probe` / `lab down`.

The plan's records and the topology they make are in `lab_topology`, the names of what the
lab creates in `lab_naming`, the links and free addresses in `lab_addressing`; the planner
here places every endpoint on a node and namespace and assembles the plan from them. What
callers of `plan_lab` import with it (`LabPlan`, `ServedPort`, `ExternalSpec`, `parse_ports`,
...) is re-exported here, listed in `__all__`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from netwarden.dataplane.lab_addressing import (
    NODE_POOL,
    POD_POOL,
    free_cidrs,
    free_hosts,
    host_network,
    leaf_parts,
)
from netwarden.dataplane.lab_naming import (
    DEFAULT_PREFIX,
    interface_name,
    lab_prefix,
    leaf_mac,
    netns_name,
)
from netwarden.dataplane.lab_topology import (
    GATEWAY,
    LAB_PROTOCOLS,
    ExternalSpec,
    LabAddress,
    LabEndpoint,
    LabLink,
    LabNamespace,
    LabNeighbor,
    LabNode,
    LabPlan,
    LabRoute,
    LabServer,
    Role,
    ServedPort,
    parse_external,
    parse_ports,
)
from netwarden.engine.decide import FAILSAFE_INBOUND
from netwarden.errors import LabError
from netwarden.model import ClusterState, Endpoint, EndpointKind, IPAddress

__all__ = [
    "DEFAULT_NODES",
    "LAB_PROTOCOLS",
    "ExternalSpec",
    "LabEndpoint",
    "LabPlan",
    "Role",
    "ServedPort",
    "lab_prefix",
    "parse_external",
    "parse_ports",
    "plan_lab",
]

#: Nodes made when the inventory names none, so that cross-node paths are still exercised.
DEFAULT_NODES = 2
#: Endpoints that live in their node's namespace, at its addresses.
_ON_NODE = (EndpointKind.HOST, EndpointKind.HOST_ENDPOINT)


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
        node_pool = free_hosts(NODE_POOL, self.used)
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
        pod_cidrs = free_cidrs(POD_POOL, self.used)
        node_by_name: dict[str, LabNode] = {}
        for node_name, ips in self.node_ips.items():
            node = LabNode(node_name, self._netns("node", node_name), tuple(ips), next(pod_cidrs))
            node_by_name[node_name] = node
            self.nodes.append(node)
            self.namespaces.append(LabNamespace(node.netns, Role.NODE, forwarding=True))
            self._leaf(fabric, ("node", node_name), node.netns, node.ips)
        pod_hosts = {n.name: free_hosts(n.pod_cidr, self.used) for n in self.nodes}
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
                    LabRoute(
                        fabric, host_network(ip), self._ifname(("node", node.name)), node.ips[0]
                    )
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
            router, self._ifname(what), leaf, leaf_mac(self.lab_prefix, what), ips, src
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


def _with_ports(endpoint: LabEndpoint, ports: tuple[ServedPort, ...]) -> LabEndpoint:
    return LabEndpoint(
        endpoint.key, endpoint.kind, endpoint.netns, endpoint.ips, endpoint.node, ports
    )

"""A rule's matches as addresses and ports: its peers and its own (`local`) end as known
addresses and external ranges per family, its ports and notPorts as a `PortSelection`.

The engine's own matching functions (`peer_matches`, `entity_matches`, `Endpoint.named_port`)
decide every address and named port, so nothing here re-implements semantics. The engine
decides per endpoint; a packet only shows an address. Where two endpoints share an address
(hostNetwork pods, their node and its host endpoint) and a peer or a rule's own-end match
tells them apart, resolving fails with a `CompileError` instead of guessing. Named ports on a
shared address are the union of what the endpoints there declare.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from itertools import pairwise

from netwarden.engine.entity import entity_matches
from netwarden.engine.matching import peer_matches
from netwarden.engine.ranges import (
    ADDRESS_BITS,
    AddressRange,
    address_at,
    merge_atoms,
    merge_ports,
)
from netwarden.engine.resolved import (
    FAMILIES,
    AddressMatch,
    AddressPort,
    PortSelection,
    ProtocolPorts,
)
from netwarden.errors import CompileError
from netwarden.model import (
    ALL_PORTS,
    PORTED_PROTOCOLS,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EntityMatch,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    Peer,
    PortMatch,
    PortRange,
    external_endpoint,
)


class MatchResolver:
    """Resolves the peers, own ends and ports of rules for one cluster; results are cached by
    content."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self._peers: dict[tuple[tuple[Peer, ...], bool], tuple[AddressMatch, ...]] = {}
        self._ports: dict[tuple[PortMatch, ...], PortSelection | None] = {}

    # --- addresses ------------------------------------------------------------------------

    @cached_property
    def at_address(self) -> dict[IPAddress, list[Endpoint]]:
        """Every known address with the endpoints that hold it (a node address that no
        endpoint holds stands for itself, as the engine sees it)."""
        found: dict[IPAddress, list[Endpoint]] = {}
        for endpoint in self.cluster.endpoints:
            for ip in endpoint.ips:
                found.setdefault(ip, []).append(endpoint)
        for node in self.cluster.nodes:
            for ip in node.ips:
                found.setdefault(ip, [external_endpoint(ip)])
        return found

    @cached_property
    def atoms(self) -> dict[int, list[AddressRange]]:
        """The address space of each family cut at every boundary anything mentions."""
        bounds: dict[int, set[int]] = {
            family: {0, 2 ** ADDRESS_BITS[family]} for family in FAMILIES
        }
        for network in self._networks():
            start = int(network.network_address)
            bounds[network.version] |= {start, start + network.num_addresses}
        for ip in self._pinned():
            bounds[ip.version] |= {int(ip), int(ip) + 1}
        atoms: dict[int, list[AddressRange]] = {}
        for family, cuts in bounds.items():
            ordered = sorted(cuts)
            atoms[family] = [
                AddressRange(address_at(family, low), address_at(family, high - 1))
                for low, high in pairwise(ordered)
            ]
        return atoms

    def _networks(self) -> Iterable[IPNetwork]:
        for network_set in self.cluster.network_sets:
            yield from network_set.nets
        for policy in self.cluster.policies:
            for direction in Direction:
                for rule in policy.rules(direction) or ():
                    for peer in (*rule.peers, rule.local):
                        if isinstance(peer, NetworkPeer):
                            yield peer.cidr
                            yield from peer.excepted
                        elif isinstance(peer, EntityMatch):
                            yield from peer.nets
                            yield from peer.not_nets

    def _pinned(self) -> Iterable[IPAddress]:
        """Addresses decided one by one: nodes' (node peers) and Services' endpoints."""
        for node in self.cluster.nodes:
            yield from node.ips
        for service in self.cluster.services:
            yield from service.ips

    def _address_matches(
        self, peers: Sequence[Peer], ip: IPAddress, endpoints: Sequence[Endpoint], what: str
    ) -> bool:
        """Whether an address matches any of `peers`, the same for every endpoint there."""
        seen = {any(peer_matches(p, e, ip, self.cluster) for p in peers) for e in endpoints}
        if len(seen) > 1:
            names = ", ".join(sorted(e.key for e in endpoints))
            raise CompileError(
                f"{what}: address {ip} is shared by {names}, which the rule's peers tell apart; "
                "a packet only shows the address, so this cannot be enforced exactly"
            )
        return seen.pop()

    # --- peers ----------------------------------------------------------------------------

    def peer(
        self, peers: tuple[Peer, ...], destination: bool, what: str
    ) -> tuple[AddressMatch, ...]:
        """The addresses `peers` (any of them) match, per family. At a destination, a
        `services` peer whose Service lists ports also checks the port."""
        key = (peers, destination)
        if key not in self._peers:
            self._peers[key] = tuple(
                self._peer_family(peers, destination, family, what) for family in FAMILIES
            )
        return self._peers[key]

    def _peer_family(
        self, peers: tuple[Peer, ...], destination: bool, family: int, what: str
    ) -> AddressMatch:
        by_port = [p for p in peers if destination and self._service_ports(p)]
        free = [p for p in peers if p not in by_port]
        known = frozenset(
            ip
            for ip, endpoints in self.at_address.items()
            if ip.version == family and free and self._address_matches(free, ip, endpoints, what)
        )
        # An atom that is one known address never reaches the `external` test: it may join
        # its neighbours (fewer ranges) but never stands alone.
        external = merge_atoms(
            (
                atom,
                None
                if atom.start == atom.end and atom.start in self.at_address
                else bool(free)
                and any(
                    peer_matches(p, external_endpoint(atom.start), atom.start, self.cluster)
                    for p in free
                ),
            )
            for atom in self.atoms[family]
        )
        match = AddressMatch(family, known, external)
        ports = frozenset(
            entry
            for peer in by_port
            for entry in self._service_entries(peer, family, what)
            if not self._covers(match, entry.address)
        )
        return AddressMatch(family, known, external, ports)

    def _service_ports(self, peer: Peer) -> bool:
        if not isinstance(peer, EntityMatch) or peer.service is None:
            return False
        service = self.cluster.services_by_key.get(peer.service)
        return service is not None and bool(service.ports)

    def _service_entries(self, peer: Peer, family: int, what: str) -> Iterable[AddressPort]:
        assert isinstance(peer, EntityMatch) and peer.service is not None
        service = self.cluster.services_by_key[peer.service]
        for ip in service.ips:
            if ip.version != family:
                continue
            endpoints = self.at_address.get(ip) or [external_endpoint(ip)]
            if self._address_matches([peer], ip, endpoints, what):
                for port in service.ports:
                    yield AddressPort(ip, port.protocol, port.port)

    def _covers(self, match: AddressMatch, ip: IPAddress) -> bool:
        if ip in self.at_address:
            return ip in match.known
        return any(int(r.start) <= int(ip) <= int(r.end) for r in match.external)

    def local(
        self, local: EntityMatch, destination: bool, subjects: Sequence[Endpoint]
    ) -> tuple[AddressMatch, ...]:
        """The subjects' own addresses that a rule's `local` match accepts, per family."""
        by_port = destination and self._service_ports(local)
        matched: set[IPAddress] = set()
        entries: set[AddressPort] = set()
        for endpoint in subjects:
            for ip in endpoint.ips:
                if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                    # The engine matches a rule's own end on the flow's endpoint, which may be
                    # a hostNetwork pod at the host endpoint's address: all must agree.
                    holders = self.at_address.get(ip) or [endpoint]
                    seen = {entity_matches(local, e, ip, self.cluster)[0] for e in holders}
                    if len(seen) > 1:
                        names = ", ".join(sorted(e.key for e in holders))
                        raise CompileError(
                            f"{endpoint.key}: address {ip} is shared by {names}, which a rule's "
                            "own-end match tells apart; this cannot be enforced exactly"
                        )
                if not entity_matches(local, endpoint, ip, self.cluster)[0]:
                    continue
                if not by_port:
                    matched.add(ip)
                    continue
                assert local.service is not None
                for port in self.cluster.services_by_key[local.service].ports:
                    entries.add(AddressPort(ip, port.protocol, port.port))
        return tuple(
            AddressMatch(
                family,
                frozenset(ip for ip in matched if ip.version == family),
                (),
                frozenset(e for e in entries if e.address.version == family),
            )
            for family in FAMILIES
        )

    # --- ports ----------------------------------------------------------------------------

    def ports(self, matches: tuple[PortMatch, ...], what: str) -> PortSelection | None:
        """Any of `matches`; None when one of them matches every packet."""
        if matches not in self._ports:
            self._ports[matches] = self._resolve_ports(matches, what)
        return self._ports[matches]

    def _resolve_ports(self, matches: tuple[PortMatch, ...], what: str) -> PortSelection | None:
        ranges: dict[int, list[PortRange]] = {}
        protocols: set[int] = set()
        names: list[PortMatch] = []
        for match in matches:
            if match.name is not None:
                names.append(match)
            elif match.protocol is None:
                if match.ports is None:
                    return None
                raise CompileError(f"{what}: a port range without a protocol ({match})")
            elif match.protocol in PORTED_PROTOCOLS:
                ranges.setdefault(match.protocol, []).append(match.ports or ALL_PORTS)
            elif match.ports is None:
                protocols.add(match.protocol)
            else:
                raise CompileError(f"{what}: ports on portless protocol {match}")
        merged = tuple(
            ProtocolPorts(protocol, span)
            for protocol in sorted(ranges)
            for span in merge_ports(ranges[protocol])
        )
        named = tuple(
            frozenset(
                entry
                for entry in self._named(names, family)
                if not any(r.protocol == entry.protocol and entry.port in r.ports for r in merged)
            )
            for family in FAMILIES
        )
        return PortSelection(merged, tuple(sorted(protocols)), named)

    def _named(self, names: Sequence[PortMatch], family: int) -> Iterable[AddressPort]:
        """(address, protocol, port) where an endpoint declares one of the named ports; the
        engine's own lookup (`Endpoint.named_port`) picks the number."""
        for endpoint in self.cluster.endpoints:
            declared = {p.protocol for p in endpoint.ports}
            for match in names:
                assert match.name is not None
                for protocol in sorted(declared):
                    if match.protocol is not None and match.protocol != protocol:
                        continue
                    port = endpoint.named_port(match.name, protocol)
                    if port is None:
                        continue
                    for ip in endpoint.ips:
                        if ip.version == family:
                            yield AddressPort(ip, protocol, port)

"""Port atoms and IP-range atoms: the protocol/port space and the address space, cut at every
boundary the policies (and the inventory) mention, so that every flow inside one atom is
decided alike.

- Port atoms, per protocol: TCP, UDP, SCTP, ICMP, ICMPv6 and every protocol a rule names get
  their own atoms; ported protocols are cut at every port range's ends, every named port's
  number (named ports resolve per destination, so each declared number is an atom of its own),
  every Service port and, with host endpoints, every failsafe port. One more atom stands for
  every protocol nobody names (`other`). An ICMP atom is an echo request, the engine's ICMP flow.
- IP atoms, per family: the whole space cut at every CIDR of a rule (ipBlock, except, nets,
  notNets), of a network set, of a Service's and a node's addresses. An atom stands for its
  addresses that no endpoint of the inventory holds (those addresses are the endpoints), and
  is dropped when it has none; its `representative` is the first such address.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, summarize_address_range
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from netwarden.analysis.portset import PORTED_RANGE, PortSet
from netwarden.engine.decide import FAILSAFE_INBOUND, FAILSAFE_OUTBOUND
from netwarden.engine.endpoint_vectors import Ints
from netwarden.model import (
    ICMP,
    ICMPV6,
    PORTED_PROTOCOLS,
    SCTP,
    TCP,
    UDP,
    ClusterState,
    EndpointKind,
    EntityMatch,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    PortMatch,
    PortRange,
    Rule,
)

#: Protocols that always get atoms of their own, named or not.
BASE_PROTOCOLS = (ICMP, TCP, UDP, ICMPV6, SCTP)
_SPACE = {4: 1 << 32, 6: 1 << 128}


@dataclass(frozen=True)
class IPRange:
    """An inclusive range of addresses of one family, written `a.b.c.d-e.f.g.h`."""

    start: IPAddress
    end: IPAddress

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    @property
    def version(self) -> int:
        return self.start.version

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, IPv4Address | IPv6Address) or ip.version != self.version:
            return False
        return int(self.start) <= int(ip) <= int(self.end)

    def networks(self) -> list[IPNetwork]:
        """The range as the fewest CIDR blocks."""
        return list(summarize_address_range(self.start, self.end))

    def cidrs(self) -> str:
        """`10.0.0.0/8,11.0.0.0/16`: the CIDR form when short, else the `a-b` form."""
        networks = self.networks()
        return ",".join(str(n) for n in networks) if len(networks) <= 2 else str(self)


class PortAtoms(NamedTuple):
    """Atoms as columns: protocol, first and last port (0, 0 for portless protocols; the
    representative port is `start`), and whether the atom is `other` (every unnamed
    protocol, `protocol` is one of them)."""

    protocol: Ints
    start: Ints
    end: Ints
    other: int  # index of the `other` atom

    def __len__(self) -> int:
        return int(self.protocol.shape[0])

    def port_set(self, allowed: Iterable[int]) -> PortSet:
        """The atoms at these indices as a PortSet."""
        open_ports: dict[int, list[PortRange]] = {int(p): [] for p in self.protocol}
        others = False
        for atom in allowed:
            if atom == self.other:
                others = True
                continue
            protocol = int(self.protocol[atom])
            open_ports[protocol].append(PortRange(int(self.start[atom]), int(self.end[atom])))
        del open_ports[int(self.protocol[self.other])]
        return PortSet.build(open_ports, others)

    def atoms_of(self, ports: PortSet) -> Ints:
        """The atoms inside `ports` (an atom is wholly in or out when `ports` came from this
        map)."""
        found = []
        for atom in range(len(self)):
            protocol = int(self.protocol[atom])
            if atom == self.other:
                inside = ports.others
            else:
                inside = any(
                    r.start <= int(self.start[atom]) <= r.end for r in ports.ports(protocol)
                )
            if inside:
                found.append(atom)
        return np.array(found, dtype=np.int64)


def enforced_rules(cluster: ClusterState) -> Iterator[Rule]:
    """Every rule of the enforced policies and the profiles, ingress then egress of each."""
    for policy in cluster.enforced_policies:
        yield from policy.ingress or ()
        yield from policy.egress or ()
    for profile in cluster.profiles:
        yield from profile.ingress
        yield from profile.egress


def port_atoms(cluster: ClusterState) -> PortAtoms:
    """Atoms of the protocol/port space for `cluster` (see the module docstring)."""
    protocols = set(BASE_PROTOCOLS)
    cuts: dict[int, set[int]] = {p: set() for p in PORTED_PROTOCOLS}

    def cut(protocol: int | None, start: int, end: int) -> None:
        for p in PORTED_PROTOCOLS if protocol is None else (protocol,):
            if p in cuts:
                cuts[p].update((start, end + 1))

    matches: list[PortMatch] = []
    for rule in enforced_rules(cluster):
        protocols.update(p for p in (rule.protocol, rule.not_protocol) if p is not None)
        matches += rule.ports + rule.not_ports
    for match in matches:
        if match.protocol is not None:
            protocols.add(match.protocol)
        if match.ports is not None:
            cut(match.protocol, match.ports.start, match.ports.end)
    for endpoint in cluster.endpoints:
        for declared in endpoint.ports:
            protocols.add(declared.protocol)
            cut(declared.protocol, declared.port, declared.port)
    for service in cluster.services:
        for served in service.ports:
            protocols.add(served.protocol)
            cut(served.protocol, served.port, served.port)
    if any(e.kind is EndpointKind.HOST_ENDPOINT for e in cluster.endpoints):
        for protocol, port in FAILSAFE_INBOUND | FAILSAFE_OUTBOUND:
            cut(protocol, port, port)
    protocol_col: list[int] = []
    start_col: list[int] = []
    end_col: list[int] = []
    for protocol in sorted(protocols):
        if protocol in PORTED_PROTOCOLS:
            bounds = sorted(
                {PORTED_RANGE.start, PORTED_RANGE.end + 1}
                | {c for c in cuts[protocol] if PORTED_RANGE.start < c <= PORTED_RANGE.end}
            )
            for low, high in pairwise(bounds):
                protocol_col.append(protocol)
                start_col.append(low)
                end_col.append(high - 1)
        else:
            protocol_col.append(protocol)
            start_col.append(0)
            end_col.append(0)
    other = next(p for p in range(2, 256) if p not in protocols)
    protocol_col.append(other)
    start_col.append(0)
    end_col.append(0)
    return PortAtoms(
        np.array(protocol_col, dtype=np.int64),
        np.array(start_col, dtype=np.int64),
        np.array(end_col, dtype=np.int64),
        len(protocol_col) - 1,
    )


def _networks(cluster: ClusterState) -> Iterator[IPNetwork]:
    def entity(match: EntityMatch | None) -> Iterator[IPNetwork]:
        if match is not None:
            yield from match.nets
            yield from match.not_nets

    for rule in enforced_rules(cluster):
        yield from entity(rule.local)
        for peer in rule.peers:
            if isinstance(peer, NetworkPeer):
                yield peer.cidr
                yield from peer.excepted
            elif isinstance(peer, EntityMatch):
                yield from entity(peer)
    for network_set in cluster.network_sets:
        yield from network_set.nets


def _addresses(cluster: ClusterState) -> Iterator[IPAddress]:
    for node in cluster.nodes:
        yield from node.ips
    for service in cluster.services:
        yield from service.ips


class IPAtom(NamedTuple):
    """An atom of the address space and the address that stands for it in flows."""

    range: IPRange
    representative: IPAddress


def ip_atoms(cluster: ClusterState, families: tuple[int, ...] = (4, 6)) -> list[IPAtom]:
    """Atoms of the address space of each family (see the module docstring), in order."""
    cuts: dict[int, set[int]] = {v: {0, _SPACE[v]} for v in families}
    for network in _networks(cluster):
        if network.version in cuts:
            cuts[network.version].update(
                (int(network.network_address), int(network.broadcast_address) + 1)
            )
    for ip in _addresses(cluster):
        if ip.version in cuts:
            cuts[ip.version].update((int(ip), int(ip) + 1))
    known: dict[int, list[int]] = {v: [] for v in families}
    for ip in cluster.endpoints_by_ip:
        if ip.version in known:
            known[ip.version].append(int(ip))
    atoms: list[IPAtom] = []
    for version in families:
        held = sorted(known[version])
        bounds = sorted(cuts[version])
        for low, high in pairwise(bounds):
            first = first_free(low, high - 1, held)
            if first is not None:
                whole = IPRange(_address(version, low), _address(version, high - 1))
                atoms.append(IPAtom(whole, _address(version, first)))
    return atoms


def first_free(low: int, high: int, held: list[int]) -> int | None:
    """The first of low..high not in the sorted `held`."""
    at = bisect_left(held, low)
    candidate = low
    while at < len(held) and held[at] == candidate:
        candidate += 1
        at += 1
        if candidate > high:
            return None
    return candidate


def _address(version: int, value: int) -> IPAddress:
    return IPv4Address(value) if version == 4 else IPv6Address(value)

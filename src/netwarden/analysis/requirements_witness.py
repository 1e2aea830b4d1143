"""Witnesses for `defaultDeny`: an address and a port that no rule singles out.

A workload is isolated when traffic no rule allows is denied. The flow that shows it is one
no rule can mean specifically: from (or to) an address outside the cluster that no policy
CIDR, network set or inventory address names (a /0 block names every address, so it does not
count: `0.0.0.0/0` is "anywhere", not a choice of peer), on a port no rule's port range or
named port names. If such a flow is allowed, either nothing isolates the workload or a rule
allows everything; both break default deny.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address

import numpy as np

from netwarden.analysis.atoms import PortAtoms, enforced_rules
from netwarden.analysis.requirements_search import PREFERRED_START, InCluster, atom_rank
from netwarden.model import (
    PORTED_PROTOCOLS,
    ClusterState,
    EntityMatch,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    PortMatch,
    PortRange,
)

_LAST = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


def _named_networks(cluster: ClusterState) -> Iterator[IPNetwork]:
    def entity(match: EntityMatch | None) -> Iterator[IPNetwork]:
        if match is not None:
            yield from (*match.nets, *match.not_nets)

    for rule in enforced_rules(cluster):
        yield from entity(rule.local)
        for peer in rule.peers:
            if isinstance(peer, NetworkPeer):
                yield from (peer.cidr, *peer.excepted)
            elif isinstance(peer, EntityMatch):
                yield from entity(peer)
    for network_set in cluster.network_sets:
        yield from network_set.nets


def unnamed_address(cluster: ClusterState, in_cluster: InCluster) -> IPAddress:
    """The first address outside the cluster (from 1.0.0.0, then from 2000::) that no
    network but a /0 names; the first address outside the cluster if every one is named."""
    for version in (4, 6):
        spans = sorted(
            (int(n.network_address), int(n.broadcast_address))
            for n in _named_networks(cluster)
            if n.version == version and n.prefixlen > 0
        )
        at = PREFERRED_START[version]
        for start, end in [*spans, (_LAST[version] + 1, _LAST[version] + 1)]:
            if end < at:
                continue
            if start > at:
                found = in_cluster.first_outside(version, at, start - 1)
                if found is not None:
                    return found
            at = max(at, end + 1)
            if at > _LAST[version]:
                break
    fallback = in_cluster.first_outside(4, PREFERRED_START[4], _LAST[4])
    return fallback if fallback is not None else ip_address(PREFERRED_START[4])


def _named_ports(cluster: ClusterState) -> Iterator[PortMatch]:
    for rule in enforced_rules(cluster):
        yield from rule.ports
        yield from rule.not_ports
    # A named port may resolve to any port an endpoint declares.
    for endpoint in cluster.endpoints:
        for declared in endpoint.ports:
            yield PortMatch(declared.protocol, PortRange(declared.port, declared.port))


def unnamed_atom(cluster: ClusterState, atoms: PortAtoms) -> int:
    """A port atom of a ported protocol (TCP first) whose ports no rule names by range or
    name; the atom of the protocols nobody names when every port is named."""
    named = [m for m in _named_ports(cluster) if m.ports is not None]
    rank = atom_rank(atoms)
    for atom in np.argsort(rank).tolist():
        protocol = int(atoms.protocol[atom])
        if protocol not in PORTED_PROTOCOLS:
            continue
        port = int(atoms.start[atom])
        if not any(
            (m.protocol is None or m.protocol == protocol)
            and m.ports is not None
            and m.ports.start <= port <= m.ports.end
            for m in named
        ):
            return int(atom)
    return atoms.other

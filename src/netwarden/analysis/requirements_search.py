"""The pieces requirement checks are made of, on the connectivity map.

- `Members`: a requirement's endpoint set (or its complement) as a mask over the map's
  endpoints. An IP atom is in the set when some address of it outside the cluster is; the set
  remembers that address, because a requirement's networks need not follow the atoms'
  boundaries (an atom is cut only where the policies cut the address space, and every address
  of it is decided alike, so any one of its addresses stands for the part of it in the set).
- `PortCover`: the ports a requirement lists, against the map's port atoms: which atoms they
  cover wholly, which they touch, and the first port of an atom they leave out.
- `first_violation`: over the connectivity classes of two masks (never pod pairs), the first
  (source, destination, atom) whose allowed atoms a predicate calls a violation, skipping a
  pod paired with itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from itertools import pairwise

import numpy as np

from netwarden.analysis.atoms import IPRange, PortAtoms, first_free
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.portset import full_range
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.engine.matching import selects
from netwarden.model import (
    ICMP,
    ICMPV6,
    SCTP,
    TCP,
    UDP,
    ClusterState,
    Endpoint,
    IPAddress,
    IPNetwork,
    PortMatch,
    external_endpoint,
)
from netwarden.model.requirements import EndpointSet

#: Pairs of classes looked at in one go (bounds memory: pairs x atoms booleans).
_PAIRS_AT_ONCE = 1 << 15
#: Where counter-example addresses start when they can: 0.0.0.0/8 ("this network") and the
#: IPv6 space below 2000:: (loopback, mapped, unique-local...) read as no real peer.
PREFERRED_START = {4: int(IPv4Address("1.0.0.0")), 6: int(IPv6Address("2000::"))}
#: Counter-examples prefer the protocols people read first.
_PREFERRED = (TCP, UDP, SCTP, ICMP, ICMPV6)


class InCluster:
    """Addresses inside the cluster: held by an endpoint, a node or a Service."""

    def __init__(self, cluster: ClusterState) -> None:
        held: dict[int, set[int]] = {4: set(), 6: set()}
        addresses: list[IPAddress] = list(cluster.endpoints_by_ip)
        for node in cluster.nodes:
            addresses += node.ips
        for service in cluster.services:
            addresses += service.ips
        for ip in addresses:
            held[ip.version].add(int(ip))
        self.held = {version: sorted(values) for version, values in held.items()}

    def first_outside(self, version: int, low: int, high: int) -> IPAddress | None:
        """An address of low..high (integers of one family) outside the cluster: the first
        from 1.0.0.0 (2000:: for IPv6) when the range has one there, else the first."""
        preferred = PREFERRED_START[version]
        if low < preferred <= high:
            found = self._first_outside(version, preferred, high)
            return found if found is not None else self._first_outside(version, low, preferred - 1)
        return self._first_outside(version, low, high)

    def _first_outside(self, version: int, low: int, high: int) -> IPAddress | None:
        candidate = first_free(low, high, self.held[version])
        if candidate is None:
            return None
        return IPv4Address(candidate) if version == 4 else IPv6Address(candidate)


def pieces(atom: IPRange, networks: Iterable[IPNetwork]) -> list[tuple[int, int]]:
    """The atom cut at every boundary of `networks`: each piece is wholly inside or outside
    each network."""
    low, high = int(atom.start), int(atom.end)
    cuts = {low, high + 1}
    for network in networks:
        if network.version == atom.version:
            for cut in (int(network.network_address), int(network.broadcast_address) + 1):
                if low < cut <= high:
                    cuts.add(cut)
    bounds = sorted(cuts)
    return [(start, end - 1) for start, end in pairwise(bounds)]


def inside(piece: tuple[int, int], networks: Iterable[IPNetwork], version: int) -> bool:
    """Whether a piece (from `pieces`) lies in one of `networks`."""
    return any(
        n.version == version and int(n.network_address) <= piece[0] <= int(n.broadcast_address)
        for n in networks
    )


@dataclass(frozen=True)
class Members:
    """Endpoints of the map in a set; for an IP atom, `address` is its address in the set."""

    mask: Mask
    address: dict[int, IPAddress] = field(default_factory=dict)

    def endpoint(self, cmap: ConnectivityMap, index: int) -> Endpoint:
        ip = self.address.get(index)
        return cmap.endpoints[index] if ip is None else external_endpoint(ip)

    def ip(self, index: int) -> IPAddress | None:
        return self.address.get(index)

    @property
    def empty(self) -> bool:
        return not bool(self.mask.any())


def members(
    cmap: ConnectivityMap, endpoints: EndpointSet, in_cluster: InCluster, complement: bool = False
) -> Members:
    """The map's endpoints in `endpoints` (with `complement`, those not in it): pods by
    selector; IP atoms by the part of them outside the cluster inside `networks`."""
    mask = np.zeros(cmap.size, dtype=np.bool_)
    address: dict[int, IPAddress] = {}
    cluster = cmap.cluster
    for i, endpoint in enumerate(cmap.endpoints):
        atom = cmap.ranges[i]
        if atom is None:
            picked = endpoints.pods is not None and selects(endpoints.pods, endpoint, cluster)
            mask[i] = picked != complement
            continue
        if not endpoints.networks and not complement:
            continue
        preferred = PREFERRED_START[atom.version]
        for piece in sorted(pieces(atom, endpoints.networks), key=lambda p: p[1] < preferred):
            if inside(piece, endpoints.networks, atom.version) == complement:
                continue
            ip = in_cluster.first_outside(atom.version, *piece)
            if ip is not None:
                mask[i] = True
                address[i] = ip
                break
    return Members(mask, address)


@dataclass(frozen=True)
class PortCover:
    """The ports a requirement lists (`PortMatch`es; protocol None is any protocol, ports
    None every port of it), against the port atoms."""

    matches: tuple[PortMatch, ...]

    def _ranges(self, protocol: int) -> list[tuple[int, int]]:
        full = full_range(protocol)
        found = []
        for match in self.matches:
            if match.protocol is None or match.protocol == protocol:
                span = match.ports or full
                found.append((max(span.start, full.start), min(span.end, full.end)))
        return sorted(found)

    def first_uncovered(self, atoms: PortAtoms, atom: int) -> int | None:
        """The first port of `atom` the listed ports leave out; None when they cover it."""
        protocol, port = int(atoms.protocol[atom]), int(atoms.start[atom])
        end = int(atoms.end[atom])
        for start, stop in self._ranges(protocol):
            if start <= port <= stop:
                port = stop + 1
        return port if port <= end else None

    def first_touched(self, atoms: PortAtoms, atom: int) -> int | None:
        """The first port of `atom` that the listed ports include; None when none is."""
        protocol = int(atoms.protocol[atom])
        start, end = int(atoms.start[atom]), int(atoms.end[atom])
        for low, high in self._ranges(protocol):
            if low <= end and high >= start:
                return max(low, start)
        return None

    def covered(self, atoms: PortAtoms) -> Mask:
        return np.array([self.first_uncovered(atoms, a) is None for a in range(len(atoms))])

    def touched(self, atoms: PortAtoms) -> Mask:
        return np.array([self.first_touched(atoms, a) is not None for a in range(len(atoms))])


def atom_rank(atoms: PortAtoms) -> Ints:
    """Per atom, its place in the order counter-examples prefer (TCP first, then by port)."""
    preference = {protocol: i for i, protocol in enumerate(_PREFERRED)}
    keys = [
        (preference.get(int(atoms.protocol[a]), len(_PREFERRED)), int(atoms.start[a]), a)
        for a in range(len(atoms))
    ]
    rank = np.empty(len(atoms), dtype=np.int64)
    for position, (_, _, atom) in enumerate(sorted(keys)):
        rank[atom] = position
    return rank


@dataclass(frozen=True)
class Hit:
    """A source, a destination (indices into the map's endpoints) and a port atom."""

    src: int
    dst: int
    atom: int


@dataclass(frozen=True)
class _ClassMembers:
    """The classes a mask touches, in order of their first member, with their members."""

    classes: Ints
    members: dict[int, Ints]

    @classmethod
    def of(cls, cmap: ConnectivityMap, mask: Mask) -> _ClassMembers:
        indices = np.flatnonzero(mask)
        of_class = cmap.classes[indices]
        found: dict[int, list[int]] = {}
        for index, klass in zip(indices.tolist(), of_class.tolist(), strict=True):
            found.setdefault(klass, []).append(index)
        ordered = np.array(list(found), dtype=np.int64)
        return cls(ordered, {k: np.array(v, dtype=np.int64) for k, v in found.items()})


Violating = Callable[[Mask], Mask]


def beyond(exempt: Mask) -> Violating:
    """Allowed atoms other than the `exempt` ones are violations."""
    return lambda allowed: allowed & ~exempt


def missing(required: Mask) -> Violating:
    """Required atoms that are not allowed are violations."""
    return lambda allowed: required & ~allowed


def first_violation(
    cmap: ConnectivityMap, src: Mask, dst: Mask, violating: Violating
) -> Hit | None:
    """The first (source, destination, atom), a source in `src` and a destination in `dst`
    (never an endpoint with itself), where `violating` marks the atom. `violating` gets the
    allowed atoms of class pairs ([pairs x atoms] booleans) and returns the atoms that break
    the requirement. Classes are taken in the order of their first member."""
    sources, destinations = _ClassMembers.of(cmap, src), _ClassMembers.of(cmap, dst)
    if not sources.classes.shape[0] or not destinations.classes.shape[0]:
        return None
    reps = cmap.class_reps
    rank = atom_rank(cmap.atoms)
    count = destinations.classes.shape[0]
    step = max(1, _PAIRS_AT_ONCE // count)
    for start in range(0, sources.classes.shape[0], step):
        block = sources.classes[start : start + step]
        src_classes = np.repeat(block, count)
        dst_classes = np.tile(destinations.classes, block.shape[0])
        allowed = cmap.matrix(reps[src_classes], reps[dst_classes])
        bad = violating(allowed)
        for row in np.flatnonzero(bad.any(axis=1)).tolist():
            pair = _distinct_pair(
                sources.members[int(src_classes[row])],
                destinations.members[int(dst_classes[row])],
            )
            if pair is not None:
                atoms = np.flatnonzero(bad[row])
                atom = int(atoms[np.argmin(rank[atoms])])
                return Hit(pair[0], pair[1], atom)
    return None


def _distinct_pair(sources: Ints, destinations: Ints) -> tuple[int, int] | None:
    """The first (source, destination) of two member lists that are not one endpoint."""
    for a in sources[:2].tolist():
        for b in destinations[:2].tolist():
            if a != b:
                return int(a), int(b)
    return None


def class_count(cmap: ConnectivityMap, mask: Mask) -> int:
    return int(np.unique(cmap.classes[mask]).shape[0])

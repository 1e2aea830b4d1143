"""The connectivity map: every allowed connection between endpoints and IP ranges.

    from netwarden.analysis import compute_connectivity
    cmap = compute_connectivity(cluster)
    for connection in cmap.connections(by="workload"):
        print(connection.src.name, connection.dst.name, connection.ports)

Contract (what requirements, lint and diff build on):

- `cmap.endpoints` are the cluster's endpoints followed by one external endpoint per IP atom
  (`cmap.ranges[i]` is the atom an external stands for: the addresses in it that no endpoint
  holds; its first such address is the endpoint's address). Index arrays and masks over
  `cmap.endpoints` are the currency of the API; `cmap.pods` masks the cluster's own.
- `cmap.atoms` are the port atoms (`atoms.PortAtoms`); `cmap.matrix(src, dst)` gives, for index
  arrays of equal length, the allowed atoms of each pair ([pairs x atoms] booleans) and
  `cmap.ports(src, dst)` one pair's `PortSet`. A pair is allowed on an atom when the source's
  egress and the destination's ingress both allow it, exactly as `PolicyEngine.decide` decides
  the atom's representative flow (`cmap.flow(src, dst, atom)`); an external endpoint is no
  subject, so only the pod's side decides. Self-pairs are answered but never listed.
- `cmap.classes` puts endpoints that every policy treats alike (in both roles, both directions)
  in one connectivity class; `cmap.class_pairs` lists the allowed (source class, destination
  class, atoms pattern) triples: the whole map in aggregated form, never pod pairs.
- `cmap.groups(by)` are the named sources and destinations (`groups.Group`);
  `cmap.connections(by, src=mask, dst=mask)` yields `Connection(src, dst, ports)` for every
  allowed pair of groups, sorted by source then destination, lazily (pod pairs of a large
  cluster are streamed, never held).
- `cmap.example(src, dst, allowed)` is a concrete flow (source, destination, protocol, port) of
  one pair that is allowed (or denied), or None when there is none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from netwarden.analysis.atoms import IPRange, PortAtoms, ip_atoms, port_atoms
from netwarden.analysis.groups import By, Group, build_groups, groups_of_class
from netwarden.analysis.portset import PortSet
from netwarden.analysis.tables import (
    DirectionTable,
    TableBuilder,
    Words,
    first_members,
    refine,
    unpack,
)
from netwarden.engine.decide import staged_policy_set
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.model import ClusterState, Direction, Endpoint, Flow, external_endpoint

#: Pairs of classes evaluated at once when listing class pairs (bounds memory).
_PAIRS_AT_ONCE = 1 << 21


@dataclass(frozen=True)
class Connection:
    """`src` may open connections to `dst` on `ports`."""

    src: Group
    dst: Group
    ports: PortSet

    def rows(self) -> Iterator[tuple[str, str, str, str]]:
        """(src, dst, protocol, ports) rows as the CSV contract writes them."""
        for protocol, ports in self.ports.rows():
            yield self.src.name, self.dst.name, protocol, ports


@dataclass(frozen=True)
class ClassPairs:
    """Allowed (source class, destination class) pairs; `pattern` indexes `patterns`, the
    distinct allowed-atom sets (packed words)."""

    src: Ints
    dst: Ints
    pattern: Ints
    patterns: Words


class ConnectivityMap:
    """What every endpoint may open to every other, held as per-direction class tables."""

    def __init__(
        self,
        cluster: ClusterState,
        endpoints: tuple[Endpoint, ...],
        ranges: tuple[IPRange | None, ...],
        atoms: PortAtoms,
        egress: DirectionTable,
        ingress: DirectionTable,
    ) -> None:
        self.cluster = cluster
        self.endpoints = endpoints
        self.ranges = ranges
        self.atoms = atoms
        self.egress = egress
        self.ingress = ingress
        self._port_sets: dict[bytes, PortSet] = {}

    @property
    def size(self) -> int:
        return len(self.endpoints)

    @cached_property
    def pods(self) -> Mask:
        """The cluster's own endpoints (everything but the IP atoms)."""
        return np.array([r is None for r in self.ranges], dtype=np.bool_)

    def index(self, name: str) -> int:
        """The position of `namespace/pod` (or an endpoint key), or of the IP atom holding
        an address; KeyError when there is none."""
        if name in self._by_key:
            return self._by_key[name]
        for i, atom in enumerate(self.ranges):
            if atom is not None and name.strip() and _address_in(name, atom):
                return i
        raise KeyError(name)

    @cached_property
    def _by_key(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for i, endpoint in enumerate(self.endpoints):
            if self.ranges[i] is None:
                found.setdefault(endpoint.key, i)
        return found

    def words(self, src: Ints, dst: Ints) -> Words:
        """Packed allowed atoms per (src, dst) pair: egress of src and ingress of dst."""
        both: Words = self.egress.words(src, dst) & self.ingress.words(dst, src)
        return both

    def matrix(self, src: Ints, dst: Ints) -> Mask:
        """[pairs x atoms]: which atoms each (src[i], dst[i]) pair may use."""
        return unpack(self.words(np.asarray(src), np.asarray(dst)), len(self.atoms))

    def ports(self, src: int, dst: int) -> PortSet:
        """The protocols and ports `src` may open to `dst`."""
        return self.port_set(self.words(np.array([src]), np.array([dst]))[0])

    def port_set(self, words: Words) -> PortSet:
        """A packed atom set as a PortSet (cached: maps repeat a few patterns)."""
        key = words.tobytes()
        found = self._port_sets.get(key)
        if found is None:
            allowed = np.flatnonzero(unpack(words.reshape(1, -1), len(self.atoms))[0])
            found = self.atoms.port_set(allowed.tolist())
            self._port_sets[key] = found
        return found

    def flow(self, src: int, dst: int, atom: int) -> Flow:
        """The flow that stands for atom `atom` between two endpoints."""
        atoms = self.atoms
        return Flow(
            self.endpoints[src],
            self.endpoints[dst],
            int(atoms.start[atom]),
            int(atoms.protocol[atom]),
        )

    def example(self, src: int, dst: int, allowed: bool = True) -> Flow | None:
        """A concrete flow from `src` to `dst` that is allowed (or denied), if any."""
        row = self.matrix(np.array([src]), np.array([dst]))[0]
        atoms = np.flatnonzero(row == allowed)
        return self.flow(src, dst, int(atoms[0])) if atoms.shape[0] else None

    @cached_property
    def classes(self) -> Ints:
        """Connectivity class per endpoint: same classes in both roles of both directions."""
        start = np.zeros(self.size, dtype=np.int64)
        keys: list[Mask | Ints] = [
            self.egress.subject_class,
            self.egress.peer_class,
            self.ingress.subject_class,
            self.ingress.peer_class,
            self.pods,  # an IP atom never shares a class with a cluster endpoint
        ]
        return refine(start, keys)

    @cached_property
    def class_reps(self) -> Ints:
        return first_members(self.classes)

    @cached_property
    def class_pairs(self) -> ClassPairs:
        """Every allowed (source class, destination class) pair, in (src, dst) order; pairs
        of two IP atoms are not the cluster's business and are left out."""
        reps = self.class_reps
        count = reps.shape[0]
        inside = self.pods[reps]
        egress, ingress = self.egress, self.ingress
        # A pair's words are one egress row's AND one ingress row's: pairs are keyed by that
        # (egress row, ingress row) pair, so words are worked out once per distinct key.
        e_class, e_peer = egress.subject_class[reps], egress.peer_class[reps]
        i_class, i_peer = ingress.subject_class[reps], ingress.peer_class[reps]
        i_base = ingress.offsets[i_class]
        e_live = np.asarray(egress.bits.any(axis=1), dtype=np.bool_)
        i_live = np.asarray(ingress.bits.any(axis=1), dtype=np.bool_)
        ingress_rows = max(1, ingress.bits.shape[0])
        step = max(1, _PAIRS_AT_ONCE // max(count, 1))
        src_parts, dst_parts, key_parts = [], [], []
        for start in range(0, count, step):
            block = np.arange(start, min(count, start + step))
            e_rows = egress.offsets[e_class[block]][:, None] + egress.local[e_class[block]][
                :, e_peer
            ].astype(np.int64)
            i_rows = i_base[None, :] + ingress.local[np.ix_(i_class, i_peer[block])].T.astype(
                np.int64
            )
            keep = e_live[e_rows] & i_live[i_rows]
            keep &= inside[block][:, None] | inside[None, :]  # not outside to outside
            src, dst = np.nonzero(keep)
            keys = e_rows[src, dst] * ingress_rows + i_rows[src, dst]
            distinct, inverse = np.unique(keys, return_inverse=True)
            any_allowed = np.asarray(self._key_words(distinct, ingress_rows).any(axis=1))
            allowed = any_allowed[inverse.reshape(-1)]
            src_parts.append(block[src[allowed]])
            dst_parts.append(dst[allowed].astype(np.int64))
            key_parts.append(keys[allowed])
        width = self.egress.bits.shape[1]
        all_keys = np.concatenate(key_parts) if key_parts else np.zeros(0, np.int64)
        if all_keys.shape[0]:
            distinct, by_key = np.unique(all_keys, return_inverse=True)
            words = self._key_words(distinct, ingress_rows)
            patterns, of_key = np.unique(words, axis=0, return_inverse=True)
            pattern = of_key.reshape(-1)[by_key.reshape(-1)]
        else:
            patterns, pattern = np.zeros((0, width), np.uint64), np.zeros(0, dtype=np.int64)
        return ClassPairs(
            np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64),
            np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64),
            pattern.astype(np.int64),
            patterns,
        )

    def _key_words(self, keys: Ints, ingress_rows: int) -> Words:
        both: Words = (
            self.egress.bits[keys // ingress_rows] & self.ingress.bits[keys % ingress_rows]
        )
        return both

    def groups(self, by: By = "pod") -> tuple[Group, ...]:
        """The named sources and destinations (see `groups`)."""
        if by not in self._groups:
            self._groups[by] = build_groups(self.endpoints, self.ranges, self.classes, by)
        return self._groups[by]

    @cached_property
    def _groups(self) -> dict[str, tuple[Group, ...]]:
        return {}

    def connections(
        self, by: By = "pod", src: Mask | None = None, dst: Mask | None = None
    ) -> Iterator[Connection]:
        """Every allowed (source group, destination group) connection, sorted by source then
        destination; `src` / `dst` masks over `endpoints` keep groups with a member in them.
        Adjacent IP ranges with the same ports to (from) the same group are merged."""
        groups = self.groups(by)
        pairs = self.class_pairs
        by_class = groups_of_class(groups, self.class_reps.shape[0])
        wanted_src, wanted_dst = _wanted(groups, src), _wanted(groups, dst)
        starts = np.searchsorted(pairs.src, np.arange(self.class_reps.shape[0] + 1))
        from_outside: dict[tuple[int, int], list[Group]] = {}
        for position, group in enumerate(groups):
            if not wanted_src[position]:
                continue
            span = slice(int(starts[group.klass]), int(starts[group.klass + 1]))
            targets: list[tuple[int, int]] = []
            for klass, pattern in zip(
                pairs.dst[span].tolist(), pairs.pattern[span].tolist(), strict=True
            ):
                targets += [(g, pattern) for g in by_class[klass] if wanted_dst[g]]
            targets.sort()
            if group.is_external:  # merged per destination below
                for target, pattern in targets:
                    from_outside.setdefault((target, pattern), []).append(group)
                continue
            merged: list[tuple[Group, int]] = []
            for target, pattern in targets:
                other = groups[target]
                if target == position and len(group.members) == 1:
                    continue  # a pod to itself
                if merged and merged[-1][1] == pattern and _joins(merged[-1][0], other):
                    merged[-1] = (_join(merged[-1][0], other), pattern)
                else:
                    merged.append((other, pattern))
            for other, pattern in merged:
                yield Connection(group, other, self.port_set(pairs.patterns[pattern]))
        outside: list[tuple[Group, int, int]] = []
        for (target, pattern), sources in from_outside.items():
            run = sources[0]
            for source in sources[1:]:
                if _joins(run, source):
                    run = _join(run, source)
                else:
                    outside.append((run, target, pattern))
                    run = source
            outside.append((run, target, pattern))
        outside.sort(
            key=lambda item: (item[0].ranges[0].version, int(item[0].ranges[0].start), item[1])
        )
        for source, target, pattern in outside:
            yield Connection(source, groups[target], self.port_set(pairs.patterns[pattern]))

    def allowed(self, src: Mask, dst: Mask, by: By = "pod") -> Iterator[Connection]:
        """Connections from groups with a member in `src` to groups with one in `dst`."""
        return self.connections(by, src, dst)


def _joins(before: Group, after: Group) -> bool:
    """Whether `after` is an IP group that continues `before`'s last range."""
    if not (before.is_external and after.is_external):
        return False
    last, first = before.ranges[-1], after.ranges[0]
    return last.version == first.version and int(last.end) + 1 == int(first.start)


def _join(before: Group, after: Group) -> Group:
    merged = IPRange(before.ranges[0].start, after.ranges[-1].end)
    members = before.members + after.members
    return replace(before, name=str(merged), members=members, ranges=(merged,))


def _wanted(groups: Sequence[Group], mask: Mask | None) -> npt.NDArray[np.bool_]:
    if mask is None:
        return np.ones(len(groups), dtype=np.bool_)
    return np.array([bool(mask[list(g.members)].any()) for g in groups], dtype=np.bool_)


def _address_in(text: str, atom: IPRange) -> bool:
    from ipaddress import ip_address

    try:
        return ip_address(text) in atom
    except ValueError:
        return False


def compute_connectivity(
    cluster: ClusterState, staged: bool = False, families: tuple[int, ...] = (4, 6)
) -> ConnectivityMap:
    """The connectivity map of `cluster` (of its staged policy set with `staged`), over the
    IPv4 and IPv6 address space (`families`)."""
    if staged:
        cluster = replace(cluster, policies=staged_policy_set(cluster.policies))
    atoms = port_atoms(cluster)
    externals = ip_atoms(cluster, families)
    endpoints = tuple(cluster.endpoints) + tuple(
        external_endpoint(atom.representative) for atom in externals
    )
    ranges: tuple[IPRange | None, ...] = (None,) * len(cluster.endpoints) + tuple(
        atom.range for atom in externals
    )
    builder = TableBuilder(cluster, endpoints, atoms)
    egress = builder.table(Direction.EGRESS)
    ingress = builder.table(Direction.INGRESS)
    return ConnectivityMap(cluster, endpoints, ranges, atoms, egress, ingress)

"""The semantic diff: which connections a change adds and removes, computed on sets.

    from netwarden.analysis.diff import compute_diff
    diff = compute_diff(base_cluster, head_cluster)
    for change in diff.changes(by="workload"):
        print(change.kind, change.src.name, change.dst.name, change.ports, change.why.policy)

Both sides are decided over the same endpoints and the same atoms, so a connection is added
exactly when head allows an atom between two endpoints that base denies:

- Endpoints: the union of both inventories, keyed by (kind, `namespace/name`). An endpoint
  of one side only is put, as that side has it, into the other (likewise a namespace), so a
  pod added in head is a change of the inventory (`EndpointChanges.only_in_head`), not a flood
  of added connections; the policies of each side still decide its traffic, so a head policy
  that opens it to something base's policies deny shows up as added.
- Atoms: port and IP atoms of both sides' policies and inventories together (a common
  refinement of each side's own atoms, so each side decides every atom whole).
- Classes: each side's connectivity classes refined together; endpoints of one joint class
  behave alike on both sides, so the change is worked out per pair of joint classes.

`ChangeMap` is a `ConnectivityMap` whose allowed atoms are "allowed on one side, denied on the
other" (it answers `words`, `classes` and `class_pairs` itself), so the connectivity map's
grouping (`connections(by)`, `aggregate.fw_rules`) applies to a diff unchanged. Each listed
change carries the engine's explanation of a representative flow (`Why`): the policies that
allow it on the side it is allowed, and the direction and policy that deny it on the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

import numpy as np

from netwarden.analysis.atoms import IPRange, ip_atoms, port_atoms
from netwarden.analysis.connectivity import ClassPairs, ConnectivityMap
from netwarden.analysis.groups import By, Group
from netwarden.analysis.portset import PortSet
from netwarden.analysis.tables import TableBuilder, Words, refine
from netwarden.engine.decide import PolicyEngine
from netwarden.engine.endpoint_vectors import Ints
from netwarden.engine.verdict import Decision
from netwarden.model import (
    ClusterState,
    Direction,
    Endpoint,
    Flow,
    Namespace,
    external_endpoint,
    protocol_name,
)

Kind = Literal["added", "removed"]
#: Pairs of joint classes whose change is worked out at once (bounds memory).
_PAIRS_AT_ONCE = 1 << 20


@dataclass(frozen=True)
class EndpointChanges:
    """Endpoints (`namespace/name`, or a host endpoint's name) that only one side has, and
    those both have but with other labels, addresses, ports or owner."""

    only_in_base: tuple[str, ...]
    only_in_head: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.only_in_base or self.only_in_head or self.changed)


@dataclass(frozen=True)
class Why:
    """The engine's explanation of one representative flow of a change: `flow` as written
    (`shop/web-0 -> shop/db-0 TCP 5432`), what allows it on the side it is allowed (both
    directions), and what denies it on the other (the denying directions)."""

    flow: str
    allowed_by: str
    denied_by: str


@dataclass(frozen=True)
class ConnectionChange:
    """`src` may open connections to `dst` on `ports` in head but not in base (`added`), or
    in base but no longer in head (`removed`)."""

    kind: Kind
    src: Group
    dst: Group
    ports: PortSet
    why: Why


class ChangeMap(ConnectivityMap):
    """A connectivity map of what `allows` allows and `denies` does not, over their shared
    endpoints and atoms, classed by `classes` (a refinement of both maps' classes)."""

    def __init__(self, allows: ConnectivityMap, denies: ConnectivityMap, classes: Ints) -> None:
        super().__init__(
            allows.cluster,
            allows.endpoints,
            allows.ranges,
            allows.atoms,
            allows.egress,
            allows.ingress,
        )
        self.allows = allows
        self.denies = denies
        self._joint = classes

    def words(self, src: Ints, dst: Ints) -> Words:
        found: Words = self.allows.words(src, dst) & ~self.denies.words(src, dst)
        return found

    @cached_property
    def classes(self) -> Ints:
        return self._joint

    @cached_property
    def class_pairs(self) -> ClassPairs:
        """Every (source class, destination class) pair with a changed atom, in (src, dst)
        order, outside-to-outside pairs left out: worked out here from `words`, since the
        connectivity map's own listing reads its tables directly."""
        reps = self.class_reps
        count = reps.shape[0]
        inside = self.pods[reps]
        step = max(1, _PAIRS_AT_ONCE // max(count, 1))
        src_parts, dst_parts, word_parts = [], [], []
        for start in range(0, count, step):
            block = np.arange(start, min(count, start + step))
            src = np.repeat(block, count)
            dst = np.tile(np.arange(count), block.shape[0])
            words = self.words(reps[src], reps[dst])
            keep = words.any(axis=1) & (inside[src] | inside[dst])
            src_parts.append(src[keep])
            dst_parts.append(dst[keep])
            word_parts.append(words[keep])
        width = self.allows.egress.bits.shape[1]
        words = np.concatenate(word_parts) if word_parts else np.zeros((0, width), np.uint64)
        if words.shape[0]:
            patterns, pattern = np.unique(words, axis=0, return_inverse=True)
        else:
            patterns, pattern = words, np.zeros(0, dtype=np.int64)
        return ClassPairs(
            np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64),
            np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64),
            pattern.reshape(-1).astype(np.int64),
            patterns,
        )


class ConnectivityDiff:
    """Base and head connectivity over the same endpoints and atoms, and what changed."""

    def __init__(self, base: ConnectivityMap, head: ConnectivityMap, endpoints: EndpointChanges):
        self.base = base
        self.head = head
        self.endpoints = endpoints
        self.base_engine = PolicyEngine(base.cluster)
        self.head_engine = PolicyEngine(head.cluster)
        self._why: dict[tuple[Kind, int, int, int], tuple[str, str]] = {}
        self._first_atom: dict[PortSet, int] = {}

    @cached_property
    def classes(self) -> Ints:
        """Joint classes: endpoints every policy of both sides treats alike."""
        return refine(self.base.classes, [self.head.classes])

    @cached_property
    def added(self) -> ChangeMap:
        return ChangeMap(self.head, self.base, self.classes)

    @cached_property
    def removed(self) -> ChangeMap:
        return ChangeMap(self.base, self.head, self.classes)

    @property
    def has_changes(self) -> bool:
        """Whether any connection is added or removed (endpoint changes alone are not)."""
        sizes = np.bincount(self.classes)
        for change_map in (self.added, self.removed):
            pairs = change_map.class_pairs
            alone = (pairs.src == pairs.dst) & (sizes[pairs.src] < 2)  # a pod to itself
            if not alone.all():
                return True
        return False

    def changes(self, by: By = "workload", kind: Kind | None = None) -> Iterator[ConnectionChange]:
        """Every added connection, then every removed one (or those of `kind`), aggregated by
        workload or pod as the connectivity map aggregates, each with its explanation."""
        kinds: tuple[Kind, ...] = ("added", "removed") if kind is None else (kind,)
        for which in kinds:
            change_map = self.added if which == "added" else self.removed
            for connection in change_map.connections(by):
                why = self.why(which, connection.src, connection.dst, connection.ports)
                yield ConnectionChange(which, connection.src, connection.dst, connection.ports, why)

    def why(self, kind: Kind, src: Group, dst: Group, ports: PortSet) -> Why:
        """The explanation of the first atom of `ports` between a representative pair (two
        different endpoints when the groups allow it). The engine is asked once per (joint source
        class, joint destination class, atom): every pair of those classes is decided alike."""
        source, target = _representatives(src, dst)
        atom = self._first_atom.get(ports)
        if atom is None:
            atom = self._first_atom[ports] = int(self.head.atoms.atoms_of(ports)[0])
        head_flow = self.head.flow(source, target, atom)
        key = (kind, int(self.classes[source]), int(self.classes[target]), atom)
        found = self._why.get(key)
        if found is None:
            base = self.base_engine.decide(self.base.flow(source, target, atom))
            head = self.head_engine.decide(head_flow)
            allowing, denying = (head, base) if kind == "added" else (base, head)
            found = (
                _explain((allowing.egress, allowing.ingress), only_denying=False),
                _explain((denying.egress, denying.ingress), only_denying=True),
            )
            self._why[key] = found
        return Why(describe_flow(head_flow), *found)


def _representatives(src: Group, dst: Group) -> tuple[int, int]:
    for source in src.members:
        for target in dst.members:
            if source != target:
                return source, target
    return src.members[0], dst.members[0]


def _explain(decisions: tuple[Decision, Decision], only_denying: bool) -> str:
    parts = [
        f"{d.direction.value}: {d.deciding}" for d in decisions if not (only_denying and d.allowed)
    ]
    return "; ".join(parts)


def describe_flow(flow: Flow) -> str:
    """`shop/web-0 -> shop/db-0 TCP 5432` (the port left out for portless protocols)."""
    port = f" {flow.port}" if flow.port else ""
    return f"{flow.src.key} -> {flow.dst.key} {protocol_name(flow.protocol)}{port}"


def _identity(endpoint: Endpoint) -> tuple[str, str]:
    return endpoint.kind.value, endpoint.key


def align(
    base: ClusterState, head: ClusterState
) -> tuple[ClusterState, ClusterState, EndpointChanges]:
    """Both clusters over the union of their endpoints and namespaces (see the module
    docstring), in the same order, and which endpoints differ."""
    base_by = {_identity(e): e for e in base.endpoints}
    head_by = {_identity(e): e for e in head.endpoints}
    order = list(base_by) + [k for k in head_by if k not in base_by]
    base_endpoints = tuple(base_by.get(k) or head_by[k] for k in order)
    head_endpoints = tuple(head_by.get(k) or base_by[k] for k in order)
    base_spaces = {n.name: n for n in base.namespaces}
    head_spaces = {n.name: n for n in head.namespaces}
    names = list(base_spaces) + [n for n in head_spaces if n not in base_spaces]
    changes = EndpointChanges(
        tuple(base_by[k].key for k in base_by if k not in head_by),
        tuple(head_by[k].key for k in head_by if k not in base_by),
        tuple(base_by[k].key for k in base_by if k in head_by and base_by[k] != head_by[k]),
    )
    return (
        replace(
            base, endpoints=base_endpoints, namespaces=_spaces(names, base_spaces, head_spaces)
        ),
        replace(
            head, endpoints=head_endpoints, namespaces=_spaces(names, head_spaces, base_spaces)
        ),
        changes,
    )


def _spaces(
    names: list[str], own: dict[str, Namespace], other: dict[str, Namespace]
) -> tuple[Namespace, ...]:
    return tuple(own.get(name) or other[name] for name in names)


def _merged(base: ClusterState, head: ClusterState) -> ClusterState:
    """Everything either side's atoms are cut at: both sides' policies, profiles, sets,
    services, nodes and endpoints (both versions of an endpoint: both its named ports and
    addresses count)."""
    return ClusterState(
        nodes=base.nodes + head.nodes,
        endpoints=base.endpoints + head.endpoints,
        policies=base.enforced_policies + head.enforced_policies,
        network_sets=base.network_sets + head.network_sets,
        services=base.services + head.services,
        profiles=base.profiles + head.profiles,
    )


def compute_diff(
    base: ClusterState, head: ClusterState, families: tuple[int, ...] = (4, 6)
) -> ConnectivityDiff:
    """The semantic diff from `base` to `head` (see the module docstring)."""
    aligned_base, aligned_head, changes = align(base, head)
    merged = _merged(base, head)
    atoms = port_atoms(merged)
    externals = ip_atoms(merged, families)
    outside = tuple(external_endpoint(atom.representative) for atom in externals)
    ranges: tuple[IPRange | None, ...] = (None,) * len(aligned_base.endpoints) + tuple(
        atom.range for atom in externals
    )
    maps = []
    for cluster in (aligned_base, aligned_head):
        endpoints = cluster.endpoints + outside
        builder = TableBuilder(cluster, endpoints, atoms)
        egress = builder.table(Direction.EGRESS)
        ingress = builder.table(Direction.INGRESS)
        maps.append(ConnectivityMap(cluster, endpoints, ranges, atoms, egress, ingress))
    return ConnectivityDiff(maps[0], maps[1], changes)


__all__ = [
    "ChangeMap",
    "ConnectionChange",
    "ConnectivityDiff",
    "EndpointChanges",
    "Why",
    "align",
    "compute_diff",
    "describe_flow",
]

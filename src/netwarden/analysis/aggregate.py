"""Firewall-rule grouping of a connectivity map (NCA's "fw-rules", the txt reference).

Sources that reach the same destinations on the same ports, and destinations reached by the
same sources on the same ports, are one rule. Rules are built on connectivity classes (every
member of a class behaves alike), then each side is named per namespace: `[*]` when it is the
whole namespace, a label selector (`app=db`, `app in (api,web)`) when one picks exactly those
pods there, else the workload (or pod) names; IP atoms are merged into CIDR blocks.

    src_ns: [shop] src_pods: [app=backend] dst_ns: [shop] dst_pods: [app=db] conn: TCP 5432
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from netwarden.analysis.atoms import IPRange
from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By, Group, groups_of_class
from netwarden.analysis.portset import PortSet
from netwarden.engine.endpoint_vectors import Ints
from netwarden.model import Endpoint

#: Label keys tried first when naming a set of pods.
_PREFERRED_KEYS = ("app", "app.kubernetes.io/name", "k8s-app", "name", "component", "tier")


@dataclass(frozen=True)
class Side:
    """One side of a rule, as written: namespaces and a pod description, or addresses."""

    namespaces: tuple[str, ...] = ()
    pods: str = ""
    addresses: str = ""  # CIDR blocks or ranges of an IP side; names of host endpoints

    def __str__(self) -> str:
        if self.addresses:
            return self.addresses
        return f"[{','.join(self.namespaces)}]/[{self.pods}]"


@dataclass(frozen=True)
class FwRule:
    """Every group of `src` may open connections to every group of `dst` on `ports`
    (members of a group to themselves excepted)."""

    src: tuple[Group, ...]
    dst: tuple[Group, ...]
    ports: PortSet


@dataclass(frozen=True)
class FwLine:
    """A rule with each side named: one line of the txt output."""

    src: Side
    dst: Side
    ports: PortSet

    def __str__(self) -> str:
        return f"{_side('src', self.src)} {_side('dst', self.dst)} conn: {self.ports}"


def fw_rules(cmap: ConnectivityMap, by: By = "workload") -> list[FwRule]:
    """The map as grouped rules (see the module docstring)."""
    groups = cmap.groups(by)
    by_class = groups_of_class(groups, cmap.class_reps.shape[0])
    pairs = cmap.class_pairs
    found = []
    for src_classes, dst_classes, pattern in class_rules(cmap):
        found.append(
            FwRule(
                tuple(groups[g] for c in src_classes.tolist() for g in by_class[c]),
                tuple(groups[g] for c in dst_classes.tolist() for g in by_class[c]),
                cmap.port_set(pairs.patterns[pattern]),
            )
        )
    return found


def class_rules(cmap: ConnectivityMap) -> Iterator[tuple[Ints, Ints, int]]:
    """(source classes, destination classes, pattern): destinations that the same set of
    sources reaches with the same pattern. Vectorized: pairs are sorted by (destination,
    pattern, source); each (destination, pattern) run gets a set hash, and runs with equal
    hashes are then compared element by element, so the grouping is exact."""
    pairs = cmap.class_pairs
    sizes = np.bincount(cmap.classes, minlength=cmap.class_reps.shape[0])
    keep = ~((pairs.src == pairs.dst) & (sizes[pairs.src] < 2))  # a lone endpoint to itself
    src, dst, pattern = pairs.src[keep], pairs.dst[keep], pairs.pattern[keep]
    if src.shape[0] == 0:
        return
    run_key = dst * max(1, pairs.patterns.shape[0]) + pattern
    order = np.lexsort((src, run_key))
    src, run_key, dst, pattern = src[order], run_key[order], dst[order], pattern[order]
    starts = np.flatnonzero(np.concatenate(([True], run_key[1:] != run_key[:-1])))
    counts = np.diff(np.append(starts, src.shape[0]))
    noise = np.random.default_rng(0).integers(0, 2**63, size=(2, sizes.shape[0]), dtype=np.int64)
    hashes = [np.add.reduceat(noise[k][src], starts) for k in range(2)]
    identity = np.stack([hashes[0], hashes[1], counts, pattern[starts]], axis=1)
    _, first, rule_of_run = np.unique(identity, axis=0, return_index=True, return_inverse=True)
    rule_of_run = rule_of_run.reshape(-1)
    representative = first[rule_of_run]
    within = np.arange(src.shape[0]) - np.repeat(starts, counts)
    same = src == src[np.repeat(starts[representative], counts) + within]
    if not same.all():  # a hash collision: split the rules it merged, exactly
        exact: dict[tuple[int, ...], int] = {}
        for run, begin in enumerate(starts.tolist()):
            members = (int(pattern[begin]), *src[begin : begin + counts[run]].tolist())
            rule_of_run[run] = exact.setdefault(members, len(exact))
        first = np.array([0] * len(exact))
        for run in range(starts.shape[0] - 1, -1, -1):
            first[rule_of_run[run]] = run
    runs_of_rule = np.argsort(rule_of_run, kind="stable")
    bounds = np.searchsorted(rule_of_run[runs_of_rule], np.arange(first.shape[0] + 1))
    for rule in range(first.shape[0]):
        runs = runs_of_rule[bounds[rule] : bounds[rule + 1]]
        lead = int(starts[runs[0]])
        yield src[lead : lead + int(counts[runs[0]])], dst[starts[runs]], int(pattern[lead])


def fw_lines(cmap: ConnectivityMap, by: By = "workload") -> list[FwLine]:
    """The rules with their sides named, sorted."""
    namer = _Namer(cmap)
    lines = [
        FwLine(src, dst, rule.ports)
        for rule in fw_rules(cmap, by)
        for src in namer.sides(rule.src)
        for dst in namer.sides(rule.dst)
    ]
    lines.sort(key=lambda line: (str(line.src), str(line.dst), str(line.ports)))
    return lines


def _side(prefix: str, side: Side) -> str:
    if side.addresses:
        return f"{prefix}: {side.addresses}"
    return f"{prefix}_ns: [{','.join(side.namespaces)}] {prefix}_pods: [{side.pods}]"


class _Namer:
    """Names sets of groups as namespaces + pod descriptions (memoized per namespace)."""

    def __init__(self, cmap: ConnectivityMap) -> None:
        self.endpoints = cmap.endpoints
        self.in_namespace: dict[str, set[int]] = defaultdict(set)
        # namespace -> label key -> value -> how many endpoints there carry it
        self.counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        for i, endpoint in enumerate(cmap.endpoints):
            if cmap.ranges[i] is None and endpoint.namespace is not None:
                self.in_namespace[endpoint.namespace].add(i)
                for key, value in endpoint.labels.items():
                    self.counts[endpoint.namespace][key][value] += 1
        self.named: dict[tuple[str, frozenset[str]], str] = {}

    def sides(self, groups: Sequence[Group]) -> Iterator[Side]:
        ranges: list[IPRange] = []
        hosts: list[str] = []
        members: dict[str, list[Group]] = defaultdict(list)
        for group in groups:
            if group.is_external:
                ranges += group.ranges
            elif group.namespace is None:
                hosts.append(group.name)
            else:
                members[group.namespace].append(group)
        described: dict[str, list[str]] = defaultdict(list)
        for namespace, found in sorted(members.items()):
            described[self._pods(namespace, found)].append(namespace)
        for pods, namespaces in sorted(described.items()):
            yield Side(tuple(namespaces), pods)
        if hosts:
            yield Side(addresses=",".join(sorted(hosts)))
        if ranges:
            yield Side(addresses=_addresses(ranges))

    def _pods(self, namespace: str, groups: list[Group]) -> str:
        key = (namespace, frozenset(g.name for g in groups))
        found = self.named.get(key)
        if found is None:
            found = self._describe(namespace, groups)
            self.named[key] = found
        return found

    def _describe(self, namespace: str, groups: list[Group]) -> str:
        chosen = {m for g in groups for m in g.members}
        if len(chosen) == len(self.in_namespace[namespace]):
            return "*"
        picked = [self.endpoints[i] for i in sorted(chosen)]
        selector = _selector(picked, self.counts[namespace], len(chosen))
        if selector:
            return selector
        return ",".join(sorted(g.name.split("/", 1)[1] for g in groups))


def _selector(picked: list[Endpoint], counts: dict[str, Counter[str]], count: int) -> str:
    """A one-key label selector that picks exactly `picked` in their namespace (whose label
    values are counted in `counts`), or ''."""
    common = set(picked[0].labels)
    for endpoint in picked[1:]:
        common &= set(endpoint.labels)
    keys = [k for k in _PREFERRED_KEYS if k in common] + sorted(common - set(_PREFERRED_KEYS))
    for key in keys:
        values = {e.labels[key] for e in picked}
        if sum(counts[key][v] for v in values) == count:
            if len(values) == 1:
                return f"{key}={next(iter(values))}"
            return f"{key} in ({','.join(sorted(values))})"
    return ""


def _addresses(ranges: list[IPRange]) -> str:
    """Adjacent ranges merged; each written as a CIDR block when it is one, else `a-b`."""
    merged: list[IPRange] = []
    for atom in sorted(ranges, key=lambda r: (r.version, int(r.start))):
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.version == atom.version
            and int(last.end) + 1 >= int(atom.start)
        ):
            merged[-1] = IPRange(last.start, max(last.end, atom.end))
        else:
            merged.append(atom)
    return ",".join(_written(atom) for atom in merged)


def _written(atom: IPRange) -> str:
    networks = atom.networks()
    return str(networks[0]) if len(networks) == 1 else str(atom)

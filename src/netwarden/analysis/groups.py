"""Endpoint groups: what the connectivity map names as a source or a destination.

`by="pod"`: each pod (hostNetwork pods too), host endpoint and node-less address is a group;
`by="workload"`: pods grouped by owner workload (`namespace/name(Kind)`; a pod without a known
owner is grouped with the pods whose names differ only in a trailing `-<n>` or ReplicaSet
suffix). In both, external IP atoms that are adjacent and behave alike are one group, named by
its ranges (`a.b.c.d-e.f.g.h`). A workload whose pods the policies treat differently is split,
and each part names its pods (`shop/web(Deployment)[web-0,web-2]`), so every group is exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from netwarden.analysis.atoms import IPRange
from netwarden.engine.endpoint_vectors import Ints
from netwarden.model import Endpoint, EndpointKind

By = Literal["pod", "workload"]
_REPLICA_SUFFIX = re.compile(r"-[a-z0-9]{6,10}-[a-z0-9]{5}$|-\d+$")


@dataclass(frozen=True)
class Group:
    """A source or destination of the map: `members` index `ConnectivityMap.endpoints`, all of
    one connectivity class `klass`. `kind` is pod, workload, host-endpoint or external;
    `ranges` are an external group's address ranges (merged)."""

    name: str
    kind: str
    namespace: str | None
    members: tuple[int, ...]
    klass: int
    ranges: tuple[IPRange, ...] = ()

    @property
    def is_external(self) -> bool:
        return self.kind == "external"


def owner(endpoint: Endpoint) -> str:
    """`name(Kind)` of the workload owning a pod, else its name without a replica suffix."""
    if endpoint.workload:
        kind, _, name = endpoint.workload.partition("/")
        return f"{name}({kind})" if name else kind
    return _REPLICA_SUFFIX.sub("", endpoint.name) or endpoint.name


def build_groups(
    endpoints: Sequence[Endpoint],
    ranges: Sequence[IPRange | None],
    classes: Ints,
    by: By,
) -> tuple[Group, ...]:
    """Groups sorted by name (externals last, by address), each within one class."""
    found: list[Group] = []
    keyed: dict[tuple[str, int], list[int]] = {}
    external_runs: list[list[int]] = []
    for i, endpoint in enumerate(endpoints):
        atom = ranges[i]
        if atom is not None:
            last = external_runs[-1] if external_runs else None
            if (
                last is not None
                and classes[last[-1]] == classes[i]
                and _adjacent(ranges[last[-1]], atom)
            ):
                last.append(i)
            else:
                external_runs.append([i])
            continue
        if by == "pod" or endpoint.kind is not EndpointKind.POD or endpoint.namespace is None:
            keyed.setdefault((endpoint.key, int(classes[i])), []).append(i)
        else:
            name = f"{endpoint.namespace}/{owner(endpoint)}"
            keyed.setdefault((name, int(classes[i])), []).append(i)
    split = _split_names(keyed)
    for (name, klass), members in keyed.items():
        first = endpoints[members[0]]
        if by == "pod" or (len(members) == 1 and first.key == name):
            kind = "host-endpoint" if first.kind is EndpointKind.HOST_ENDPOINT else "pod"
        else:
            kind = "workload"
        if name in split:
            name += "[" + ",".join(endpoints[m].name for m in members) + "]"
        found.append(Group(name, kind, first.namespace, tuple(members), klass))
    found.sort(key=lambda g: g.name)
    for run in external_runs:
        first_atom, last_atom = ranges[run[0]], ranges[run[-1]]
        assert first_atom is not None and last_atom is not None
        merged = IPRange(first_atom.start, last_atom.end)
        klass = int(classes[run[0]])
        found.append(Group(str(merged), "external", None, tuple(run), klass, (merged,)))
    return tuple(found)


def groups_of_class(groups: Sequence[Group], count: int) -> list[list[int]]:
    """Per connectivity class, the positions of its groups (in name order)."""
    found: list[list[int]] = [[] for _ in range(count)]
    for position, group in enumerate(groups):
        found[group.klass].append(position)
    return found


def group_index(groups: Sequence[Group], size: int) -> Ints:
    """Per endpoint, the position of its group."""
    found = np.full(size, -1, dtype=np.int64)
    for position, group in enumerate(groups):
        found[list(group.members)] = position
    return found


def _split_names(keyed: dict[tuple[str, int], list[int]]) -> set[str]:
    seen: dict[str, int] = {}
    for name, _ in keyed:
        seen[name] = seen.get(name, 0) + 1
    return {name for name, count in seen.items() if count > 1}


def _adjacent(before: IPRange | None, after: IPRange) -> bool:
    return (
        before is not None
        and before.version == after.version
        and int(before.end) + 1 == int(after.start)
    )

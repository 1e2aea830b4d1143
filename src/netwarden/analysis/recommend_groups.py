"""Workload groups for a recommendation: the pods of a namespace grouped by their stable labels.

Labels a controller stamps per pod or per revision (`pod-template-hash`, ...) are left out,
so every replica of a workload lands in one group. Each group gets the smallest label
selector that picks exactly its pods in the namespace: preferred keys first (`app`,
`app.kubernetes.io/name`, ...), more labels only while another group still matches, and
`DoesNotExist` for a group whose labels are a subset of another's. The policies written for
the groups (`recommend_policies`) select them with that selector.

    groups = workload_groups(cluster, "shop")
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from netwarden.model import (
    ClusterState,
    Endpoint,
    EndpointKind,
    Has,
    In,
    Not,
    Selector,
    all_of,
)

#: Labels a controller sets per pod or per revision: selecting on them would pin a policy to
#: one rollout or one replica.
VOLATILE_LABELS = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
    }
)
#: Selector keys in order of preference: the names people give their applications.
PREFERRED_KEYS = (
    "app.kubernetes.io/name",
    "app",
    "k8s-app",
    "name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "component",
    "tier",
    "role",
)


@dataclass(frozen=True)
class WorkloadGroup:
    """Pods of one namespace with the same stable labels, and the selector picking them."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    selector: Selector
    members: tuple[Endpoint, ...]


def stable_labels(endpoint: Endpoint) -> dict[str, str]:
    return {k: v for k, v in endpoint.labels.items() if k not in VOLATILE_LABELS}


def workload_groups(cluster: ClusterState, namespace: str) -> list[WorkloadGroup]:
    """The pods of `namespace` grouped by stable labels, each with an exact selector."""
    return group_pods(namespace, pods_by_namespace(cluster).get(namespace, []))


def pods_by_namespace(cluster: ClusterState) -> dict[str, list[Endpoint]]:
    """The inventory's pods per namespace, in inventory order."""
    pods: dict[str, list[Endpoint]] = defaultdict(list)
    for endpoint in cluster.endpoints:
        if endpoint.kind is EndpointKind.POD and endpoint.namespace:
            pods[endpoint.namespace].append(endpoint)
    return pods


def group_pods(namespace: str, pods: list[Endpoint]) -> list[WorkloadGroup]:
    """`pods` (all of `namespace`'s, in inventory order) as workload groups."""
    by_labels: dict[frozenset[tuple[str, str]], list[Endpoint]] = defaultdict(list)
    for endpoint in pods:
        by_labels[frozenset(stable_labels(endpoint).items())].append(endpoint)
    keys = sorted(by_labels, key=sorted)
    taken: set[str] = set()
    groups = []
    for key in keys:
        members = by_labels[key]
        others = [other for other in keys if other != key]
        name = _unique_name(_group_name(dict(key), members), taken)
        selector = _exact_selector(dict(key), [dict(o) for o in others])
        groups.append(WorkloadGroup(namespace, name, dict(key), selector, tuple(members)))
    return groups


def _key_order(labels: Mapping[str, str]) -> list[str]:
    preferred = [k for k in PREFERRED_KEYS if k in labels]
    return preferred + sorted(k for k in labels if k not in PREFERRED_KEYS)


def _exact_selector(labels: Mapping[str, str], others: list[dict[str, str]]) -> Selector:
    """The fewest labels (preferred keys first) that no other group's labels all carry; for
    a group whose labels another's include, `DoesNotExist` on one of that group's keys."""
    order = _key_order(labels)
    chosen = order[:1]

    def matches(other: Mapping[str, str]) -> bool:
        return all(other.get(k) == labels[k] for k in chosen)

    for key in order[1:]:
        clashing = [o for o in others if matches(o)]
        if not clashing:
            break
        if any(o.get(key) != labels[key] for o in clashing):
            chosen.append(key)
    terms: list[Selector] = [In(k, frozenset({labels[k]})) for k in chosen]
    for other in others:
        if matches(other):  # other's labels include all of ours: exclude one key of theirs
            extra = sorted(k for k in other if k not in labels)
            terms.append(Not(Has(extra[0])))
    return all_of(terms)


def _group_name(labels: Mapping[str, str], members: list[Endpoint]) -> str:
    owners = {m.workload.rpartition("/")[2] for m in members if m.workload}
    if len(owners) == 1:
        return owners.pop()
    for key in PREFERRED_KEYS:
        if key in labels:
            return labels[key]
    return members[0].name


def _unique_name(name: str, taken: set[str]) -> str:
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "pods"
    candidate, n = clean, 2
    while candidate in taken:
        candidate, n = f"{clean}-{n}", n + 1
    taken.add(candidate)
    return candidate

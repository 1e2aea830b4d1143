"""Policy recommendation: least-privilege policies that allow exactly the observed traffic.

From stored flows (the allowed ones), per namespace:

1. pods fall into workload groups by their stable labels, each with the smallest label
   selector that picks exactly its pods (`recommend_groups`);
2. the namespace gets a default deny (ingress and egress), and each group one policy whose
   rules allow, per direction, exactly the (peer, protocol, port) it was seen using, with
   DNS to a pod opened on UDP and TCP 53 both (`recommend_policies`).

This module reads the flows and puts the two together. Built as model `Policy` objects,
written by the existing writers: Kubernetes NetworkPolicy, or Calico StagedNetworkPolicy
(`Target.CALICO`) to be judged with `netwarden preview` before it is enforced. What a target
cannot say (ICMP in a Kubernetes NetworkPolicy) is reported in `notes`, never widened
silently.

The records are read the way a replay reads them: folded into their distinct identity rows
(`engine.flow_batch.replay_keys` plus `action`, with record counts) by the store itself
(`FlowStore.fold`, `recommend_store`), or by Arrow for a table in memory (`recommend`). Only
those rows are resolved to endpoints; millions of records of a few thousand conversations
never leave the store.

    recommendation = recommend_store(cluster, open_store("flows.duckdb"), namespace="shop")
    manifests = recommendation.manifests()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from netwarden.analysis.recommend_groups import (
    PREFERRED_KEYS,
    VOLATILE_LABELS,
    WorkloadGroup,
    group_pods,
    pods_by_namespace,
    stable_labels,
    workload_groups,
)
from netwarden.analysis.recommend_policies import (
    DNS_PORT,
    NAMESPACE_NAME_LABEL,
    RECOMMENDED_PREFIX,
    Conversation,
    RuleBuilder,
    Target,
    namespace_policies,
)
from netwarden.analysis.store_groups import fold_groups
from netwarden.dialects.calico_writer import write_calico_policy
from netwarden.dialects.k8s_writer import write_k8s_policy
from netwarden.dialects.writer_common import Manifest
from netwarden.engine.flow_batch import (
    FlowGroups,
    SkippedFlows,
    combine,
    group_flows,
    replay_keys,
)
from netwarden.errors import UsageError
from netwarden.model import ClusterState, EndpointKind, Policy

if TYPE_CHECKING:
    from netwarden.flows.filter import FlowFilter
    from netwarden.flows.store import FlowStore

#: Besides who talks to whom: what the record says happened (only allowed traffic is opened).
RECORDED = ("action",)
#: The flow columns a recommendation reads: the keys of its fold (or of a `FlowStore.scan`).
RECOMMEND_COLUMNS = replay_keys(RECORDED)
_ALLOW, _DENY = 1, 0


@dataclass(frozen=True)
class Recommendation:
    """The recommended policies, the groups they select, and what was read to make them."""

    target: Target
    policies: tuple[Policy, ...]
    groups: tuple[WorkloadGroup, ...]
    records: int
    allowed_records: int
    denied_records: int  # observed denials: never opened
    skipped: tuple[SkippedFlows, ...]
    notes: tuple[str, ...] = field(default=())

    def manifests(self) -> list[Manifest]:
        """The policies as the target's manifests (its writer checks each one)."""
        if self.target is Target.CALICO:
            return [write_calico_policy(policy) for policy in self.policies]
        return [write_k8s_policy(policy) for policy in self.policies]


def observed(groups: FlowGroups) -> tuple[list[Conversation], int, int]:
    """The distinct allowed conversations of `groups` (grouped with `RECORDED` as extra), in
    endpoint-key order whatever order the groups came in, and the allowed and denied record
    counts."""
    mapped = [
        {"allow": _ALLOW, "deny": _DENY}.get(str(v).lower(), -1) for v in groups.extra_values[0]
    ]
    action = np.array([*mapped, -1], dtype=np.int64)[groups.extra[:, 0]]  # null (-1): neither
    allowed = action == _ALLOW
    allowed_records = int(groups.records[allowed].sum())
    denied_records = int(groups.records[action == _DENY].sum())
    batch = groups.batch
    chosen = np.flatnonzero(allowed)
    if chosen.shape[0] == 0:
        return [], allowed_records, denied_records
    # Groups of one conversation differ only in how the action is spelled (allow, Allow).
    size = len(batch.endpoints)
    _, distinct = combine(
        [
            (batch.src[chosen].astype(np.int64), size),
            (batch.dst[chosen].astype(np.int64), size),
            (batch.protocol[chosen].astype(np.int64), 256),
            (batch.port[chosen].astype(np.int64), 65536),
        ]
    )
    ends = batch.endpoints
    keys = [endpoint.key for endpoint in ends]
    rows = distinct.tolist()
    # Notes follow this order: the same for a store's fold and for a scan of it.
    rows.sort(key=lambda row: (keys[row[0]], keys[row[1]], row[2], row[3]))
    seen = [Conversation(ends[s], ends[d], protocol, port) for s, d, protocol, port in rows]
    return seen, allowed_records, denied_records


def recommend(
    cluster: ClusterState,
    table: Any,
    namespace: str | None = None,
    target: Target = Target.K8S,
) -> Recommendation:
    """Policies for `namespace` (or every namespace with observed pods) from `table` (flow
    columns, at least `RECOMMEND_COLUMNS`; Arrow folds the records)."""
    _check_namespace(cluster, namespace)
    groups = group_flows(cluster, table, extra=RECORDED)
    return _recommendation(cluster, groups, int(table.num_rows), namespace, target)


def recommend_store(
    cluster: ClusterState,
    store: FlowStore,
    namespace: str | None = None,
    target: Target = Target.K8S,
    where: FlowFilter | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Recommendation:
    """Policies from the matching records of `store`: the same recommendation as `recommend`
    of the time-ordered scan, from the store's fold of the records (only distinct identity
    rows leave the store)."""
    _check_namespace(cluster, namespace)
    groups, records = fold_groups(cluster, store, RECORDED, (), where, since, until)
    return _recommendation(cluster, groups, records, namespace, target)


def _check_namespace(cluster: ClusterState, namespace: str | None) -> None:
    if namespace is not None and namespace not in cluster.namespace_labels:
        raise UsageError(f"namespace {namespace!r} is not in the inventory read with -f")


def _recommendation(
    cluster: ClusterState,
    groups: FlowGroups,
    records: int,
    namespace: str | None,
    target: Target,
) -> Recommendation:
    """The recommendation from `records` folded into `groups`."""
    conversations, allowed, denied = observed(groups)
    seen_in = {e.namespace for c in conversations for e in (c.src, c.dst) if e.namespace}
    if namespace is not None:
        namespaces = [namespace]
    else:
        namespaces = sorted(
            {
                e.namespace
                for c in conversations
                for e in (c.src, c.dst)
                if e.kind is EndpointKind.POD and e.namespace
            }
        )
    # Groups of every namespace a conversation touches name its peers; only those of the
    # recommended namespaces get policies.
    group_of: dict[int, WorkloadGroup] = {}
    all_groups: list[WorkloadGroup] = []
    pods = pods_by_namespace(cluster)
    for ns in sorted({*namespaces, *seen_in}):
        for group in group_pods(ns, pods.get(ns, [])):
            for member in group.members:
                group_of[id(member)] = group
            if ns in namespaces:
                all_groups.append(group)
    builder = RuleBuilder(target, group_of)
    for conversation in conversations:
        builder.add(conversation, set(namespaces))
    policies = namespace_policies(target, namespaces, all_groups, builder)
    return Recommendation(
        target,
        tuple(policies),
        tuple(all_groups),
        records,
        allowed,
        denied,
        groups.skipped,
        tuple(builder.notes),
    )


__all__ = [
    "DNS_PORT",
    "NAMESPACE_NAME_LABEL",
    "PREFERRED_KEYS",
    "RECOMMENDED_PREFIX",
    "RECOMMEND_COLUMNS",
    "RECORDED",
    "VOLATILE_LABELS",
    "Recommendation",
    "Target",
    "WorkloadGroup",
    "observed",
    "recommend",
    "recommend_store",
    "stable_labels",
    "workload_groups",
]

"""Policy recommendation: least-privilege policies that allow exactly the observed traffic.

From stored flows (the allowed ones), per namespace:

1. pods fall into workload groups by their stable labels (everything but what a controller
   stamps per pod or per revision, such as `pod-template-hash`); each group gets the smallest
   label selector that picks exactly its pods in the namespace: preferred keys first (`app`,
   `app.kubernetes.io/name`, ...), more labels only while another group still matches, and
   `DoesNotExist` for a group whose labels are a subset of another's;
2. the namespace gets a default deny (ingress and egress), and each group one policy whose
   rules allow, per direction, exactly the (peer, protocol, port) it was seen using: peers are
   groups (a podSelector; with a namespaceSelector on `kubernetes.io/metadata.name` across
   namespaces) or addresses (ipBlocks of /32 or /128, merged only where the merge holds
   nothing more, e.g. two halves of a /31); peers with the same ports share one rule;
3. DNS to a pod on port 53 becomes one rule per querying group to that DNS group on UDP and
   TCP 53 both: resolvers fall back to TCP for large answers, so seeing only UDP is not a
   reason to break them.

Built as model `Policy` objects, written by the existing writers: Kubernetes NetworkPolicy, or
Calico StagedNetworkPolicy (`Target.CALICO`) to be judged with `netwarden preview` before it
is enforced. What a target cannot say (ICMP in a Kubernetes NetworkPolicy) is reported in
`notes`, never widened silently.

The records are read the way a replay reads them: folded into their distinct identity rows
(`engine.flow_batch.replay_keys` plus `action`, with record counts) by the store itself
(`FlowStore.fold`, `recommend_store`), or by Arrow for a table in memory (`recommend`). Only
those rows are resolved to endpoints; millions of records of a few thousand conversations
never leave the store.

    recommendation = recommend_store(cluster, open_store("flows.duckdb"), namespace="shop")
    manifests = recommendation.manifests()
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from ipaddress import collapse_addresses
from typing import TYPE_CHECKING, Any

import numpy as np

from netwarden.analysis.store_groups import fold_groups
from netwarden.dialects.calico import CALICO_NETWORK_POLICY
from netwarden.dialects.calico_writer import write_calico_policy
from netwarden.dialects.k8s_writer import Manifest, write_k8s_policy
from netwarden.engine.flow_batch import (
    FlowGroups,
    SkippedFlows,
    combine,
    group_flows,
    replay_keys,
)
from netwarden.errors import UsageError
from netwarden.model import (
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    PORTED_PROTOCOLS,
    TCP,
    UDP,
    Action,
    All,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    Has,
    In,
    IPAddress,
    NetworkPeer,
    Not,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    Selector,
    StagedAction,
    all_of,
    protocol_name,
)

if TYPE_CHECKING:
    from netwarden.flows.filter import FlowFilter
    from netwarden.flows.store import FlowStore

#: Besides who talks to whom: what the record says happened (only allowed traffic is opened).
RECORDED = ("action",)
#: The flow columns a recommendation reads: the keys of its fold (or of a `FlowStore.scan`).
RECOMMEND_COLUMNS = replay_keys(RECORDED)
_ALLOW, _DENY = 1, 0

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
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_PORT = 53
RECOMMENDED_PREFIX = "recommended-"


class Target(StrEnum):
    K8S = "k8s"  # Kubernetes NetworkPolicy
    CALICO = "calico"  # Calico StagedNetworkPolicy (projectcalico.org/v3)


@dataclass(frozen=True)
class WorkloadGroup:
    """Pods of one namespace with the same stable labels, and the selector picking them."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    selector: Selector
    members: tuple[Endpoint, ...]


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


def stable_labels(endpoint: Endpoint) -> dict[str, str]:
    return {k: v for k, v in endpoint.labels.items() if k not in VOLATILE_LABELS}


def workload_groups(cluster: ClusterState, namespace: str) -> list[WorkloadGroup]:
    """The pods of `namespace` grouped by stable labels, each with an exact selector."""
    return _grouped(namespace, _pods_by_namespace(cluster).get(namespace, []))


def _pods_by_namespace(cluster: ClusterState) -> dict[str, list[Endpoint]]:
    pods: dict[str, list[Endpoint]] = defaultdict(list)
    for endpoint in cluster.endpoints:
        if endpoint.kind is EndpointKind.POD and endpoint.namespace:
            pods[endpoint.namespace].append(endpoint)
    return pods


def _grouped(namespace: str, pods: list[Endpoint]) -> list[WorkloadGroup]:
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


@dataclass(frozen=True)
class _Conversation:
    """One distinct allowed (source, destination, protocol, port)."""

    src: Endpoint
    dst: Endpoint
    protocol: int
    port: int


def observed(groups: FlowGroups) -> tuple[list[_Conversation], int, int]:
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
    seen = [_Conversation(ends[s], ends[d], protocol, port) for s, d, protocol, port in rows]
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
    group_of: dict[int, WorkloadGroup] = {}
    all_groups: list[WorkloadGroup] = []
    pods = _pods_by_namespace(cluster)
    for ns in sorted({*namespaces, *seen_in}):
        for group in _grouped(ns, pods.get(ns, [])):
            for member in group.members:
                group_of[id(member)] = group
            if ns in namespaces:
                all_groups.append(group)
    builder = _Builder(target, group_of)
    for conversation in conversations:
        builder.add(conversation, set(namespaces))
    policies: list[Policy] = []
    for ns in namespaces:
        policies.append(_policy(target, ns, "default-deny", All(), (), ()))
        for group in (g for g in all_groups if g.namespace == ns):
            ingress = builder.rules(group, ingress=True)
            egress = builder.rules(group, ingress=False)
            if ingress or egress:
                policies.append(_policy(target, ns, group.name, group.selector, ingress, egress))
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


def _policy(
    target: Target,
    namespace: str,
    name: str,
    selector: Selector,
    ingress: tuple[Rule, ...],
    egress: tuple[Rule, ...],
) -> Policy:
    """A policy of the default tier at order 1000, as both Kubernetes and Calico place it; a
    direction with no rules is only isolated when the policy is the default deny."""
    deny_all = not ingress and not egress
    calico = target is Target.CALICO
    return Policy(
        name=RECOMMENDED_PREFIX + name,
        kind=CALICO_NETWORK_POLICY if calico else "NetworkPolicy",
        tier=DEFAULT_TIER.name,
        subject=EndpointSelector(pods=selector, namespace=namespace),
        namespace=namespace,
        order=K8S_NETWORK_POLICY_ORDER,
        ingress=ingress if ingress or deny_all else None,
        egress=egress if egress or deny_all else None,
        staged=StagedAction.SET if calico else None,
        calico_name=("staged:" if calico else "knp.default.") + RECOMMENDED_PREFIX + name,
    )


class _Builder:
    """Per group and direction: which peers were seen on which (protocol, port)s."""

    def __init__(self, target: Target, group_of: dict[int, WorkloadGroup]) -> None:
        self.target = target
        self.group_of = group_of
        # (namespace, group name, ingress) -> peer -> set of (protocol, port); a peer is a
        # group (its namespace and name) or an address.
        self.seen: dict[tuple[str, str, bool], dict[Any, set[tuple[int, int]]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.groups = {(g.namespace, g.name): g for g in group_of.values()}
        self.notes: list[str] = []
        self._texts: dict[Any, str] = {}
        self._peers: dict[tuple[str, str, str], Peer] = {}

    def add(self, c: _Conversation, namespaces: set[str]) -> None:
        if c.protocol not in PORTED_PROTOCOLS and self.target is Target.K8S:
            self._note(
                f"{c.src.key} -> {c.dst.key} {protocol_name(c.protocol)}: a Kubernetes "
                "NetworkPolicy cannot allow it without allowing every protocol; not allowed "
                "(--target calico can)"
            )
            return
        ports: set[tuple[int, int]] = {(c.protocol, c.port)}
        if c.port == DNS_PORT and c.protocol in (TCP, UDP) and c.dst.kind is EndpointKind.POD:
            ports = {(TCP, DNS_PORT), (UDP, DNS_PORT)}
        src_group = self.group_of.get(id(c.src))
        dst_group = self.group_of.get(id(c.dst))
        src_peer, dst_peer = self._peer(c.src, src_group), self._peer(c.dst, dst_group)
        if src_peer is None or dst_peer is None:
            self._note(f"{c.src.key} -> {c.dst.key}: an end without an address; not allowed")
            return
        if src_group is not None and src_group.namespace in namespaces:
            self.seen[(src_group.namespace, src_group.name, False)][dst_peer] |= ports
        if dst_group is not None and dst_group.namespace in namespaces:
            self.seen[(dst_group.namespace, dst_group.name, True)][src_peer] |= ports

    def _note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    @staticmethod
    def _peer(endpoint: Endpoint, group: WorkloadGroup | None) -> Any:
        if group is not None:
            return ("group", group.namespace, group.name)
        return ("address", endpoint.ips[0]) if endpoint.ips else None

    def rules(self, group: WorkloadGroup, ingress: bool) -> tuple[Rule, ...]:
        """Peers with the same (protocol, port) set share one rule (one more per portless
        protocol, a Calico rule-wide condition); addresses are merged."""
        seen = self.seen.get((group.namespace, group.name, ingress), {})
        by_ports: dict[frozenset[tuple[int, int]], list[Any]] = defaultdict(list)
        for peer, used in seen.items():
            by_ports[frozenset(used)].append(peer)
        rules = []
        for ports, peers in sorted(by_ports.items(), key=lambda item: sorted(item[0])):
            written: list[Peer] = []
            addresses = []
            for peer in sorted(peers, key=self._order):
                if peer[0] == "group":
                    written.append(self._group_peer(peer[1], peer[2], group.namespace))
                else:
                    addresses.append(peer[1])
            written += [NetworkPeer(net) for net in _merge(addresses)]
            ported = [
                PortMatch(protocol, PortRange(port, port))
                for protocol, port in sorted(ports)
                if protocol in PORTED_PROTOCOLS
            ]
            if ported:
                rules.append(Rule(Action.ALLOW, peers=tuple(written), ports=tuple(ported)))
            for protocol in sorted({p for p, _ in ports if p not in PORTED_PROTOCOLS}):
                rules.append(Rule(Action.ALLOW, peers=tuple(written), protocol=protocol))
        return tuple(rules)

    def _order(self, peer: Any) -> str:
        """Peers in the order of their text (one text per peer, however many rules name it)."""
        text = self._texts.get(peer)
        if text is None:
            text = self._texts[peer] = str(peer)
        return text

    def _group_peer(self, namespace: str, name: str, scope: str) -> Peer:
        key = (namespace, name, scope)
        peer = self._peers.get(key)
        if peer is None:
            pods = self.groups[(namespace, name)].selector
            if namespace == scope:
                peer = EndpointSelector(pods=pods, namespace=scope)
            else:
                names = In(NAMESPACE_NAME_LABEL, frozenset({namespace}))
                peer = EndpointSelector(pods=pods, namespaces=names)
            self._peers[key] = peer
        return peer


def _merge(addresses: Sequence[IPAddress]) -> list[Any]:
    """Host routes for the addresses, merged only where the merge adds no address."""
    merged: list[Any] = []
    for version in (4, 6):
        same = [a for a in addresses if a.version == version]
        if same:
            merged += collapse_addresses(same)
    return merged

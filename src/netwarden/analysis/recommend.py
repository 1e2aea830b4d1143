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

    recommendation = recommend(cluster, store.scan(columns=RECOMMEND_COLUMNS), namespace="shop")
    manifests = recommendation.manifests()
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import collapse_addresses, ip_network
from typing import Any

import numpy as np

from netwarden.dialects.calico import CALICO_NETWORK_POLICY
from netwarden.dialects.calico_writer import write_calico_policy
from netwarden.dialects.k8s_writer import Manifest, write_k8s_policy
from netwarden.engine.flow_batch import SkippedFlows, group_flows
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

#: The flow columns a recommendation reads (pass them to `FlowStore.scan`).
RECOMMEND_COLUMNS = (
    "source_ip",
    "dest_ip",
    "dest_port",
    "proto",
    "source_type",
    "source_namespace",
    "source_name",
    "source_name_aggr",
    "dest_type",
    "dest_namespace",
    "dest_name",
    "dest_name_aggr",
    "action",
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
    by_labels: dict[frozenset[tuple[str, str]], list[Endpoint]] = defaultdict(list)
    for endpoint in cluster.endpoints:
        if endpoint.kind is EndpointKind.POD and endpoint.namespace == namespace:
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


def observed(
    cluster: ClusterState, table: Any
) -> tuple[list[_Conversation], int, int, tuple[SkippedFlows, ...]]:
    """The distinct allowed conversations of `table`, and the allowed and denied record counts."""
    groups = group_flows(cluster, table, extra=("action",))
    actions = [str(v).lower() for v in groups.extra_values[0]]
    code = np.array([actions.index(a) if a in actions else -2 for a in ("allow", "deny")])
    allowed = groups.extra[:, 0] == code[0]
    allowed_records = int(groups.records[allowed].sum())
    denied_records = int(groups.records[groups.extra[:, 0] == code[1]].sum())
    batch = groups.batch
    seen = []
    unique = set()
    for g in np.flatnonzero(allowed).tolist():
        key = (int(batch.src[g]), int(batch.dst[g]), int(batch.protocol[g]), int(batch.port[g]))
        if key not in unique:
            unique.add(key)
            src, dst = batch.endpoints[key[0]], batch.endpoints[key[1]]
            seen.append(_Conversation(src, dst, key[2], key[3]))
    return seen, allowed_records, denied_records, groups.skipped


def recommend(
    cluster: ClusterState,
    table: Any,
    namespace: str | None = None,
    target: Target = Target.K8S,
) -> Recommendation:
    """Policies for `namespace` (or every namespace with observed pods) from `table`."""
    conversations, allowed, denied, skipped = observed(cluster, table)
    seen_in = {e.namespace for c in conversations for e in (c.src, c.dst) if e.namespace}
    if namespace is not None:
        if namespace not in cluster.namespace_labels:
            raise UsageError(f"namespace {namespace!r} is not in the inventory read with -f")
        namespaces = [namespace]
    else:
        namespaces = sorted(
            e.namespace
            for e in {id(e): e for c in conversations for e in (c.src, c.dst)}.values()
            if e.kind is EndpointKind.POD and e.namespace
        )
        namespaces = sorted(set(namespaces))
    group_of: dict[int, WorkloadGroup] = {}
    all_groups: list[WorkloadGroup] = []
    for ns in sorted({*namespaces, *seen_in}):
        for group in workload_groups(cluster, ns):
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
        int(table.num_rows),
        allowed,
        denied,
        skipped,
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
            for peer in sorted(peers, key=str):
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

    def _group_peer(self, namespace: str, name: str, scope: str) -> Peer:
        pods = self.groups[(namespace, name)].selector
        if namespace == scope:
            return EndpointSelector(pods=pods, namespace=scope)
        return EndpointSelector(
            pods=pods, namespaces=In(NAMESPACE_NAME_LABEL, frozenset({namespace}))
        )


def _merge(addresses: Iterable[IPAddress]) -> list[Any]:
    """Host routes for the addresses, merged only where the merge adds no address."""
    nets = [ip_network(address) for address in addresses]
    merged: list[Any] = []
    for version in (4, 6):
        merged += collapse_addresses(n for n in nets if n.version == version)
    return merged

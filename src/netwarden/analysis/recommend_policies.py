"""The policies of a recommendation: observed conversations written as rules of workload groups.

Each namespace gets a default deny (ingress and egress), and each workload group
(`recommend_groups`) one policy whose rules allow, per direction, exactly the (peer, protocol,
port) it was seen using: peers are groups (a podSelector; with a namespaceSelector on
`kubernetes.io/metadata.name` across namespaces) or addresses (ipBlocks of /32 or /128,
merged only where the merge holds nothing more, e.g. two halves of a /31); peers with the
same ports share one rule. DNS to a pod on port 53 is opened on UDP and TCP 53 both:
resolvers fall back to TCP for large answers, so seeing only UDP is not a reason to break
them. What the target cannot say (ICMP in a Kubernetes NetworkPolicy) becomes a note, never
a wider rule.

    builder = RuleBuilder(Target.K8S, group_of)
    for conversation in conversations:
        builder.add(conversation, {"shop"})
    policies = namespace_policies(Target.K8S, ["shop"], groups, builder)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import collapse_addresses
from typing import Any

from netwarden.analysis.recommend_groups import WorkloadGroup
from netwarden.dialects.calico import CALICO_NETWORK_POLICY
from netwarden.model import (
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    PORTED_PROTOCOLS,
    TCP,
    UDP,
    Action,
    All,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    In,
    IPAddress,
    NetworkPeer,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    Selector,
    StagedAction,
    protocol_name,
)

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_PORT = 53
RECOMMENDED_PREFIX = "recommended-"


class Target(StrEnum):
    K8S = "k8s"  # Kubernetes NetworkPolicy
    CALICO = "calico"  # Calico StagedNetworkPolicy (projectcalico.org/v3)


@dataclass(frozen=True)
class Conversation:
    """One distinct allowed (source, destination, protocol, port)."""

    src: Endpoint
    dst: Endpoint
    protocol: int
    port: int


def namespace_policies(
    target: Target,
    namespaces: Sequence[str],
    groups: Sequence[WorkloadGroup],
    builder: RuleBuilder,
) -> list[Policy]:
    """Per namespace, its default deny and one policy per group of `groups` seen talking."""
    policies: list[Policy] = []
    for ns in namespaces:
        policies.append(recommended_policy(target, ns, "default-deny", All(), (), ()))
        for group in (g for g in groups if g.namespace == ns):
            ingress = builder.rules(group, ingress=True)
            egress = builder.rules(group, ingress=False)
            if ingress or egress:
                policies.append(
                    recommended_policy(target, ns, group.name, group.selector, ingress, egress)
                )
    return policies


def recommended_policy(
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


class RuleBuilder:
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

    def add(self, c: Conversation, namespaces: set[str]) -> None:
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

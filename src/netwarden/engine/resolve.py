"""Resolving: `resolve_node` computes the resolved form (`netwarden.engine.resolved`) of the
policies that apply to one node's endpoints, using the engine's own matching functions
(`selects`, `peer_matches`, `entity_matches`, `Endpoint.named_port`), so a backend only
translates and never decides (DESIGN.md: "the nftables backend never re-implements
semantics").

This module groups the node's pods and host endpoints into classes by the tiers and policies
that meet them and resolves those policies and profiles rule by rule; `resolve_matches` turns
each rule's peers, own end and ports into addresses and ports, and `ranges` holds the address
and port range arithmetic. The resolved form's types are re-exported here.

    >>> from netwarden.dialects import load_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> node = resolve_node(cluster, "node-a", ["shop/frontend-0", "shop/backend-0"])
    >>> [c.endpoints for c in node.ingress.classes]
    [('shop/frontend-0',), ('shop/backend-0',)]
"""

from __future__ import annotations

from collections.abc import Sequence

from netwarden.engine.decide import FAILSAFE_INBOUND, FAILSAFE_OUTBOUND, PolicyEngine
from netwarden.engine.resolve_matches import MatchResolver
from netwarden.engine.resolved import (
    FAMILIES,
    PROFILE_TIER,
    EndpointClass,
    HostEndpointClass,
    ResolvedDirection,
    ResolvedNode,
    ResolvedPolicy,
    ResolvedProfile,
    ResolvedRule,
    TierRun,
)
from netwarden.errors import CompileError
from netwarden.model import (
    Action,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    IPAddress,
    Nothing,
    Policy,
    Profile,
    Rule,
)

__all__ = ["Resolver", "profile_policy", "resolve_node"]

_Runs = tuple[tuple[str, tuple[int, ...]], ...]  # (tier name, policy indices) in order
_HostGroup = tuple[tuple[str, ...], tuple[IPAddress, ...]]  # host endpoint keys, addresses


def resolve_node(cluster: ClusterState, node: str, endpoints: Sequence[str]) -> ResolvedNode:
    """The resolved form for `endpoints` (pod keys) running on `node`, and for the node's
    own host endpoints.

    Raises `CompileError` for what no address-based dataplane can enforce exactly: a local
    endpoint that is not a pod, a host endpoint holding this node's address but naming another
    node, or a peer that tells apart endpoints sharing one address.
    """
    return _Resolver(cluster).node(node, endpoints)


class _Resolver(MatchResolver):
    """Groups endpoints into classes and resolves their policies and profiles rule by rule
    (each rule's peers and ports by `MatchResolver`); results are cached by content."""

    def __init__(self, cluster: ClusterState) -> None:
        super().__init__(cluster)
        self.engine = PolicyEngine(cluster)

    # --- policies and classes -------------------------------------------------------------

    def rule(
        self,
        policy: Policy,
        index: int,
        rule: Rule,
        direction: Direction,
        subjects: Sequence[Endpoint],
    ) -> ResolvedRule:
        ingress = direction is Direction.INGRESS
        what = f"{policy.tier}/{policy.key} {direction.value} rule {rule.name or index}"
        peer = self.peer(rule.peers, not ingress, what) if rule.peers else None
        local = self.local(rule.local, ingress, subjects) if rule.local is not None else None
        ports = self.ports(rule.ports, what) if rule.ports else None
        not_ports = self.ports(rule.not_ports, what) if rule.not_ports else None
        never = bool(rule.not_ports) and not_ports is None
        return ResolvedRule(policy, index, rule, peer, local, ports, not_ports, never)

    def node(self, node: str, keys: Sequence[str]) -> ResolvedNode:
        hosts = self._host_endpoints(node)
        endpoints = []
        for key in keys:
            endpoint = self.cluster.endpoints_by_key.get(key)
            if endpoint is None:
                raise CompileError(f"node {node}: no endpoint {key!r} in the inventory")
            if endpoint.kind is not EndpointKind.POD:
                raise CompileError(
                    f"node {node}: {key} is a {endpoint.kind.value} endpoint; only pods have "
                    "their own interface to enforce on"
                )
            endpoints.append(endpoint)
        known = tuple(
            frozenset(ip for ip in self.at_address if ip.version == family) for family in FAMILIES
        )
        return ResolvedNode(
            node,
            tuple(endpoints),
            known,
            self.direction(Direction.EGRESS, endpoints, hosts),
            self.direction(Direction.INGRESS, endpoints, hosts),
            tuple(hosts),
        )

    def _host_endpoints(self, node: str) -> list[Endpoint]:
        """The node's host endpoints that hold addresses (the engine attributes no flow to one
        without). One holding this node's address but naming another node is refused: which
        node's ruleset would govern the address is then a guess."""
        known = self.cluster.nodes_by_name.get(node)
        node_ips = set(known.ips) if known is not None else set()
        found = []
        for endpoint in self.cluster.endpoints:
            if endpoint.kind is not EndpointKind.HOST_ENDPOINT:
                continue
            if endpoint.node == node:
                if endpoint.ips:
                    found.append(endpoint)
            elif node_ips & set(endpoint.ips):
                raise CompileError(
                    f"node {node}: host endpoint {endpoint.key} holds this node's address "
                    f"{min(node_ips & set(endpoint.ips), key=str)} but names node {endpoint.node}"
                )
        return found

    def direction(
        self,
        direction: Direction,
        endpoints: Sequence[Endpoint],
        hosts: Sequence[Endpoint] = (),
    ) -> ResolvedDirection:
        index = {id(policy): i for i, policy in enumerate(self.engine.policies)}
        classes: dict[_Runs, list[str]] = {}
        tiers = {tier.name: tier for tier, _ in self.engine.tiers}
        unselected: list[str] = []
        for endpoint in endpoints:
            runs = self._runs(endpoint, direction, index)
            if runs:
                classes.setdefault(runs, []).append(endpoint.key)
            else:
                unselected.append(endpoint.key)
        host_runs = {host.key: self._runs(host, direction, index) for host in hosts}
        used = sorted(
            {i for runs in (*classes, *host_runs.values()) for _, ids in runs for i in ids}
        )
        position = {policy_id: n for n, policy_id in enumerate(used)}
        subjects = [*endpoints, *hosts]  # a rule's own end matches the node's host endpoints too
        policies = tuple(self._policy(self.engine.policies[i], direction, subjects) for i in used)
        host_classes, profiles = self._host_classes(direction, hosts, host_runs, subjects)

        def run_of(name: str, ids: tuple[int, ...]) -> TierRun:
            return TierRun(tiers[name], tuple(position[i] for i in ids))

        failsafe = FAILSAFE_INBOUND if direction is Direction.INGRESS else FAILSAFE_OUTBOUND
        return ResolvedDirection(
            direction,
            tuple(
                EndpointClass(tuple(run_of(name, ids) for name, ids in runs), tuple(keys))
                for runs, keys in classes.items()
            ),
            tuple(unselected),
            policies,
            tuple(
                HostEndpointClass(
                    tuple(run_of(name, ids) for name, ids in runs), names, keys, addresses
                )
                for (runs, names), (keys, addresses) in host_classes.items()
            ),
            profiles,
            tuple(sorted(failsafe)) if hosts else (),
        )

    def _runs(self, endpoint: Endpoint, direction: Direction, index: dict[int, int]) -> _Runs:
        """(tier, policy indices) of every tier with policies that select `endpoint`."""
        return tuple(
            (tier.name, tuple(index[id(p)] for p in policies))
            for tier, policies in self.engine.selecting(endpoint, direction)
            if policies
        )

    def _host_classes(
        self,
        direction: Direction,
        hosts: Sequence[Endpoint],
        host_runs: dict[str, _Runs],
        subjects: Sequence[Endpoint],
    ) -> tuple[dict[tuple[_Runs, tuple[int, ...]], _HostGroup], tuple[ResolvedProfile, ...]]:
        """Host endpoints grouped by (tiers, profiles), each group with its keys and the
        addresses the engine attributes to it (an address two host endpoints list belongs to
        the first, as `PolicyEngine.host_endpoints_by_ip` decides)."""
        profiles: dict[str, int] = {}
        resolved: list[ResolvedProfile] = []
        groups: dict[tuple[_Runs, tuple[int, ...]], _HostGroup] = {}
        for host in hosts:
            listed = []
            for name in host.profiles:
                profile = self.cluster.profiles_by_name.get(name)
                if profile is None:  # the engine finds no rules in a profile that is not there
                    continue
                if name not in profiles:
                    profiles[name] = len(resolved)
                    resolved.append(self._profile(profile, direction, subjects))
                listed.append(profiles[name])
            owned = tuple(ip for ip in host.ips if self.engine.host_endpoints_by_ip.get(ip) is host)
            key = (host_runs[host.key], tuple(listed))
            keys, addresses = groups.get(key, ((), ()))
            groups[key] = ((*keys, host.key), (*addresses, *owned))
        return groups, tuple(resolved)

    def _profile(
        self, profile: Profile, direction: Direction, subjects: Sequence[Endpoint]
    ) -> ResolvedProfile:
        policy = profile_policy(profile)
        decisive = [
            (i, rule)
            for i, rule in enumerate(profile.rules(direction))
            if rule.action in (Action.ALLOW, Action.DENY)
        ]
        return ResolvedProfile(
            profile,
            policy,
            direction,
            tuple(self.rule(policy, i, rule, direction, subjects) for i, rule in decisive),
        )

    def _policy(
        self, policy: Policy, direction: Direction, subjects: Sequence[Endpoint]
    ) -> ResolvedPolicy:
        rules = policy.rules(direction) or ()
        return ResolvedPolicy(
            policy,
            direction,
            tuple(self.rule(policy, i, rule, direction, subjects) for i, rule in enumerate(rules)),
        )


def profile_policy(profile: Profile) -> Policy:
    """A profile as a policy of tier `PROFILE_TIER` that selects nothing by itself (host
    endpoints name their profiles), named `__PROFILE__.<name>` as Calico's flow logs do."""
    return Policy(
        name=profile.name,
        kind="Profile",
        tier=PROFILE_TIER,
        subject=EndpointSelector(pods=Nothing()),
        ingress=profile.ingress,
        egress=profile.egress,
        calico_name=f"{PROFILE_TIER}.{profile.name}",
    )


#: The resolver itself, for a dataplane that keeps it to place pods that come, go or change
#: labels without resolving the node again (`netwarden.dataplane.nft_delta`).
Resolver = _Resolver

"""The resolved form: a node's policies as a dataplane needs them, computed by the engine.

A dataplane sees interfaces, addresses, protocols and ports, never labels. `resolve_node` turns
the policies that apply to one node's endpoints into exactly that, using the engine's own
matching functions (`selects`, `peer_matches`, `entity_matches`, `Endpoint.named_port`), so a
backend only translates and never decides (DESIGN.md: "the nftables backend never
re-implements semantics").

- Endpoint classes: the node's pods grouped by the ordered tiers and policies that select them
  in one direction (`PolicyEngine.selecting`; enforced policies only, staged ones never).
- Host endpoint classes: the node's Calico host endpoints grouped the same way and by the
  profiles they list. The engine attributes a flow to a host endpoint by address (a node
  address or hostNetwork pod address that a host endpoint's `expectedIPs` hold), so each class
  carries the addresses it governs; then failsafe ports (`failsafe`), the tiers, the profiles'
  Allow and Deny rules in order, and deny when none decided, as `PolicyEngine` decides.
- Per rule, each end as addresses of one family: `known`, the addresses of inventory
  endpoints (pods, host endpoints, hostNetwork pods, node addresses) the peer matches; and
  `external`, for addresses no endpoint holds, the address space cut into atoms at every
  boundary a network set, ipBlock/except, nets/notNets, node or Service address mentions, each
  atom decided once by an external endpoint standing for it. A packet matches when its address
  is in `known`, or is no known address and lies in `external`. Calico `services` destinations
  and named ports are (address, protocol, port) triples; ports are protocol + port ranges.

Everything is plain data keyed by content, so equal peers resolve to equal (shareable) sets.
The engine decides per endpoint; a packet only shows an address. Where two endpoints share an
address (hostNetwork pods, their node and its host endpoint) and a peer or a rule's own-end
match tells them apart, resolving fails with a `CompileError` instead of guessing. Named
ports on a shared address are the union of what the endpoints there declare.

    >>> from netwarden.dialects import load_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> node = resolve_node(cluster, "node-a", ["shop/frontend-0", "shop/backend-0"])
    >>> [c.endpoints for c in node.ingress.classes]
    [('shop/frontend-0',), ('shop/backend-0',)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address
from itertools import pairwise

from netwarden.engine.decide import FAILSAFE_INBOUND, FAILSAFE_OUTBOUND, PolicyEngine
from netwarden.engine.entity import entity_matches
from netwarden.engine.matching import peer_matches
from netwarden.errors import CompileError
from netwarden.model import (
    ALL_PORTS,
    PORTED_PROTOCOLS,
    Action,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    EntityMatch,
    IPAddress,
    IPNetwork,
    NetworkPeer,
    Nothing,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Profile,
    Rule,
    Tier,
    external_endpoint,
)

FAMILIES = (4, 6)
_Runs = tuple[tuple[str, tuple[int, ...]], ...]  # (tier name, policy indices) in order
_HostGroup = tuple[tuple[str, ...], tuple[IPAddress, ...]]  # host endpoint keys, addresses
#: The tier name profile rules carry in labels and flow logs, as Calico names profile hits.
PROFILE_TIER = "__PROFILE__"
_BITS = {4: 32, 6: 128}


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family."""

    start: IPAddress
    end: IPAddress

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


@dataclass(frozen=True, order=True)
class AddressPort:
    """A destination address with a protocol and port (named ports, Service ports)."""

    address: IPAddress
    protocol: int
    port: int


@dataclass(frozen=True)
class AddressMatch:
    """What one end of a rule matches among the addresses of one family.

    An address matches when it is in `known`; or when no inventory endpoint holds it and it
    lies in `external`; or, on the ports listed, when it is in `ports` (Calico `services`).
    `ports` holds no address that already matches without them, so the three are disjoint.
    """

    family: int
    known: frozenset[IPAddress]
    external: tuple[AddressRange, ...]
    ports: frozenset[AddressPort] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.known and not self.external and not self.ports

    @property
    def external_everything(self) -> bool:
        return self.external == (_full_range(self.family),)


@dataclass(frozen=True, order=True)
class ProtocolPorts:
    """A port range of one ported protocol (TCP, UDP, SCTP)."""

    protocol: int
    ports: PortRange


@dataclass(frozen=True)
class PortSelection:
    """Destination ports a rule lists (any of them): `ranges`, `protocols` (every packet of a
    portless protocol) and `named`, the (address, protocol, port) of every endpoint that
    declares one of the named ports, per family. `named` holds nothing `ranges` already
    covers, so the three are disjoint."""

    ranges: tuple[ProtocolPorts, ...] = ()
    protocols: tuple[int, ...] = ()
    named: tuple[frozenset[AddressPort], ...] = (frozenset(), frozenset())

    def named_for(self, family: int) -> frozenset[AddressPort]:
        return self.named[FAMILIES.index(family)]

    @property
    def empty(self) -> bool:
        return not self.ranges and not self.protocols and not any(self.named)


@dataclass(frozen=True)
class ResolvedRule:
    """One rule with its ends and ports as addresses. `peer` / `local` None means any;
    otherwise one `AddressMatch` per family of `FAMILIES`. `ports` None means every port;
    `not_ports` None means no exclusion. The rule-wide conditions (protocol, notProtocol,
    ICMP, ipVersion) are read from `rule` as written."""

    policy: Policy
    index: int
    rule: Rule
    peer: tuple[AddressMatch, ...] | None
    local: tuple[AddressMatch, ...] | None
    ports: PortSelection | None
    not_ports: PortSelection | None
    never: bool = False  # a notPorts entry excludes every packet: the rule cannot match

    @property
    def label(self) -> str:
        """`tier/policy/rule`: the rule's name, else its index, as traces name it."""
        return f"{self.policy.tier}/{self.policy.key}/{self.rule.name or self.index}"

    def peer_for(self, family: int) -> AddressMatch | None:
        return None if self.peer is None else self.peer[FAMILIES.index(family)]

    def local_for(self, family: int) -> AddressMatch | None:
        return None if self.local is None else self.local[FAMILIES.index(family)]


@dataclass(frozen=True)
class ResolvedPolicy:
    policy: Policy
    direction: Direction
    rules: tuple[ResolvedRule, ...]

    @property
    def passes(self) -> bool:
        return any(rule.rule.action is Action.PASS for rule in self.rules)


@dataclass(frozen=True)
class TierRun:
    """A tier as one endpoint class meets it: its selecting policies, in evaluation order
    (indices into `ResolvedDirection.policies`)."""

    tier: Tier
    policies: tuple[int, ...]


@dataclass(frozen=True)
class EndpointClass:
    """Endpoints selected, in one direction, by the same tiers and policies in the same order."""

    tiers: tuple[TierRun, ...]
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedProfile:
    """A host endpoint profile in one direction: its Allow and Deny rules in order (the engine
    passes over Log and Pass in a profile). `policy` is the profile as a policy of tier
    `PROFILE_TIER`, so that its rules resolve and render like any other."""

    profile: Profile
    policy: Policy
    direction: Direction
    rules: tuple[ResolvedRule, ...]


@dataclass(frozen=True)
class HostEndpointClass:
    """Host endpoints met by the same tiers and policies in the same order that list the same
    profiles (indices into `ResolvedDirection.profiles`, in the order listed). `addresses` are
    the ones the engine attributes to these host endpoints: packets to them (ingress) or from
    them (egress) are theirs."""

    tiers: tuple[TierRun, ...]
    profiles: tuple[int, ...]
    endpoints: tuple[str, ...]
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class ResolvedDirection:
    direction: Direction
    classes: tuple[EndpointClass, ...]
    unselected: tuple[str, ...]  # no policy selects them: the profile allows
    policies: tuple[ResolvedPolicy, ...]
    host_classes: tuple[HostEndpointClass, ...] = ()
    profiles: tuple[ResolvedProfile, ...] = ()
    #: (protocol, port) a host endpoint allows before any policy (Felix's failsafe ports).
    failsafe: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ResolvedNode:
    """Everything a dataplane needs to enforce policy for the endpoints of one node."""

    node: str
    endpoints: tuple[Endpoint, ...]
    known: tuple[frozenset[IPAddress], ...]  # every inventory address, per family
    egress: ResolvedDirection
    ingress: ResolvedDirection
    host_endpoints: tuple[Endpoint, ...] = ()  # the node's Calico host endpoints

    def direction(self, direction: Direction) -> ResolvedDirection:
        return self.egress if direction is Direction.EGRESS else self.ingress

    def known_for(self, family: int) -> frozenset[IPAddress]:
        return self.known[FAMILIES.index(family)]


def resolve_node(cluster: ClusterState, node: str, endpoints: Sequence[str]) -> ResolvedNode:
    """The resolved form for `endpoints` (pod keys) running on `node`, and for the node's
    own host endpoints.

    Raises `CompileError` for what no address-based dataplane can enforce exactly: a local
    endpoint that is not a pod, a host endpoint holding this node's address but naming another
    node, or a peer that tells apart endpoints sharing one address.
    """
    return _Resolver(cluster).node(node, endpoints)


def _full_range(family: int) -> AddressRange:
    kind = IPv4Address if family == 4 else IPv6Address
    return AddressRange(kind(0), kind(2 ** _BITS[family] - 1))


def _family_of(ip: IPAddress) -> int:
    return ip.version


class _Resolver:
    """Resolves peers, ports and classes for one cluster; results are cached by content."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self.engine = PolicyEngine(cluster)
        self._peers: dict[tuple[tuple[Peer, ...], bool], tuple[AddressMatch, ...]] = {}
        self._ports: dict[tuple[PortMatch, ...], PortSelection | None] = {}

    # --- addresses ------------------------------------------------------------------------

    @cached_property
    def at_address(self) -> dict[IPAddress, list[Endpoint]]:
        """Every known address with the endpoints that hold it (a node address that no
        endpoint holds stands for itself, as the engine sees it)."""
        found: dict[IPAddress, list[Endpoint]] = {}
        for endpoint in self.cluster.endpoints:
            for ip in endpoint.ips:
                found.setdefault(ip, []).append(endpoint)
        for node in self.cluster.nodes:
            for ip in node.ips:
                found.setdefault(ip, [external_endpoint(ip)])
        return found

    @cached_property
    def atoms(self) -> dict[int, list[AddressRange]]:
        """The address space of each family cut at every boundary anything mentions."""
        bounds: dict[int, set[int]] = {family: {0, 2 ** _BITS[family]} for family in FAMILIES}
        for network in self._networks():
            start = int(network.network_address)
            bounds[network.version] |= {start, start + network.num_addresses}
        for ip in self._pinned():
            bounds[ip.version] |= {int(ip), int(ip) + 1}
        atoms: dict[int, list[AddressRange]] = {}
        for family, cuts in bounds.items():
            ordered = sorted(cuts)
            atoms[family] = [
                AddressRange(_ip(family, low), _ip(family, high - 1))
                for low, high in pairwise(ordered)
            ]
        return atoms

    def _networks(self) -> Iterable[IPNetwork]:
        for network_set in self.cluster.network_sets:
            yield from network_set.nets
        for policy in self.cluster.policies:
            for direction in Direction:
                for rule in policy.rules(direction) or ():
                    for peer in (*rule.peers, rule.local):
                        if isinstance(peer, NetworkPeer):
                            yield peer.cidr
                            yield from peer.excepted
                        elif isinstance(peer, EntityMatch):
                            yield from peer.nets
                            yield from peer.not_nets

    def _pinned(self) -> Iterable[IPAddress]:
        """Addresses decided one by one: nodes' (node peers) and Services' endpoints."""
        for node in self.cluster.nodes:
            yield from node.ips
        for service in self.cluster.services:
            yield from service.ips

    def _address_matches(
        self, peers: Sequence[Peer], ip: IPAddress, endpoints: Sequence[Endpoint], what: str
    ) -> bool:
        """Whether an address matches any of `peers`, the same for every endpoint there."""
        seen = {any(peer_matches(p, e, ip, self.cluster) for p in peers) for e in endpoints}
        if len(seen) > 1:
            names = ", ".join(sorted(e.key for e in endpoints))
            raise CompileError(
                f"{what}: address {ip} is shared by {names}, which the rule's peers tell apart; "
                "a packet only shows the address, so this cannot be enforced exactly"
            )
        return seen.pop()

    # --- peers ----------------------------------------------------------------------------

    def peer(
        self, peers: tuple[Peer, ...], destination: bool, what: str
    ) -> tuple[AddressMatch, ...]:
        """The addresses `peers` (any of them) match, per family. At a destination, a
        `services` peer whose Service lists ports also checks the port."""
        key = (peers, destination)
        if key not in self._peers:
            self._peers[key] = tuple(
                self._peer_family(peers, destination, family, what) for family in FAMILIES
            )
        return self._peers[key]

    def _peer_family(
        self, peers: tuple[Peer, ...], destination: bool, family: int, what: str
    ) -> AddressMatch:
        by_port = [p for p in peers if destination and self._service_ports(p)]
        free = [p for p in peers if p not in by_port]
        known = frozenset(
            ip
            for ip, endpoints in self.at_address.items()
            if ip.version == family and free and self._address_matches(free, ip, endpoints, what)
        )
        # An atom that is one known address never reaches the `external` test: it may join
        # its neighbours (fewer ranges) but never stands alone.
        external = _merge(
            (
                atom,
                None
                if atom.start == atom.end and atom.start in self.at_address
                else bool(free)
                and any(
                    peer_matches(p, external_endpoint(atom.start), atom.start, self.cluster)
                    for p in free
                ),
            )
            for atom in self.atoms[family]
        )
        match = AddressMatch(family, known, external)
        ports = frozenset(
            entry
            for peer in by_port
            for entry in self._service_entries(peer, family, what)
            if not self._covers(match, entry.address)
        )
        return AddressMatch(family, known, external, ports)

    def _service_ports(self, peer: Peer) -> bool:
        if not isinstance(peer, EntityMatch) or peer.service is None:
            return False
        service = self.cluster.services_by_key.get(peer.service)
        return service is not None and bool(service.ports)

    def _service_entries(self, peer: Peer, family: int, what: str) -> Iterable[AddressPort]:
        assert isinstance(peer, EntityMatch) and peer.service is not None
        service = self.cluster.services_by_key[peer.service]
        for ip in service.ips:
            if ip.version != family:
                continue
            endpoints = self.at_address.get(ip) or [external_endpoint(ip)]
            if self._address_matches([peer], ip, endpoints, what):
                for port in service.ports:
                    yield AddressPort(ip, port.protocol, port.port)

    def _covers(self, match: AddressMatch, ip: IPAddress) -> bool:
        if ip in self.at_address:
            return ip in match.known
        return any(int(r.start) <= int(ip) <= int(r.end) for r in match.external)

    def local(
        self, local: EntityMatch, destination: bool, subjects: Sequence[Endpoint]
    ) -> tuple[AddressMatch, ...]:
        """The subjects' own addresses that a rule's `local` match accepts, per family."""
        by_port = destination and self._service_ports(local)
        matched: set[IPAddress] = set()
        entries: set[AddressPort] = set()
        for endpoint in subjects:
            for ip in endpoint.ips:
                if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                    # The engine matches a rule's own end on the flow's endpoint, which may be
                    # a hostNetwork pod at the host endpoint's address: all must agree.
                    holders = self.at_address.get(ip) or [endpoint]
                    seen = {entity_matches(local, e, ip, self.cluster)[0] for e in holders}
                    if len(seen) > 1:
                        names = ", ".join(sorted(e.key for e in holders))
                        raise CompileError(
                            f"{endpoint.key}: address {ip} is shared by {names}, which a rule's "
                            "own-end match tells apart; this cannot be enforced exactly"
                        )
                if not entity_matches(local, endpoint, ip, self.cluster)[0]:
                    continue
                if not by_port:
                    matched.add(ip)
                    continue
                assert local.service is not None
                for port in self.cluster.services_by_key[local.service].ports:
                    entries.add(AddressPort(ip, port.protocol, port.port))
        return tuple(
            AddressMatch(
                family,
                frozenset(ip for ip in matched if ip.version == family),
                (),
                frozenset(e for e in entries if e.address.version == family),
            )
            for family in FAMILIES
        )

    # --- ports ----------------------------------------------------------------------------

    def ports(self, matches: tuple[PortMatch, ...], what: str) -> PortSelection | None:
        """Any of `matches`; None when one of them matches every packet."""
        if matches not in self._ports:
            self._ports[matches] = self._resolve_ports(matches, what)
        return self._ports[matches]

    def _resolve_ports(self, matches: tuple[PortMatch, ...], what: str) -> PortSelection | None:
        ranges: dict[int, list[PortRange]] = {}
        protocols: set[int] = set()
        names: list[PortMatch] = []
        for match in matches:
            if match.name is not None:
                names.append(match)
            elif match.protocol is None:
                if match.ports is None:
                    return None
                raise CompileError(f"{what}: a port range without a protocol ({match})")
            elif match.protocol in PORTED_PROTOCOLS:
                ranges.setdefault(match.protocol, []).append(match.ports or ALL_PORTS)
            elif match.ports is None:
                protocols.add(match.protocol)
            else:
                raise CompileError(f"{what}: ports on portless protocol {match}")
        merged = tuple(
            ProtocolPorts(protocol, span)
            for protocol in sorted(ranges)
            for span in _merge_ports(ranges[protocol])
        )
        named = tuple(
            frozenset(
                entry
                for entry in self._named(names, family)
                if not any(r.protocol == entry.protocol and entry.port in r.ports for r in merged)
            )
            for family in FAMILIES
        )
        return PortSelection(merged, tuple(sorted(protocols)), named)

    def _named(self, names: Sequence[PortMatch], family: int) -> Iterable[AddressPort]:
        """(address, protocol, port) where an endpoint declares one of the named ports; the
        engine's own lookup (`Endpoint.named_port`) picks the number."""
        for endpoint in self.cluster.endpoints:
            declared = {p.protocol for p in endpoint.ports}
            for match in names:
                assert match.name is not None
                for protocol in sorted(declared):
                    if match.protocol is not None and match.protocol != protocol:
                        continue
                    port = endpoint.named_port(match.name, protocol)
                    if port is None:
                        continue
                    for ip in endpoint.ips:
                        if ip.version == family:
                            yield AddressPort(ip, protocol, port)

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


def _ip(family: int, value: int) -> IPAddress:
    return IPv4Address(value) if family == 4 else IPv6Address(value)


def _merge(atoms: Iterable[tuple[AddressRange, bool | None]]) -> tuple[AddressRange, ...]:
    """The matching atoms (in address order) as ranges; a don't-care atom (None) joins two
    matching neighbours but is never kept at a range's end."""
    merged: list[AddressRange] = []
    pending: AddressRange | None = None  # don't-care atoms right after the last range
    for atom, matched in atoms:
        if matched is None:
            if merged and (pending is not None or int(merged[-1].end) + 1 == int(atom.start)):
                pending = AddressRange(pending.start if pending else atom.start, atom.end)
            continue
        if matched:
            gap_start = pending.start if pending is not None else atom.start
            if merged and int(merged[-1].end) + 1 == int(gap_start):
                merged[-1] = AddressRange(merged[-1].start, atom.end)
            else:
                merged.append(atom)
        pending = None
    return tuple(merged)


def _merge_ports(spans: list[PortRange]) -> list[PortRange]:
    merged: list[PortRange] = []
    for span in sorted(spans):
        if merged and span.start <= merged[-1].end + 1:
            merged[-1] = PortRange(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


#: The resolver itself, for a dataplane that keeps it to place pods that come, go or change
#: labels without resolving the node again (`netwarden.dataplane.nft_delta`).
Resolver = _Resolver

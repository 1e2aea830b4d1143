"""The resolved form: a node's policies as a dataplane needs them, computed by the engine
(`netwarden.engine.resolve.resolve_node`).

A dataplane sees interfaces, addresses, protocols and ports, never labels. The resolved form
holds exactly that:

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
"""

from __future__ import annotations

from dataclasses import dataclass

from netwarden.engine.ranges import AddressRange, full_range
from netwarden.model import (
    Action,
    Direction,
    Endpoint,
    IPAddress,
    Policy,
    PortRange,
    Profile,
    Rule,
    Tier,
)

__all__ = [
    "FAMILIES",
    "PROFILE_TIER",
    "AddressMatch",
    "AddressPort",
    "AddressRange",
    "EndpointClass",
    "HostEndpointClass",
    "PortSelection",
    "ProtocolPorts",
    "ResolvedDirection",
    "ResolvedNode",
    "ResolvedPolicy",
    "ResolvedProfile",
    "ResolvedRule",
    "TierRun",
]

FAMILIES = (4, 6)
#: The tier name profile rules carry in labels and flow logs, as Calico names profile hits.
PROFILE_TIER = "__PROFILE__"


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
        return self.external == (full_range(self.family),)


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

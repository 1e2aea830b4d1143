"""Policies: who they apply to, their ordered rules, and the tiers that order them.

Every input format lands here. A Kubernetes NetworkPolicy is a policy of the `default` tier
whose rules all Allow; an AdminNetworkPolicy is a policy of the `admin` tier ordered by
priority; Calico policies map one to one. The evaluation order lives in `netwarden.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Network, IPv6Network

from netwarden.model.location import Location
from netwarden.model.ports import PortMatch
from netwarden.model.selector import All, Selector

IPNetwork = IPv4Network | IPv6Network


class Direction(Enum):
    INGRESS = "ingress"
    EGRESS = "egress"


class Action(Enum):
    ALLOW = "Allow"  # final
    DENY = "Deny"  # final
    PASS = "Pass"  # leave this tier, go on with the next
    LOG = "Log"  # record and continue with the next rule


@dataclass(frozen=True)
class EndpointSelector:
    """Pods picked by labels: `pods` over pod labels, within namespaces picked by `namespaces`
    (over namespace labels) or, when `namespace` is set, within that one namespace only.

    This is both a policy's subject and a rule's pod peer.
    """

    pods: Selector = field(default_factory=All)
    namespaces: Selector = field(default_factory=All)
    namespace: str | None = None


@dataclass(frozen=True)
class NodePeer:
    """Nodes picked by labels: matches their addresses (and the hostNetwork pods on them)."""

    nodes: Selector


@dataclass(frozen=True)
class NetworkPeer:
    """Addresses inside `cidr` but outside every `excepted` block (ipBlock, networks)."""

    cidr: IPNetwork
    excepted: tuple[IPNetwork, ...] = ()


Peer = EndpointSelector | NodePeer | NetworkPeer


@dataclass(frozen=True)
class Rule:
    """One rule. No peers means any peer; no ports means any protocol and port."""

    action: Action
    peers: tuple[Peer, ...] = ()
    ports: tuple[PortMatch, ...] = ()
    name: str = ""
    source: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Policy:
    """A policy of a tier. `ingress` / `egress` None means the policy does not apply in that
    direction; an empty tuple means it applies (isolates) and has no rules."""

    name: str
    kind: str
    tier: str
    subject: EndpointSelector
    namespace: str | None = None
    order: float | None = None  # lower first; None sorts last
    ingress: tuple[Rule, ...] | None = None
    egress: tuple[Rule, ...] | None = None
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """How traces and reports name the policy, e.g. `shop/allow-frontend`."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def rules(self, direction: Direction) -> tuple[Rule, ...] | None:
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclass(frozen=True)
class Tier:
    """A group of policies evaluated together; `default_action` applies to an endpoint that a
    policy of the tier selects when no rule of the tier decides."""

    name: str
    order: float
    default_action: Action


ADMIN_TIER = Tier("adminnetworkpolicy", 1_000, Action.PASS)
DEFAULT_TIER = Tier("default", 1_000_000, Action.DENY)
BASELINE_TIER = Tier("baselineadminnetworkpolicy", 10_000_000, Action.PASS)
BUILTIN_TIERS = (ADMIN_TIER, DEFAULT_TIER, BASELINE_TIER)

#: Calico converts every Kubernetes NetworkPolicy to order 1000 in the default tier.
K8S_NETWORK_POLICY_ORDER = 1000.0

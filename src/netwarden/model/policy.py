"""Policies: who they apply to, their ordered rules, and the tiers that order them.

Every input format lands here. A Kubernetes NetworkPolicy is a policy of the `default` tier
whose rules all Allow; an AdminNetworkPolicy is a policy of the `admin` tier ordered by
priority; Calico policies map one to one. The evaluation order lives in `netwarden.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from netwarden.model.endpoints import IPNetwork
from netwarden.model.location import Location
from netwarden.model.ports import PortMatch
from netwarden.model.selector import All, Selector


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
    With `host_endpoints`, `pods` also picks host endpoints (which have no namespace; a
    `namespaces` selector other than All() then excludes them, as Calico does).

    This is both a policy's subject and a rule's pod peer.
    """

    pods: Selector = field(default_factory=All)
    namespaces: Selector = field(default_factory=All)
    namespace: str | None = None
    host_endpoints: bool = False  # also host endpoints (a Calico global policy's selector)
    service_accounts: Selector | None = None  # only pods whose service account's labels match


@dataclass(frozen=True)
class NodePeer:
    """Nodes picked by labels: matches their addresses (and the hostNetwork pods on them)."""

    nodes: Selector


@dataclass(frozen=True)
class NetworkPeer:
    """Addresses inside `cidr` but outside every `excepted` block (ipBlock, networks)."""

    cidr: IPNetwork
    excepted: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class ServiceAccountMatch:
    """Pods running as one of `names` (any, when empty) whose account's labels match."""

    names: frozenset[str] = frozenset()
    selector: Selector | None = None


@dataclass(frozen=True)
class EntityMatch:
    """One end of a flow as a Calico entity rule constrains it: every field given must hold.

    `nets` any of, `not_nets` none of (on the flow's address at this end). `selector`,
    `not_selector` and `service_accounts` look at the labelled things there: the endpoint, and
    the network sets that hold the address. As in Calico (libcalico-go rules.go), `selector`,
    `service_accounts` and the scope must all hold on one such thing (so even `!has(x)` never
    matches a plain external address), and `not_selector` on none of them, in any namespace.
    The scope is `namespace` (a namespaced policy's own, applied once any selector field is
    given) or `namespaces` over namespace labels (always applied), where `All()` means every
    namespace and `Global()` the non-namespaced things (host endpoints, global network sets);
    with neither, everything. `service` is a Service's endpoint addresses (and, at the
    destination, its ports).
    """

    nets: tuple[IPNetwork, ...] = ()
    not_nets: tuple[IPNetwork, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None
    namespace: str | None = None
    namespaces: Selector | None = None
    service_accounts: ServiceAccountMatch | None = None
    service: tuple[str, str] | None = None  # (namespace, name)


Peer = EndpointSelector | NodePeer | NetworkPeer | EntityMatch


@dataclass(frozen=True)
class IcmpMatch:
    """ICMP type and, optionally, code."""

    type: int
    code: int | None = None


@dataclass(frozen=True)
class HttpMatch:
    """An L7 match: read and kept, reported as not enforced at L3/L4."""

    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One rule. No peers means any peer; no ports means any protocol and port.

    `peers` constrain the other end of the flow (any of them must match), `local` the subject's
    own end (Calico: an ingress rule's destination, an egress rule's source). `ports` and
    `not_ports` are destination ports. `protocol`, `not_protocol`, `icmp`, `not_icmp` and
    `ip_version` are rule-wide conditions (Calico); Kubernetes rules carry protocols in ports.
    """

    action: Action
    peers: tuple[Peer, ...] = ()
    ports: tuple[PortMatch, ...] = ()
    name: str = ""
    source: Location | None = field(default=None, compare=False)
    local: EntityMatch | None = None
    not_ports: tuple[PortMatch, ...] = ()
    protocol: int | None = None
    not_protocol: int | None = None
    icmp: IcmpMatch | None = None
    not_icmp: IcmpMatch | None = None
    ip_version: int | None = None
    http: HttpMatch | None = None


class StagedAction(Enum):
    """A staged policy previews a change: Set adds or replaces, Delete removes."""

    SET = "Set"
    DELETE = "Delete"


@dataclass(frozen=True)
class Policy:
    """A policy of a tier. `ingress` / `egress` None means the policy does not apply in that
    direction; an empty tuple means it applies (isolates) and has no rules.

    `staged` marks a policy that is not enforced: it changes no verdict and only shows what
    the staged set of policies would decide (it stages the policy of the same kind and key).
    `calico_name` is how Calico names it in flow logs and traces (e.g. `knp.default.web`).
    """

    name: str
    kind: str
    tier: str
    subject: EndpointSelector
    namespace: str | None = None
    order: float | None = None  # lower first; None sorts last
    ingress: tuple[Rule, ...] | None = None
    egress: tuple[Rule, ...] | None = None
    source: Location | None = field(default=None, compare=False)
    staged: StagedAction | None = None
    calico_name: str = ""

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
    source: Location | None = field(default=None, compare=False)


ADMIN_TIER = Tier("adminnetworkpolicy", 1_000, Action.PASS)
DEFAULT_TIER = Tier("default", 1_000_000, Action.DENY)
BASELINE_TIER = Tier("baselineadminnetworkpolicy", 10_000_000, Action.PASS)
BUILTIN_TIERS = (ADMIN_TIER, DEFAULT_TIER, BASELINE_TIER)

#: Calico converts every Kubernetes NetworkPolicy to order 1000 in the default tier.
K8S_NETWORK_POLICY_ORDER = 1000.0


@dataclass(frozen=True)
class Profile:
    """Rules applied after every tier to the endpoints that name the profile (Calico Profile;
    host endpoints list theirs). `labels` are applied to those endpoints."""

    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    source: Location | None = field(default=None, compare=False)

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

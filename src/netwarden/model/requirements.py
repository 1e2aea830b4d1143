"""Security requirements: what must hold, whatever the policies say.

A requirement names sets of endpoints (pods picked by a pod and a namespace selector, and, where
it makes sense, external address blocks) and states a property of the traffic between them:

- `Isolation`: nothing from `src` reaches `dst`, except on the `excepted` ports;
- `Only`: whatever reaches `dst` comes from `src`, on `ports` (any port when empty);
- `DefaultDeny`: each workload is isolated in each of `directions`: traffic that no rule
  singles out is denied;
- `Egress`: the workloads reach nothing outside the cluster but the `allowed` destinations;
- `Reachable`: every pod of `src` reaches every pod of `dst` on every port of `ports`.

`analysis.requirements` decides them; `dialects.requirements` reads them. Each requirement
carries the compliance controls it implements, written `STANDARD:ID` (`PCI-DSS-4.0:1.3.1`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from netwarden.model.endpoints import IPNetwork
from netwarden.model.location import Location
from netwarden.model.policy import Direction, EndpointSelector
from netwarden.model.ports import PortMatch


class RequirementKind(Enum):
    ISOLATION = "isolation"
    ONLY = "only"
    DEFAULT_DENY = "defaultDeny"
    EGRESS = "egress"
    REACHABLE = "reachable"


@dataclass(frozen=True)
class EndpointSet:
    """The pods `pods` picks (None: no pod) and the external addresses inside `networks`.

    `text` is the set as the user wrote it, for reports (`namespaces: tenant == "shop"`).
    """

    pods: EndpointSelector | None
    networks: tuple[IPNetwork, ...] = ()
    text: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class ExternalDestination:
    """Addresses in `networks` (outside every `excepted` block), on `ports` (any when empty)."""

    networks: tuple[IPNetwork, ...]
    excepted: tuple[IPNetwork, ...] = ()
    ports: tuple[PortMatch, ...] = ()


@dataclass(frozen=True)
class Isolation:
    src: EndpointSet
    dst: EndpointSet
    excepted: tuple[PortMatch, ...] = ()

    kind = RequirementKind.ISOLATION


@dataclass(frozen=True)
class Only:
    """`dst` is reachable only from `src` on `ports`. Traffic among the endpoints of `dst`
    themselves is inside the zone and not constrained (see docs/requirements.md)."""

    src: EndpointSet
    dst: EndpointSet
    ports: tuple[PortMatch, ...] = ()

    kind = RequirementKind.ONLY


@dataclass(frozen=True)
class DefaultDeny:
    workloads: EndpointSet
    directions: frozenset[Direction] = frozenset(Direction)

    kind = RequirementKind.DEFAULT_DENY


@dataclass(frozen=True)
class Egress:
    workloads: EndpointSet
    allowed: tuple[ExternalDestination, ...] = ()

    kind = RequirementKind.EGRESS


@dataclass(frozen=True)
class Reachable:
    src: EndpointSet
    dst: EndpointSet
    ports: tuple[PortMatch, ...]

    kind = RequirementKind.REACHABLE


Check = Isolation | Only | DefaultDeny | Egress | Reachable


@dataclass(frozen=True)
class Requirement:
    """One requirement: its name, what must hold, and the controls it implements."""

    name: str
    check: Check
    description: str = ""
    controls: tuple[str, ...] = ()
    source: Location | None = field(default=None, compare=False)

    @property
    def kind(self) -> RequirementKind:
        return self.check.kind

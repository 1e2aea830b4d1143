"""Requirements, checked: does each hold, and if not, which concrete flow breaks it.

The sets a requirement names are checked as sets, on the connectivity map (classes of
endpoints, port atoms and IP atoms; `analysis.connectivity`), never pod pair by pod pair. A
failure carries one counter-example flow, decided again by the reference engine
(`PolicyEngine.decide`), whose verdict names the tier, policy and rule responsible in each
direction, with their file:line.

Semantics (docs/requirements.md says the same for users):

- isolation: no connection is allowed from any endpoint of `src` to any of `dst`, on any
  protocol or port but the `excepted` ones. A pod to itself is not a connection.
- only: every connection allowed into `dst` comes from `src`, on `ports` (any port when
  none are listed). Connections among the endpoints of `dst` are inside the zone and exempt;
  an address outside the cluster is `src` only when `src` lists a network holding it.
- defaultDeny: for each workload and direction, a connection that no rule singles out is
  denied: from (to) an address outside the cluster that no policy CIDR other than a /0 names,
  on a protocol and port no rule names. An allow-everything rule fails it, as does a pod no
  policy isolates (the fall-through profile allows).
- egress: the workloads reach no address outside the cluster (every address no pod, node or
  Service holds) except on the ports of an `allowed` destination whose networks hold it.
- reachable: every pod of `src` reaches every other pod of `dst` on every listed port; the
  first pair (in inventory order of the classes) that cannot is the counter-example. An
  empty `src` or `dst` fails: a requirement that nothing can satisfy is a mistake.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netwarden.analysis.connectivity import ConnectivityMap, compute_connectivity
from netwarden.analysis.requirements_results import (
    CounterExample,
    RequirementResult,
    Responsible,
    describe,
    describe_endpoint,
    describe_port,
    responsible,
)
from netwarden.analysis.requirements_search import (
    PREFERRED_START,
    Hit,
    InCluster,
    Members,
    PortCover,
    beyond,
    class_count,
    first_violation,
    inside,
    members,
    missing,
    pieces,
)
from netwarden.analysis.requirements_witness import unnamed_address, unnamed_atom
from netwarden.engine import PolicyEngine
from netwarden.engine.endpoint_vectors import Mask
from netwarden.model import (
    ClusterState,
    Direction,
    Flow,
    PortMatch,
    Requirement,
)
from netwarden.model.requirements import (
    DefaultDeny,
    Egress,
    EndpointSet,
    Isolation,
    Only,
    Reachable,
)


def check_requirements(
    cluster: ClusterState,
    requirements: Sequence[Requirement],
    cmap: ConnectivityMap | None = None,
) -> list[RequirementResult]:
    """Check each requirement on the connectivity map of `cluster` (computed once, or given).

    >>> from netwarden.dialects import load_paths
    >>> from netwarden.dialects.requirements import read_requirements
    >>> from netwarden.dialects.source import read_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> reqs = read_requirements(read_paths(["examples/shop/requirements.yaml"]))
    >>> all(result.holds for result in check_requirements(cluster, reqs))
    True
    """
    checker = RequirementChecker(cmap or compute_connectivity(cluster))
    return [checker.check(requirement) for requirement in requirements]


class RequirementChecker:
    """Checks requirements against one connectivity map; examples are decided again by the
    reference engine."""

    def __init__(self, cmap: ConnectivityMap) -> None:
        self.cmap = cmap
        self.atoms = cmap.atoms
        self.engine = PolicyEngine(cmap.cluster)
        self.in_cluster = InCluster(cmap.cluster)

    def check(self, requirement: Requirement) -> RequirementResult:
        match requirement.check:
            case Isolation() as check:
                return self._isolation(requirement, check)
            case Only() as check:
                return self._only(requirement, check)
            case DefaultDeny() as check:
                return self._default_deny(requirement, check)
            case Egress() as check:
                return self._egress(requirement, check)
            case Reachable() as check:
                return self._reachable(requirement, check)

    def members(self, endpoints: EndpointSet, complement: bool = False) -> Members:
        return members(self.cmap, endpoints, self.in_cluster, complement)

    def example(
        self, hit: Hit, src: Members, dst: Members, port: int, allowed: bool, note: str = ""
    ) -> tuple[CounterExample, tuple[str, ...]]:
        """The counter-example flow of `hit`, decided by the engine. `allowed` is what the
        map says of it (of the direction named by `note`); a disagreement is reported."""
        flow = Flow(
            src.endpoint(self.cmap, hit.src),
            dst.endpoint(self.cmap, hit.dst),
            port,
            int(self.atoms.protocol[hit.atom]),
        )
        verdict = self.engine.decide(flow)
        decided = verdict.allowed
        if note == "ingress":
            decided = verdict.ingress.allowed
        elif note == "egress":
            decided = verdict.egress.allowed
        notes: tuple[str, ...] = ()
        if decided != allowed:
            notes = ("the connectivity map and the engine disagree on this flow: a bug",)
        return CounterExample(verdict), notes

    def _pair_text(self, hit: Hit, src: Members, dst: Members) -> tuple[str, str, str]:
        """Source and destination names, and what the map allows between them."""
        return (
            src.endpoint(self.cmap, hit.src).key,
            dst.endpoint(self.cmap, hit.dst).key,
            str(self.cmap.ports(hit.src, hit.dst)),
        )

    def _isolation(self, requirement: Requirement, check: Isolation) -> RequirementResult:
        src, dst = self.members(check.src), self.members(check.dst)
        notes = _empty_notes(src, dst)
        cover = PortCover(check.excepted)
        exempt = cover.covered(self.atoms)
        hit = first_violation(self.cmap, src.mask, dst.mask, beyond(exempt))
        if hit is None:
            return RequirementResult(requirement, True, self._holds(src, dst), notes=notes)
        port = cover.first_uncovered(self.atoms, hit.atom)
        assert port is not None
        example, disagree = self.example(hit, src, dst, port, True)
        a, b, ports = self._pair_text(hit, src, dst)
        but = " but the excepted ports" if check.excepted else ""
        message = f"{a} may connect to {b} on {ports}{but}"
        return RequirementResult(requirement, False, message, example, notes + disagree)

    def _only(self, requirement: Requirement, check: Only) -> RequirementResult:
        allowed, zone = self.members(check.src), self.members(check.dst)
        outsiders = self.members(check.src, complement=True)
        notes = _empty_notes(allowed, zone)
        # Inside the zone is not entering it: sources in `to` are exempt.
        hit = first_violation(
            self.cmap,
            outsiders.mask & ~zone.mask,
            zone.mask,
            beyond(np.zeros(len(self.atoms), dtype=np.bool_)),
        )
        if hit is not None:
            port = int(self.atoms.start[hit.atom])
            example, disagree = self.example(hit, outsiders, zone, port, True)
            a, b, ports = self._pair_text(hit, outsiders, zone)
            message = f"{a} is not in `from` but may connect to {b} on {ports}"
            return RequirementResult(requirement, False, message, example, notes + disagree)
        if check.ports:
            cover = PortCover(check.ports)
            exempt = cover.covered(self.atoms)
            hit = first_violation(self.cmap, allowed.mask & ~zone.mask, zone.mask, beyond(exempt))
            if hit is not None:
                first = cover.first_uncovered(self.atoms, hit.atom)
                assert first is not None
                example, disagree = self.example(hit, allowed, zone, first, True)
                a, b, ports = self._pair_text(hit, allowed, zone)
                message = f"{a} may connect to {b} on {ports}, beyond the listed ports"
                return RequirementResult(requirement, False, message, example, notes + disagree)
        return RequirementResult(requirement, True, self._holds(allowed, zone), notes=notes)

    def _default_deny(self, requirement: Requirement, check: DefaultDeny) -> RequirementResult:
        workloads = self.members(check.workloads)
        notes = _empty_notes(workloads)
        witness = unnamed_address(self.cmap.cluster, self.in_cluster)
        outside = self.cmap.index(str(witness))
        stranger = Members(_one(self.cmap.size, outside), {outside: witness})
        atom = unnamed_atom(self.cmap.cluster, self.atoms)
        column = np.zeros(len(self.atoms), dtype=np.bool_)
        column[atom] = True
        for direction in (Direction.INGRESS, Direction.EGRESS):
            if direction not in check.directions:
                continue
            src, dst = (
                (stranger, workloads)
                if direction is Direction.INGRESS
                else (
                    workloads,
                    stranger,
                )
            )
            hit = first_violation(self.cmap, src.mask, dst.mask, beyond(~column))
            if hit is None:
                continue
            port = int(self.atoms.start[atom])
            example, disagree = self.example(hit, src, dst, port, True, direction.value)
            pod = workloads.endpoint(self.cmap, hit.dst if src is stranger else hit.src)
            message = (
                f"{pod.key} is not isolated for {direction.value}: "
                f"{describe_port(example.flow)} {'from' if src is stranger else 'to'} "
                f"{witness}, which no rule names, is allowed"
            )
            return RequirementResult(requirement, False, message, example, notes + disagree)
        message = f"{_count(workloads)} isolated ({_directions(check.directions)})"
        return RequirementResult(requirement, True, message, notes=notes)

    def _egress(self, requirement: Requirement, check: Egress) -> RequirementResult:
        workloads = self.members(check.workloads)
        notes = _empty_notes(workloads)
        for permitted, destinations in self._outside_by_permission(check):
            exempt = PortCover(permitted).covered(self.atoms)
            hit = first_violation(self.cmap, workloads.mask, destinations.mask, beyond(exempt))
            if hit is None:
                continue
            port = PortCover(permitted).first_uncovered(self.atoms, hit.atom)
            assert port is not None
            example, disagree = self.example(hit, workloads, destinations, port, True)
            a, b, ports = self._pair_text(hit, workloads, destinations)
            message = (
                f"{a} may connect outside the cluster to {b} on {ports}, "
                "beyond the allowed destinations"
            )
            return RequirementResult(requirement, False, message, example, notes + disagree)
        message = f"{_count(workloads)} reach outside the cluster only the allowed destinations"
        return RequirementResult(requirement, True, message, notes=notes)

    def _outside_by_permission(self, check: Egress) -> list[tuple[tuple[PortMatch, ...], Members]]:
        """The addresses outside the cluster, as IP atoms grouped by what the requirement
        permits there (the ports of the destinations that hold them)."""
        cuts = [n for d in check.allowed for n in (*d.networks, *d.excepted)]
        found: dict[tuple[PortMatch, ...], Members] = {}
        for index, atom in enumerate(self.cmap.ranges):
            if atom is None:
                continue
            preferred = PREFERRED_START[atom.version]
            for piece in sorted(pieces(atom, cuts), key=lambda p: p[1] < preferred):
                ip = self.in_cluster.first_outside(atom.version, *piece)
                if ip is None:
                    continue
                permitted = tuple(
                    port
                    for d in check.allowed
                    if inside(piece, d.networks, atom.version)
                    and not inside(piece, d.excepted, atom.version)
                    for port in (d.ports or (PortMatch(),))
                )
                group = found.setdefault(
                    permitted, Members(np.zeros(self.cmap.size, dtype=np.bool_), {})
                )
                if not group.mask[index]:
                    group.mask[index] = True
                    group.address[index] = ip
        return list(found.items())

    def _reachable(self, requirement: Requirement, check: Reachable) -> RequirementResult:
        src, dst = self.members(check.src), self.members(check.dst)
        if src.empty or dst.empty:
            empty = "from" if src.empty else "to"
            message = f"`{empty}` selects no pod: nothing can be reached"
            return RequirementResult(requirement, False, message)
        cover = PortCover(check.ports)
        required = cover.touched(self.atoms)
        hit = first_violation(self.cmap, src.mask, dst.mask, missing(required))
        if hit is None:
            return RequirementResult(requirement, True, self._holds(src, dst))
        port = cover.first_touched(self.atoms, hit.atom)
        assert port is not None
        example, disagree = self.example(hit, src, dst, port, False)
        a, b, ports = self._pair_text(hit, src, dst)
        message = f"{a} cannot reach {b} on {describe_port(example.flow)} (allowed: {ports})"
        return RequirementResult(requirement, False, message, example, disagree)

    def _holds(self, src: Members, dst: Members) -> str:
        pairs = class_count(self.cmap, src.mask) * class_count(self.cmap, dst.mask)
        plural = "s" if pairs != 1 else ""
        return f"holds for {_count(src)} x {_count(dst)} ({pairs} class pair{plural} checked)"


def _one(size: int, index: int) -> Mask:
    mask = np.zeros(size, dtype=np.bool_)
    mask[index] = True
    return mask


def _count(found: Members) -> str:
    total = int(found.mask.sum())
    outside = len(found.address)
    text = f"{total - outside} endpoint{'s' if total - outside != 1 else ''}"
    return text + (f" and {outside} address ranges" if outside else "")


def _directions(directions: frozenset[Direction]) -> str:
    return " and ".join(d.value for d in Direction if d in directions)


def _empty_notes(*sets: Members) -> tuple[str, ...]:
    names = ("`from`", "`to`") if len(sets) == 2 else ("`workloads`",)
    return tuple(
        f"{name} selects nothing" for name, found in zip(names, sets, strict=True) if found.empty
    )


__all__ = [
    "CounterExample",
    "RequirementChecker",
    "RequirementResult",
    "Responsible",
    "check_requirements",
    "describe",
    "describe_endpoint",
    "describe_port",
    "responsible",
]

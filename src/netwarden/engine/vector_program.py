"""Programs of the vectorized engine: rules as vectors, tiers as blocks, and the walk of one
class's program over its probes.

A rule is a `CompiledRule` (made by `vector_compile.Compiler`): boolean vectors over endpoints
for its peers (the flow's other end) and its `local` entity (the subject's own end), and one
over the batch's distinct (protocol, port) pairs for everything that depends on those alone
(ports, notPorts, protocol, ICMP, a Service's ports). A class's program is its blocks in order
(`TierBlock`s: a host endpoint's failsafe ports, then its tiers, then its profiles); `run`
walks it with index arrays that shrink as rules decide, so each probe is looked at only until
its direction is decided. Semantics are `decide.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from netwarden.engine.batch import ProbeBatch
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.verdict import Reason
from netwarden.model import Action, PortMatch


class Outcome(NamedTuple):
    """What a direction ends with; probes carry the index of theirs until the end. `policy`
    indexes the result's policies, or its profiles for Reason.PROFILE."""

    allowed: bool
    reason: Reason
    policy: int
    rule: int


NO_TIER_DECIDED = Outcome(True, Reason.NO_TIER_DECIDED, -1, -1)
NOT_A_SUBJECT = Outcome(True, Reason.NOT_A_SUBJECT, -1, -1)


class PortTerm(NamedTuple):
    """A peer that also depends on the port (a Service at the destination): `endpoints` over
    endpoints and `atoms` over port atoms must both hold."""

    endpoints: Mask
    atoms: Mask


@dataclass(frozen=True)
class CompiledRule:
    """A rule as vectors; None means no constraint. `atoms` (over port atoms) folds the
    rule-wide conditions and the numbered ports and notPorts; `ports` / `not_ports` are kept
    apart only beside named entries (`named`, `not_named`), which depend on the destination.
    `family` is the rule's IP version. `outcome` indexes the outcome table (-1 for Pass)."""

    action: Action
    outcome: int
    atoms: Mask | None = None
    family: int | None = None
    peers: Mask | None = None
    peer_terms: tuple[PortTerm, ...] = ()
    local: Mask | None = None
    ports: Mask | None = None
    named: tuple[PortMatch, ...] = ()
    not_ports: Mask | None = None
    not_named: tuple[PortMatch, ...] = ()


@dataclass(frozen=True)
class TierBlock:
    """One block of a class's program; `default` indexes the outcome table (-1 for Pass)."""

    rules: tuple[CompiledRule, ...]
    default: int


class Segment(NamedTuple):
    """The probes of one subject class, as slices of the class-sorted columns; `batch` holds
    the unsorted destination, port and protocol, read only for named ports."""

    probes: Ints  # indices into the batch
    other: Ints  # the flow's other end: the peer the rules look at
    own: Ints  # the subject's own end as the flow has it (`local`); empty if no rule reads it
    atom: Ints
    family: Ints  # the flow's IP version (0: no address); empty if no rule reads it
    batch: ProbeBatch


def _named_matches(
    vectors: EndpointVectors, matches: tuple[PortMatch, ...], seg: Segment, live: Ints
) -> Mask:
    """Probes whose destination declares one of the named `matches` for the flow's protocol
    at its port (`matching.port_matches`)."""
    found = np.zeros(live.shape[0], dtype=np.bool_)
    probes = seg.probes[live]
    for match in matches:
        for table in vectors.named_tables(match):
            at = table.ports[seg.batch.dst[probes]] == seg.batch.port[probes]
            found |= (seg.batch.protocol[probes] == table.protocol) & at
    return found


def _rule_matches(
    vectors: EndpointVectors, rule: CompiledRule, seg: Segment, live: Ints
) -> Mask | None:
    """Which of the `live` probes the rule matches; None when it matches them all."""
    found: Mask | None = None
    atom = seg.atom[live] if rule.peer_terms or rule.atoms is not None or rule.named else None
    if rule.atoms is not None:
        assert atom is not None
        found = rule.atoms[atom]
    if rule.family is not None:
        family = seg.family[live] == rule.family
        found = family if found is None else found & family
    if rule.peers is not None or rule.peer_terms:
        other = seg.other[live]
        if rule.peers is not None:
            peers = rule.peers[other]
        else:
            peers = np.zeros(live.shape[0], dtype=np.bool_)
        for term in rule.peer_terms:
            assert atom is not None
            peers |= term.endpoints[other] & term.atoms[atom]
        found = peers if found is None else found & peers
    if rule.local is not None:
        local = rule.local[seg.own[live]]
        found = local if found is None else found & local
    if rule.named:
        assert rule.ports is not None and atom is not None
        ports = rule.ports[atom] | _named_matches(vectors, rule.named, seg, live)
        found = ports if found is None else found & ports
    if rule.not_named:
        assert rule.not_ports is not None
        excluded = seg.atom[live] if atom is None else atom
        allowed = ~(rule.not_ports[excluded] | _named_matches(vectors, rule.not_named, seg, live))
        found = allowed if found is None else found & allowed
    return found


def run(vectors: EndpointVectors, program: tuple[TierBlock, ...], seg: Segment, out: Ints) -> None:
    """Walk one class's blocks over its probes, writing outcome indices into `out`."""
    undecided = np.arange(seg.probes.shape[0])
    for block in program:
        live = undecided
        passed: list[Ints] = []
        for rule in block.rules:
            if live.shape[0] == 0:
                break
            matched = _rule_matches(vectors, rule, seg, live)
            if matched is None:
                hit, live = live, live[:0]
            else:
                hit, live = live[matched], live[~matched]
            if rule.outcome < 0:
                passed.append(hit)  # Pass: leave this tier, go on with the next
            else:
                out[seg.probes[hit]] = rule.outcome
        if block.default < 0:
            passed.append(live)
        else:
            out[seg.probes[live]] = block.default
        undecided = np.concatenate(passed) if passed else live[:0]
        if undecided.shape[0] == 0:
            return

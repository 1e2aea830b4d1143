"""Compiled programs of the vectorized engine: rules as vectors, tiers as blocks, and the walk
of one class's program over its probes.

A rule becomes a `CompiledRule`: a boolean vector over endpoints for its peers and one over the
batch's distinct (protocol, port) pairs for its ports. A class's program is its tiers in
order (`TierBlock`s); `run` walks it with index arrays that shrink as rules decide, so each
probe is looked at only until its direction is decided. Semantics are `decide.py`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from netwarden.engine.batch import ProbeBatch
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.verdict import Reason
from netwarden.model import Action, Direction, Policy, PortMatch, Rule


class Outcome(NamedTuple):
    """What a direction ends with; probes carry the index of theirs until the end."""

    allowed: bool
    reason: Reason
    policy: int
    rule: int


NO_TIER_DECIDED = Outcome(True, Reason.NO_TIER_DECIDED, -1, -1)
NOT_A_SUBJECT = Outcome(True, Reason.NOT_A_SUBJECT, -1, -1)


@dataclass(frozen=True)
class CompiledRule:
    """A rule as vectors: `peers` over endpoints and `port_atoms` over the batch's distinct
    (protocol, port) pairs; None means any. `named` are its named-port matches, which also
    depend on the destination. `outcome` indexes the outcome table (-1 for Pass)."""

    action: Action
    outcome: int
    peers: Mask | None
    port_atoms: Mask | None
    named: tuple[PortMatch, ...]


@dataclass(frozen=True)
class TierBlock:
    """One tier of a class's program; `default` indexes the outcome table (-1 for Pass)."""

    rules: tuple[CompiledRule, ...]
    default: int


class PortAtoms(NamedTuple):
    """The batch's distinct (protocol, port) pairs and, per probe, which one it is."""

    protocol: Ints
    port: Ints
    of_probe: Ints


class Segment(NamedTuple):
    """The probes of one subject class, as slices of the class-sorted columns; `batch` holds
    the unsorted destination, port and protocol, read only for named ports."""

    probes: Ints  # indices into the batch
    other: Ints  # the flow's other end: the peer the rules look at
    atom: Ints
    batch: ProbeBatch


def port_atoms(batch: ProbeBatch) -> PortAtoms:
    """Distinct (protocol, port) pairs. Ports and protocols are small, so the pairs are found
    with a presence table (linear) rather than by sorting a million keys."""
    port, protocol = batch.port, batch.protocol
    if (
        len(batch) == 0
        or port.min() < 0
        or port.max() > 0xFFFF
        or protocol.min() < 0
        or protocol.max() > 0xFF
    ):
        key = protocol.astype(np.int64) << 32 | (port.astype(np.int64) & 0xFFFFFFFF)
        unique, inverse = np.unique(key, return_inverse=True)
        ports = unique & 0xFFFFFFFF
        ports[ports >= 1 << 31] -= 1 << 32  # the int32 port, sign restored
        return PortAtoms(unique >> 32, ports, inverse.reshape(-1).astype(np.int64))
    used = np.bincount(protocol, minlength=256) > 0
    protocols = np.flatnonzero(used)
    dense = (np.cumsum(used) - 1)[protocol] << 16 | port.astype(np.int64)
    present = np.zeros(protocols.shape[0] << 16, dtype=np.bool_)
    present[dense] = True
    atoms = np.flatnonzero(present)
    atom_of = np.cumsum(present, dtype=np.int64) - 1
    return PortAtoms(protocols[atoms >> 16].astype(np.int64), atoms & 0xFFFF, atom_of[dense])


class Compiler:
    """Rules and tiers -> compiled steps for one batch, sharing vectors and outcomes."""

    def __init__(self, vectors: EndpointVectors, atoms: PortAtoms, index: dict[int, int]) -> None:
        self.vectors = vectors
        self.atoms = atoms
        self.policy_index = index  # id(policy) -> position in BatchResult.policies
        self.outcomes: list[Outcome] = [NO_TIER_DECIDED, NOT_A_SUBJECT]
        self._outcome_ids = {outcome: i for i, outcome in enumerate(self.outcomes)}
        self._rules: dict[tuple[int, Direction, int], CompiledRule] = {}
        self._ports: dict[tuple[PortMatch, ...], Mask] = {}

    def outcome(self, outcome: Outcome) -> int:
        if outcome not in self._outcome_ids:
            self._outcome_ids[outcome] = len(self.outcomes)
            self.outcomes.append(outcome)
        return self._outcome_ids[outcome]

    def rule(self, policy: Policy, direction: Direction, index: int, rule: Rule) -> CompiledRule:
        key = (id(policy), direction, index)
        if key not in self._rules:
            self._rules[key] = self._compile(self.policy_index[id(policy)], index, rule)
        return self._rules[key]

    def _compile(self, policy: int, index: int, rule: Rule) -> CompiledRule:
        peers = None
        if rule.peers:
            peers = np.zeros(self.vectors.size, dtype=np.bool_)
            for peer in rule.peers:
                peers |= self.vectors.peer(peer)
        port_atoms = self._port_vector(rule.ports) if rule.ports else None
        named = tuple(m for m in rule.ports if m.name is not None)
        outcome = -1
        if rule.action is not Action.PASS:
            outcome = self.outcome(Outcome(rule.action is Action.ALLOW, Reason.RULE, policy, index))
        return CompiledRule(rule.action, outcome, peers, port_atoms, named)

    def _port_vector(self, matches: tuple[PortMatch, ...]) -> Mask:
        """Which (protocol, port) atoms the numbered entries match (`matching.port_matches`)."""
        if matches not in self._ports:
            atoms = self.atoms
            found = np.zeros(atoms.protocol.shape[0], dtype=np.bool_)
            for match in matches:
                if match.name is not None:
                    continue
                hit = np.ones_like(found)
                if match.protocol is not None:
                    hit &= atoms.protocol == match.protocol
                if match.ports is not None:
                    hit &= (atoms.port >= match.ports.start) & (atoms.port <= match.ports.end)
                found |= hit
            self._ports[matches] = found
        return self._ports[matches]

    def tier(self, default: Action, first_policy: int, rules: list[CompiledRule]) -> TierBlock:
        """A tier's block: `rules` are its rules that can decide (no Log rules)."""
        outcome = -1
        if default is not Action.PASS:
            # As decide.py: any default but Pass ends the tier, allowing only for Allow.
            first = Outcome(default is Action.ALLOW, Reason.TIER_DEFAULT, first_policy, -1)
            outcome = self.outcome(first)
        return TierBlock(tuple(rules), outcome)


def _named_matches(vectors: EndpointVectors, match: PortMatch, seg: Segment, live: Ints) -> Mask:
    """Probes whose destination declares `match.name` for the flow's protocol at its port."""
    assert match.name is not None
    found = np.zeros(live.shape[0], dtype=np.bool_)
    probes = seg.probes[live]
    for protocol in vectors.named_protocols.get(match.name, ()):
        if match.protocol is not None and match.protocol != protocol:
            continue
        table = vectors.named_ports[(match.name, protocol)]
        at = table[seg.batch.dst[probes]] == seg.batch.port[probes]
        found |= (seg.batch.protocol[probes] == protocol) & at
    return found


def _rule_matches(
    vectors: EndpointVectors, rule: CompiledRule, seg: Segment, live: Ints
) -> Mask | None:
    """Which of the `live` probes the rule matches; None when it matches them all."""
    found = None
    if rule.peers is not None:
        found = rule.peers[seg.other[live]]
    if rule.port_atoms is not None:
        ports = rule.port_atoms[seg.atom[live]]
        for match in rule.named:
            ports |= _named_matches(vectors, match, seg, live)
        found = ports if found is None else found & ports
    return found


def run(vectors: EndpointVectors, program: tuple[TierBlock, ...], seg: Segment, out: Ints) -> None:
    """Walk one class's tiers over its probes, writing outcome indices into `out`."""
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

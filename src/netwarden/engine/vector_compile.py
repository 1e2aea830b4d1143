"""Rules, tiers, failsafe ports and profiles -> the vectors of `vector_program`, for one batch.

The batch's distinct (protocol, port) pairs are its port atoms: every condition of a rule that
depends on the flow's protocol and port only (ports, notPorts, protocol, notProtocol, ICMP type
and code, a Service's ports at the destination, a host endpoint's failsafe ports) becomes one
boolean vector over them, computed once per rule. ICMP flows in a batch are echo requests
(type 8, or 128 for ICMPv6, code 0), as `Flow` makes them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from netwarden.engine.batch import ProbeBatch
from netwarden.engine.decide import FAILSAFE_INBOUND, FAILSAFE_OUTBOUND
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.vector_entity import EntityVectors
from netwarden.engine.vector_program import (
    NO_TIER_DECIDED,
    NOT_A_SUBJECT,
    CompiledRule,
    Outcome,
    PortTerm,
    TierBlock,
)
from netwarden.engine.verdict import Reason
from netwarden.model import (
    ICMP,
    ICMPV6,
    Action,
    Direction,
    EntityMatch,
    IcmpMatch,
    Policy,
    PortMatch,
    Rule,
)

FAILSAFE = Outcome(True, Reason.FAILSAFE, -1, -1)
NO_PROFILE_ALLOWED = Outcome(False, Reason.NO_PROFILE_ALLOWED, -1, -1)
#: The ICMP type of an echo request, the only ICMP message a batch's flows carry.
ECHO_REQUEST = {ICMP: 8, ICMPV6: 128}


class PortAtoms(NamedTuple):
    """The batch's distinct (protocol, port) pairs and, per probe, which one it is."""

    protocol: Ints
    port: Ints
    of_probe: Ints


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


def _and(left: Mask | None, right: Mask) -> Mask:
    return right if left is None else left & right


class Compiler:
    """Rules and blocks -> compiled steps for one batch, sharing vectors and outcomes."""

    def __init__(
        self,
        vectors: EndpointVectors,
        entities: EntityVectors,
        atoms: PortAtoms,
        index: dict[int, int],
        profile_index: dict[str, int],
    ) -> None:
        self.vectors = vectors
        self.entities = entities
        self.atoms = atoms
        self.policy_index = index  # id(policy) -> position in BatchResult.policies
        self.profile_index = profile_index  # name -> position in BatchResult.profiles
        # Probes start at 0 (no tier decided); 1 marks what no policy can select.
        self.outcomes: list[Outcome] = [NO_TIER_DECIDED, NOT_A_SUBJECT]
        self._outcome_ids = {outcome: i for i, outcome in enumerate(self.outcomes)}
        self._rules: dict[tuple[int, Direction, int], CompiledRule] = {}
        self._ports: dict[tuple[PortMatch, ...], Mask] = {}
        self._atom_masks: dict[tuple[object, ...], Mask | None] = {}
        self._blocks: dict[tuple[object, ...], TierBlock] = {}

    def outcome(self, outcome: Outcome) -> int:
        if outcome not in self._outcome_ids:
            self._outcome_ids[outcome] = len(self.outcomes)
            self.outcomes.append(outcome)
        return self._outcome_ids[outcome]

    def rule(self, policy: Policy, direction: Direction, index: int, rule: Rule) -> CompiledRule:
        """A policy's rule; it decides as Reason.RULE of that policy and index."""
        key = (id(policy), direction, index)
        if key not in self._rules:
            outcome = -1
            if rule.action is not Action.PASS:
                allowed = rule.action is Action.ALLOW
                decided = Outcome(allowed, Reason.RULE, self.policy_index[id(policy)], index)
                outcome = self.outcome(decided)
            self._rules[key] = self._compile(rule, direction, outcome)
        return self._rules[key]

    def tier(self, default: Action, first_policy: int, rules: list[CompiledRule]) -> TierBlock:
        """A tier's block: `rules` are its rules that can decide (no Log rules)."""
        outcome = -1
        if default is not Action.PASS:
            # As decide.py: any default but Pass ends the tier, allowing only for Allow.
            first = Outcome(default is Action.ALLOW, Reason.TIER_DEFAULT, first_policy, -1)
            outcome = self.outcome(first)
        return TierBlock(tuple(rules), outcome)

    def failsafe(self, direction: Direction) -> TierBlock:
        """A host endpoint's failsafe ports, allowed before any tier; the rest go on."""
        key: tuple[object, ...] = ("failsafe", direction)
        if key not in self._blocks:
            ports = FAILSAFE_INBOUND if direction is Direction.INGRESS else FAILSAFE_OUTBOUND
            atoms = self.atoms
            hit = np.zeros(atoms.port.shape[0], dtype=np.bool_)
            for protocol, port in ports:
                hit |= (atoms.protocol == protocol) & (atoms.port == port)
            allow = CompiledRule(Action.ALLOW, self.outcome(FAILSAFE), atoms=hit)
            self._blocks[key] = TierBlock((allow,), -1)
        return self._blocks[key]

    def profiles(self, names: tuple[str, ...], direction: Direction) -> TierBlock:
        """A host endpoint's profiles after every tier: their Allow and Deny rules in order
        (Log and Pass decide nothing there); when none matches, the endpoint denies."""
        key: tuple[object, ...] = ("profiles", names, direction)
        if key not in self._blocks:
            rules: list[CompiledRule] = []
            by_name = self.vectors.cluster.profiles_by_name
            for name in names:
                profile = by_name.get(name)
                for index, rule in enumerate(profile.rules(direction) if profile else ()):
                    if rule.action in (Action.LOG, Action.PASS):
                        continue
                    allowed = rule.action is Action.ALLOW
                    decided = Outcome(allowed, Reason.PROFILE, self.profile_index[name], index)
                    rules.append(self._compile(rule, direction, self.outcome(decided)))
            self._blocks[key] = TierBlock(tuple(rules), self.outcome(NO_PROFILE_ALLOWED))
        return self._blocks[key]

    def _compile(self, rule: Rule, direction: Direction, outcome: int) -> CompiledRule:
        """`matching.rule_matches` as vectors: peers at the other end, `local` at the
        subject's own; a Service's ports count at the destination (an egress rule's peer, an
        ingress rule's local)."""
        ingress = direction is Direction.INGRESS
        named = tuple(m for m in rule.ports if m.name is not None)
        not_named = tuple(m for m in rule.not_ports if m.name is not None)
        atoms = self._atoms(rule, bool(named), bool(not_named))
        ports = self._port_vector(rule.ports) if named else None
        not_ports = self._port_vector(rule.not_ports) if not_named else None
        peers, terms = None, []
        if rule.peers:
            peers = np.zeros(self.vectors.size, dtype=np.bool_)
            for peer in rule.peers:
                if not isinstance(peer, EntityMatch):
                    peers |= self.vectors.peer(peer)
                    continue
                served = None if ingress else self._service_ports(peer)
                if served is None:
                    peers |= self.entities.match(peer)
                elif len(rule.peers) == 1:
                    peers, atoms = self.entities.match(peer), _and(atoms, served)
                else:
                    terms.append(PortTerm(self.entities.match(peer), served))
            if terms and not peers.any():
                peers = None
        local = None
        if rule.local is not None:
            local = self.entities.match(rule.local)
            served = self._service_ports(rule.local) if ingress else None
            if served is not None:
                atoms = _and(atoms, served)
        return CompiledRule(
            action=rule.action,
            outcome=outcome,
            atoms=atoms,
            family=rule.ip_version,
            peers=peers,
            peer_terms=tuple(terms),
            local=local,
            ports=ports,
            named=named,
            not_ports=not_ports,
            not_named=not_named,
        )

    def _atoms(self, rule: Rule, named: bool, not_named: bool) -> Mask | None:
        """The rule-wide conditions and the ports and notPorts (unless named entries keep them
        apart) over port atoms; rules repeat the same few, so each is computed once."""
        ports = () if named else rule.ports
        not_ports = () if not_named else rule.not_ports
        key = (rule.protocol, rule.not_protocol, rule.icmp, rule.not_icmp, ports, not_ports)
        if key not in self._atom_masks:
            found = self._conditions(rule)
            if ports:
                found = _and(found, self._port_vector(ports))
            if not_ports:
                found = _and(found, ~self._port_vector(not_ports))
            self._atom_masks[key] = found
        return self._atom_masks[key]

    def _conditions(self, rule: Rule) -> Mask | None:
        """The rule-wide protocol and ICMP conditions over port atoms (`matching._conditions`
        but the IP version, which depends on the flow's addresses)."""
        protocol = self.atoms.protocol
        found = None
        if rule.protocol is not None:
            found = _and(found, protocol == rule.protocol)
        if rule.not_protocol is not None:
            found = _and(found, protocol != rule.not_protocol)
        if rule.icmp is not None:
            found = _and(found, self._icmp(rule.icmp))
        if rule.not_icmp is not None:
            found = _and(found, ~self._icmp(rule.not_icmp))
        return found

    def _icmp(self, match: IcmpMatch) -> Mask:
        """Atoms whose echo request has the match's type (and code, when it has one)."""
        protocol = self.atoms.protocol
        found = np.zeros(protocol.shape[0], dtype=np.bool_)
        for number, echo in ECHO_REQUEST.items():
            if echo == match.type and match.code in (None, 0):
                found |= protocol == number
        return found

    def _service_ports(self, match: EntityMatch) -> Mask | None:
        """Atoms on one of the match's Service's ports; None when any port will do."""
        served = self.entities.service_ports(match)
        if not served:
            return None
        atoms = self.atoms
        found = np.zeros(atoms.port.shape[0], dtype=np.bool_)
        for port in served:
            found |= (atoms.port == port.port) & (atoms.protocol == port.protocol)
        return found

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

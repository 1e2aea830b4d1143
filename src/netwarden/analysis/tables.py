"""Per direction, the engine's decision for every (subject class, peer class, port atom).

A direction is decided at one end (egress at the source, ingress at the destination), the
*subject*, and looks at the other end, the *peer*. Endpoints fall into classes twice:

- subject classes: same selecting policies (of the endpoint that governs the address, as
  `PolicyEngine.subject_of` says), same profiles, same membership in every rule's `local`
  entity, same address family and same named ports;
- peer classes: same membership in every rule's peers, same family, same named ports.

Rules, tiers, failsafe ports and profiles are compiled by the vectorized engine's own
`Compiler`, so the vectors are the engine's. Each subject class then walks its program
(`vector_program.run`'s semantics) over a boolean matrix [peer rows x port atoms], where peer
rows are the peer classes its own rules can tell apart. Classes whose policies the vectors do
not express (`vector_support`) are decided by `PolicyEngine.decide_direction` per peer class
and atom, their endpoints each a class of their own, so the result stays exact.

Allowed atoms are kept packed, 64 per uint64 word: `DirectionTable.words(subject, peer)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netwarden.analysis.atoms import PortAtoms
from netwarden.analysis.partition import (
    Words,
    first_members,
    pack,
    refine,
    small_classes,
    unpack,
)
from netwarden.engine.decide import PolicyEngine
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.matching import selects
from netwarden.engine.vector_compile import Compiler
from netwarden.engine.vector_compile import PortAtoms as EnginePortAtoms
from netwarden.engine.vector_entity import EntityVectors
from netwarden.engine.vector_program import CompiledRule, TierBlock
from netwarden.engine.vector_support import (
    endpoint_selector_supported,
    policy_supported,
    profile_supported,
)
from netwarden.model import (
    Action,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    Flow,
    Policy,
    PortMatch,
    Tier,
)

__all__ = [
    "DirectionTable",
    "TableBuilder",
    "Words",
    "first_members",
    "pack",
    "refine",
    "small_classes",
    "unpack",
]


@dataclass(frozen=True)
class DirectionTable:
    """Allowed atoms of one direction. Row `offsets[c] + local[c, p]` of `bits` holds the
    atoms subject class `c` allows from/to peer class `p`."""

    direction: Direction
    subject_class: Ints
    peer_class: Ints
    subject_reps: Ints
    peer_reps: Ints
    local: npt.NDArray[np.int32]
    offsets: Ints
    bits: Words

    def words(self, subject: Ints, peer: Ints) -> Words:
        """Packed allowed atoms for each (subject endpoint, peer endpoint) pair."""
        c = self.subject_class[subject]
        rows = self.offsets[c] + self.local[c, self.peer_class[peer]]
        found: Words = self.bits[rows]
        return found


class _Plan(NamedTuple):
    """A program with what running it needs: its peer rows (`local` per peer class, `rows`
    one peer each), the `local` entities, family and named-port tables of the subject it
    reads, and its atom classes when they do not depend on the subject."""

    program: tuple[TierBlock, ...]
    local: Ints
    rows: Ints
    locals_: tuple[Mask, ...]
    family: bool
    named: tuple[Ints, ...]
    atom_classes: Ints | None

    def key(self, subject: int, version: npt.NDArray[Any]) -> tuple[object, ...]:
        """Everything about `subject` the program reads: equal keys, equal results."""
        return (
            tuple(bool(mask[subject]) for mask in self.locals_),
            int(version[subject]) if self.family else 0,
            tuple(int(table[subject]) for table in self.named),
        )


class TableBuilder:
    """Builds both directions' tables for one cluster over a tuple of endpoints."""

    def __init__(self, cluster: ClusterState, endpoints: Sequence[Endpoint], atoms: PortAtoms):
        self.cluster = cluster
        self.endpoints = endpoints
        self.atoms = atoms
        self.reference = PolicyEngine(cluster)
        self.vectors = EndpointVectors(cluster, endpoints)
        ordered = [(tier, p) for tier, policies in self.reference.tiers for p in policies]
        self.ordered = ordered
        index = {id(policy): i for i, (_, policy) in enumerate(ordered)}
        profile_index = {p.name: i for i, p in enumerate(cluster.profiles)}
        engine_atoms = EnginePortAtoms(atoms.protocol, atoms.start, np.zeros(0, np.int64))
        self.compiler = Compiler(
            self.vectors, EntityVectors(self.vectors), engine_atoms, index, profile_index
        )
        self._index_governing()
        self._index_named_ports()
        self._numbers: list[Mask] | None = None
        self._rules_of: dict[tuple[int, Direction], list[CompiledRule]] = {}

    def _index_governing(self) -> None:
        """Per endpoint, the endpoint policy applies to when it is the subject, and the
        profiles of that one when it is a host endpoint."""
        position = {id(e): i for i, e in enumerate(self.endpoints)}
        size = self.vectors.size
        self.governing = np.arange(size, dtype=np.int64)
        self.profile_group = np.zeros(size, dtype=np.int64)
        groups: dict[tuple[str, ...], int] = {}
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.kind is EndpointKind.HOST:
                ip = endpoint.ips[0] if endpoint.ips else None
                governing = self.reference.subject_of(endpoint, ip)
                self.governing[i] = position.get(id(governing), i)
            if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                self.profile_group[i] = 1 + groups.setdefault(endpoint.profiles, len(groups))
        self.profile_sets = tuple(groups)

    def _index_named_ports(self) -> None:
        tables = list(self.vectors.named_ports.values())
        if tables:
            self.named = refine(np.zeros(self.vectors.size, np.int64), tables)
        else:
            self.named = np.zeros(self.vectors.size, dtype=np.int64)

    def table(self, direction: Direction) -> DirectionTable:
        vectors = self.vectors
        columns = [(t, p) for t, p in self.ordered if p.rules(direction) is not None]
        selected = [self._selected(p) for _, p in columns]
        supported = np.array([policy_supported(p, direction) for _, p in columns], np.bool_)
        profiles_ok = {p.name: profile_supported(p, direction) for p in self.cluster.profiles}
        # Classes by selecting policies, over the governing endpoints.
        by_selection = refine(np.zeros(vectors.size, np.int64), selected)
        selection_reps = first_members(by_selection)
        chosen_matrix = (
            np.stack([m[selection_reps] for m in selected], axis=1)
            if selected
            else np.zeros((selection_reps.shape[0], 0), np.bool_)
        )
        chosen = [np.flatnonzero(row) for row in chosen_matrix]
        by_reference = np.array([not supported[c].all() for c in chosen], dtype=np.bool_)
        bad_profiles = np.array(
            [False]
            + [not all(profiles_ok.get(n, True) for n in names) for names in self.profile_sets],
            dtype=np.bool_,
        )
        rules = self._compiled(direction, columns, supported)
        gov = self.governing
        reference_endpoint = by_reference[by_selection[gov]] | bad_profiles[self.profile_group[gov]]
        subject_keys: list[Mask | Ints] = [
            by_selection[gov],
            self.profile_group[gov],
            vectors.is_subject[gov],
            vectors.version.astype(np.int64),
            self.named,
            np.where(reference_endpoint, np.arange(vectors.size), -1),
        ]
        subject_keys += [r.local for r in rules if r.local is not None]
        subject_class = refine(np.zeros(vectors.size, np.int64), subject_keys)
        if reference_endpoint.any():
            peer_class = np.arange(vectors.size, dtype=np.int64)
        else:
            peer_keys: list[Mask | Ints] = [vectors.version.astype(np.int64), self.named]
            for rule in rules:
                if rule.peers is not None:
                    peer_keys.append(rule.peers)
                peer_keys += [term.endpoints for term in rule.peer_terms]
            peer_class = refine(np.zeros(vectors.size, np.int64), peer_keys)
        subject_reps, peer_reps = first_members(subject_class), first_members(peer_class)
        self._local_cache: dict[tuple[int, ...], tuple[Ints, Ints]] = {}
        self._gathered: dict[int, Mask] = {}
        self._kept: list[Mask] = []
        egress = direction is Direction.EGRESS
        plans: dict[tuple[int, int], _Plan] = {}
        # Subject classes differ in things their own program may not look at (named ports
        # at egress, other policies' `local` entities), so equal keys share one block.
        block_of: dict[tuple[object, ...], int] = {}
        local_rows = np.zeros((subject_reps.shape[0], peer_reps.shape[0]), dtype=np.int32)
        blocks: list[Words] = []
        offsets = np.zeros(subject_reps.shape[0], dtype=np.int64)
        at = 0
        for c, subject in enumerate(subject_reps.tolist()):
            governing = int(gov[subject])
            plan: _Plan | None = None
            if reference_endpoint[subject]:
                key: tuple[object, ...] = ("reference", subject)
                local = np.arange(peer_reps.shape[0], dtype=np.int64)
            elif not vectors.is_subject[governing]:
                key = ("not a subject",)
                local = np.zeros(peer_reps.shape[0], dtype=np.int64)
            else:
                program_key = (int(by_selection[governing]), int(self.profile_group[governing]))
                plan = plans.get(program_key)
                if plan is None:
                    picked = [columns[j] for j in chosen[program_key[0]].tolist()]
                    program = self._program(direction, picked, self._profiles_of(governing))
                    plan = self._plan(program, peer_reps, egress)
                    plans[program_key] = plan
                key = (*program_key, *plan.key(subject, vectors.version))
                local = plan.local
            found = block_of.get(key)
            if found is None:
                if key[0] == "reference":
                    allowed = self._by_reference(direction, subject, peer_reps)
                elif key[0] == "not a subject":
                    allowed = np.ones((1, len(self.atoms)), dtype=np.bool_)
                else:
                    assert plan is not None
                    allowed = self._allowed(plan, subject, egress)
                found = block_of[key] = at
                at += allowed.shape[0]
                blocks.append(pack(allowed))
            offsets[c] = found
            local_rows[c] = local
        return DirectionTable(
            direction,
            subject_class,
            peer_class,
            subject_reps,
            peer_reps,
            local_rows,
            offsets,
            np.concatenate(blocks) if blocks else np.zeros((0, 1), np.uint64),
        )

    def _plan(self, program: tuple[TierBlock, ...], peer_reps: Ints, egress: bool) -> _Plan:
        """What running `program` needs, and what of the subject it looks at."""
        local, rows = self._local_rows(program, peer_reps)
        rules = [rule for block in program for rule in block.rules]
        locals_ = tuple({id(r.local): r.local for r in rules if r.local is not None}.values())
        family = any(r.family is not None for r in rules)
        # At ingress the subject is the destination, whose named ports count.
        names = set() if egress else {m.name for r in rules for m in (*r.named, *r.not_named)}
        named = [t for (name, _), t in self.vectors.named_ports.items() if name in names]
        atom_classes = None if names else self._atom_classes(program, -1, egress)
        return _Plan(program, local, rows, locals_, family, tuple(named), atom_classes)

    def _allowed(self, plan: _Plan, subject: int, egress: bool) -> Mask:
        """[peer rows x atoms]: what `plan`'s program allows for `subject`."""
        local_atoms = plan.atom_classes
        if local_atoms is None:
            local_atoms = self._atom_classes(plan.program, subject, egress)
        reps = first_members(local_atoms)
        found: Mask = self._run(plan.program, subject, plan.rows, reps, egress)[:, local_atoms]
        return found

    def _profiles_of(self, endpoint: int) -> tuple[str, ...] | None:
        """A host endpoint's profiles (maybe none); None for anything else."""
        group = int(self.profile_group[endpoint])
        return self.profile_sets[group - 1] if group else None

    def _selected(self, policy: Policy) -> Mask:
        if endpoint_selector_supported(policy.subject):
            return self.vectors.selects(policy.subject)
        chosen = (selects(policy.subject, e, self.cluster) for e in self.endpoints)
        return np.fromiter(chosen, np.bool_, self.vectors.size)

    def _compiled(
        self, direction: Direction, columns: list[tuple[Tier, Policy]], supported: Mask
    ) -> list[CompiledRule]:
        """Every rule the vectors run in this direction (policies' and profiles')."""
        found = []
        for (_, policy), ok in zip(columns, supported.tolist(), strict=True):
            if ok:
                for k, rule in enumerate(policy.rules(direction) or ()):
                    if rule.action is not Action.LOG:
                        found.append(self.compiler.rule(policy, direction, k, rule))
        by_name = self.cluster.profiles_by_name
        for names in self.profile_sets:
            if all(profile_supported(by_name[n], direction) for n in names if n in by_name):
                found += self.compiler.profiles(names, direction).rules
        return found

    def _program(
        self,
        direction: Direction,
        chosen: list[tuple[Tier, Policy]],
        profiles: tuple[str, ...] | None,
    ) -> tuple[TierBlock, ...]:
        """As `VectorEngine._program`: a host endpoint's failsafe ports and profiles around
        its tiers; per tier, its selecting policies' rules in order."""
        compiler = self.compiler
        blocks: list[TierBlock] = []
        if profiles is not None:
            blocks.append(compiler.failsafe(direction))
        i = 0
        while i < len(chosen):
            tier = chosen[i][0]
            first = compiler.policy_index[id(chosen[i][1])]
            rules: list[CompiledRule] = []
            while i < len(chosen) and chosen[i][0] is tier:
                rules += self._policy_rules(chosen[i][1], direction)
                i += 1
            blocks.append(compiler.tier(tier.default_action, first, rules))
        if profiles is not None:
            blocks.append(compiler.profiles(profiles, direction))
        return tuple(blocks)

    def _policy_rules(self, policy: Policy, direction: Direction) -> list[CompiledRule]:
        """A policy's compiled rules that decide (Log rules do not), once per policy: the
        policy is in thousands of programs."""
        key = (id(policy), direction)
        found = self._rules_of.get(key)
        if found is None:
            found = [
                self.compiler.rule(policy, direction, k, rule)
                for k, rule in enumerate(policy.rules(direction) or ())
                if rule.action is not Action.LOG
            ]
            self._rules_of[key] = found
        return found

    def _local_rows(self, program: tuple[TierBlock, ...], peer_reps: Ints) -> tuple[Ints, Ints]:
        """The peer classes this program's rules tell apart: per peer class its row, and one
        peer endpoint per row. Programs repeat (classes differ in named ports, not rules), so
        each is worked out once per table."""
        rules = [rule for block in program for rule in block.rules]
        key = tuple(id(rule) for rule in rules)
        found = self._local_cache.get(key)
        if found is None:
            columns: list[Mask | Ints] = []
            aux = False
            for rule in rules:
                if rule.peers is not None:
                    columns.append(self._at_reps(rule.peers, peer_reps))
                columns += [self._at_reps(t.endpoints, peer_reps) for t in rule.peer_terms]
                aux = aux or rule.family is not None or bool(rule.named or rule.not_named)
            if aux:
                columns += [self.vectors.version[peer_reps].astype(np.int64), self.named[peer_reps]]
            local = small_classes(columns, peer_reps.shape[0])
            found = (local, peer_reps[first_members(local)])
            self._local_cache[key] = found
        return found

    def _at_reps(self, mask: Mask, peer_reps: Ints) -> Mask:
        found = self._gathered.get(id(mask))
        if found is None:
            found = mask[peer_reps]
            self._gathered[id(mask)] = found
            self._kept.append(mask)  # ids stay valid while the table is built
        return found

    def _atom_classes(self, program: tuple[TierBlock, ...], subject: int, egress: bool) -> Ints:
        """The atoms this program tells apart for this subject (its rules' port conditions,
        and named ports: the subject's own at ingress, every declared number at egress)."""
        columns: list[Mask | Ints] = []
        named: list[PortMatch] = []
        for block in program:
            for rule in block.rules:
                columns += [m for m in (rule.atoms, rule.ports, rule.not_ports) if m is not None]
                columns += [term.atoms for term in rule.peer_terms]
                named += [*rule.named, *rule.not_named]
        if named and egress:
            columns += self._named_numbers()
        elif named:
            own = np.array([subject], dtype=np.int64)
            every = np.arange(len(self.atoms))
            columns += [self._named((match,), own, every)[0] for match in named]
        return small_classes(columns, len(self.atoms))

    def _named_numbers(self) -> list[Mask]:
        """Per declared (protocol, port number), the atom that is it."""
        if self._numbers is None:
            atoms, found = self.atoms, []
            for (_, protocol), table in self.vectors.named_ports.items():
                for number in np.unique(table).tolist():
                    found.append((atoms.protocol == protocol) & (atoms.start == number))
            self._numbers = found
        return self._numbers

    def _run(
        self, program: tuple[TierBlock, ...], subject: int, peers: Ints, atoms: Ints, egress: bool
    ) -> Mask:
        """The program over [peer rows x `atoms`]: True where the direction allows."""
        outcomes = self.compiler.outcomes
        shape = (peers.shape[0], atoms.shape[0])
        allowed = np.zeros(shape, dtype=np.bool_)
        undecided = np.ones(shape, dtype=np.bool_)
        for block in program:
            live = undecided
            passed = np.zeros(shape, dtype=np.bool_)
            for rule in block.rules:
                matched = self._matches(rule, subject, peers, atoms, egress)
                hit = live if matched is None else live & matched
                live = live & ~hit
                if rule.outcome < 0:
                    passed |= hit
                elif outcomes[rule.outcome].allowed:
                    allowed |= hit
                if not live.any():
                    break
            if block.default < 0:
                passed |= live
            elif outcomes[block.default].allowed:
                allowed |= live
            undecided = passed
            if not undecided.any():
                break
        found: Mask = allowed | undecided  # nothing decided: the pod's profile allows
        return found

    def _matches(
        self, rule: CompiledRule, subject: int, peers: Ints, atoms: Ints, egress: bool
    ) -> Mask | None:
        """`vector_program._rule_matches` for one subject over peer rows x atoms (broadcast
        shapes: [rows or 1, atoms or 1])."""
        vectors = self.vectors
        found: Mask | None = None

        def both(mask: Mask) -> None:
            nonlocal found
            found = mask if found is None else found & mask

        if rule.local is not None and not rule.local[subject]:
            return np.zeros((1, 1), dtype=np.bool_)
        if rule.atoms is not None:
            both(rule.atoms[atoms][None, :])
        if rule.family is not None:
            # The flow's family: the source's address, else the destination's.
            own, theirs = int(vectors.version[subject]), vectors.version[peers].astype(np.int64)
            if egress:
                family = np.full(peers.shape[0], own) if own else theirs
            else:
                family = np.where(theirs != 0, theirs, own)
            both((family == rule.family)[:, None])
        if rule.peers is not None or rule.peer_terms:
            at_peer = (
                rule.peers[peers][:, None]
                if rule.peers is not None
                else np.zeros((peers.shape[0], 1), dtype=np.bool_)
            )
            for term in rule.peer_terms:
                at_peer = at_peer | (term.endpoints[peers][:, None] & term.atoms[atoms][None, :])
            both(at_peer)
        destination = peers if egress else np.array([subject], dtype=np.int64)
        if rule.named:
            assert rule.ports is not None
            both(rule.ports[atoms][None, :] | self._named(rule.named, destination, atoms))
        if rule.not_named:
            assert rule.not_ports is not None
            not_ports = rule.not_ports[atoms][None, :]
            both(~(not_ports | self._named(rule.not_named, destination, atoms)))
        return found

    def _named(self, matches: tuple[PortMatch, ...], destinations: Ints, chosen: Ints) -> Mask:
        """[destinations x atoms]: the destination declares one of the named `matches` for
        the atom's protocol at the atom's port (`matching.port_matches`)."""
        vectors = self.vectors
        protocols, ports = self.atoms.protocol[chosen], self.atoms.start[chosen]
        found = np.zeros((destinations.shape[0], chosen.shape[0]), dtype=np.bool_)
        for match in matches:
            assert match.name is not None
            for protocol in vectors.named_protocols.get(match.name, ()):
                if match.protocol is not None and match.protocol != protocol:
                    continue
                table = vectors.named_ports[(match.name, protocol)]
                at = table[destinations][:, None] == ports[None, :]
                found |= at & (protocols == protocol)[None, :]
        return found

    def _by_reference(self, direction: Direction, subject: int, peers: Ints) -> Mask:
        """The reference engine for one subject and each peer, on every atom."""
        atoms = self.atoms
        found = np.zeros((peers.shape[0], len(atoms)), dtype=np.bool_)
        own = self.endpoints[subject]
        for row, peer in enumerate(peers.tolist()):
            other = self.endpoints[peer]
            src, dst = (own, other) if direction is Direction.EGRESS else (other, own)
            for a in range(len(atoms)):
                flow = Flow(src, dst, int(atoms.start[a]), int(atoms.protocol[a]))
                found[row, a] = self.reference.decide_direction(flow, direction).allowed
        return found

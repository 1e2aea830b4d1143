"""Per direction, the engine's decision for every (subject class, peer class, port atom).

A direction is decided at one end (egress at the source, ingress at the destination), the
*subject*, and looks at the other end, the *peer*. Endpoints fall into classes twice:

- subject classes: same selecting policies (of the endpoint that governs the address, as
  `PolicyEngine.subject_of` says), same profiles, same membership in every rule's `local`
  entity, same address family and same named ports;
- peer classes: same membership in every rule's peers, same family, same named ports.

Rules, tiers, failsafe ports and profiles are compiled by the vectorized engine's own
`Compiler` into programs (`programs`), so the vectors are the engine's. Each subject class
then walks its program (`vector_program.run`'s semantics) over a boolean matrix [peer rows x
port atoms] (`cells`), where peer rows are the peer classes its own rules can tell apart.
Classes whose policies the vectors do not express (`vector_support`) are decided by
`PolicyEngine.decide_direction` per peer class and atom, their endpoints each a class of
their own, so the result stays exact. Lint walks the same classes (`DirectionClasses`),
programs and cells (`lint_classes`).

Allowed atoms are kept packed, 64 per uint64 word: `DirectionTable.words(subject, peer)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from netwarden.analysis.atoms import PortAtoms
from netwarden.analysis.cells import CellMatcher, PeerRows
from netwarden.analysis.partition import (
    Words,
    first_members,
    pack,
    refine,
    small_classes,
    unpack,
)
from netwarden.analysis.programs import Block, ProgramBuilder
from netwarden.engine.decide import PolicyEngine
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.matching import selects
from netwarden.engine.vector_compile import Compiler
from netwarden.engine.vector_compile import PortAtoms as EnginePortAtoms
from netwarden.engine.vector_entity import EntityVectors
from netwarden.engine.vector_program import CompiledRule
from netwarden.engine.vector_support import (
    endpoint_selector_supported,
    policy_supported,
    profile_supported,
)
from netwarden.model import (
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    Flow,
    Policy,
)

__all__ = [
    "DirectionClasses",
    "DirectionTable",
    "TableBuilder",
    "TableRows",
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


class TableRows:
    """A `DirectionTable` written one subject class at a time: blocks of allowed [peer rows x
    atoms] are added in turn, and each class placed at one of them (classes may share one)."""

    def __init__(
        self,
        direction: Direction,
        subject_class: Ints,
        peer_class: Ints,
        subject_reps: Ints,
        peer_reps: Ints,
    ) -> None:
        self._classes = (direction, subject_class, peer_class, subject_reps, peer_reps)
        self._local = np.zeros((subject_reps.shape[0], peer_reps.shape[0]), dtype=np.int32)
        self._offsets = np.zeros(subject_reps.shape[0], dtype=np.int64)
        self._blocks: list[Words] = []
        self._rows = 0

    def add(self, allowed: Mask) -> int:
        """Add a block of allowed [peer rows x atoms]; its first row in `bits`, for `place`."""
        at = self._rows
        self._blocks.append(pack(allowed))
        self._rows += allowed.shape[0]
        return at

    def place(self, c: int, local: Ints, offset: int) -> None:
        """Subject class `c` reads the block at `offset`, peer class p its row `local[p]`."""
        self._offsets[c] = offset
        self._local[c] = local

    def table(self) -> DirectionTable:
        """The table as written so far."""
        blocks = self._blocks
        bits = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.uint64)
        return DirectionTable(*self._classes, self._local, self._offsets, bits)


@dataclass(frozen=True)
class DirectionClasses:
    """The classes of one direction. `by_selection` numbers each endpoint by the policies
    that select it, `chosen` lists them per such number (positions in `TableBuilder.ordered`);
    `reference` marks the subjects the reference engine decides; `rules` are every rule the
    vectors run in this direction."""

    direction: Direction
    by_selection: Ints
    chosen: tuple[tuple[int, ...], ...]
    reference: Mask
    rules: tuple[CompiledRule, ...]
    subject_class: Ints
    peer_class: Ints
    subject_reps: Ints
    peer_reps: Ints


class _Plan(NamedTuple):
    """A program with what running it needs: its peer rows (`local` per peer class, `rows`
    one peer each), the `local` entities, family and named-port tables of the subject it
    reads, and its atom classes when they do not depend on the subject."""

    program: tuple[Block, ...]
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
        self.programs = ProgramBuilder(self.compiler, ordered)
        self.cells = CellMatcher(self.vectors, atoms, self.compiler)
        self._index_governing()
        self._index_named_ports()

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

    @cached_property
    def selected(self) -> list[Mask]:
        """Per policy of `ordered`, the endpoints it selects (both directions read them)."""
        return [self._selected(policy) for _, policy in self.ordered]

    def profiles_of(self, endpoint: int) -> tuple[str, ...] | None:
        """A host endpoint's profiles (maybe none); None for anything else."""
        group = int(self.profile_group[endpoint])
        return self.profile_sets[group - 1] if group else None

    def classes(self, direction: Direction, selected: Sequence[Mask]) -> DirectionClasses:
        """The subject and peer classes of `direction`. `selected`: per policy of `ordered`,
        the endpoints it selects (`self.selected`)."""
        vectors = self.vectors
        columns = [i for i, (_, p) in enumerate(self.ordered) if p.rules(direction) is not None]
        masks = [selected[i] for i in columns]
        supported = np.array(
            [policy_supported(self.ordered[i][1], direction) for i in columns], np.bool_
        )
        profiles_ok = {p.name: profile_supported(p, direction) for p in self.cluster.profiles}
        # Classes by selecting policies, over the governing endpoints.
        by_selection = refine(np.zeros(vectors.size, np.int64), masks)
        selection_reps = first_members(by_selection)
        chosen_matrix = (
            np.stack([m[selection_reps] for m in masks], axis=1)
            if masks
            else np.zeros((selection_reps.shape[0], 0), np.bool_)
        )
        chosen = [np.flatnonzero(row) for row in chosen_matrix]
        by_reference = np.array([not supported[c].all() for c in chosen], dtype=np.bool_)
        bad_profiles = np.array(
            [False]
            + [not all(profiles_ok.get(n, True) for n in names) for names in self.profile_sets],
            dtype=np.bool_,
        )
        rules = self.programs.rules(direction, columns, supported.tolist(), self.profile_sets)
        gov = self.governing
        reference = by_reference[by_selection[gov]] | bad_profiles[self.profile_group[gov]]
        subject_keys: list[Mask | Ints] = [
            by_selection[gov],
            self.profile_group[gov],
            vectors.is_subject[gov],
            vectors.version.astype(np.int64),
            self.named,
            np.where(reference, np.arange(vectors.size), -1),
        ]
        subject_keys += [r.local for r in rules if r.local is not None]
        subject_class = refine(np.zeros(vectors.size, np.int64), subject_keys)
        if reference.any():
            peer_class = np.arange(vectors.size, dtype=np.int64)
        else:
            peer_keys: list[Mask | Ints] = [vectors.version.astype(np.int64), self.named]
            for rule in rules:
                if rule.peers is not None:
                    peer_keys.append(rule.peers)
                peer_keys += [term.endpoints for term in rule.peer_terms]
            peer_class = refine(np.zeros(vectors.size, np.int64), peer_keys)
        return DirectionClasses(
            direction,
            by_selection,
            tuple(tuple(columns[j] for j in c.tolist()) for c in chosen),
            reference,
            tuple(rules),
            subject_class,
            peer_class,
            first_members(subject_class),
            first_members(peer_class),
        )

    def table(self, direction: Direction) -> DirectionTable:
        vectors = self.vectors
        classes = self.classes(direction, self.selected)
        gov, reference = self.governing, classes.reference
        subject_reps, peer_reps = classes.subject_reps, classes.peer_reps
        peer_rows = PeerRows(peer_reps, vectors, self.named)
        egress = direction is Direction.EGRESS
        plans: dict[tuple[int, int], _Plan] = {}
        # Subject classes differ in things their own program may not look at (named ports
        # at egress, other policies' `local` entities), so equal keys share one block.
        block_of: dict[tuple[object, ...], int] = {}
        written = TableRows(
            direction, classes.subject_class, classes.peer_class, subject_reps, peer_reps
        )
        for c, subject in enumerate(subject_reps.tolist()):
            governing = int(gov[subject])
            plan: _Plan | None = None
            if reference[subject]:
                key: tuple[object, ...] = ("reference", subject)
                local = np.arange(peer_reps.shape[0], dtype=np.int64)
            elif not vectors.is_subject[governing]:
                key = ("not a subject",)
                local = np.zeros(peer_reps.shape[0], dtype=np.int64)
            else:
                program_key = (
                    int(classes.by_selection[governing]),
                    int(self.profile_group[governing]),
                )
                plan = plans.get(program_key)
                if plan is None:
                    chosen = classes.chosen[program_key[0]]
                    program = self.programs.program(direction, chosen, self.profiles_of(governing))
                    plan = self._plan(program, peer_rows, egress)
                    plans[program_key] = plan
                key = (*program_key, *plan.key(subject, vectors.version))
                local = plan.local
            found = block_of.get(key)
            if found is None:
                if key[0] == "reference":
                    allowed = self.by_reference(direction, subject, peer_reps)
                elif key[0] == "not a subject":
                    allowed = np.ones((1, len(self.atoms)), dtype=np.bool_)
                else:
                    assert plan is not None
                    allowed = self._allowed(plan, subject, egress)
                found = block_of[key] = written.add(allowed)
            written.place(c, local, found)
        return written.table()

    def _plan(self, program: tuple[Block, ...], peer_rows: PeerRows, egress: bool) -> _Plan:
        """What running `program` needs, and what of the subject it looks at."""
        local, rows = peer_rows.of(program)
        rules = [step.rule for block in program for step in block.steps]
        locals_ = tuple({id(r.local): r.local for r in rules if r.local is not None}.values())
        family = any(r.family is not None for r in rules)
        # At ingress the subject is the destination, whose named ports count.
        names = set() if egress else {m.name for r in rules for m in (*r.named, *r.not_named)}
        named = [t for (name, _), t in self.vectors.named_ports.items() if name in names]
        atom_classes = None if names else self.cells.atom_classes(program, -1, egress)
        return _Plan(program, local, rows, locals_, family, tuple(named), atom_classes)

    def _allowed(self, plan: _Plan, subject: int, egress: bool) -> Mask:
        """[peer rows x atoms]: what `plan`'s program allows for `subject`."""
        local_atoms = plan.atom_classes
        if local_atoms is None:
            local_atoms = self.cells.atom_classes(plan.program, subject, egress)
        reps = first_members(local_atoms)
        found: Mask = self.cells.run(plan.program, subject, plan.rows, reps, egress)
        return found[:, local_atoms]

    def _selected(self, policy: Policy) -> Mask:
        if endpoint_selector_supported(policy.subject):
            return self.vectors.selects(policy.subject)
        chosen = (selects(policy.subject, e, self.cluster) for e in self.endpoints)
        return np.fromiter(chosen, np.bool_, self.vectors.size)

    def by_reference(self, direction: Direction, subject: int, peers: Ints) -> Mask:
        """[peers x atoms]: the reference engine for one subject and each peer, on every atom."""
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

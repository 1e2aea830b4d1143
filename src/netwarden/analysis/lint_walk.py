"""The walk lint proves redundancy with: every rule's effect, per direction, on sets.

Each subject class (`lint_classes`) is walked over its [peer rows x port atoms] cells, as the
connectivity tables decide them: forward (which cells each rule *hits*: matches while still
undecided; who decided the cells a rule matches but does not hit), then backward (what a cell
would end as if it entered after each step). Removing a rule changes exactly the cells it
hits whose own outcome differs from that: the proof that a rule is redundant needs no second
evaluation per rule. A policy's rules are consecutive steps of its tier's block, so removing
a policy changes the cells they hit that end otherwise entering after its last step, or, when
it alone made its tier select the class, the cells entering the tier that end otherwise in
the next one.

Classes whose policies the vectors do not express are decided by the reference engine; their
rules and policies are never called redundant (`unprovable`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from netwarden.analysis.lint_classes import Block, ClassPrograms, RuleKey
from netwarden.analysis.partition import pack
from netwarden.analysis.tables import DirectionTable, TableRows
from netwarden.engine.endpoint_vectors import Ints, Mask


class Cause(NamedTuple):
    """What decided a cell before a rule could: another rule, a tier's default action, or a
    host endpoint's failsafe ports / profiles (`rule` None, `tier` names which)."""

    rule: RuleKey | None
    tier: str


@dataclass
class RuleEffect:
    """What one rule did over every class that runs it."""

    hit: bool = False  # decided some cell
    matched: bool = False  # matched some cell (decided or not)
    changes: list[tuple[int, Mask]] = field(default_factory=list)  # (class, cells) it changes
    shadows: Counter[Cause] = field(default_factory=Counter)  # who decided its matched cells
    unprovable: bool = False


@dataclass
class Blocking:
    """A user tier that decides every cell of some classes that later tiers also select."""

    classes: list[int] = field(default_factory=list)
    later: set[int] = field(default_factory=set)  # policies never reached
    first_policy: int = -1


class DirectionWalk:
    """Every subject class of one direction walked, with each rule's and policy's effect."""

    def __init__(self, programs: ClassPrograms) -> None:
        self.programs = programs
        builder = self.builder = programs.builder
        self.direction = programs.direction
        self.subject_class, self.peer_class = programs.subject_class, programs.peer_class
        self.subject_reps, self.peer_reps = programs.subject_reps, programs.peer_reps
        self.outcomes = builder.compiler.outcomes  # grows as rules are compiled
        self.rules: dict[RuleKey, RuleEffect] = {}
        self.policy_changes: dict[int, list[tuple[int, Mask]]] = {}
        self.unprovable_policies: set[int] = set()
        self.blocking: dict[str, Blocking] = {}
        self.finals: list[Mask] = []
        self.local: list[Ints] = []
        for c in range(self.subject_reps.shape[0]):
            self._walk_class(c)
        self.table = self._table()

    def _allows(self, outcome: int) -> bool:
        return self.outcomes[outcome].allowed

    def _walk_class(self, c: int) -> None:
        builder = self.builder
        subject = int(self.subject_reps[c])
        governing = int(builder.governing[subject])
        atoms = len(builder.atoms)
        if self.programs.reference[subject]:
            self._by_reference(c, subject)
            return
        if not builder.vectors.is_subject[governing]:
            self.local.append(np.zeros(self.peer_reps.shape[0], dtype=np.int64))
            self.finals.append(np.ones((1, atoms), dtype=np.bool_))
            return
        blocks = self.programs.program(subject)
        local, rows = self.programs.rows(blocks)
        shape = (rows.shape[0], atoms)
        matches = [[self.programs.matches(s.rule, subject, rows) for s in b.steps] for b in blocks]
        hits, final, entries = self._forward(c, blocks, matches, shape)
        self.local.append(local)
        self.finals.append(final)
        self._backward(c, blocks, matches, hits, entries, final)

    def _forward(
        self, c: int, blocks: list[Block], matches: list[list[Mask | None]], shape: tuple[int, int]
    ) -> tuple[list[list[Mask]], Mask, list[Mask]]:
        """Which cells each step hits, the final verdict, and the cells still undecided as
        each block starts; records who shadows what."""
        allowed = np.zeros(shape, dtype=np.bool_)
        undecided = np.ones(shape, dtype=np.bool_)
        taker = np.full(shape, -1, dtype=np.int64)  # the cause that took each cell, by id
        causes: list[Cause] = []
        hits: list[list[Mask]] = []
        entries: list[Mask] = []
        for b, block in enumerate(blocks):
            entries.append(undecided)
            live = undecided
            passed = np.zeros(shape, dtype=np.bool_)
            block_hits: list[Mask] = []
            for step, matched in zip(block.steps, matches[b], strict=True):
                full = np.broadcast_to(True if matched is None else matched, shape)
                hit = live & full
                block_hits.append(hit)
                if step.key is not None:
                    self._record(step.key, hit, full, live, taker, causes)
                if hit.any():
                    causes.append(Cause(step.key, block.name))
                    taker[hit] = len(causes) - 1
                    live = live & ~hit
                    if step.rule.outcome < 0:
                        passed |= hit
                    elif self._allows(step.rule.outcome):
                        allowed |= hit
            hits.append(block_hits)
            if live.any():
                causes.append(Cause(None, block.name))
                taker[live] = len(causes) - 1
            if block.default < 0:
                passed |= live
            elif self._allows(block.default):
                allowed |= live
            later = [p for other in blocks[b + 1 :] for p in other.policies]
            if block.calico_tier is not None and not passed.any() and later:
                blocking = self.blocking.setdefault(block.name, Blocking())
                blocking.classes.append(c)
                blocking.later.update(later)
                if blocking.first_policy < 0:
                    blocking.first_policy = block.policies[0]
            undecided = passed
        final: Mask = allowed | undecided  # nothing decided: the pod's profile allows
        return hits, final, entries

    def _record(
        self,
        key: RuleKey,
        hit: Mask,
        full: Mask,
        live: Mask,
        taker: Ints,
        causes: list[Cause],
    ) -> None:
        effect = self.rules.setdefault(key, RuleEffect())
        if effect.hit:
            return  # already known to decide something: no need to say who shadows it
        if hit.any():
            effect.hit = effect.matched = True
            effect.shadows.clear()
            return
        shadowed = full & ~live
        if shadowed.any():
            effect.matched = True
            counts = np.bincount(taker[shadowed], minlength=len(causes))
            for cause_id in np.flatnonzero(counts).tolist():
                effect.shadows[causes[cause_id]] += int(counts[cause_id])

    def _backward(
        self,
        c: int,
        blocks: list[Block],
        matches: list[list[Mask | None]],
        hits: list[list[Mask]],
        entries: list[Mask],
        final: Mask,
    ) -> None:
        """What each cell ends as if it enters after each step; a step changes the cells it
        hits whose own outcome differs from that. A policy's rules are consecutive steps of
        its tier's block, so removing it changes the cells they hit that end otherwise when
        entering after its last step; removing the only policy of a tier that selects the
        class sends the cells entering the block to the next one instead."""
        shape = final.shape
        after: Mask = np.ones(shape, dtype=np.bool_)  # past the last block: the profile allows
        for b in range(len(blocks) - 1, -1, -1):
            block, next_entry = blocks[b], after
            if block.default < 0:
                value = next_entry
            else:
                value = np.full(shape, self._allows(block.default), dtype=np.bool_)
            past_policy: dict[int, Mask] = {}  # the value entering after a policy's last step
            for j in range(len(block.steps) - 1, -1, -1):
                step = block.steps[j]
                outcome: Mask | bool = next_entry
                if step.rule.outcome >= 0:
                    outcome = self._allows(step.rule.outcome)
                if step.key is not None:
                    past_policy.setdefault(step.key.policy, value)
                    changed = hits[b][j] & (outcome != value)
                    if changed.any():
                        self.rules[step.key].changes.append((c, changed))
                matched = matches[b][j]
                if matched is None:
                    value = np.broadcast_to(outcome, shape).copy()
                else:
                    value = np.where(matched, outcome, value)
            after = value
            for position in block.policies:
                if block.policies == (position,):
                    changed = entries[b] & (final != next_entry)
                elif position in past_policy:
                    own = [
                        hit
                        for step, hit in zip(block.steps, hits[b], strict=True)
                        if step.key is not None and step.key.policy == position
                    ]
                    changed = np.logical_or.reduce(own) & (final != past_policy[position])
                else:
                    continue  # no rule here, and the tier still selects the class
                if changed.any():
                    self.policy_changes.setdefault(position, []).append((c, final ^ changed))

    def _by_reference(self, c: int, subject: int) -> None:
        """A class the vectors do not express: the reference engine per peer and atom; its
        policies' rules are marked unprovable."""
        builder, peers = self.builder, self.peer_reps
        self.local.append(np.arange(peers.shape[0], dtype=np.int64))
        self.finals.append(builder.by_reference(self.direction, subject, peers))
        governing = int(builder.governing[subject])
        for position in self.programs.chosen[int(self.programs.by_selection[governing])]:
            self.unprovable_policies.add(position)
            policy = builder.ordered[position][1]
            for k in range(len(policy.rules(self.direction) or ())):
                key = RuleKey(position, self.direction, k)
                self.rules.setdefault(key, RuleEffect()).unprovable = True

    def _table(self) -> DirectionTable:
        """The final verdicts as a `DirectionTable`, each class its own block (`with_finals`
        replaces them one by one)."""
        written = TableRows(
            self.direction, self.subject_class, self.peer_class, self.subject_reps, self.peer_reps
        )
        for c, (local, final) in enumerate(zip(self.local, self.finals, strict=True)):
            written.place(c, local, written.add(final))
        return written.table()

    def with_finals(self, replaced: dict[int, Mask]) -> DirectionTable:
        """The table with some classes' final verdicts replaced (same shapes)."""
        table = self.table
        bits = table.bits.copy()
        for c, final in replaced.items():
            at = int(table.offsets[c])
            bits[at : at + final.shape[0]] = pack(final)
        return replace(table, bits=bits)

"""Per direction: the subject and peer classes lint walks, each class's program with every
rule's identity, and the rules as [peer rows x port atoms] cells.

The classes are the connectivity tables' (`tables.TableBuilder`): subject classes share
selecting policies, profiles, named ports, family and `local` matches; peer classes share
membership in every rule's peers; a class's peer rows are the peer classes its own rules tell
apart. Rules are the builder's compiled ones (`vector_compile.Compiler`), matched as
`vector_program` matches probes. Unlike `TierBlock`, each `Step` keeps which policy rule it
is, so lint can say which rule does what.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from netwarden.analysis.partition import first_members, refine, small_classes
from netwarden.analysis.tables import TableBuilder
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.engine.matching import selects
from netwarden.engine.vector_program import CompiledRule
from netwarden.engine.vector_support import (
    endpoint_selector_supported,
    policy_supported,
    profile_supported,
)
from netwarden.model import Action, Direction, PortMatch, Tier


class RuleKey(NamedTuple):
    """A policy's rule: `policy` indexes `TableBuilder.ordered`."""

    policy: int
    direction: Direction
    number: int  # the rule's index in the policy's rules of `direction`


class Step(NamedTuple):
    key: RuleKey | None  # None: a failsafe or profile rule
    rule: CompiledRule


@dataclass(frozen=True)
class Block:
    """One block of a class's program: a tier's selecting policies' rules, the failsafe ports
    or the profiles. `default` indexes the compiler's outcomes (-1: Pass)."""

    name: str
    steps: tuple[Step, ...]
    default: int
    policies: tuple[int, ...] = ()
    calico_tier: Tier | None = None  # a user-defined tier, which NW702 looks at


class ClassPrograms:
    """The classes of one direction and what each runs."""

    def __init__(self, builder: TableBuilder, direction: Direction, selected: list[Mask]) -> None:
        self.builder = builder
        self.direction = direction
        self.egress = direction is Direction.EGRESS
        self._classes(selected)

    def _classes(self, selected: list[Mask]) -> None:
        builder, vectors = self.builder, self.builder.vectors
        direction = self.direction
        self.columns = [
            i for i, (_, p) in enumerate(builder.ordered) if p.rules(direction) is not None
        ]
        masks = [selected[i] for i in self.columns]
        by_selection = refine(np.zeros(vectors.size, np.int64), masks)
        reps = first_members(by_selection)
        chosen = (
            np.stack([m[reps] for m in masks], axis=1)
            if masks
            else np.zeros((reps.shape[0], 0), np.bool_)
        )
        self.chosen = [[self.columns[j] for j in np.flatnonzero(row).tolist()] for row in chosen]
        policies = [p for _, p in builder.ordered]
        supported = [policy_supported(policy, direction) for policy in policies]
        by_reference = np.array(
            [not all(supported[i] for i in c) for c in self.chosen], dtype=np.bool_
        )
        profiles_ok = {p.name: profile_supported(p, direction) for p in builder.cluster.profiles}
        bad_profiles = np.array(
            [False]
            + [not all(profiles_ok.get(n, True) for n in names) for names in builder.profile_sets],
            dtype=np.bool_,
        )
        gov = builder.governing
        self.by_selection = by_selection
        self.reference = by_reference[by_selection[gov]] | bad_profiles[builder.profile_group[gov]]
        compiled: list[CompiledRule] = []
        for i in self.columns:
            policy = policies[i]
            if supported[i]:
                for k, rule in enumerate(policy.rules(direction) or ()):
                    if rule.action is not Action.LOG:
                        compiled.append(builder.compiler.rule(policy, direction, k, rule))
        by_name = builder.cluster.profiles_by_name
        for names in builder.profile_sets:
            if all(profile_supported(by_name[n], direction) for n in names if n in by_name):
                compiled += builder.compiler.profiles(names, direction).rules
        keys: list[Mask | Ints] = [
            by_selection[gov],
            builder.profile_group[gov],
            vectors.is_subject[gov],
            vectors.version.astype(np.int64),
            builder.named,
            np.where(self.reference, np.arange(vectors.size), -1),
        ]
        keys += [r.local for r in compiled if r.local is not None]
        self.subject_class = refine(np.zeros(vectors.size, np.int64), keys)
        if self.reference.any():
            self.peer_class = np.arange(vectors.size, dtype=np.int64)
        else:
            peer_keys: list[Mask | Ints] = [vectors.version.astype(np.int64), builder.named]
            for compiled_rule in compiled:
                if compiled_rule.peers is not None:
                    peer_keys.append(compiled_rule.peers)
                peer_keys += [term.endpoints for term in compiled_rule.peer_terms]
            self.peer_class = refine(np.zeros(vectors.size, np.int64), peer_keys)
        self.subject_reps = first_members(self.subject_class)
        self.peer_reps = first_members(self.peer_class)
        self._rows_cache: dict[tuple[int, ...], tuple[Ints, Ints]] = {}

    def program(self, subject: int) -> list[Block]:
        """The blocks a subject endpoint runs, each rule with its identity."""
        builder = self.builder
        compiler, direction = builder.compiler, self.direction
        governing = int(builder.governing[subject])
        group = int(builder.profile_group[governing])
        profiles = builder.profile_sets[group - 1] if group else None
        picked = self.chosen[int(self.by_selection[governing])]
        blocks: list[Block] = []
        if profiles is not None:
            failsafe = compiler.failsafe(direction)
            blocks.append(Block("failsafe", tuple(Step(None, r) for r in failsafe.rules), -1))
        i = 0
        while i < len(picked):
            tier = builder.ordered[picked[i]][0]
            first = picked[i]
            steps: list[Step] = []
            members: list[int] = []
            while i < len(picked) and builder.ordered[picked[i]][0] is tier:
                position = picked[i]
                policy = builder.ordered[position][1]
                members.append(position)
                for k, rule in enumerate(policy.rules(direction) or ()):
                    if rule.action is not Action.LOG:
                        compiled = compiler.rule(policy, direction, k, rule)
                        steps.append(Step(RuleKey(position, direction, k), compiled))
                i += 1
            default = compiler.tier(tier.default_action, first, []).default
            user_tier = tier if tier.source is not None else None
            blocks.append(Block(tier.name, tuple(steps), default, tuple(members), user_tier))
        if profiles is not None:
            block = compiler.profiles(profiles, direction)  # its end denies
            blocks.append(
                Block("profiles", tuple(Step(None, r) for r in block.rules), block.default)
            )
        return blocks

    def rows(self, blocks: Sequence[Block]) -> tuple[Ints, Ints]:
        """Per peer class its row, and one peer endpoint per row (as `TableBuilder`)."""
        rules = [s.rule for b in blocks for s in b.steps]
        key = tuple(id(r) for r in rules)
        found = self._rows_cache.get(key)
        if found is None:
            peer_reps, vectors = self.peer_reps, self.builder.vectors
            columns: list[Mask | Ints] = []
            aux = False
            for rule in rules:
                if rule.peers is not None:
                    columns.append(rule.peers[peer_reps])
                columns += [t.endpoints[peer_reps] for t in rule.peer_terms]
                aux = aux or rule.family is not None or bool(rule.named or rule.not_named)
            if aux:
                columns += [
                    vectors.version[peer_reps].astype(np.int64),
                    self.builder.named[peer_reps],
                ]
            local = small_classes(columns, peer_reps.shape[0])
            found = (local, peer_reps[first_members(local)])
            self._rows_cache[key] = found
        return found

    # -- one class -------------------------------------------------------------------------

    def matches(self, rule: CompiledRule, subject: int, peers: Ints) -> Mask | None:
        """The rule over [peer rows x atoms] for one subject (broadcast shapes), as
        `vector_program._rule_matches` decides each probe; None when it matches every cell."""
        vectors = self.builder.vectors
        found: Mask | None = None

        def both(mask: Mask) -> None:
            nonlocal found
            found = mask if found is None else found & mask

        if rule.local is not None and not rule.local[subject]:
            return np.zeros((1, 1), dtype=np.bool_)
        if rule.atoms is not None:
            both(rule.atoms[None, :])
        if rule.family is not None:
            # The flow's family: the source's address, else the destination's.
            own, theirs = int(vectors.version[subject]), vectors.version[peers].astype(np.int64)
            if self.egress:
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
                at_peer = at_peer | (term.endpoints[peers][:, None] & term.atoms[None, :])
            both(at_peer)
        destination = peers if self.egress else np.array([subject], dtype=np.int64)
        if rule.named:
            assert rule.ports is not None
            both(rule.ports[None, :] | self._named(rule.named, destination))
        if rule.not_named:
            assert rule.not_ports is not None
            both(~(rule.not_ports[None, :] | self._named(rule.not_named, destination)))
        return found

    def _named(self, matches: tuple[PortMatch, ...], destinations: Ints) -> Mask:
        """[destinations x atoms]: the destination declares one of the named `matches` for
        the atom's protocol at the atom's port (`matching.port_matches`)."""
        vectors, atoms = self.builder.vectors, self.builder.atoms
        found = np.zeros((destinations.shape[0], len(atoms)), dtype=np.bool_)
        for match in matches:
            assert match.name is not None
            for protocol in vectors.named_protocols.get(match.name, ()):
                if match.protocol is not None and match.protocol != protocol:
                    continue
                table = vectors.named_ports[(match.name, protocol)]
                at = table[destinations][:, None] == atoms.start[None, :]
                found |= at & (atoms.protocol == protocol)[None, :]
        return found

    # -- the direction as a table ------------------------------------------------------------


def selected_masks(builder: TableBuilder) -> list[Mask]:
    """Per policy of `builder.ordered`, the endpoints it selects."""
    found = []
    for _, policy in builder.ordered:
        if endpoint_selector_supported(policy.subject):
            found.append(builder.vectors.selects(policy.subject))
        else:
            chosen = (selects(policy.subject, e, builder.cluster) for e in builder.endpoints)
            found.append(np.fromiter(chosen, np.bool_, builder.vectors.size))
    return found

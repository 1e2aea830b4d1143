"""A subject class's program: the blocks of compiled rules one direction runs, in order, with
each rule's identity.

A host endpoint's failsafe ports come first and its profiles last; between them, one block
per tier that selects the class, holding its selecting policies' rules in order (Log rules
decide nothing and are left out), as `VectorEngine._program` builds them. Rules are compiled
once by the vectorized engine's `Compiler`; a `Step` keeps which policy rule it is, so lint
can say which rule does what, and the connectivity tables run the same blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from netwarden.engine.vector_compile import Compiler
from netwarden.engine.vector_program import CompiledRule
from netwarden.engine.vector_support import profile_supported
from netwarden.model import Action, Direction, Policy, Tier


class RuleKey(NamedTuple):
    """A policy's rule: `policy` indexes `ProgramBuilder.ordered` (`TableBuilder.ordered`)."""

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


class ProgramBuilder:
    """Programs over `ordered` (every policy with its tier, in evaluation order), compiled
    by `compiler`; each policy's steps are compiled once, as it is in thousands of programs."""

    def __init__(self, compiler: Compiler, ordered: Sequence[tuple[Tier, Policy]]) -> None:
        self.compiler = compiler
        self.ordered = ordered
        self._steps: dict[tuple[int, Direction], tuple[Step, ...]] = {}
        self._edges: dict[tuple[object, ...], Block] = {}

    def program(
        self, direction: Direction, chosen: Sequence[int], profiles: tuple[str, ...] | None
    ) -> tuple[Block, ...]:
        """The blocks of a subject selected by the policies at positions `chosen` (ascending)
        of `ordered`; `profiles` are a host endpoint's (maybe none), None for anything else."""
        blocks: list[Block] = []
        if profiles is not None:
            blocks.append(self._failsafe(direction))
        i = 0
        while i < len(chosen):
            tier = self.ordered[chosen[i]][0]
            first = chosen[i]
            steps: list[Step] = []
            members: list[int] = []
            while i < len(chosen) and self.ordered[chosen[i]][0] is tier:
                members.append(chosen[i])
                steps += self.steps(chosen[i], direction)
                i += 1
            default = self.compiler.tier(tier.default_action, first, []).default
            user_tier = tier if tier.source is not None else None
            blocks.append(Block(tier.name, tuple(steps), default, tuple(members), user_tier))
        if profiles is not None:
            blocks.append(self._profiles(profiles, direction))
        return tuple(blocks)

    def steps(self, position: int, direction: Direction) -> tuple[Step, ...]:
        """The policy at `position`'s rules of `direction` that decide (not Log rules)."""
        key = (position, direction)
        found = self._steps.get(key)
        if found is None:
            policy = self.ordered[position][1]
            found = tuple(
                Step(RuleKey(position, direction, k), self.compiler.rule(policy, direction, k, r))
                for k, r in enumerate(policy.rules(direction) or ())
                if r.action is not Action.LOG
            )
            self._steps[key] = found
        return found

    def rules(
        self,
        direction: Direction,
        columns: Sequence[int],
        supported: Sequence[bool],
        profile_sets: Sequence[tuple[str, ...]],
    ) -> list[CompiledRule]:
        """Every rule the vectors run in `direction`: those of the policies at `columns`
        whose `supported` is true, and those of each set of profiles they can express."""
        found = [
            step.rule
            for position, ok in zip(columns, supported, strict=True)
            if ok
            for step in self.steps(position, direction)
        ]
        by_name = self.compiler.vectors.cluster.profiles_by_name
        for names in profile_sets:
            if all(profile_supported(by_name[n], direction) for n in names if n in by_name):
                found += self.compiler.profiles(names, direction).rules
        return found

    def _failsafe(self, direction: Direction) -> Block:
        """A host endpoint's failsafe ports, allowed before any tier."""
        key: tuple[object, ...] = ("failsafe", direction)
        found = self._edges.get(key)
        if found is None:
            block = self.compiler.failsafe(direction)
            found = Block("failsafe", tuple(Step(None, r) for r in block.rules), block.default)
            self._edges[key] = found
        return found

    def _profiles(self, names: tuple[str, ...], direction: Direction) -> Block:
        """A host endpoint's profiles after every tier; their end denies."""
        key: tuple[object, ...] = ("profiles", names, direction)
        found = self._edges.get(key)
        if found is None:
            block = self.compiler.profiles(names, direction)
            found = Block("profiles", tuple(Step(None, r) for r in block.rules), block.default)
            self._edges[key] = found
        return found

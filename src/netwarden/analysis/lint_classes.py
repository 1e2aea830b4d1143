"""Per direction: the subject and peer classes lint walks, each class's program with every
rule's identity, and the rules as [peer rows x port atoms] cells.

All of it is the connectivity tables' own: the classes are `TableBuilder.classes` (subject
classes share selecting policies, profiles, named ports, family and `local` matches; peer
classes share membership in every rule's peers), the programs `programs.ProgramBuilder`'s
(each `Step` keeps which policy rule it is, so lint can say which rule does what), a class's
peer rows are those its own rules tell apart (`cells.PeerRows`), and a rule's cells are
`cells.CellMatcher.matches` over every atom. Lint decides exactly what the map decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from netwarden.analysis.cells import EVERY_ATOM, PeerRows
from netwarden.analysis.programs import Block, RuleKey, Step
from netwarden.analysis.tables import TableBuilder
from netwarden.engine.endpoint_vectors import Ints, Mask
from netwarden.engine.vector_program import CompiledRule
from netwarden.model import Direction

__all__ = ["Block", "ClassPrograms", "RuleKey", "Step", "selected_masks"]


class ClassPrograms:
    """The classes of one direction and what each runs."""

    def __init__(self, builder: TableBuilder, direction: Direction, selected: list[Mask]) -> None:
        """`selected`: per policy of `builder.ordered`, the endpoints it selects."""
        self.builder = builder
        self.direction = direction
        self.egress = direction is Direction.EGRESS
        classes = builder.classes(direction, selected)
        self.by_selection = classes.by_selection
        self.chosen = classes.chosen  # per selection class: its policies' positions
        self.reference = classes.reference
        self.subject_class, self.peer_class = classes.subject_class, classes.peer_class
        self.subject_reps, self.peer_reps = classes.subject_reps, classes.peer_reps
        self._rows = PeerRows(classes.peer_reps, builder.vectors, builder.named)
        self._programs: dict[tuple[int, int], tuple[Block, ...]] = {}

    def program(self, subject: int) -> list[Block]:
        """The blocks a subject endpoint runs, each rule with its identity."""
        builder = self.builder
        governing = int(builder.governing[subject])
        key = (int(self.by_selection[governing]), int(builder.profile_group[governing]))
        found = self._programs.get(key)
        if found is None:
            profiles = builder.profiles_of(governing)
            found = builder.programs.program(self.direction, self.chosen[key[0]], profiles)
            self._programs[key] = found
        return list(found)

    def rows(self, blocks: Sequence[Block]) -> tuple[Ints, Ints]:
        """Per peer class its row, and one peer endpoint per row (as `TableBuilder`)."""
        return self._rows.of(blocks)

    def matches(self, rule: CompiledRule, subject: int, peers: Ints) -> Mask | None:
        """The rule over [peer rows x atoms] for one subject (broadcast shapes), as
        `vector_program._rule_matches` decides each probe; None when it matches every cell."""
        return self.builder.cells.matches(rule, subject, peers, EVERY_ATOM, self.egress)


def selected_masks(builder: TableBuilder) -> list[Mask]:
    """Per policy of `builder.ordered`, the endpoints it selects."""
    return list(builder.selected)

"""Compiled rules over one subject's cells: [peer rows x port atoms].

A subject endpoint's direction is decided over a grid: its peer rows (one peer endpoint per
class its program's rules tell apart, `PeerRows`) by port atoms (all of them, or one per
class of atoms the program tells apart, `CellMatcher.atom_classes`). `CellMatcher.matches`
is `vector_program._rule_matches` for one rule over that grid, and `CellMatcher.run` walks a
program's blocks over it as `vector_program.run` walks probes. The connectivity tables
(`tables`) and lint's walk (`lint_walk`) both decide their cells here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from netwarden.analysis.atoms import PortAtoms
from netwarden.analysis.partition import first_members, small_classes
from netwarden.analysis.programs import Block
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.vector_compile import Compiler
from netwarden.engine.vector_program import CompiledRule
from netwarden.model import PortMatch

#: The atoms a grid's columns are: an index array of atoms, or `EVERY_ATOM` (all of them,
#: read as views, no copy).
AtomChoice = Ints | slice
EVERY_ATOM = slice(None)


class CellMatcher:
    """Rules and programs over [peer rows x atoms] for one subject at a time."""

    def __init__(self, vectors: EndpointVectors, atoms: PortAtoms, compiler: Compiler) -> None:
        self.vectors = vectors
        self.atoms = atoms
        self.compiler = compiler  # its outcome table grows as rules are compiled
        self._numbers: list[Mask] | None = None

    def matches(
        self, rule: CompiledRule, subject: int, peers: Ints, atoms: AtomChoice, egress: bool
    ) -> Mask | None:
        """`vector_program._rule_matches` for one subject over peer rows x `atoms`
        (broadcast shapes: [rows or 1, atoms or 1]); None when it matches every cell."""
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
            both(rule.ports[atoms][None, :] | self.named(rule.named, destination, atoms))
        if rule.not_named:
            assert rule.not_ports is not None
            not_ports = rule.not_ports[atoms][None, :]
            both(~(not_ports | self.named(rule.not_named, destination, atoms)))
        return found

    def named(self, matches: tuple[PortMatch, ...], destinations: Ints, atoms: AtomChoice) -> Mask:
        """[destinations x atoms]: the destination declares one of the named `matches` for
        the atom's protocol at the atom's port (`matching.port_matches`)."""
        protocols, ports = self.atoms.protocol[atoms], self.atoms.start[atoms]
        found = np.zeros((destinations.shape[0], protocols.shape[0]), dtype=np.bool_)
        for match in matches:
            for table in self.vectors.named_tables(match):
                at = table.ports[destinations][:, None] == ports[None, :]
                found |= at & (protocols == table.protocol)[None, :]
        return found

    def run(
        self,
        program: Sequence[Block],
        subject: int,
        peers: Ints,
        atoms: AtomChoice,
        egress: bool,
    ) -> Mask:
        """The program over [peer rows x `atoms`]: True where the direction allows."""
        outcomes = self.compiler.outcomes
        width = len(self.atoms) if isinstance(atoms, slice) else atoms.shape[0]
        shape = (peers.shape[0], width)
        allowed = np.zeros(shape, dtype=np.bool_)
        undecided = np.ones(shape, dtype=np.bool_)
        for block in program:
            live = undecided
            passed = np.zeros(shape, dtype=np.bool_)
            for step in block.steps:
                matched = self.matches(step.rule, subject, peers, atoms, egress)
                hit = live if matched is None else live & matched
                live = live & ~hit
                if step.rule.outcome < 0:
                    passed |= hit
                elif outcomes[step.rule.outcome].allowed:
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

    def atom_classes(self, program: Sequence[Block], subject: int, egress: bool) -> Ints:
        """The atoms this program tells apart for this subject (its rules' port conditions,
        and named ports: the subject's own at ingress, every declared number at egress)."""
        columns: list[Mask | Ints] = []
        named: list[PortMatch] = []
        for block in program:
            for step in block.steps:
                rule = step.rule
                columns += [m for m in (rule.atoms, rule.ports, rule.not_ports) if m is not None]
                columns += [term.atoms for term in rule.peer_terms]
                named += [*rule.named, *rule.not_named]
        if named and egress:
            columns += self._named_numbers()
        elif named:
            own = np.array([subject], dtype=np.int64)
            columns += [self.named((match,), own, EVERY_ATOM)[0] for match in named]
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


class PeerRows:
    """Per program, the peer classes its rules tell apart: per peer class its row, and one
    peer endpoint per row. Programs repeat (classes differ in named ports, not rules), so
    each set of rules is worked out once."""

    def __init__(self, peer_reps: Ints, vectors: EndpointVectors, named: Ints) -> None:
        """`named`: per endpoint, its class by declared named ports."""
        self.peer_reps = peer_reps
        self._version = vectors.version[peer_reps].astype(np.int64)
        self._named = named[peer_reps]
        self._found: dict[tuple[int, ...], tuple[Ints, Ints]] = {}
        self._gathered: dict[int, Mask] = {}
        self._kept: list[Mask] = []

    def of(self, program: Sequence[Block]) -> tuple[Ints, Ints]:
        rules = [step.rule for block in program for step in block.steps]
        key = tuple(id(rule) for rule in rules)  # compiled rules are kept by the compiler
        found = self._found.get(key)
        if found is None:
            columns: list[Mask | Ints] = []
            aux = False
            for rule in rules:
                if rule.peers is not None:
                    columns.append(self._at_reps(rule.peers))
                columns += [self._at_reps(t.endpoints) for t in rule.peer_terms]
                aux = aux or rule.family is not None or bool(rule.named or rule.not_named)
            if aux:
                columns += [self._version, self._named]
            local = small_classes(columns, self.peer_reps.shape[0])
            found = (local, self.peer_reps[first_members(local)])
            self._found[key] = found
        return found

    def _at_reps(self, mask: Mask) -> Mask:
        found = self._gathered.get(id(mask))
        if found is None:
            found = mask[self.peer_reps]
            self._gathered[id(mask)] = found
            self._kept.append(mask)  # ids stay valid while the rows are in use
        return found

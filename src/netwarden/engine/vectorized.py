"""The vectorized engine: `decide` for a whole batch of probes at once, with numpy.

Same answers as `PolicyEngine.decide` (the reference), computed on sets (DESIGN.md,
"Performance approach"):

1. per policy, the endpoints it selects; per rule, the endpoints that are its peer or its
   `local` entity (`EndpointVectors`, `EntityVectors`: one evaluation per distinct label set,
   namespace, service account or network set), and the port atoms its port, protocol and ICMP
   conditions accept (`vector_compile`);
2. per direction, subjects fall into classes by the set of policies selecting them (and, for a
   host endpoint, its profiles), and each class has one program: a host endpoint's failsafe
   ports, its tiers in order with the rules of its selecting policies, a host endpoint's
   profiles;
3. probes are sorted by the class of their subject (the source for egress, the destination for
   ingress, or the host endpoint that governs a hostNetwork pod's or node's address) and each
   class runs its program once over its probes, as index arrays that shrink as rules decide
   (`vector_program.run`);
4. whatever the vectors do not express (`vector_support`) is decided probe by probe by the
   reference itself, so the answers stay exact.

    batch = resolve_probes(cluster, [Probe("shop/frontend-0", "shop/db-0", 5432, 6)])
    evaluate(cluster, batch).allowed  # array([False])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt

from netwarden.engine.batch import REASON_CODES, BatchResult, DirectionColumns, ProbeBatch
from netwarden.engine.decide import PolicyEngine, staged_policy_set
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.matching import selects
from netwarden.engine.vector_compile import Compiler, port_atoms
from netwarden.engine.vector_entity import EntityVectors
from netwarden.engine.vector_program import CompiledRule, Outcome, Segment, TierBlock, run
from netwarden.engine.vector_support import (
    KINDS,
    endpoint_selector_supported,
    policy_supported,
    profile_supported,
)
from netwarden.engine.verdict import Reason
from netwarden.model import (
    Action,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    Flow,
    Policy,
    Tier,
)


@dataclass(frozen=True)
class _Prepared:
    """Per-endpoint work shared by every batch with the same endpoints tuple. `subject` is the
    position of the endpoint policy applies to when the endpoint is the subject (itself, or
    the host endpoint governing its address; -1 when that one is not in the batch), and
    `governed` whether any is another one. `profile_group` is 0, or for a host endpoint 1 +
    the position of its profiles in `profile_sets`."""

    endpoints: tuple[Endpoint, ...]
    vectors: EndpointVectors
    entities: EntityVectors
    subject: Ints
    governed: bool
    known: Mask
    profile_group: Ints
    profile_sets: tuple[tuple[str, ...], ...]


class VectorEngine:
    """Evaluates batches for one cluster; the evaluation order is computed once.

    `reference_decisions` counts the probe directions handed to the reference engine (what
    `vector_support` refuses), so tests and benchmarks can see that nothing fell back."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster
        self._reference = PolicyEngine(cluster)
        tiers = self._reference.tiers
        ordered = [(tier, policy) for tier, policies in tiers for policy in policies]
        evaluated = {id(policy) for _, policy in ordered}
        # Policies the reference never evaluates (staged, or of a tier the cluster does not
        # define) are listed last, so that the result still names every policy.
        rest = [p for p in cluster.policies if id(p) not in evaluated]
        self.policies = tuple([p for _, p in ordered] + rest)
        self.tier_of_policy = tuple([t.name for t, _ in ordered] + [p.tier for p in rest])
        self.index = {id(policy): i for i, policy in enumerate(self.policies)}
        self._evaluated = ordered
        self._supported = {
            d: {id(p): policy_supported(p, d) for p in self.policies} for d in Direction
        }
        self._subject_supported = {
            id(p): endpoint_selector_supported(p.subject) for p in self.policies
        }
        self._profile_supported = {
            d: {p.name: profile_supported(p, d) for p in cluster.profiles} for d in Direction
        }
        self._profile_index = {p.name: i for i, p in enumerate(cluster.profiles)}
        self._prepared: _Prepared | None = None
        self.reference_decisions = 0

    def vectors(self, batch: ProbeBatch) -> EndpointVectors:
        """Endpoint vectors, reused while batches share their endpoints tuple."""
        return self._prepare(batch).vectors

    def _prepare(self, batch: ProbeBatch) -> _Prepared:
        if self._prepared is not None and self._prepared.endpoints is batch.endpoints:
            return self._prepared
        endpoints = batch.endpoints
        vectors = EndpointVectors(self.cluster, endpoints)
        position = {id(endpoint): i for i, endpoint in enumerate(endpoints)}
        subject = np.empty(len(endpoints), dtype=np.int64)
        groups: dict[tuple[str, ...], int] = {}
        profile_group = np.zeros(len(endpoints), dtype=np.int64)
        for i, endpoint in enumerate(endpoints):
            governing = self._reference.subject_of(
                endpoint, endpoint.ips[0] if endpoint.ips else None
            )
            subject[i] = position.get(id(governing), -1)
            if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                profile_group[i] = 1 + groups.setdefault(endpoint.profiles, len(groups))
        self._prepared = _Prepared(
            endpoints,
            vectors,
            EntityVectors(vectors),
            subject,
            bool((subject != np.arange(len(endpoints))).any()),
            vectors.of_kind(KINDS),
            profile_group,
            tuple(groups),
        )
        return self._prepared

    @cached_property
    def staged_engine(self) -> VectorEngine | None:
        """The same engine over the staged policy set, when the cluster has staged policies."""
        if not self.cluster.has_staged:
            return None
        staged = replace(self.cluster, policies=staged_policy_set(self.cluster.policies))
        return VectorEngine(staged)

    def evaluate(self, batch: ProbeBatch) -> BatchResult:
        prepared = self._prepare(batch)
        vectors = prepared.vectors
        compiler = Compiler(
            vectors, prepared.entities, port_atoms(batch), self.index, self._profile_index
        )
        ends = _Ends(batch.src.astype(np.int64), batch.dst.astype(np.int64), vectors.version)
        egress = self._direction(Direction.EGRESS, compiler, prepared, ends, batch)
        ingress = self._direction(Direction.INGRESS, compiler, prepared, ends, batch)
        staged = None
        if self.staged_engine is not None:
            # Same inventory, other policies: the per-endpoint work carries over.
            self.staged_engine._prepared = prepared
            staged = self.staged_engine.evaluate(batch)
        profiles = self.cluster.profiles
        return BatchResult(
            batch, self.policies, self.tier_of_policy, egress, ingress, profiles, staged
        )

    def _direction(
        self,
        direction: Direction,
        compiler: Compiler,
        prepared: _Prepared,
        ends: _Ends,
        batch: ProbeBatch,
    ) -> DirectionColumns:
        vectors = compiler.vectors
        own, other = (ends.src, ends.dst) if direction is Direction.EGRESS else (ends.dst, ends.src)
        subject, unresolved = own, None
        if prepared.governed:  # hostNetwork pods or nodes at a host endpoint's address
            subject = prepared.subject[own]
            unresolved = subject < 0
            subject[unresolved] = own[unresolved]
        columns = [(t, p) for t, p in self._evaluated if p.rules(direction) is not None]
        class_of, members, profiles = self._classes(prepared, [p for _, p in columns])
        by_reference = self._by_reference(direction, columns, members, profiles)
        out = np.zeros(subject.shape[0], dtype=np.int64)  # NO_TIER_DECIDED
        out[~vectors.is_subject[subject]] = 1  # NOT_A_SUBJECT
        probe_class = class_of[subject]
        order = _group(probe_class, len(members))
        bounds = np.concatenate(([0], np.cumsum(np.bincount(probe_class, minlength=len(members)))))
        programs: list[tuple[int, tuple[TierBlock, ...]]] = []
        for c, chosen in enumerate(members):
            if bounds[c] == bounds[c + 1] or by_reference[c]:
                continue
            if chosen.shape[0] or profiles[c] is not None:
                chosen_columns = [columns[j] for j in chosen]
                programs.append(
                    (c, self._program(direction, compiler, chosen_columns, profiles[c]))
                )
        # Columns in class order; the subject's own end and the family only if a rule reads them.
        rules = [r for _, program in programs for block in program for r in block.rules]
        other_sorted, atom_sorted = other[order], compiler.atoms.of_probe[order]
        own_sorted = own[order] if any(r.local is not None for r in rules) else _UNUSED
        family = ends.family[order] if any(r.family is not None for r in rules) else _UNUSED
        for c, program in programs:
            span = slice(int(bounds[c]), int(bounds[c + 1]))
            segment = Segment(
                order[span],
                other_sorted[span],
                own_sorted[span],
                atom_sorted[span],
                family[span],
                batch,
            )
            run(vectors, program, segment, out)
        by_reference_probes = np.zeros(subject.shape[0], dtype=np.bool_)
        if by_reference.any():
            by_reference_probes |= by_reference[probe_class]
        if unresolved is not None:
            by_reference_probes |= unresolved
        if not prepared.known.all():
            by_reference_probes |= ~prepared.known[own] | ~prepared.known[other]
        self._decide_each(direction, compiler, batch, np.flatnonzero(by_reference_probes), out)
        return _columns(compiler.outcomes, out)

    def _classes(
        self, prepared: _Prepared, policies: list[Policy]
    ) -> tuple[Ints, list[Ints], list[tuple[str, ...] | None]]:
        """Endpoint -> class, by the set of `policies` selecting it and, for a host endpoint,
        its profiles; per class, the positions of its selecting policies and the profiles (None
        for anything but a host endpoint)."""
        vectors = prepared.vectors
        selected = np.zeros((vectors.size, len(policies)), dtype=np.bool_)
        for j, policy in enumerate(policies):
            if self._subject_supported[id(policy)]:
                selected[:, j] = vectors.selects(policy.subject)
            else:  # still exact: a class is decided by the reference if it has this policy
                chosen = (selects(policy.subject, e, self.cluster) for e in vectors.endpoints)
                selected[:, j] = np.fromiter(chosen, np.bool_, vectors.size)
        group = prepared.profile_group.astype(">u4").view(np.uint8).reshape(vectors.size, 4)
        packed = np.ascontiguousarray(np.hstack([np.packbits(selected, axis=1), group]))
        rows = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
        _, first, class_of = np.unique(rows, return_index=True, return_inverse=True)
        members = [np.flatnonzero(selected[i]) for i in first]
        sets = prepared.profile_sets
        groups = prepared.profile_group[first].tolist()
        profiles = [sets[g - 1] if g else None for g in groups]
        return class_of.reshape(-1).astype(np.int64), members, profiles

    def _by_reference(
        self,
        direction: Direction,
        columns: list[tuple[Tier, Policy]],
        members: list[Ints],
        profiles: list[tuple[str, ...] | None],
    ) -> Mask:
        """Per class: whether a selecting policy or a profile is beyond the vectors."""
        supported = [self._supported[direction][id(p)] for _, p in columns]
        known = self._profile_supported[direction]
        return np.array(
            [
                not all(supported[j] for j in m.tolist())
                or not all(known.get(name, True) for name in names or ())
                for m, names in zip(members, profiles, strict=True)
            ],
            dtype=np.bool_,
        )

    def _decide_each(
        self, direction: Direction, compiler: Compiler, batch: ProbeBatch, probes: Ints, out: Ints
    ) -> None:
        """The reference engine, one probe at a time, for what the vectors cannot express."""
        engine = self._reference
        self.reference_decisions += probes.shape[0]
        for i in probes.tolist():
            src, dst = batch.endpoints[batch.src[i]], batch.endpoints[batch.dst[i]]
            flow = Flow(src, dst, int(batch.port[i]), int(batch.protocol[i]))
            decision = engine.decide_direction(flow, direction)
            policy = decision.policy
            if decision.reason is Reason.TIER_DEFAULT:
                policy = decision.steps[-1].policies[0]  # the tier's first selecting policy
            index = -1 if policy is None else self.index[id(policy)]
            if decision.profile is not None:
                index = self._profile_index[decision.profile.name]
            rule = -1 if decision.rule_index is None else decision.rule_index
            out[i] = compiler.outcome(Outcome(decision.allowed, decision.reason, index, rule))

    def _program(
        self,
        direction: Direction,
        compiler: Compiler,
        chosen: list[tuple[Tier, Policy]],
        profiles: tuple[str, ...] | None,
    ) -> tuple[TierBlock, ...]:
        """The class's blocks: a host endpoint's failsafe ports; its tiers in order, each with
        its selecting policies' rules in order (a tier's default names its first selecting
        policy, so results can name the tier); a host endpoint's profiles."""
        blocks: list[TierBlock] = []
        if profiles is not None:
            blocks.append(compiler.failsafe(direction))
        i = 0
        while i < len(chosen):
            tier = chosen[i][0]
            first = self.index[id(chosen[i][1])]
            rules: list[CompiledRule] = []
            while i < len(chosen) and chosen[i][0] is tier:
                policy = chosen[i][1]
                for k, rule in enumerate(policy.rules(direction) or ()):
                    if rule.action is not Action.LOG:  # Log records and goes on: no verdict
                        rules.append(compiler.rule(policy, direction, k, rule))
                i += 1
            blocks.append(compiler.tier(tier.default_action, first, rules))
        if profiles is not None:
            blocks.append(compiler.profiles(profiles, direction))
        return tuple(blocks)


class _Ends:
    """Per probe: source and destination endpoint positions, and the flow's IP version (the
    source's address, else the destination's; 0 for none), worked out when a rule asks."""

    def __init__(self, src: Ints, dst: Ints, version: npt.NDArray[np.int8]) -> None:
        self.src, self.dst, self._version = src, dst, version

    @cached_property
    def family(self) -> Ints:
        at_src, at_dst = self._version[self.src], self._version[self.dst]
        family: Ints = np.where(at_src != 0, at_src, at_dst).astype(np.int64)
        return family


#: A column no rule of the batch reads (`Segment.own`, `Segment.family`).
_UNUSED: Ints = np.zeros(0, dtype=np.int64)


def _group(keys: Ints, count: int) -> Ints:
    """Positions that sort `keys` (0 <= key < count); stable, so a radix sort on small keys."""
    small = np.uint16 if count <= 1 << 16 else np.int64
    order: Ints = np.argsort(keys.astype(small), kind="stable")
    return order


def _columns(outcomes: list[Outcome], out: Ints) -> DirectionColumns:
    allowed = np.array([o.allowed for o in outcomes], dtype=np.bool_)
    reason = np.array([REASON_CODES[o.reason] for o in outcomes], dtype=np.int8)
    policy = np.array([o.policy for o in outcomes], dtype=np.int32)
    rule = np.array([o.rule for o in outcomes], dtype=np.int32)
    return DirectionColumns(allowed[out], reason[out], policy[out], rule[out])


def evaluate(cluster: ClusterState, batch: ProbeBatch) -> BatchResult:
    """Decide every probe of `batch` in both directions (see `VectorEngine` to reuse the
    per-cluster work across batches)."""
    return VectorEngine(cluster).evaluate(batch)

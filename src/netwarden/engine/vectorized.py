"""The vectorized engine: `decide` for a whole batch of probes at once, with numpy.

Same answers as `PolicyEngine.decide` (the reference), computed on sets (DESIGN.md,
"Performance approach"):

1. per policy, the endpoints it selects; per rule, the endpoints that are its peer
   (`EndpointVectors`, one evaluation per distinct label set or namespace);
2. per direction, endpoints fall into classes by the set of policies selecting them, and each
   class has one program: its tiers in order, with the rules of its selecting policies;
3. probes are sorted by the class of their subject (source for egress, destination for
   ingress) and each class runs its program once over its probes, as index arrays that shrink
   as rules decide (`vector_program.run`);
4. whatever the vectors do not express (`vector_support`) is decided probe by probe by the
   reference itself, so the answers stay exact.

    batch = resolve_probes(cluster, [Probe("shop/frontend-0", "shop/db-0", 5432, 6)])
    evaluate(cluster, batch).allowed  # array([False])
"""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

import numpy as np

from netwarden.engine.batch import REASON_CODES, BatchResult, DirectionColumns, ProbeBatch
from netwarden.engine.decide import PolicyEngine, staged_policy_set
from netwarden.engine.endpoint_vectors import EndpointVectors, Ints, Mask
from netwarden.engine.vector_program import (
    CompiledRule,
    Compiler,
    Outcome,
    Segment,
    TierBlock,
    port_atoms,
    run,
)
from netwarden.engine.vector_support import KINDS, policy_supported
from netwarden.engine.verdict import Reason
from netwarden.model import Action, ClusterState, Direction, Flow, Policy, Tier


class VectorEngine:
    """Evaluates batches for one cluster; the evaluation order is computed once."""

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
        self._vectors: tuple[tuple[object, ...], EndpointVectors] | None = None
        self._profile_index = {p.name: i for i, p in enumerate(cluster.profiles)}

    def vectors(self, batch: ProbeBatch) -> EndpointVectors:
        """Endpoint vectors, reused while batches share their endpoints tuple."""
        if self._vectors is None or self._vectors[0] is not batch.endpoints:
            self._vectors = (batch.endpoints, EndpointVectors(self.cluster, batch.endpoints))
        return self._vectors[1]

    @cached_property
    def staged_engine(self) -> VectorEngine | None:
        """The same engine over the staged policy set, when the cluster has staged policies."""
        if not self.cluster.has_staged:
            return None
        staged = replace(self.cluster, policies=staged_policy_set(self.cluster.policies))
        return VectorEngine(staged)

    def evaluate(self, batch: ProbeBatch) -> BatchResult:
        vectors = self.vectors(batch)
        compiler = Compiler(vectors, port_atoms(batch), self.index)
        src, dst = batch.src.astype(np.int64), batch.dst.astype(np.int64)
        egress = self._direction(Direction.EGRESS, compiler, src, dst, batch)
        ingress = self._direction(Direction.INGRESS, compiler, dst, src, batch)
        staged = self.staged_engine.evaluate(batch) if self.staged_engine is not None else None
        profiles = self.cluster.profiles
        return BatchResult(
            batch, self.policies, self.tier_of_policy, egress, ingress, profiles, staged
        )

    def _direction(
        self,
        direction: Direction,
        compiler: Compiler,
        subject: Ints,
        other: Ints,
        batch: ProbeBatch,
    ) -> DirectionColumns:
        vectors = compiler.vectors
        columns = [(t, p) for t, p in self._evaluated if p.rules(direction) is not None]
        class_of, members = _classes(vectors, [p for _, p in columns])
        supported = [self._supported[direction][id(p)] for _, p in columns]
        by_reference = np.array([not all(supported[j] for j in m) for m in members], np.bool_)
        out = np.zeros(subject.shape[0], dtype=np.int64)  # NO_TIER_DECIDED
        out[~vectors.is_pod[subject]] = 1  # NOT_A_SUBJECT
        probe_class = class_of[subject]
        order = _group(probe_class, len(members))
        bounds = np.concatenate(([0], np.cumsum(np.bincount(probe_class, minlength=len(members)))))
        other_sorted, atom_sorted = other[order], compiler.atoms.of_probe[order]
        for c, chosen in enumerate(members):
            start, end = int(bounds[c]), int(bounds[c + 1])
            if start == end or chosen.shape[0] == 0 or by_reference[c]:
                continue
            program = self._program(direction, compiler, [columns[j] for j in chosen])
            span = slice(start, end)
            segment = Segment(order[span], other_sorted[span], atom_sorted[span], batch)
            run(vectors, program, segment, out)
        known = self._known_ends(vectors, batch)
        by_reference_probes = by_reference[probe_class] | ~known[subject] | ~known[other]
        self._decide_each(direction, compiler, batch, np.flatnonzero(by_reference_probes), out)
        return _columns(compiler.outcomes, out)

    def _known_ends(self, vectors: EndpointVectors, batch: ProbeBatch) -> Mask:
        """Endpoints the vectors decide for, as either end: of a kind they know, and their
        own subject (a hostNetwork pod at a host endpoint's address is governed by it)."""
        subject_of = self._reference.subject_of
        governed = [subject_of(e, e.ips[0] if e.ips else None) is e for e in batch.endpoints]
        return vectors.of_kind(KINDS) & np.array(governed, dtype=np.bool_)

    def _decide_each(
        self, direction: Direction, compiler: Compiler, batch: ProbeBatch, probes: Ints, out: Ints
    ) -> None:
        """The reference engine, one probe at a time, for what the vectors cannot express."""
        engine = self._reference
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
        self, direction: Direction, compiler: Compiler, chosen: list[tuple[Tier, Policy]]
    ) -> tuple[TierBlock, ...]:
        """The class's tiers in order, each with its selecting policies' rules in order; a
        tier's default names its first selecting policy (so results can name the tier)."""
        blocks: list[TierBlock] = []
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
        return tuple(blocks)


def _group(keys: Ints, count: int) -> Ints:
    """Positions that sort `keys` (0 <= key < count); stable, so a radix sort on small keys."""
    small = np.uint16 if count <= 1 << 16 else np.int64
    order: Ints = np.argsort(keys.astype(small), kind="stable")
    return order


def _classes(vectors: EndpointVectors, policies: list[Policy]) -> tuple[Ints, list[Ints]]:
    """Endpoint -> class (by the set of `policies` selecting it) and, per class, the
    positions of its selecting policies (none for the class of endpoints that are not pods)."""
    if not policies:
        return np.zeros(vectors.size, dtype=np.int64), [np.zeros(0, dtype=np.int64)]
    selected = np.zeros((vectors.size, len(policies)), dtype=np.bool_)
    for j, policy in enumerate(policies):
        selected[:, j] = vectors.selects(policy.subject)
    packed = np.ascontiguousarray(np.packbits(selected, axis=1))
    rows = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, class_of = np.unique(rows, return_index=True, return_inverse=True)
    members = [np.flatnonzero(selected[i]) for i in first]
    return class_of.reshape(-1).astype(np.int64), members


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

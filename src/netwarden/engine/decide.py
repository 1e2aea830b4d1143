"""Decide one flow, with the trace that explains it.

This is the reference semantics (DESIGN.md, "Semantics"): tiers by order, policies in a tier
by order then name, rules in order; Allow and Deny are final, Log goes on, Pass leaves the
tier; a tier that selected the endpoint and decided nothing applies its default action; after
the last tier the profile allows. The vectorized engine must agree with this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

from netwarden.engine.matching import rule_matches, selects
from netwarden.engine.verdict import ACTION_OUTCOME, Decision, Reason, RuleStep, TierStep, Verdict
from netwarden.model import (
    Action,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    Flow,
    IPAddress,
    Policy,
    Tier,
)


def policy_order(policy: Policy) -> tuple[float, str]:
    """Within a tier: by order (none last), then by name."""
    return (policy.order if policy.order is not None else float("inf"), policy.key)


class PolicyEngine:
    """Decides flows for one cluster; policy ordering is computed once."""

    def __init__(self, cluster: ClusterState) -> None:
        self.cluster = cluster

    @cached_property
    def tiers(self) -> tuple[tuple[Tier, tuple[Policy, ...]], ...]:
        """Tiers by (order, name), each with its policies in evaluation order."""
        by_tier: dict[str, list[Policy]] = {}
        for policy in self.cluster.policies:
            by_tier.setdefault(policy.tier, []).append(policy)
        ordered = sorted(self.cluster.tiers, key=lambda tier: (tier.order, tier.name))
        return tuple((t, tuple(sorted(by_tier.get(t.name, []), key=policy_order))) for t in ordered)

    def decide(self, flow: Flow) -> Verdict:
        egress = self.decide_direction(flow, Direction.EGRESS)
        ingress = self.decide_direction(flow, Direction.INGRESS)
        return Verdict(flow, egress, ingress)

    def selecting(self, endpoint: Endpoint, direction: Direction) -> Iterator[tuple[Tier, list[Policy]]]:
        """Each tier with the policies that select `endpoint` for `direction` (maybe none)."""
        for tier, policies in self.tiers:
            chosen = [
                p for p in policies
                if p.rules(direction) is not None and selects(p.subject, endpoint, self.cluster)
            ]
            yield tier, chosen

    def decide_direction(self, flow: Flow, direction: Direction) -> Decision:
        if direction is Direction.EGRESS:
            subject, peer, peer_ip = flow.src, flow.dst, flow.dst_ip
        else:
            subject, peer, peer_ip = flow.dst, flow.src, flow.src_ip
        if subject.kind is not EndpointKind.POD:
            return Decision(direction, subject, True, Reason.NOT_A_SUBJECT)
        steps: list[TierStep] = []
        for tier, policies in self.selecting(subject, direction):
            if not policies:
                continue
            decision, step = self._walk_tier(tier, policies, direction, flow, peer, peer_ip)
            steps.append(step)
            if decision is not None:
                return Decision(direction, subject, decision[0], decision[1], tier.name,
                                decision[2], decision[3], tuple(steps))
        return Decision(direction, subject, True, Reason.NO_TIER_DECIDED, steps=tuple(steps))

    def _walk_tier(
        self, tier: Tier, policies: list[Policy], direction: Direction, flow: Flow,
        peer: Endpoint, peer_ip: IPAddress | None,
    ) -> tuple[tuple[bool, Reason, Policy | None, int | None] | None, TierStep]:
        """Run one tier; returns (allowed, reason, policy, rule index) if it decided."""
        looked: list[RuleStep] = []
        for policy in policies:
            for index, rule in enumerate(policy.rules(direction) or ()):
                matched, why_not = rule_matches(rule, peer, peer_ip, flow, self.cluster)
                looked.append(RuleStep(policy, index, rule, matched, why_not))
                if not matched or rule.action is Action.LOG:
                    continue
                step = TierStep(tier.name, tuple(policies), tuple(looked), ACTION_OUTCOME[rule.action])
                if rule.action is Action.PASS:
                    return None, step
                return (rule.action is Action.ALLOW, Reason.RULE, policy, index), step
        if tier.default_action is Action.PASS:
            return None, TierStep(tier.name, tuple(policies), tuple(looked), "default-pass")
        allowed = tier.default_action is Action.ALLOW
        outcome = "default-allow" if allowed else "default-deny"
        step = TierStep(tier.name, tuple(policies), tuple(looked), outcome)
        return (allowed, Reason.TIER_DEFAULT, None, None), step


def decide(cluster: ClusterState, flow: Flow) -> Verdict:
    """Decide one flow.

        >>> from netwarden.dialects import load_paths
        >>> cluster = load_paths(["examples/shop"]).cluster
        >>> src, dst = cluster.endpoint("shop/frontend-0"), cluster.endpoint("shop/db-0")
        >>> decide(cluster, Flow(src, dst, 5432, 6)).allowed
        False
    """
    return PolicyEngine(cluster).decide(flow)

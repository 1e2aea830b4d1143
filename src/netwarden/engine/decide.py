"""Decide one flow, with the trace that explains it.

This is the reference semantics (DESIGN.md, "Semantics"): tiers by order, policies in a tier
by order then name, rules in order; Allow and Deny are final, Log goes on, Pass leaves the
tier; a tier that selected the endpoint and decided nothing applies its default action. After
the last tier a pod is allowed (its namespace profile), while a host endpoint runs its
profiles' rules and is denied when none allows. Staged policies change no verdict: the verdict
carries, beside it, what the staged set would decide. The vectorized engine must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
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
    StagedAction,
    Tier,
)
from netwarden.model.ports import TCP, UDP

# Felix's default failsafe ports (FailsafeInboundHostPorts / FailsafeOutboundHostPorts): host
# endpoint traffic to these is allowed before any policy, so a bad policy cannot lock out SSH,
# BGP, etcd or the API server. https://docs.tigera.io/calico/latest/reference/host-endpoints/failsafe
FAILSAFE_INBOUND = frozenset(
    {
        (TCP, 22),
        (UDP, 68),
        (TCP, 179),
        (TCP, 2379),
        (TCP, 2380),
        (TCP, 5473),
        (TCP, 6443),
        (TCP, 6666),
        (TCP, 6667),
    }
)
FAILSAFE_OUTBOUND = frozenset(
    {
        (UDP, 53),
        (UDP, 67),
        (TCP, 179),
        (TCP, 2379),
        (TCP, 2380),
        (TCP, 5473),
        (TCP, 6443),
        (TCP, 6666),
        (TCP, 6667),
    }
)


def policy_order(policy: Policy) -> tuple[float, str]:
    """Within a tier: by order (none last), then by name as Calico names it, so a Kubernetes
    policy (`ns/knp.default.web`) sorts among Calico policies of equal order as it does there."""
    name = policy.calico_name or policy.name
    key = f"{policy.namespace}/{name}" if policy.namespace else name
    return (policy.order if policy.order is not None else float("inf"), key)


def staged_policy_set(policies: tuple[Policy, ...]) -> tuple[Policy, ...]:
    """The policies as they would be with every staged change made: a staged Set adds or
    replaces the policy of the same kind and key, a staged Delete removes it."""
    active = {(p.kind, p.key): p for p in policies if p.staged is None}
    for policy in policies:
        if policy.staged is StagedAction.SET:
            active[(policy.kind, policy.key)] = replace(policy, staged=None)
        elif policy.staged is StagedAction.DELETE:
            active.pop((policy.kind, policy.key), None)
    return tuple(active.values())


class PolicyEngine:
    """Decides flows for one cluster; policy ordering is computed once. With `staged`, it
    decides with the staged policy set instead of the enforced one."""

    def __init__(self, cluster: ClusterState, staged: bool = False) -> None:
        self.cluster = cluster
        self.staged = staged

    @cached_property
    def policies(self) -> tuple[Policy, ...]:
        if self.staged:
            return staged_policy_set(self.cluster.policies)
        return self.cluster.enforced_policies

    @cached_property
    def tiers(self) -> tuple[tuple[Tier, tuple[Policy, ...]], ...]:
        """Tiers by (order, name), each with its policies in evaluation order."""
        by_tier: dict[str, list[Policy]] = {}
        for policy in self.policies:
            by_tier.setdefault(policy.tier, []).append(policy)
        ordered = sorted(self.cluster.tiers, key=lambda tier: (tier.order, tier.name))
        return tuple((t, tuple(sorted(by_tier.get(t.name, []), key=policy_order))) for t in ordered)

    @cached_property
    def host_endpoints_by_ip(self) -> dict[IPAddress, Endpoint]:
        found: dict[IPAddress, Endpoint] = {}
        for endpoint in self.cluster.endpoints:
            if endpoint.kind is EndpointKind.HOST_ENDPOINT:
                for ip in endpoint.ips:
                    found.setdefault(ip, endpoint)
        return found

    @cached_property
    def staged_engine(self) -> PolicyEngine | None:
        if self.staged or not self.cluster.has_staged:
            return None
        return PolicyEngine(self.cluster, staged=True)

    def decide(self, flow: Flow) -> Verdict:
        egress = self.decide_direction(flow, Direction.EGRESS)
        ingress = self.decide_direction(flow, Direction.INGRESS)
        staged = self.staged_engine.decide(flow) if self.staged_engine is not None else None
        return Verdict(flow, egress, ingress, staged)

    def selecting(
        self, endpoint: Endpoint, direction: Direction
    ) -> Iterator[tuple[Tier, list[Policy]]]:
        """Each tier with the policies that select `endpoint` for `direction` (maybe none)."""
        for tier, policies in self.tiers:
            chosen = [
                p
                for p in policies
                if p.rules(direction) is not None and selects(p.subject, endpoint, self.cluster)
            ]
            yield tier, chosen

    def subject_of(self, endpoint: Endpoint, ip: IPAddress | None) -> Endpoint:
        """The endpoint policy applies to: a hostNetwork pod or node address is governed by the
        host endpoint that holds that address, if one is defined."""
        if endpoint.kind is EndpointKind.HOST and ip is not None:
            return self.host_endpoints_by_ip.get(ip, endpoint)
        return endpoint

    def decide_direction(self, flow: Flow, direction: Direction) -> Decision:
        if direction is Direction.EGRESS:
            subject = self.subject_of(flow.src, flow.src_ip)
        else:
            subject = self.subject_of(flow.dst, flow.dst_ip)
        if subject.kind not in (EndpointKind.POD, EndpointKind.HOST_ENDPOINT):
            return Decision(direction, subject, True, Reason.NOT_A_SUBJECT)
        if subject.kind is EndpointKind.HOST_ENDPOINT:
            failsafe = FAILSAFE_INBOUND if direction is Direction.INGRESS else FAILSAFE_OUTBOUND
            if (flow.protocol, flow.port) in failsafe:
                return Decision(direction, subject, True, Reason.FAILSAFE)
        steps: list[TierStep] = []
        for tier, policies in self.selecting(subject, direction):
            if not policies:
                continue
            decision, step = self._walk_tier(tier, policies, direction, flow)
            steps.append(step)
            if decision is not None:
                allowed, reason, policy, index = decision
                return Decision(
                    direction, subject, allowed, reason, tier.name, policy, index, tuple(steps)
                )
        if subject.kind is EndpointKind.HOST_ENDPOINT:
            return self._profiles(subject, direction, flow, tuple(steps))
        return Decision(direction, subject, True, Reason.NO_TIER_DECIDED, steps=tuple(steps))

    def _walk_tier(
        self, tier: Tier, policies: list[Policy], direction: Direction, flow: Flow
    ) -> tuple[tuple[bool, Reason, Policy | None, int | None] | None, TierStep]:
        """Run one tier; returns (allowed, reason, policy, rule index) if it decided."""
        looked: list[RuleStep] = []
        ingress = direction is Direction.INGRESS
        for policy in policies:
            for index, rule in enumerate(policy.rules(direction) or ()):
                matched, why_not = rule_matches(rule, flow, ingress, self.cluster)
                looked.append(RuleStep(policy, index, rule, matched, why_not))
                if not matched or rule.action is Action.LOG:
                    continue
                outcome = ACTION_OUTCOME[rule.action]
                step = TierStep(tier.name, tuple(policies), tuple(looked), outcome)
                if rule.action is Action.PASS:
                    return None, step
                return (rule.action is Action.ALLOW, Reason.RULE, policy, index), step
        if tier.default_action is Action.PASS:
            return None, TierStep(tier.name, tuple(policies), tuple(looked), "default-pass")
        allowed = tier.default_action is Action.ALLOW
        outcome = "default-allow" if allowed else "default-deny"
        step = TierStep(tier.name, tuple(policies), tuple(looked), outcome)
        return (allowed, Reason.TIER_DEFAULT, None, None), step

    def _profiles(
        self, subject: Endpoint, direction: Direction, flow: Flow, steps: tuple[TierStep, ...]
    ) -> Decision:
        """A host endpoint's profiles, in the order it lists them; nothing allowing denies."""
        ingress = direction is Direction.INGRESS
        for name in subject.profiles:
            profile = self.cluster.profiles_by_name.get(name)
            for index, rule in enumerate(profile.rules(direction) if profile else ()):
                if rule.action in (Action.LOG, Action.PASS):
                    continue
                if rule_matches(rule, flow, ingress, self.cluster)[0]:
                    allowed = rule.action is Action.ALLOW
                    return Decision(
                        direction,
                        subject,
                        allowed,
                        Reason.PROFILE,
                        rule_index=index,
                        steps=steps,
                        profile=profile,
                    )
        return Decision(direction, subject, False, Reason.NO_PROFILE_ALLOWED, steps=steps)


def decide(cluster: ClusterState, flow: Flow) -> Verdict:
    """Decide one flow.

    >>> from netwarden.dialects import load_paths
    >>> cluster = load_paths(["examples/shop"]).cluster
    >>> src, dst = cluster.endpoint("shop/frontend-0"), cluster.endpoint("shop/db-0")
    >>> decide(cluster, Flow(src, dst, 5432, 6)).allowed
    False
    """
    return PolicyEngine(cluster).decide(flow)

"""What the engine answers: a verdict per flow, a decision per direction, and the trace."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from netwarden.model import Action, Direction, Endpoint, Flow, Policy, Profile, Rule


class Reason(Enum):
    RULE = "rule"  # a rule allowed or denied
    TIER_DEFAULT = "tier-default"  # a tier selected the endpoint and nothing in it decided
    NO_TIER_DECIDED = "no-tier-decided"  # every tier skipped or passed: the profile allows
    NOT_A_SUBJECT = "not-a-subject"  # host or external endpoint: no policy can select it
    FAILSAFE = "failsafe"  # a host endpoint's failsafe port: allowed before any policy
    PROFILE = "profile"  # a host endpoint's profile rule allowed or denied
    NO_PROFILE_ALLOWED = "host-endpoint-default-deny"  # a host endpoint nothing allowed


@dataclass(frozen=True)
class RuleStep:
    """One rule looked at: whether it matched and, if not, why."""

    policy: Policy
    index: int
    rule: Rule
    matched: bool
    why_not: str = ""


@dataclass(frozen=True)
class TierStep:
    """One tier consulted: the policies that selected the endpoint and how the tier ended."""

    tier: str
    policies: tuple[Policy, ...]
    rules: tuple[RuleStep, ...]
    outcome: str  # allow | deny | pass | default-deny | default-pass


@dataclass(frozen=True)
class Decision:
    """The verdict of one direction: egress at the source or ingress at the destination."""

    direction: Direction
    endpoint: Endpoint
    allowed: bool
    reason: Reason
    tier: str | None = None
    policy: Policy | None = None
    rule_index: int | None = None
    steps: tuple[TierStep, ...] = ()
    profile: Profile | None = None  # with Reason.PROFILE: the profile whose rule decided

    @property
    def rule(self) -> Rule | None:
        if self.rule_index is None:
            return None
        owner = self.policy or self.profile
        rules = owner.rules(self.direction) if owner is not None else None
        return rules[self.rule_index] if rules else None

    @property
    def deciding(self) -> str:
        """`tier/policy[rule]`, `tier (default deny)`, or the reason, for reports."""
        if self.reason is Reason.RULE and self.policy is not None:
            rule = self.rule
            label = rule.name if rule is not None and rule.name else str(self.rule_index)
            return f"{self.tier}/{self.policy.key}[{label}]"
        if self.reason is Reason.TIER_DEFAULT:
            return f"{self.tier} (default {'allow' if self.allowed else 'deny'})"
        if self.reason is Reason.PROFILE and self.profile is not None:
            return f"profile/{self.profile.name}[{self.rule_index}]"
        return str(self.reason.value)


@dataclass(frozen=True)
class Verdict:
    """A flow is allowed when the source's egress and the destination's ingress both allow."""

    flow: Flow
    egress: Decision
    ingress: Decision
    staged: Verdict | None = None  # what the staged policy set would decide, when there is one

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


ACTION_OUTCOME = {Action.ALLOW: "allow", Action.DENY: "deny", Action.PASS: "pass"}

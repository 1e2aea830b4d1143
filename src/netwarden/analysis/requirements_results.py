"""What a requirement check returns: the result, its counter-example flow with the reference
engine's verdict, and the policies, rules and places responsible for that verdict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from netwarden.engine import Decision, Reason, Verdict
from netwarden.model import PORTED_PROTOCOLS, Flow, Location, Requirement, protocol_name


@dataclass(frozen=True)
class CounterExample:
    """A flow that breaks a requirement and the reference engine's verdict on it."""

    verdict: Verdict

    @property
    def flow(self) -> Flow:
        return self.verdict.flow

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed


@dataclass(frozen=True)
class Responsible:
    """A place in the policies that took part in a counter-example's verdict."""

    location: Location | None
    text: str


@dataclass(frozen=True)
class RequirementResult:
    """Whether `requirement` holds; when it does not, `message` says why and
    `counterexample` shows it. `notes` are things worth knowing either way (an empty set)."""

    requirement: Requirement
    holds: bool
    message: str
    counterexample: CounterExample | None = None
    notes: tuple[str, ...] = ()


def responsible(decision: Decision) -> Iterator[Responsible]:
    """The rule, policies or profile behind one direction of a verdict, with their places."""
    outcome = "allowed" if decision.allowed else "denied"
    where = f"{decision.direction.value} {outcome}"
    if decision.reason is Reason.RULE and decision.policy is not None:
        rule = decision.rule
        place = rule.source if rule is not None and rule.source else decision.policy.source
        yield Responsible(place, f"{where} by {decision.deciding}")
    elif decision.reason is Reason.TIER_DEFAULT and decision.steps:
        default = "allow" if decision.allowed else "deny"
        for policy in decision.steps[-1].policies:
            text = f"{where} by tier {decision.tier}'s default {default}: "
            text += f"{policy.kind} {policy.key} selects {decision.endpoint.key}, no rule matches"
            yield Responsible(policy.source, text)
    elif decision.reason is Reason.PROFILE and decision.profile is not None:
        yield Responsible(decision.profile.source, f"{where} by {decision.deciding}")
    else:
        yield Responsible(None, f"{where}: {_REASONS.get(decision.reason, decision.deciding)}")


_REASONS = {
    Reason.NO_TIER_DECIDED: "no policy decides it (nothing isolates the endpoint)",
    Reason.NOT_A_SUBJECT: "no policy applies outside the cluster",
    Reason.FAILSAFE: "a host endpoint failsafe port",
    Reason.NO_PROFILE_ALLOWED: "no profile of the host endpoint allows it",
}


def describe_endpoint(flow: Flow, source: bool) -> str:
    """`shop/db-0 (10.244.2.30)`, or the address alone outside the cluster."""
    endpoint, ip = (flow.src, flow.src_ip) if source else (flow.dst, flow.dst_ip)
    if ip is None or endpoint.key == str(ip):
        return endpoint.key
    return f"{endpoint.key} ({ip})"


def describe_port(flow: Flow) -> str:
    """`5432/TCP`, or the protocol alone for portless ones."""
    name = protocol_name(flow.protocol)
    return f"{flow.port}/{name}" if flow.protocol in PORTED_PROTOCOLS else name


def describe(example: CounterExample) -> str:
    """One line: the flow, the verdict, and what decided each direction."""
    flow, verdict = example.flow, example.verdict
    outcome = "ALLOWED" if verdict.allowed else "DENIED"
    return (
        f"{describe_endpoint(flow, True)} -> {describe_endpoint(flow, False)} "
        f"{describe_port(flow)} is {outcome} (egress: {verdict.egress.deciding}; "
        f"ingress: {verdict.ingress.deciding})"
    )

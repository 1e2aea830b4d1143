"""`netwarden explain`: why one flow is allowed or denied, tier by tier, rule by rule.

The explanation is built once as data (`Explanation`); `-o json` prints that data and the text
output renders it, so both always say the same thing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from ipaddress import ip_address
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from netwarden.cli.common import (
    FilesOption,
    TextOrJson,
    load_cluster,
    stdout_console,
    unknown_endpoint_message,
)
from netwarden.cli.evaluate import port_protocol, verdict_text
from netwarden.dialects.probes import parse_probe
from netwarden.engine import Decision, PolicyEngine, Reason, TierStep, Verdict
from netwarden.errors import UsageError
from netwarden.model import (
    Action,
    Direction,
    EndpointKind,
    Flow,
    IPAddress,
    Policy,
    parse_protocol,
    protocol_name,
)

#: Policies listed under "why other policies did not apply" before "and N more".
SHOWN_UNAPPLIED = 10


@dataclass(frozen=True)
class RuleTrace:
    """A rule looked at: did it match the flow, why not, and did it decide its tier."""

    policy: str
    kind: str
    index: int
    name: str
    action: str
    matched: bool
    why_not: str
    source: str | None
    decided: bool


@dataclass(frozen=True)
class TierTrace:
    """A tier consulted: the policies in it that select the endpoint, the rules looked at,
    and how the tier ended (allow, deny, pass, default-deny, default-pass, ...)."""

    tier: str
    policies: tuple[str, ...]
    rules: tuple[RuleTrace, ...]
    outcome: str


@dataclass(frozen=True)
class Unapplied:
    """A policy with rules for the direction that took no part in the decision, and why."""

    policy: str
    kind: str
    tier: str
    why: str


@dataclass(frozen=True)
class DirectionTrace:
    direction: str
    endpoint: str
    endpoint_kind: str
    allowed: bool
    reason: str
    decided_by: str
    summary: str
    selected: bool  # some policy selects the endpoint for this direction
    tier: str | None
    policy: str | None
    policy_kind: str | None
    calico_name: str | None  # the policy as Calico names it, e.g. shop/knp.default.web
    rule: str | None
    rule_index: int | None
    rule_source: str | None
    tiers: tuple[TierTrace, ...]
    not_applied: tuple[Unapplied, ...]


@dataclass(frozen=True)
class StagedTrace:
    """What the staged policy set would decide (it changes no verdict)."""

    allowed: bool
    verdict: str
    egress: str
    ingress: str


@dataclass(frozen=True)
class Explanation:
    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    verdict: str  # ALLOWED | DENIED
    egress: DirectionTrace
    ingress: DirectionTrace
    staged: StagedTrace | None = None


def explain(
    files: FilesOption,
    src: Annotated[str, typer.Argument(help="namespace/pod or an IP address.", show_default=False)],
    dst: Annotated[str, typer.Argument(help="namespace/pod or an IP address.", show_default=False)],
    port_protocol_text: Annotated[
        str,
        typer.Argument(
            metavar="PORT/PROTO", help="e.g. 443/TCP, 53/UDP, ICMP.", show_default=False
        ),
    ],
    output: Annotated[TextOrJson, typer.Option("-o", "--output", help="Output format.")] = (
        TextOrJson.TEXT
    ),
) -> None:
    """Explain the verdict of one flow: each tier, policy and rule consulted, in order."""
    probe = parse_probe(src, dst, port_protocol_text)
    cluster = load_cluster(files)
    ends = []
    for name in (probe.src, probe.dst):
        endpoint = cluster.endpoint(name)
        if endpoint is None:
            raise UsageError(unknown_endpoint_message(cluster, name))
        ends.append(endpoint)
    # An address written by the user picks that address of a dual-stack pod.
    src_ip, dst_ip = _address(probe.src), _address(probe.dst)
    engine = PolicyEngine(cluster)
    verdict = engine.decide(Flow(ends[0], ends[1], probe.port, probe.protocol, src_ip, dst_ip))
    explanation = explain_verdict(engine, verdict, probe.src, probe.dst)
    if output is TextOrJson.JSON:
        sys.stdout.write(json.dumps(asdict(explanation), indent=2) + "\n")
    else:
        render(explanation, stdout_console(soft_wrap=True))


def _address(name: str) -> IPAddress | None:
    try:
        return ip_address(name)
    except ValueError:
        return None


def explain_verdict(engine: PolicyEngine, verdict: Verdict, src: str, dst: str) -> Explanation:
    """The verdict as data; `src` / `dst` are the names as the user wrote them."""
    flow = verdict.flow
    return Explanation(
        src=src,
        dst=dst,
        port=flow.port,
        protocol=protocol_name(flow.protocol),
        allowed=verdict.allowed,
        verdict="ALLOWED" if verdict.allowed else "DENIED",
        egress=_direction(engine, verdict.egress),
        ingress=_direction(engine, verdict.ingress),
        staged=_staged(verdict.staged),
    )


def _staged(verdict: Verdict | None) -> StagedTrace | None:
    if verdict is None:
        return None
    return StagedTrace(
        verdict.allowed,
        "ALLOWED" if verdict.allowed else "DENIED",
        verdict.egress.deciding,
        verdict.ingress.deciding,
    )


def calico_name(policy: Policy) -> str:
    """`namespace/name` as Calico shows a policy (`knp.default.web` for a Kubernetes one)."""
    name = policy.calico_name or policy.name
    return f"{policy.namespace}/{name}" if policy.namespace else name


def _direction(engine: PolicyEngine, decision: Decision) -> DirectionTrace:
    rule = decision.rule
    policy = decision.policy
    return DirectionTrace(
        direction=decision.direction.value,
        endpoint=decision.endpoint.key,
        endpoint_kind=decision.endpoint.kind.value,
        allowed=decision.allowed,
        reason=decision.reason.value,
        decided_by=decision.deciding,
        summary=_summary(decision),
        selected=bool(decision.steps),
        tier=decision.tier,
        policy=policy.key if policy is not None else None,
        policy_kind=policy.kind if policy is not None else None,
        calico_name=calico_name(policy) if policy is not None else None,
        rule=_rule_label(rule.name, decision.rule_index) if rule is not None else None,
        rule_index=decision.rule_index,
        rule_source=str(rule.source) if rule is not None and rule.source else None,
        tiers=tuple(_tier(step) for step in decision.steps),
        not_applied=_not_applied(engine, decision),
    )


def _rule_label(name: str, index: int | None) -> str:
    return name or str(index)


def _tier(step: TierStep) -> TierTrace:
    decided_by_rule = not step.outcome.startswith("default-")
    rules = tuple(
        RuleTrace(
            policy=looked.policy.key,
            kind=looked.policy.kind,
            index=looked.index,
            name=_rule_label(looked.rule.name, looked.index),
            action=looked.rule.action.value,
            matched=looked.matched,
            why_not=looked.why_not,
            source=str(looked.rule.source) if looked.rule.source else None,
            decided=decided_by_rule and position == len(step.rules) - 1,
        )
        for position, looked in enumerate(step.rules)
    )
    return TierTrace(step.tier, tuple(p.key for p in step.policies), rules, step.outcome)


def _not_applied(engine: PolicyEngine, decision: Decision) -> tuple[Unapplied, ...]:
    """Policies with rules for the direction that took no part, in evaluation order: those
    whose subject does not select the endpoint, and those of tiers after the deciding one.
    Host and external endpoints are selected by no pod policy: nothing to list."""
    endpoint, direction = decision.endpoint, decision.direction
    if endpoint.kind not in (EndpointKind.POD, EndpointKind.HOST_ENDPOINT):
        return ()
    found = []
    consulted = {step.tier for step in decision.steps}
    for (tier, policies), (_, chosen) in zip(
        engine.tiers, engine.selecting(endpoint, direction), strict=True
    ):
        for policy in policies:
            if policy.rules(direction) is None:
                continue
            if policy in chosen:
                if tier.name not in consulted and decision.tier is not None:
                    why = f"not reached: tier {decision.tier} decided first"
                    found.append(Unapplied(policy.key, policy.kind, tier.name, why))
                continue
            why = f"subject does not select {endpoint.key}"
            if policy.subject.namespace not in (None, endpoint.namespace):
                why += f" (it applies in namespace {policy.subject.namespace} only)"
            found.append(Unapplied(policy.key, policy.kind, tier.name, why))
    return tuple(found)


def _summary(decision: Decision) -> str:
    """One sentence: who decided this direction, or why nothing had to."""
    endpoint, direction = decision.endpoint, decision.direction.value
    if decision.reason is Reason.NOT_A_SUBJECT:
        what = (
            "an external address" if endpoint.kind is EndpointKind.EXTERNAL else "a host endpoint"
        )
        return (
            f"{endpoint.key} is {what}: no policy selects it, so its {direction} is not restricted"
        )
    if decision.reason is Reason.NO_TIER_DECIDED and not decision.steps:
        return f"not isolated: no policy selects {endpoint.key} for {direction}"
    if decision.reason is Reason.NO_TIER_DECIDED:
        return "no tier decided (each tier that selects it passed): allowed by the profile"
    if decision.reason is Reason.FAILSAFE:
        return f"allowed: a failsafe port of host endpoint {endpoint.key}, before any policy"
    if decision.reason is Reason.NO_PROFILE_ALLOWED:
        return (
            f"denied: host endpoint {endpoint.key} has no policy that decided and no profile "
            f"rule that allows (a host endpoint's default is deny)"
        )
    verb = "allowed" if decision.allowed else "denied"
    if decision.reason is Reason.PROFILE and decision.profile is not None:
        return f"{verb} by rule {decision.rule_index} of profile {decision.profile.name}"
    if decision.reason is Reason.RULE and decision.policy is not None:
        rule = decision.rule
        label = _rule_label(rule.name if rule else "", decision.rule_index)
        where = f" at {rule.source}" if rule is not None and rule.source else ""
        if rule is not None and rule.name:
            label = f"{label} (index {decision.rule_index})"
        return (
            f"{verb} by rule {label} of {decision.policy.kind} "
            f"{calico_name(decision.policy)} in tier {decision.tier}{where}"
        )
    count = len(decision.steps[-1].policies) if decision.steps else 0
    return (
        f"{verb} by the default action of tier {decision.tier}: {count} "
        f"polic{'y selects' if count == 1 else 'ies select'} {endpoint.key} for {direction} "
        f"and no rule of {'it' if count == 1 else 'theirs'} matched"
    )


_OUTCOMES = {
    "allow": "allow (a rule allowed)",
    "deny": "deny (a rule denied)",
    "pass": "pass (a rule passed to the next tier)",
    "default-pass": "pass (no rule matched; the tier's default action)",
    "default-deny": "deny (no rule matched; the tier's default action)",
    "default-allow": "allow (no rule matched; the tier's default action)",
}


def render(explanation: Explanation, console: Console) -> None:
    """The explanation for people: verdict first, then each direction in detail."""
    port = port_protocol(explanation.port, _protocol_number(explanation.protocol))
    console.print(
        Text.assemble(
            verdict_text(explanation.allowed), f"  {explanation.src} -> {explanation.dst} {port}"
        )
    )
    for trace in (explanation.egress, explanation.ingress):
        console.print()
        _render_direction(trace, console)
    staged = explanation.staged
    if staged is not None:
        console.print()
        console.print(
            Text.assemble(
                ("staged policies would: ", "bold"),
                verdict_text(staged.allowed),
                f"  (egress {staged.egress}; ingress {staged.ingress}); the verdict above stands",
            )
        )


def _render_direction(trace: DirectionTrace, console: Console) -> None:
    where = "egress at" if trace.direction == Direction.EGRESS.value else "ingress at"
    verdict = Text("allowed", "green") if trace.allowed else Text("denied", "red")
    console.print(Text.assemble((f"{where} {trace.endpoint}: ", "bold"), verdict))
    for tier in trace.tiers:
        console.print(
            Text.assemble(
                "  tier ", (tier.tier, "bold"), f" (selected by {', '.join(tier.policies)}):"
            )
        )
        for rule in tier.rules:
            console.print(_rule_line(rule))
        console.print(Text(f"    => {_OUTCOMES.get(tier.outcome, tier.outcome)}"))
    console.print(Text.assemble("  decided: ", (trace.summary, "bold")))
    if trace.not_applied:
        console.print("  why other policies did not apply:")
        for unapplied in trace.not_applied[:SHOWN_UNAPPLIED]:
            console.print(Text(f"    {unapplied.policy} ({unapplied.kind}): {unapplied.why}"))
        more = len(trace.not_applied) - SHOWN_UNAPPLIED
        if more > 0:
            console.print(Text(f"    and {more} more"))


def _rule_line(rule: RuleTrace) -> Text:
    if rule.matched:
        status = Text("matched", "green" if rule.action == Action.ALLOW.value else "yellow")
    else:
        status = Text.assemble(("no match", "dim"), f": {rule.why_not}")
    line = Text.assemble(f"    {rule.policy} rule {rule.name} ({rule.action}): ", status)
    if rule.source:
        line.append(f"  [{rule.source}]", "dim")
    if rule.decided:
        line.append("  <- decided", "bold")
    return line


def _protocol_number(name: str) -> int:
    return parse_protocol(name) or 0

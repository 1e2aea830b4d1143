"""`policies_pending` of collected records: every hit the staged policies would produce.

The dataplane enforces only the enforced set, so nothing on the wire says what the staged set
would do. For a cluster with staged policies, each distinct question (connection ends,
destination port, protocol, the reporter's direction) is decided once by the reference engine
with the staged set (`PolicyEngine(cluster, staged=True)`), and its trace becomes the hits the
dataplane would have logged had the staged set been enforced, in order and numbered from 0 as
`policies_enforced` is: a Pass rule that matched (`pass`, then the next tier), the Allow or
Deny rule that decided, a tier's default (named after the tier's first selecting policy, rule
-1; a default Pass logs nothing), then the profile (`__PROFILE__.kns.<namespace>` for a pod
no tier decided, a host endpoint's profile rule, or its default deny). Log rules are not hits.
A staged policy is named as Calico names it (`shop/staged:knp.default.api`).

The hits are spelled by the nftables backend's own `flow_log_hit`, so a staged set that is
later enforced logs exactly what was pending, apart from the `staged:` in the names.

    question = PendingQuestion("10.0.1.5", "10.0.2.7", 80, TCP, Direction.INGRESS)
    pending_hits(cluster, [question])   # [["0|security|allow-web|pass|0", "1|default|..."]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from netwarden.dataplane.nft_host import FAILSAFE_HIT, NO_PROFILE_HIT
from netwarden.dataplane.nftables import PROFILE_HIT, flow_log_hit
from netwarden.engine import PolicyEngine
from netwarden.engine.resolve import profile_policy
from netwarden.engine.verdict import Decision, Reason, TierStep
from netwarden.model import Action, ClusterState, Direction, Flow

#: How a tier step that logs ends: the action of its hit.
_RULE_OUTCOMES = {"allow": Action.ALLOW, "deny": Action.DENY, "pass": Action.PASS}
_DEFAULT_OUTCOMES = {"default-allow": Action.ALLOW, "default-deny": Action.DENY}


@dataclass(frozen=True)
class PendingQuestion:
    """One collected record: its connection and the direction its reporter decided."""

    src: str
    dst: str
    port: int
    protocol: int
    direction: Direction


def pending_hits(
    cluster: ClusterState, questions: Sequence[PendingQuestion]
) -> list[list[str]] | None:
    """Per question, the staged set's hits in order; None when the cluster stages nothing.
    Identical questions are decided once."""
    if not cluster.has_staged:
        return None
    engine = PolicyEngine(cluster, staged=True)
    answers: dict[PendingQuestion, list[str]] = {}
    for question in questions:
        if question not in answers:
            answers[question] = staged_hits(_decide(engine, question))
    return [list(answers[question]) for question in questions]


def _decide(engine: PolicyEngine, question: PendingQuestion) -> Decision:
    cluster = engine.cluster
    src, dst = cluster.endpoint(question.src), cluster.endpoint(question.dst)
    assert src is not None and dst is not None  # addresses always name an endpoint
    flow = Flow(
        src,
        dst,
        question.port,
        question.protocol,
        src_ip=ip_address(question.src),
        dst_ip=ip_address(question.dst),
    )
    return engine.decide_direction(flow, question.direction)


def staged_hits(decision: Decision) -> list[str]:
    """The hits of one direction's decision, as the flow-log ruleset would log them."""
    hits = [hit for step in decision.steps for hit in _tier_hits(step)]
    if decision.reason is Reason.NO_TIER_DECIDED:
        profile = f"__PROFILE__.kns.{decision.endpoint.namespace}"
        hits.append(PROFILE_HIT.replace("__PROFILE__|__PROFILE__|", f"__PROFILE__|{profile}|", 1))
    elif decision.reason is Reason.PROFILE:
        assert decision.profile is not None and decision.rule_index is not None
        action = Action.ALLOW if decision.allowed else Action.DENY
        hits.append(flow_log_hit(profile_policy(decision.profile), action, decision.rule_index))
    elif decision.reason is Reason.FAILSAFE:
        hits.append(FAILSAFE_HIT)
    elif decision.reason is Reason.NO_PROFILE_ALLOWED:
        hits.append(NO_PROFILE_HIT)
    # NOT_A_SUBJECT: no policy could select the endpoint, nothing is logged or pending.
    return [f"{index}|{hit}" for index, hit in enumerate(hits)]


def _tier_hits(step: TierStep) -> list[str]:
    """A tier's hit: the rule that passed or decided (the last one looked at), or its default
    named after its first selecting policy; nothing when it ended in a default Pass."""
    if step.outcome in _RULE_OUTCOMES:
        matched = step.rules[-1]
        return [flow_log_hit(matched.policy, _RULE_OUTCOMES[step.outcome], matched.index)]
    if step.outcome in _DEFAULT_OUTCOMES and step.policies:
        return [flow_log_hit(step.policies[0], _DEFAULT_OUTCOMES[step.outcome], -1)]
    return []

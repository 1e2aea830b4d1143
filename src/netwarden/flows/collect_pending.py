"""`policies_pending` of collected records: what the staged policies would decide.

The dataplane enforces only the enforced set, so nothing on the wire says what the staged set
would do. For a cluster with staged policies, every collected connection is decided again by
the vectorized engine (`engine.evaluate`, whose `BatchResult.staged` is the same batch under
the staged set) and the reporter's direction becomes one hit in the format of
`policies_enforced`: `0|<tier>|<policy>|<action>|<rule>`, a staged policy named as Calico
names it (`shop/staged:knp.default.api`). Only the deciding hit is given (the engine's
columns name the decision, not the Pass and Log hits before it), so the index is always 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from netwarden.dataplane.nft_host import FAILSAFE_HIT, NO_PROFILE_HIT
from netwarden.dataplane.nftables import PROFILE_HIT, flow_log_hit
from netwarden.engine import evaluate
from netwarden.engine.batch import REASONS, BatchResult, Probe, resolve_probes
from netwarden.engine.verdict import Reason
from netwarden.model import Action, ClusterState, Direction


@dataclass(frozen=True)
class PendingQuestion:
    """One collected record: its connection and the direction its reporter decided."""

    src: str
    dst: str
    port: int
    protocol: int
    direction: Direction
    namespace: str  # the reporter's namespace (its profile is named after it)


def pending_hits(
    cluster: ClusterState, questions: Sequence[PendingQuestion]
) -> list[list[str]] | None:
    """Per question, the staged set's deciding hit; None when the cluster stages nothing."""
    if not cluster.has_staged:
        return None
    if not questions:
        return []
    probes = [Probe(q.src, q.dst, q.port, q.protocol) for q in questions]
    staged = evaluate(cluster, resolve_probes(cluster, probes)).staged
    assert staged is not None  # has_staged: the engine decided the staged set too
    return [_hit(staged, i, q) for i, q in enumerate(questions)]


def _hit(result: BatchResult, index: int, question: PendingQuestion) -> list[str]:
    columns = result.egress if question.direction is Direction.EGRESS else result.ingress
    reason = REASONS[columns.reason[index]]
    allowed = bool(columns.allowed[index])
    action = Action.ALLOW if allowed else Action.DENY
    policy_index, rule = int(columns.policy[index]), int(columns.rule[index])
    if reason is Reason.RULE:
        hit = flow_log_hit(result.policies[policy_index], action, rule)
    elif reason is Reason.TIER_DEFAULT:  # named after the tier's first selecting policy
        hit = flow_log_hit(result.policies[policy_index], action, -1)
    elif reason is Reason.NO_TIER_DECIDED:
        profile = f"__PROFILE__.kns.{question.namespace}"
        hit = PROFILE_HIT.replace("__PROFILE__|__PROFILE__|", f"__PROFILE__|{profile}|", 1)
    elif reason is Reason.PROFILE:
        name = result.profiles[policy_index].name
        hit = f"__PROFILE__|{name}|{action.value.lower()}|{rule}"
    elif reason is Reason.FAILSAFE:
        hit = FAILSAFE_HIT
    elif reason is Reason.NO_PROFILE_ALLOWED:
        hit = NO_PROFILE_HIT
    else:  # not a subject: no policy could decide it, nothing is pending either
        return []
    return [f"0|{hit}"]

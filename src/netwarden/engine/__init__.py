"""The engine: what the policies decide, for one flow (with a trace) or for batches.

`decide` / `PolicyEngine` are the reference semantics; `vectorized` answers the same question
for millions of flows at once and is tested to agree. New semantics go into `decide.py` first,
then into the vectorized path, with a property test that they agree.
"""

from netwarden.engine.decide import PolicyEngine, decide, policy_order
from netwarden.engine.vectorized import VectorEngine, evaluate
from netwarden.engine.verdict import Decision, Reason, RuleStep, TierStep, Verdict

__all__ = [
    "Decision",
    "PolicyEngine",
    "Reason",
    "RuleStep",
    "TierStep",
    "VectorEngine",
    "Verdict",
    "decide",
    "evaluate",
    "policy_order",
]

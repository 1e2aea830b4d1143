"""The lint checks: stable ids, severities, what each means and how to fix it.

An id never changes meaning (CI configurations and SARIF baselines name them); a new check
gets a new id. docs/lint.md is the same catalogue for people, with examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from netwarden.model import Location


class Severity(Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.value]

    @property
    def sarif_level(self) -> str:
        return "note" if self is Severity.INFO else self.value


@dataclass(frozen=True)
class Check:
    id: str
    name: str
    severity: Severity
    title: str
    hint: str


_CHECKS = (
    Check(
        "NW101",
        "ingress-not-isolated",
        Severity.WARNING,
        "Workload selected by no policy for ingress: it accepts every connection.",
        "Add a default-deny NetworkPolicy (podSelector: {}, policyTypes: [Ingress]) to its "
        "namespace, then allow what it serves.",
    ),
    Check(
        "NW102",
        "egress-not-isolated",
        Severity.WARNING,
        "Workload selected by no policy for egress: it may connect anywhere.",
        "Add a default-deny NetworkPolicy (podSelector: {}, policyTypes: [Egress]) to its "
        "namespace, then allow DNS and what it calls.",
    ),
    Check(
        "NW201",
        "policy-selects-nothing",
        Severity.WARNING,
        "Policy selects no endpoint: it has no effect.",
        "Fix the subject's selector (labels, namespace) or delete the policy.",
    ),
    Check(
        "NW202",
        "peer-matches-nothing",
        Severity.WARNING,
        "Rule peer matches no endpoint, network set or address.",
        "Fix the peer's selectors (a label or namespace that does not exist?) or remove it.",
    ),
    Check(
        "NW301",
        "rule-shadowed",
        Severity.WARNING,
        "Rule never decides a flow: earlier rules decide everything it matches.",
        "Delete the rule, or move it before the rules that shadow it if it should apply.",
    ),
    Check(
        "NW302",
        "rule-redundant",
        Severity.WARNING,
        "Rule is redundant: removing it changes no verdict.",
        "Delete the rule; the verdicts it gives follow without it.",
    ),
    Check(
        "NW303",
        "policy-redundant",
        Severity.WARNING,
        "Policy is redundant: removing it changes no verdict.",
        "Delete the policy, or fix what makes it unreachable.",
    ),
    Check(
        "NW401",
        "ingress-from-anywhere",
        Severity.WARNING,
        "Rule allows ingress from any address (0.0.0.0/0 or ::/0, or no source at all).",
        "Name the sources: pod or namespace selectors, or the exact CIDRs that need access.",
    ),
    Check(
        "NW402",
        "all-ports-all-namespaces",
        Severity.WARNING,
        "Rule allows every port from every pod of every namespace.",
        "Restrict the namespaces (namespaceSelector with labels) and list the ports.",
    ),
    Check(
        "NW403",
        "egress-to-internet",
        Severity.WARNING,
        "Rule allows egress to the whole internet on every port.",
        "List the destinations (CIDRs, network sets) and ports the workload needs.",
    ),
    Check(
        "NW501",
        "named-port-undeclared",
        Severity.ERROR,
        "Named port is declared by no pod the rule could reach: it matches nothing.",
        "Use a port name the destination pods declare (containers[].ports[].name) or a number.",
    ),
    Check(
        "NW601",
        "pass-with-nothing-below",
        Severity.WARNING,
        "Pass rule hands flows to no later policy: for these pods Pass allows.",
        "Add the NetworkPolicy or BaselineAdminNetworkPolicy meant to decide, or use Allow or "
        "Deny explicitly.",
    ),
    Check(
        "NW701",
        "tier-empty",
        Severity.INFO,
        "Tier has no (enforced) policy.",
        "Delete the tier, or add its policies.",
    ),
    Check(
        "NW702",
        "later-tiers-unreachable",
        Severity.WARNING,
        "Tier decides every flow of the endpoints it selects: later tiers' policies never "
        "apply to them.",
        "End the tier's policies with a Pass rule (or set the tier's defaultAction: Pass) so "
        "later tiers decide what this one does not.",
    ),
    Check(
        "NW703",
        "staged-changes-verdicts",
        Severity.INFO,
        "Staged policy would change verdicts if enforced.",
        "Review the changed flows (netwarden evaluate / explain show both verdicts) before "
        "enforcing it.",
    ),
)

CHECKS: dict[str, Check] = {check.id: check for check in _CHECKS}


@dataclass(frozen=True)
class Related:
    """A place that explains a finding (the rule that shadows, the later policy)."""

    location: Location | None
    text: str


@dataclass(frozen=True)
class Finding:
    """One problem: which check, where, what exactly, how to fix it. `subject` names the
    policy, rule or workload (stable across runs, for fingerprints)."""

    id: str
    message: str
    location: Location | None
    subject: str
    related: tuple[Related, ...] = ()
    hint: str = ""
    severity: Severity = field(default=Severity.WARNING)

    @property
    def check(self) -> Check:
        return CHECKS[self.id]


def finding(
    check_id: str,
    message: str,
    location: Location | None,
    subject: str,
    related: tuple[Related, ...] = (),
    hint: str = "",
) -> Finding:
    """A finding of `check_id`, with the check's severity and (unless given) its fix hint."""
    check = CHECKS[check_id]
    return Finding(
        check_id, message, location, subject, related, hint or check.hint, check.severity
    )

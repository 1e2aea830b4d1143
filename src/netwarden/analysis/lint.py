"""`netwarden lint`: what in the policies is dead, shadowed, redundant, too broad or wrong.

    from netwarden.analysis.lint import lint_cluster
    for finding in lint_cluster(cluster):
        print(finding.id, finding.location, finding.message)

The checks (catalogue: `lint_catalogue.CHECKS`, docs/lint.md) look at the model and at the
connectivity tables' classes, never pod by pod:

- `lint_inventory`: workloads no policy selects (NW101/102), policies that select nothing
  (NW201), peers that match nothing (NW202), undeclared named ports (NW501), Pass rules with
  nothing below (NW601), empty tiers (NW701);
- `lint_breadth`: overly broad rules (NW401-403);
- `lint_redundancy`: shadowed and redundant rules and policies, proved on sets (NW301-303),
  tiers that make later ones unreachable (NW702);
- `lint_staged`: staged policies that would change verdicts (NW703).

To add a check: give it an id in `lint_catalogue`, write it in the module of its kind (or a new
`lint_*.py`), call it from `lint_cluster`, and add a positive and a negative test.
"""

from __future__ import annotations

from collections.abc import Iterable

from netwarden.analysis import lint_breadth, lint_inventory, lint_redundancy, lint_staged
from netwarden.analysis.lint_catalogue import CHECKS, Finding, Severity
from netwarden.analysis.lint_context import LintContext
from netwarden.errors import UsageError
from netwarden.model import ClusterState


def lint_cluster(cluster: ClusterState) -> list[Finding]:
    """Every finding for `cluster`, sorted by file, line and id."""
    context = LintContext(cluster)
    found: list[Finding] = []
    inventory = lint_inventory.InventoryChecks(context)
    found += inventory.findings()
    found += lint_breadth.breadth_findings(context)
    found += lint_redundancy.redundancy_findings(
        context, inventory.inert_policies, inventory.inert_rules
    )
    found += lint_staged.staged_findings(cluster)
    return sort_findings(found)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[str, int, str, str]:
        where = f.location
        return (where.path if where else "~", where.line if where else 0, f.id, f.subject)

    return sorted(findings, key=key)


def select_findings(
    findings: Iterable[Finding],
    minimum: Severity = Severity.INFO,
    disabled: Iterable[str] = (),
) -> list[Finding]:
    """The findings at or above `minimum` whose check is not `disabled`."""
    off = set(disabled)
    return [f for f in findings if f.id not in off and f.severity.rank >= minimum.rank]


def parse_check_ids(text: str) -> list[str]:
    """`NW101,nw301` -> ids, each checked against the catalogue (UsageError otherwise)."""
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    for check_id in ids:
        if check_id not in CHECKS:
            known = ", ".join(CHECKS)
            raise UsageError(f"--disable: unknown check {check_id!r} (known: {known})")
    return ids

"""`netwarden lint` output for people (one block per finding, compiler style) and for scripts
(JSON; SARIF is `lint_sarif`).

JSON, a contract scripts rely on:

    {"summary": {"findings": 3, "error": 1, "warning": 2, "info": 0},
     "findings": [{"id": "NW301", "name": "rule-shadowed", "severity": "warning",
                   "message": "...", "location": "shop.yaml:12", "path": "shop.yaml",
                   "line": 12, "subject": "NetworkPolicy shop/web ingress[1]",
                   "hint": "...", "related": [{"location": "shop.yaml:5", "text": "..."}]}]}

`location`, `path` and `line` are null when the finding has no place in a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from netwarden.analysis.lint_catalogue import Finding, Severity

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    counts = {"findings": len(findings)}
    for severity in reversed(Severity):
        counts[severity.value] = sum(1 for f in findings if f.severity is severity)
    return counts


def render_json(findings: Sequence[Finding]) -> str:
    return json.dumps(findings_json(findings), indent=2) + "\n"


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    return {"summary": summary(findings), "findings": [_finding_json(f) for f in findings]}


def _finding_json(found: Finding) -> dict[str, Any]:
    where = found.location
    return {
        "id": found.id,
        "name": found.check.name,
        "severity": found.severity.value,
        "message": found.message,
        "location": str(where) if where else None,
        "path": where.path if where else None,
        "line": where.line if where and where.line else None,
        "subject": found.subject,
        "hint": found.hint,
        "related": [
            {"location": str(r.location) if r.location else None, "text": r.text}
            for r in found.related
        ],
    }


def print_table(findings: Sequence[Finding], console: Console) -> None:
    """One block per finding, compiler style (`file:line: severity ID name`, the message, the
    fix), so each first line stays greppable; then the counts."""
    for found in findings:
        head = Text(f"{found.location}: " if found.location else "")
        head.append(found.severity.value, style=_STYLE[found.severity])
        head.append(f" {found.id} {found.check.name}", style="bold")
        console.print(head)
        console.print(Text("  " + found.message))
        for related in found.related:
            where = f" ({related.location})" if related.location else ""
            console.print(Text(f"    {related.text}{where}", style="dim"))
        console.print(Text(f"  fix: {found.hint}", style="green"))
    counts = summary(findings)
    parts = [f"{counts[s.value]} {s.value}" for s in reversed(Severity) if counts[s.value]]
    console.print(f"{counts['findings']} findings" + (f": {', '.join(parts)}" if parts else ""))

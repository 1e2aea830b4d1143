"""`netwarden lint -o sarif`: SARIF 2.1.0, so code scanning annotates the policy files.

One run; the tool's rules are the whole lint catalogue (id, name, title, fix hint, default
level); one result per finding, at its file:line, with `relatedLocations` for the rules that
shadow it or the policies it concerns. Levels: error, warning, and `note` for info. Paths are
written as given (relative stays relative to where lint ran); a stable fingerprint is the
check id and the finding's subject. The envelope is the one `verify` writes
(`report_sarif.sarif_run`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from netwarden.analysis.lint_catalogue import CHECKS, Finding
from netwarden.analysis.report_sarif import sarif_location, sarif_run


def render_sarif(findings: Sequence[Finding]) -> str:
    return json.dumps(sarif_log(findings), indent=2) + "\n"


def sarif_log(findings: Sequence[Finding]) -> dict[str, Any]:
    ids = list(CHECKS)
    rules = [
        {
            "id": check.id,
            "name": check.name,
            "shortDescription": {"text": check.title},
            "help": {"text": check.hint},
            "defaultConfiguration": {"level": check.severity.sarif_level},
            "properties": {"tags": ["security", "network-policy"]},
        }
        for check in CHECKS.values()
    ]
    return sarif_run(rules, [_result(found, ids.index(found.id)) for found in findings])


def _result(found: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": found.id,
        "ruleIndex": rule_index,
        "level": found.severity.sarif_level,
        "message": {"text": f"{found.message}. Fix: {found.hint}"},
        "partialFingerprints": {"netwardenLint/v1": f"{found.id}:{found.subject}"},
    }
    if found.location is not None:
        result["locations"] = [sarif_location(found.location)]
    placed = [(r.location, r.text) for r in found.related if r.location is not None]
    related = [
        {"id": i + 1, **sarif_location(where, text)} for i, (where, text) in enumerate(placed)
    ]
    if related:
        result["relatedLocations"] = related
    return result

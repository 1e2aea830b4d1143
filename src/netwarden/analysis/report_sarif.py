"""`netwarden verify -o sarif`: SARIF 2.1.0, so a CI system can annotate the pull request.

One run; one rule per requirement type (`isolation`, `only`, `defaultDeny`, `egress`,
`reachable`); one `error` result per failing requirement, located at the requirement's
file:line, with `relatedLocations` at the policies and rules that decided the counter-example.
Passing requirements produce no result. Paths are written as given (relative paths stay
relative to where `verify` ran, normally the repository root).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from netwarden import __version__
from netwarden.analysis.requirements import RequirementResult, describe, responsible
from netwarden.model import Location, RequirementKind

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)

RULES = {
    RequirementKind.ISOLATION: "No connection from one set of endpoints to another.",
    RequirementKind.ONLY: "A set of endpoints is reachable only from another, on listed ports.",
    RequirementKind.DEFAULT_DENY: "Workloads are isolated: traffic no rule allows is denied.",
    RequirementKind.EGRESS: "Workloads reach nothing outside the cluster but listed networks.",
    RequirementKind.REACHABLE: "Every pod of one set reaches every pod of another on a port.",
}


def render_sarif(results: Sequence[RequirementResult]) -> str:
    return json.dumps(sarif_log(results), indent=2) + "\n"


def sarif_log(results: Sequence[RequirementResult]) -> dict[str, Any]:
    kinds = list(RULES)
    rules = [
        {
            "id": kind.value,
            "name": kind.name.title().replace("_", ""),
            "shortDescription": {"text": text},
            "defaultConfiguration": {"level": "error"},
            "properties": {"tags": ["security", "network-policy"]},
        }
        for kind, text in RULES.items()
    ]
    return sarif_run(
        rules,
        [
            _result(result, kinds.index(result.requirement.kind))
            for result in results
            if not result.holds
        ],
    )


def sarif_run(rules: list[dict[str, Any]], results: list[dict[str, Any]]) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one netwarden run: the tool's `rules` and what it found."""
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "netwarden", "version": __version__, "rules": rules}},
                "invocations": [{"executionSuccessful": True}],
                "results": results,
            }
        ],
    }


def _result(result: RequirementResult, rule_index: int) -> dict[str, Any]:
    requirement = result.requirement
    example = result.counterexample
    text = f"Requirement {requirement.name} fails: {result.message}"
    if example is not None:
        text += f" Counter-example: {describe(example)}."
    found: dict[str, Any] = {
        "ruleId": requirement.kind.value,
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": text},
        "partialFingerprints": {"requirement": requirement.name},
        "properties": {"controls": list(requirement.controls)},
    }
    if requirement.source is not None:
        found["locations"] = [sarif_location(requirement.source)]
    related: list[dict[str, Any]] = []
    if example is not None:
        for decision in (example.verdict.egress, example.verdict.ingress):
            for blame in responsible(decision):
                if blame.location is not None:
                    place = sarif_location(blame.location, blame.text)
                    related.append({"id": len(related) + 1, **place})
    if related:
        found["relatedLocations"] = related
    return found


def sarif_location(location: Location, text: str = "") -> dict[str, Any]:
    """A SARIF `location` for a file:line, with an optional message (shared by lint)."""
    physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(location.path)}}
    if location.line:
        physical["region"] = {"startLine": location.line}
    found: dict[str, Any] = {"physicalLocation": physical}
    if text:
        found["message"] = {"text": text}
    return found


def _uri(path: str) -> str:
    """A relative path as a relative URI reference, an absolute one as a file: URI."""
    pure = PurePath(path)
    if pure.is_absolute():
        return "file://" + quote(pure.as_posix())
    return quote(pure.as_posix())

"""`netwarden verify -o junit`: JUnit XML, as CI systems show test results.

One `<testsuite>` (inside `<testsuites>`), one `<testcase>` per requirement: `classname`
`netwarden.requirements.<type>`, `name` the requirement's, `file`/`line` where it is written.
A failing requirement has a `<failure>` whose `message` is the counter-example and whose text
adds the responsible policies; controls are `<property name="control">` entries.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from netwarden.analysis.requirements import RequirementResult, describe, responsible

SUITE = "netwarden verify"


def render_junit(results: Sequence[RequirementResult], seconds: float = 0.0) -> str:
    failures = sum(1 for result in results if not result.holds)
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", {"name": SUITE, **counts, "time": f"{seconds:.3f}"})
    suite = ET.SubElement(
        root, "testsuite", {"name": SUITE, **counts, "skipped": "0", "time": f"{seconds:.3f}"}
    )
    for result in results:
        requirement = result.requirement
        attributes = {
            "name": requirement.name,
            "classname": f"netwarden.requirements.{requirement.kind.value}",
            "time": "0",
        }
        if requirement.source is not None:
            attributes["file"] = requirement.source.path
            attributes["line"] = str(requirement.source.line)
        case = ET.SubElement(suite, "testcase", attributes)
        if requirement.controls:
            properties = ET.SubElement(case, "properties")
            for control in requirement.controls:
                ET.SubElement(properties, "property", {"name": "control", "value": control})
        if not result.holds:
            example = result.counterexample
            message = describe(example) if example is not None else result.message
            failure = ET.SubElement(
                case, "failure", {"message": message, "type": requirement.kind.value}
            )
            failure.text = _details(result)
        elif result.notes:
            ET.SubElement(case, "system-out").text = "\n".join(result.notes)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _details(result: RequirementResult) -> str:
    lines = [result.message]
    if result.requirement.source is not None:
        lines.append(f"requirement: {result.requirement.source}")
    example = result.counterexample
    if example is not None:
        lines.append(f"counter-example: {describe(example)}")
        for decision in (example.verdict.egress, example.verdict.ingress):
            for blame in responsible(decision):
                lines.append(f"  {blame.text}" + (f" ({blame.location})" if blame.location else ""))
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)

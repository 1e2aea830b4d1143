"""`netwarden verify -o json`: the results as one JSON document (a contract scripts rely on).

    {"summary": {"requirements": 5, "passed": 4, "failed": 1},
     "results": [{"name": "db-only-from-backend", "type": "only", "holds": false,
                  "description": "...", "controls": ["PCI-DSS-4.0:1.3.1"],
                  "location": "reqs.yaml:12", "message": "...", "notes": [],
                  "counterexample": {"src": "shop/frontend-0", "src_ip": "10.244.1.10",
                                     "dst": "shop/db-0", "dst_ip": "10.244.2.30",
                                     "protocol": "TCP", "port": 5432, "allowed": true,
                                     "egress": {"allowed": true, "decided_by": "...",
                                                "responsible": [{"location": "...",
                                                                 "text": "..."}]},
                                     "ingress": {...}}}]}

`counterexample` is null when the requirement holds; `port` is 0 for portless protocols;
`location` values are `file:line` or null.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from netwarden.analysis.requirements import (
    CounterExample,
    RequirementResult,
    responsible,
)
from netwarden.engine import Decision
from netwarden.model import protocol_name


def results_json(results: Sequence[RequirementResult]) -> dict[str, Any]:
    passed = sum(1 for result in results if result.holds)
    return {
        "summary": {
            "requirements": len(results),
            "passed": passed,
            "failed": len(results) - passed,
        },
        "results": [_result(result) for result in results],
    }


def render_json(results: Sequence[RequirementResult]) -> str:
    return json.dumps(results_json(results), indent=2) + "\n"


def _result(result: RequirementResult) -> dict[str, Any]:
    requirement = result.requirement
    example = result.counterexample
    return {
        "name": requirement.name,
        "type": requirement.kind.value,
        "holds": result.holds,
        "description": requirement.description,
        "controls": list(requirement.controls),
        "location": str(requirement.source) if requirement.source else None,
        "message": result.message,
        "notes": list(result.notes),
        "counterexample": _example(example) if example is not None else None,
    }


def _example(example: CounterExample) -> dict[str, Any]:
    flow = example.flow
    return {
        "src": flow.src.key,
        "src_ip": str(flow.src_ip) if flow.src_ip is not None else None,
        "dst": flow.dst.key,
        "dst_ip": str(flow.dst_ip) if flow.dst_ip is not None else None,
        "protocol": protocol_name(flow.protocol),
        "port": flow.port,
        "allowed": example.allowed,
        "egress": _decision(example.verdict.egress),
        "ingress": _decision(example.verdict.ingress),
    }


def _decision(decision: Decision) -> dict[str, Any]:
    return {
        "allowed": decision.allowed,
        "decided_by": decision.deciding,
        "responsible": [
            {"location": str(r.location) if r.location else None, "text": r.text}
            for r in responsible(decision)
        ],
    }

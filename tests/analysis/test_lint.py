"""Lint checks: for each check, a fixture where it fires (on exactly the expected subjects)
and where it must not. Every fixture runs against tests/analysis/fixtures/lint/inventory.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwarden.analysis.lint import lint_cluster, parse_check_ids, select_findings
from netwarden.analysis.lint_catalogue import CHECKS, Finding, Severity
from netwarden.dialects import load_paths
from netwarden.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "lint"
REPO = Path(__file__).resolve().parents[2]


def lint_fixture(name: str) -> list[Finding]:
    cluster = load_paths([FIXTURES / "inventory.yaml", FIXTURES / f"{name}.yaml"]).cluster
    return lint_cluster(cluster)


def subjects(findings: list[Finding], check_id: str) -> set[str]:
    return {f.subject for f in findings if f.id == check_id}


# (fixture, check, subjects it must report, subjects it must not report)
CASES = [
    ("unselected", "NW101", {"other/client"}, {"app/web", "app/api", "app/db"}),
    ("unselected", "NW102", {"app/web", "app/api", "app/db", "other/client"}, set()),
    ("selects-nothing", "NW201", {"NetworkPolicy app/ghost"}, {"NetworkPolicy app/web"}),
    (
        "peers-nothing",
        "NW202",
        {"NetworkPolicy app/web ingress[0] peer 0", "NetworkPolicy app/web ingress[1] peer 0"},
        {"NetworkPolicy app/web ingress[1] peer 1", "NetworkPolicy app/web ingress[2] peer 0"},
    ),
    (
        "shadowed",
        "NW301",
        {"CalicoNetworkPolicy app/allow-api ingress[0]"},
        {
            "CalicoNetworkPolicy app/allow-api ingress[1]",
            "CalicoNetworkPolicy app/deny-api ingress[0]",
        },
    ),
    (
        "shadowed",
        "NW302",
        {"CalicoNetworkPolicy app/allow-api ingress[2]"},
        {"CalicoNetworkPolicy app/allow-api ingress[1]"},
    ),
    (
        "other-side",
        "NW302",
        {"NetworkPolicy app/web-egress egress[0]"},
        {"NetworkPolicy app/web-egress egress[1]", "NetworkPolicy app/db-ingress ingress[0]"},
    ),
    (
        "redundant-policy",
        "NW303",
        {"NetworkPolicy app/web", "NetworkPolicy app/web-copy"},
        {"NetworkPolicy app/web-api"},
    ),
    (
        "broad",
        "NW401",
        {"NetworkPolicy app/web ingress[0]"},
        {"NetworkPolicy app/web ingress[2]", "NetworkPolicy app/web ingress[1]"},
    ),
    (
        "broad",
        "NW402",
        {"NetworkPolicy app/web ingress[1]"},
        {"NetworkPolicy app/web ingress[3]", "NetworkPolicy app/web ingress[0]"},
    ),
    (
        "broad",
        "NW403",
        {"NetworkPolicy app/web egress[0]"},
        {"NetworkPolicy app/web egress[1]"},
    ),
    (
        "named-ports",
        "NW501",
        {
            "NetworkPolicy app/web ingress[1] port TCP/grpc",
            "NetworkPolicy app/web egress[1] port TCP/pg",
        },
        {
            "NetworkPolicy app/web ingress[0] port TCP/http",
            "NetworkPolicy app/web egress[0] port TCP/grpc",
        },
    ),
    (
        "pass",
        "NW601",
        {"AdminNetworkPolicy pass-app ingress[0] (pass-from-other)"},
        {"AdminNetworkPolicy pass-other ingress[0] (pass-from-app)"},
    ),
    ("tiers", "NW701", {"Tier unused"}, {"Tier strict", "Tier lenient"}),
    ("tiers", "NW702", {"Tier strict ingress"}, {"Tier lenient ingress"}),
    (
        "staged",
        "NW703",
        {"staged CalicoNetworkPolicy app/lockdown"},
        {"staged NetworkPolicy app/web"},
    ),
]


@pytest.mark.parametrize(("fixture", "check", "positive", "negative"), CASES)
def test_check_fires_exactly_where_expected(
    fixture: str, check: str, positive: set[str], negative: set[str]
) -> None:
    found = subjects(lint_fixture(fixture), check)
    assert positive <= found, found
    assert not (negative & found), found


def test_every_check_has_a_case() -> None:
    assert {check for _, check, _, _ in CASES} == set(CHECKS)


def test_findings_carry_id_severity_location_and_hint() -> None:
    for finding in lint_fixture("shadowed") + lint_fixture("named-ports"):
        check = CHECKS[finding.id]
        assert finding.severity is check.severity
        assert finding.hint
        assert finding.location is not None and finding.location.line > 0
        assert finding.location.path.endswith(".yaml")


def test_shadowed_rule_names_the_rule_that_shadows_it() -> None:
    [shadowed] = [f for f in lint_fixture("shadowed") if f.id == "NW301"]
    assert "CalicoNetworkPolicy app/deny-api ingress[0]" in shadowed.message
    [related] = shadowed.related
    assert related.location is not None
    assert related.location.path.endswith("shadowed.yaml") and related.location.line == 12
    assert shadowed.location is not None and shadowed.location.line == 25


def test_rule_location_is_the_rule_line() -> None:
    found = {f.subject: f for f in lint_fixture("broad")}
    assert str(found["NetworkPolicy app/web ingress[0]"].location).endswith("broad.yaml:10")
    assert str(found["NetworkPolicy app/web egress[0]"].location).endswith("broad.yaml:17")


def test_findings_do_not_repeat_the_root_cause() -> None:
    """A rule whose peers match nothing, or whose named ports nobody declares, is reported
    for that, not again as redundant."""
    for fixture, check in (("peers-nothing", "NW202"), ("named-ports", "NW501")):
        found = lint_fixture(fixture)
        rules = {f.subject.split(" peer ")[0].split(" port ")[0] for f in found if f.id == check}
        assert rules
        redundant = {f.subject for f in found if f.id in ("NW301", "NW302")}
        assert not (rules & redundant), (rules, redundant)


def test_messages_name_what_and_why() -> None:
    found = {f.id: f.message for f in lint_fixture("tiers")}
    assert "tier strict (default action Deny)" in found["NW702"]
    assert "NetworkPolicy app/web" in found["NW702"] and "app/web-0" in found["NW702"]
    staged = {f.id: f.message for f in lint_fixture("staged")}["NW703"]
    assert "app/api-0 -> app/web-0 TCP" in staged and "allowed -> denied" in staged


def test_select_by_severity_and_disabled_checks() -> None:
    found = lint_fixture("named-ports")
    errors = select_findings(found, Severity.ERROR)
    assert errors and {f.id for f in errors} == {"NW501"}
    assert not select_findings(found, Severity.INFO, ["NW501", "NW401", "NW101", "NW102"])
    assert parse_check_ids(" nw501, NW401 ,") == ["NW501", "NW401"]
    with pytest.raises(UsageError, match="NW999"):
        parse_check_ids("NW999")


# The examples, with the findings their READMEs document (docs/lint.md).
SHOP_FINDINGS = {
    ("NW101", "ingress-nginx/controller"),
    ("NW102", "ingress-nginx/controller"),
    ("NW101", "kube-system/coredns"),
    ("NW102", "kube-system/coredns"),
    ("NW101", "monitoring/prometheus"),
    ("NW102", "monitoring/prometheus"),
    ("NW303", "AdminNetworkPolicy shop-isolation"),
    ("NW303", "NetworkPolicy shop/default-deny"),
    ("NW401", "NetworkPolicy shop/frontend ingress[0]"),
}
CALICO_FINDINGS = {
    ("NW303", "AdminNetworkPolicy shop-isolation"),
    ("NW303", "NetworkPolicy shop/default-deny"),
    ("NW401", "NetworkPolicy shop/frontend ingress[0]"),
    ("NW601", "GlobalNetworkPolicy block-threats ingress[1]"),
    ("NW601", "GlobalNetworkPolicy block-threats egress[1]"),
    ("NW701", "Tier platform"),
    ("NW703", "staged GlobalNetworkPolicy tenant-b-egress-lockdown"),
}


def test_shop_example_findings() -> None:
    cluster = load_paths([REPO / "examples" / "shop"]).cluster
    assert {(f.id, f.subject) for f in lint_cluster(cluster)} == SHOP_FINDINGS


def test_calico_example_findings() -> None:
    cluster = load_paths([REPO / "examples" / "shop", REPO / "examples" / "calico"]).cluster
    assert {(f.id, f.subject) for f in lint_cluster(cluster)} == CALICO_FINDINGS

"""`netwarden explain`: the verdict first, then each direction tier by tier, rule by rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import SHOP, Run

SHOP_POLICIES = SHOP / "policies" / "shop.yaml"


def rule_line(path: Path, policy: str, rule: str) -> int:
    """The line of `policy`'s first `rule:` list item (`ingress` / `egress`) in `path`."""
    lines = path.read_text().splitlines()
    start = lines.index(f"  name: {policy}")
    return next(i for i in range(start, len(lines)) if lines[i] == f"  {rule}:") + 2


def explain_json(run: Run, *args: str) -> dict[str, Any]:
    result = run("explain", "-f", SHOP, *args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_denied_by_default_deny(run: Run) -> None:
    result = run("explain", "-f", SHOP, "shop/frontend-0", "shop/db-0", "5432/TCP")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == "DENIED  shop/frontend-0 -> shop/db-0 5432/TCP"
    assert "egress at shop/frontend-0: denied" in out
    assert "ingress at shop/db-0: denied" in out
    assert out.index("egress at") < out.index("ingress at")
    # The admin tier is consulted first and passes; the default tier denies.
    assert "tier adminnetworkpolicy (selected by platform-guardrails):" in out
    assert "tier default (selected by shop/allow-dns, shop/default-deny, shop/frontend):" in out
    assert out.index("tier adminnetworkpolicy") < out.index("tier default")
    line = rule_line(SHOP_POLICIES, "frontend", "egress")
    assert (
        "shop/frontend rule egress[0] (Allow): no match: shop/db-0 is not a peer of this rule"
        f"  [{SHOP_POLICIES}:{line}]"
    ) in out
    assert "=> deny (no rule matched; the tier's default action)" in out
    assert "decided: denied by the default action of tier default: 3 policies select" in out
    assert "why other policies did not apply:" in out
    assert "shop/backend (NetworkPolicy): subject does not select shop/frontend-0" in out
    assert "\x1b[" not in out


def test_allowed_by_a_rule_after_an_admin_pass(run: Run) -> None:
    result = run("explain", "-f", SHOP, "monitoring/prometheus-0", "shop/backend-0", "9090/TCP")
    out = result.stdout
    assert out.splitlines()[0] == "ALLOWED  monitoring/prometheus-0 -> shop/backend-0 9090/TCP"
    assert "platform-guardrails rule pass-monitoring (Pass): matched" in out
    assert "=> pass (a rule passed to the next tier)" in out
    line = rule_line(SHOP_POLICIES, "allow-prometheus", "ingress")
    assert (
        "decided: allowed by rule ingress[0] (index 0) of NetworkPolicy "
        "shop/knp.default.allow-prometheus "
        f"in tier default at {SHOP_POLICIES}:{line}"
    ) in out
    assert (
        f"shop/allow-prometheus rule ingress[0] (Allow): matched  [{SHOP_POLICIES}:{line}]" in out
    )
    assert "<- decided" in out
    # Policies of other namespaces say why they do not apply.
    assert (
        "shop/default-deny (NetworkPolicy): subject does not select monitoring/prometheus-0 "
        "(it applies in namespace shop only)"
    ) in out


def test_not_isolated(run: Run) -> None:
    result = run("explain", "-f", SHOP, "shop/frontend-0", "kube-system/coredns-0", "53/UDP")
    assert (
        "decided: not isolated: no policy selects kube-system/coredns-0 for ingress"
        in result.stdout
    )
    result = run("explain", "-f", SHOP, "monitoring/prometheus-0", "8.8.8.8", "ICMP")
    out = result.stdout
    assert out.splitlines()[0] == "ALLOWED  monitoring/prometheus-0 -> 8.8.8.8 ICMP"
    assert "not isolated: no policy selects monitoring/prometheus-0 for egress" in out
    assert "8.8.8.8 is an external address: no policy selects it" in out


def test_denied_at_the_admin_tier(run: Run) -> None:
    out = run("explain", "-f", SHOP, "tenant-b/web-0", "shop/frontend-0", "443/TCP").stdout
    assert (
        "decided: denied by rule deny-other-namespaces (index 0) of AdminNetworkPolicy "
        "kanp.adminnetworkpolicy.shop-isolation "
        f"in tier adminnetworkpolicy at {SHOP / 'policies' / 'admin.yaml'}:"
    ) in out
    ingress = out.split("ingress at")[1]
    assert "tier default" not in ingress  # decided before the default tier
    assert (
        "shop/frontend (NetworkPolicy): not reached: tier adminnetworkpolicy decided first"
    ) in ingress


def test_other_policies_are_capped(tmp_path: Path, run: Run) -> None:
    policies = tmp_path / "many.yaml"
    policies.write_text(
        "---\n".join(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata: {{name: p{i:02}, namespace: tenant-b}}\nspec: {{podSelector: {{}}}}\n"
            for i in range(14)
        )
    )
    result = run("explain", "-f", SHOP, "-f", policies, "shop/backend-0", "shop/db-0", "5432/TCP")
    ingress = result.stdout.split("ingress at shop/db-0")[1]
    listed = [line for line in ingress.splitlines() if "subject does not select" in line]
    assert len(listed) == 10
    # 3 shop policies and 14 of tenant-b do not select shop/db-0 for ingress; the baseline
    # does, but the default tier decided first.
    assert ingress.rstrip().endswith("and 8 more")


def test_json_carries_the_same_trace(run: Run) -> None:
    data = explain_json(run, "shop/frontend-0", "shop/backend-1", "8080/TCP")
    keys = ["src", "dst", "port", "protocol", "allowed", "verdict", "egress", "ingress", "staged"]
    assert list(data) == keys
    flow = (data["src"], data["dst"], data["port"], data["protocol"])
    assert flow == ("shop/frontend-0", "shop/backend-1", 8080, "TCP")
    assert data["allowed"] is True and data["verdict"] == "ALLOWED"
    egress = data["egress"]
    assert egress["direction"] == "egress" and egress["endpoint"] == "shop/frontend-0"
    assert egress["reason"] == "rule"
    assert egress["decided_by"] == "default/shop/frontend[egress[0]]"
    assert (egress["tier"], egress["policy"], egress["policy_kind"], egress["rule"]) == (
        "default",
        "shop/frontend",
        "NetworkPolicy",
        "egress[0]",
    )
    line = rule_line(SHOP_POLICIES, "frontend", "egress")
    assert egress["rule_source"] == f"{SHOP_POLICIES}:{line}"
    assert [tier["tier"] for tier in egress["tiers"]] == ["adminnetworkpolicy", "default"]
    admin, default = egress["tiers"]
    assert admin["outcome"] == "default-pass"
    assert default["outcome"] == "allow"
    assert default["policies"] == ["shop/allow-dns", "shop/default-deny", "shop/frontend"]
    decided = [rule for rule in default["rules"] if rule["decided"]]
    assert decided == [
        {
            "policy": "shop/frontend",
            "kind": "NetworkPolicy",
            "index": 0,
            "name": "egress[0]",
            "action": "Allow",
            "matched": True,
            "why_not": "",
            "source": f"{SHOP_POLICIES}:{line}",
            "decided": True,
        }
    ]
    assert default["rules"][0]["why_not"] == "shop/backend-1 is not a peer of this rule"
    backend = {
        "policy": "shop/backend",
        "kind": "NetworkPolicy",
        "tier": "default",
        "why": "subject does not select shop/frontend-0",
    }
    assert backend in egress["not_applied"]


def test_json_not_a_subject_and_not_selected(run: Run) -> None:
    data = explain_json(run, "203.0.113.7", "tenant-b/web-0", "8080")
    assert data["egress"]["reason"] == "not-a-subject"
    assert data["egress"]["endpoint_kind"] == "external"
    assert data["egress"]["tiers"] == [] and data["egress"]["not_applied"] == []
    ingress = data["ingress"]
    assert ingress["reason"] == "no-tier-decided" and ingress["selected"] is True
    assert [t["outcome"] for t in ingress["tiers"]] == ["default-pass", "default-pass"]
    data = explain_json(run, "shop/frontend-0", "kube-system/coredns-1", "53/TCP")
    assert data["ingress"]["selected"] is False
    assert data["ingress"]["summary"] == (
        "not isolated: no policy selects kube-system/coredns-1 for ingress"
    )

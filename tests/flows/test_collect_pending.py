"""Without root: `policies_pending` from the staged set (vectorized engine) against the
reference engine's staged decisions, and `compile --target nftables --flow-logs`."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.engine.verdict import Decision, Reason
from netwarden.flows.collect_pending import PendingQuestion, pending_hits
from netwarden.model import TCP, UDP, ClusterState, Direction, Flow

INPUTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.7.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec: {nodeName: n1}
status: {podIP: 10.7.1.11}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {nodeName: n1}
status: {podIP: 10.7.1.12}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 8080, protocol: TCP}, {port: 5353, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  stagedAction: Set
  podSelector: {matchLabels: {app: api}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 8080, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: db-egress, namespace: shop}
spec:
  selector: app == 'db'
  types: [Egress]
  egress: [{action: Deny, protocol: TCP, destination: {ports: [8080]}}]
"""


def cluster() -> ClusterState:
    return load_text(INPUTS, "inputs.yaml").cluster


def expected_hit(decision: Decision) -> list[str]:
    """The reference engine's staged decision, written as Calico writes a hit."""
    action = "allow" if decision.allowed else "deny"
    if decision.reason is Reason.NO_TIER_DECIDED:
        return [f"0|__PROFILE__|__PROFILE__.kns.{decision.endpoint.namespace}|allow|0"]
    policy, rule = decision.policy, decision.rule_index
    if decision.reason is Reason.TIER_DEFAULT:
        policy, rule = decision.steps[-1].policies[0], -1
    assert policy is not None and rule is not None
    name = f"{policy.namespace}/{policy.calico_name}" if policy.namespace else policy.calico_name
    return [f"0|{decision.tier}|{name}|{action}|{rule}"]


CASES = [
    # (src, dst, port, protocol, direction, pending hit)
    ("shop/web-0", "shop/api-0", 8080, TCP, Direction.INGRESS,
     "0|default|shop/staged:knp.default.api|allow|0"),
    ("shop/web-0", "shop/api-0", 5353, UDP, Direction.INGRESS,  # enforced allows, staged not
     "0|default|shop/staged:knp.default.api|deny|-1"),
    ("shop/db-0", "shop/api-0", 8080, TCP, Direction.EGRESS,
     "0|default|shop/staged:db-egress|deny|0"),
    ("shop/web-0", "shop/db-0", 5432, TCP, Direction.EGRESS,
     "0|__PROFILE__|__PROFILE__.kns.shop|allow|0"),
]  # fmt: skip


def test_pending_hits_agree_with_the_reference_staged_engine() -> None:
    state = cluster()
    questions = []
    for src, dst, port, protocol, direction, _ in CASES:
        source, dest = state.endpoint(src), state.endpoint(dst)
        assert source is not None and dest is not None
        namespace = (source if direction is Direction.EGRESS else dest).namespace or "-"
        questions.append(
            PendingQuestion(
                str(source.ips[0]), str(dest.ips[0]), port, protocol, direction, namespace
            )
        )
    hits = pending_hits(state, questions)
    assert hits == [[case[-1]] for case in CASES]
    staged = PolicyEngine(state, staged=True)
    for (src, dst, port, protocol, direction, _), got in zip(CASES, hits, strict=True):
        source, dest = state.endpoint(src), state.endpoint(dst)
        assert source is not None and dest is not None
        verdict = staged.decide(Flow(source, dest, port, protocol))
        decision = verdict.egress if direction is Direction.EGRESS else verdict.ingress
        assert got == expected_hit(decision)


def test_no_staged_policy_no_pending() -> None:
    enforced_only = INPUTS.split("---\napiVersion: projectcalico.org/v3")[0]
    state = load_text(enforced_only, "inputs.yaml").cluster
    question = PendingQuestion("10.7.1.10", "10.7.1.11", 8080, TCP, Direction.INGRESS, "shop")
    assert pending_hits(state, [question]) is None


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "inputs.yaml"
    path.write_text(INPUTS)
    return path


def test_compile_nftables_with_flow_logs(inputs: Path) -> None:
    runner = CliRunner()
    base = ["compile", "-f", str(inputs), "--target", "nftables", "--node", "n1"]
    plain = runner.invoke(app, base)
    logged = runner.invoke(app, [*base, "--flow-logs"])
    assert plain.exit_code == 0 and logged.exit_code == 0, (plain.output, logged.output)
    assert "log prefix" not in plain.stdout
    assert 'log prefix "default|shop/knp.default.api|allow|0 " group' in logged.stdout
    assert 'log prefix "__PROFILE__|__PROFILE__|allow|0 " group' in logged.stdout
    wrong = runner.invoke(app, ["compile", "-f", str(inputs), "--target", "k8s", "--flow-logs"])
    assert wrong.exit_code == 2 and "--flow-logs is for --target nftables" in wrong.output

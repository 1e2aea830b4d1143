"""Without root: `policies_pending` from the staged set: every hit in order (Pass, tier
defaults, profiles, host endpoints), named as the dataplane's flow logs name them, and
`compile --target nftables --flow-logs`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.nftables import PROFILE_HIT, calico_interfaces, compile_ruleset
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.engine.decide import staged_policy_set
from netwarden.engine.verdict import Decision, Reason
from netwarden.flows import collect_pending
from netwarden.flows.collect_pending import PendingQuestion, pending_hits
from netwarden.model import TCP, UDP, ClusterState, Direction, Flow
from tests.flows.lab_inputs import allow_ingress_yaml, namespace_yaml, node_yaml, pod_yaml

#: The pods of both inventories here: web, api and db, all on n1.
SHOP_PODS = (
    pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + pod_yaml("api-0", "app: api", "n1", "10.7.1.11")
    + pod_yaml("db-0", "app: db", "n1", "10.7.1.12")
)
INPUTS = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + SHOP_PODS
    + allow_ingress_yaml("api", "web", "8080/TCP", "5353/UDP")
    + """---
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
)


def cluster() -> ClusterState:
    return load_text(INPUTS, "inputs.yaml").cluster


def expected_hits(decision: Decision) -> list[str]:
    """The reference engine's staged decision, written as Calico writes a hit: here every
    decision is the only hit (one tier, no Pass)."""
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


def question(
    state: ClusterState, src: str, dst: str, port: int, protocol: int, direction: Direction
) -> PendingQuestion:
    """A question about the first addresses of two endpoints (`ns/pod` or an address)."""
    source, dest = state.endpoint(src), state.endpoint(dst)
    assert source is not None and dest is not None
    return PendingQuestion(str(source.ips[0]), str(dest.ips[0]), port, protocol, direction)


def test_pending_hits_agree_with_the_reference_staged_engine() -> None:
    state = cluster()
    questions = [question(state, *case[:5]) for case in CASES]
    hits = pending_hits(state, questions)
    assert hits == [[case[-1]] for case in CASES]
    staged = PolicyEngine(state, staged=True)
    for (src, dst, port, protocol, direction, _), got in zip(CASES, hits, strict=True):
        source, dest = state.endpoint(src), state.endpoint(dst)
        assert source is not None and dest is not None
        verdict = staged.decide(Flow(source, dest, port, protocol))
        decision = verdict.egress if direction is Direction.EGRESS else verdict.ingress
        assert got == expected_hits(decision)


def test_no_staged_policy_no_pending() -> None:
    enforced_only = INPUTS.split("---\napiVersion: projectcalico.org/v3")[0]
    state = load_text(enforced_only, "inputs.yaml").cluster
    asked = PendingQuestion("10.7.1.10", "10.7.1.11", 8080, TCP, Direction.INGRESS)
    assert pending_hits(state, [asked]) is None


#: Tiers: an enforced admin policy that decides nothing here (its tier's default is Pass, which
#: logs nothing), a staged security tier that logs nothing for a Log rule, passes web and
#: denies db, and a staged default-tier policy; a host endpoint with a profile on node n1.
TIERED = (
    namespace_yaml("shop", "team: shop")
    + node_yaml("n1", "172.30.0.1")
    + SHOP_PODS
    + """---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.30.0.1], profiles: [allow-out]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: allow-out}
spec:
  egress: [{action: Allow}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: shop}}}
  ingress:
    - action: Deny
      from: [{namespaces: {matchLabels: {team: nobody}}}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: security.triage}
spec:
  tier: security
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
    - action: Log
    - action: Pass
      source: {selector: app == 'web'}
    - action: Deny
      protocol: TCP
      source: {selector: app == 'db'}
      destination: {ports: [8080]}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: default.api, namespace: shop}
spec:
  selector: app == 'api'
  types: [Ingress]
  ingress:
    - action: Deny
      protocol: TCP
      source: {selector: app == 'web'}
      destination: {ports: [8080]}
    - action: Allow
"""
)

TIERED_CASES = [
    # Pass in the security tier, then the default tier's deny: both, in order.
    ("shop/web-0", "shop/api-0", 8080, TCP, Direction.INGRESS,
     ["0|security|staged:security.triage|pass|1", "1|default|shop/staged:default.api|deny|0"]),
    ("shop/web-0", "shop/api-0", 9000, TCP, Direction.INGRESS,
     ["0|security|staged:security.triage|pass|1", "1|default|shop/staged:default.api|allow|1"]),
    ("shop/db-0", "shop/api-0", 8080, TCP, Direction.INGRESS,
     ["0|security|staged:security.triage|deny|2"]),
    # Nothing in the security tier matches: its default (Deny), named after its policy.
    ("shop/db-0", "shop/web-0", 80, TCP, Direction.INGRESS,
     ["0|security|staged:security.triage|deny|-1"]),
    ("shop/web-0", "shop/db-0", 5432, TCP, Direction.EGRESS,
     ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]),
    # The host endpoint: failsafe first; the security tier passes, no profile allows ingress;
    # its profile allows egress.
    ("shop/web-0", "172.30.0.1", 22, TCP, Direction.INGRESS,
     ["0|__FAILSAFE__|__FAILSAFE__|allow|0"]),
    ("shop/web-0", "172.30.0.1", 80, TCP, Direction.INGRESS,
     ["0|security|staged:security.triage|pass|1", "1|__PROFILE__|__NO_MATCH__|deny|-1"]),
    ("172.30.0.1", "shop/api-0", 9000, TCP, Direction.EGRESS,
     ["0|__PROFILE__|__PROFILE__.allow-out|allow|0"]),
    # An address outside the inventory is no policy's subject: nothing is pending.
    ("203.0.113.9", "shop/api-0", 9000, TCP, Direction.EGRESS, []),
]  # fmt: skip


def test_pending_hits_list_every_hit_in_order() -> None:
    state = load_text(TIERED, "tiered.yaml").cluster
    questions = [question(state, *case[:5]) for case in TIERED_CASES]
    assert pending_hits(state, questions) == [case[-1] for case in TIERED_CASES]


def test_identical_questions_are_decided_once(monkeypatch: pytest.MonkeyPatch) -> None:
    state = load_text(TIERED, "tiered.yaml").cluster
    asked = [question(state, *case[:5]) for case in TIERED_CASES[:3]] * 50
    decided: list[PendingQuestion] = []
    real = collect_pending._decide
    monkeypatch.setattr(
        collect_pending, "_decide", lambda engine, q: decided.append(q) or real(engine, q)
    )
    hits = pending_hits(state, asked)
    assert len(decided) == 3 and hits is not None and len(hits) == 150
    assert hits[3:6] == hits[:3] and hits[0] is not hits[3]  # equal answers, separate lists


def test_pending_hits_are_what_the_staged_set_would_log_if_enforced() -> None:
    """Every pending hit is a flow-log prefix of the ruleset compiled from the staged set
    made the enforced one: the names, actions and rule numbers are the dataplane's."""
    state = load_text(TIERED, "tiered.yaml").cluster
    enforced = replace(state, policies=staged_policy_set(state.policies))
    script = compile_ruleset(
        enforced, "n1", calico_interfaces(enforced, "n1"), flow_logs=True
    ).script
    questions = [question(state, *case[:5]) for case in TIERED_CASES]
    hits = pending_hits(state, questions)
    assert hits is not None
    logged = {hit.split("|", 1)[1] for found in hits for hit in found}
    assert len(logged) >= 8
    for hit in logged:
        if hit.startswith("__PROFILE__|__PROFILE__.kns."):  # the collector names the profile
            hit = PROFILE_HIT
        assert f'log prefix "{hit} " group' in script, hit


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

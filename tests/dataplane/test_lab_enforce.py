"""`lab up --enforce`, `lab apply` and `lab probe --compare` for real (root; CI runs these):
policies loaded before any pod is connected, replaced atomically, compared with the engine,
and fail closed for a pod no ruleset knows."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.apply import list_table
from netwarden.dataplane.lab import apply_lab, destroy_lab
from netwarden.dataplane.lab_enforce import compile_lab, enforce_lab, node_interfaces
from netwarden.dataplane.lab_manifests import served_ports
from netwarden.dataplane.lab_plan import plan_lab
from netwarden.dataplane.lab_probe import ProbeResult, run_probes
from netwarden.dataplane.lab_state import AppliedRuleset, load_state
from netwarden.dataplane.nftables import Ruleset
from netwarden.dialects import load_documents
from netwarden.dialects.source import read_text
from netwarden.engine.batch import Probe
from netwarden.model import TCP, UDP
from tests.dataplane.conftest import TEST_PREFIX

pytestmark = pytest.mark.root

INVENTORY = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
"""
for _name, _ip, _node in (("web", "10.7.1.10", "n1"), ("api", "10.7.2.10", "n2")):
    INVENTORY += f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {_name}-0, namespace: shop, labels: {{app: {_name}}}}}
spec:
  nodeName: {_node}
  containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}, {{containerPort: 53, protocol: UDP}}]}}]
status: {{podIP: {_ip}}}
"""
INVENTORY += """
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec:
  nodeName: n2
  containers: [{name: c, ports: [{containerPort: 5432}]}]
status: {podIP: 10.7.2.11}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.30.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 172.30.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-0, namespace: shop, labels: {app: agent}}
spec:
  nodeName: n1
  hostNetwork: true
  containers: [{name: c, ports: [{containerPort: 9100}]}]
status: {podIP: 172.30.0.1}
"""

API_FROM_WEB = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]
"""
WEB_FROM_API = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]
  egress: [{to: [{ipBlock: {cidr: 172.30.0.0/24}}]}, {to: [{podSelector: {}}], ports: [{port: 8080}]}]
"""
DB_FROM_API = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]
"""


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "api.yaml").write_text(API_FROM_WEB)
    (folder / "web.yaml").write_text(WEB_FROM_API)
    return folder


@pytest.fixture
def lab(lab_env: Path) -> Iterator[str]:
    name = "enforce"
    destroy_lab(name, TEST_PREFIX, lab_env)
    try:
        yield name
    finally:
        destroy_lab(name, TEST_PREFIX, lab_env)


def invoke(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(arguments))
    return result.exit_code, result.output


def compared(name: str) -> tuple[int, list[dict[str, object]]]:
    code, output = invoke("lab", "probe", "--name", name, "--compare", "-o", "json")
    start = output.index("[")
    return code, json.loads(output[start : output.rindex("]") + 1])


def result_of(rows: list[dict[str, object]], src: str, dst: str, port: int) -> object:
    (row,) = [r for r in rows if (r["src"], r["dst"], r["port"]) == (src, dst, port)]
    return row["result"]


def test_up_enforce_apply_and_compare(inputs: Path, lab: str, lab_env: Path) -> None:
    code, output = invoke("lab", "up", "-f", str(inputs), "--name", lab, "--enforce")
    assert code == 0, output
    assert "node n1: nftables ruleset loaded" in output
    state = load_state(lab, lab_env)
    assert state.enforced and len(state.rulesets) == 2 and state.sources
    code, rows = compared(lab)
    assert code == 0 and all(row["match"] for row in rows), rows
    assert result_of(rows, "shop/web-0", "shop/api-0", 8080) == "connected"
    assert result_of(rows, "shop/db-0", "shop/api-0", 8080) == "timeout"
    assert result_of(rows, "shop/web-0", "shop/api-0", 53) == "timeout"
    assert result_of(rows, "shop/web-0", "shop/db-0", 5432) == "timeout"  # web's egress
    # hostNetwork agent on n1: its node's output hook enforces web-0's ingress (a dropped UDP
    # datagram is EPERM there; TCP retries and times out); web-0's egress to its own node's
    # address goes through the input hook.
    assert result_of(rows, "shop/agent-0", "shop/web-0", 8080) == "timeout"
    assert result_of(rows, "shop/agent-0", "shop/web-0", 53) == "dropped"
    assert result_of(rows, "shop/api-0", "shop/web-0", 8080) == "connected"
    assert result_of(rows, "shop/web-0", "shop/agent-0", 9100) == "connected"
    assert result_of(rows, "shop/db-0", "shop/agent-0", 9100) == "connected"

    # A policy change: one transaction per node, then the engine agrees again.
    (inputs / "db.yaml").write_text(DB_FROM_API)
    code, output = invoke("lab", "apply", "-f", str(inputs), "--name", lab)
    assert code == 0, output
    code, rows = compared(lab)
    assert code == 0 and all(row["match"] for row in rows), rows
    assert result_of(rows, "shop/agent-0", "shop/db-0", 5432) == "timeout"
    assert result_of(rows, "shop/api-0", "shop/db-0", 5432) == "connected"


def test_compare_exits_1_when_probes_disagree(inputs: Path, lab: str) -> None:
    code, output = invoke("lab", "up", "-f", str(inputs), "--name", lab)  # nothing enforced
    assert code == 0, output
    code, rows = compared(lab)
    assert code == 1
    wrong = {(r["src"], r["dst"], r["port"]) for r in rows if r["match"] is False}
    denied = {(r["src"], r["dst"], r["port"]) for r in rows if r["allowed"] is False}
    assert wrong == denied and ("shop/db-0", "shop/api-0", 8080) in wrong
    assert all(r["result"] == "connected" for r in rows)


def test_a_broken_apply_keeps_the_ruleset_and_says_why(
    inputs: Path, lab: str, lab_env: Path
) -> None:
    code, output = invoke("lab", "up", "-f", str(inputs), "--name", lab, "--enforce")
    assert code == 0, output
    plan = load_state(lab, lab_env).plan
    before = [_rules(node.netns) for node in plan.nodes]
    inventory = inputs / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("10.7.1.10", "10.9.9.9"))
    code, output = invoke("lab", "apply", "-f", str(inputs), "--name", lab)
    assert code == 2 and "the inventory changed" in output
    assert [_rules(node.netns) for node in plan.nodes] == before


def _rules(netns: str) -> str:
    """The live table without its counters (link-local traffic moves them at any time)."""
    return re.sub(r"counter packets \d+ bytes \d+", "counter", list_table(netns))


def test_policy_is_in_place_before_any_pod_is_connected_and_unknown_pods_are_dropped(
    lab: str, lab_env: Path
) -> None:
    documents = read_text(INVENTORY + "---\n" + API_FROM_WEB, "inputs.yaml")
    cluster = load_documents(documents).cluster
    plan = plan_lab(cluster, lab, served=served_ports(documents, cluster), prefix=TEST_PREFIX)
    seen: list[str] = []

    def enforce() -> tuple[AppliedRuleset, ...]:
        for node in plan.nodes:  # no veth exists yet, the ruleset already does
            links = subprocess.run(
                ["ip", "-n", node.netns, "-o", "link"], capture_output=True, text=True, check=True
            ).stdout
            seen.append(links)
            assert TEST_PREFIX not in links
        # Compiled without db-0: its node has no policy for it and must drop its traffic.
        rulesets = compile_lab(cluster, plan)
        missing = node_interfaces(plan)["n2"]["shop/db-0"]
        assert any(f'"{missing}"' in ruleset.script for _, ruleset in rulesets)
        rulesets = [(node, _without(ruleset, missing)) for node, ruleset in rulesets]
        return enforce_lab(rulesets, flush=False)

    apply_lab(plan, lab_env, enforce=enforce)
    assert len(seen) == 2
    probes = [
        Probe("shop/web-0", "shop/api-0", 8080, TCP),
        Probe("shop/web-0", "shop/db-0", 5432, TCP),
        Probe("shop/db-0", "shop/web-0", 8080, TCP),
        Probe("shop/api-0", "shop/web-0", 53, UDP),
    ]
    outcomes = run_probes(plan, probes, timeout=0.5)
    results = [o.result for o in outcomes]
    assert results == [
        ProbeResult.CONNECTED,
        ProbeResult.TIMEOUT,
        ProbeResult.TIMEOUT,
        ProbeResult.CONNECTED,
    ], outcomes


def _without(ruleset: Ruleset, ifname: str) -> Ruleset:
    """The ruleset with one interface left out of both dispatch maps."""
    contents = tuple(
        replace(c, elements=tuple(e for e in c.elements if not e.startswith(f'"{ifname}" ')))
        for c in ruleset.contents
    )
    changed = replace(ruleset, contents=contents)
    assert f'"{ifname}"' not in changed.script
    return changed

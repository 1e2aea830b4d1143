"""`lab pod add/del/label`: churn in a running lab, enforced with element-only transactions
and proven with real probes (root; CI runs these). The planning helpers are tested without
root."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.lab import destroy_lab, lab_namespaces
from netwarden.dataplane.lab_churn import (
    parse_label_edits,
    parse_labels,
    plan_pod,
    pod_parts,
    replay,
)
from netwarden.dataplane.lab_plan import ServedPort, plan_lab
from netwarden.dataplane.lab_state import PodChange, load_state
from netwarden.dialects import load_text
from netwarden.errors import LabError
from netwarden.model import TCP
from tests.dataplane.conftest import TEST_PREFIX

INPUTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
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
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status: {podIP: 10.7.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec:
  nodeName: n2
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status: {podIP: 10.7.2.10}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]
"""


# --- planning (no root) -----------------------------------------------------------------------


def test_a_planned_pod_is_exactly_the_parts_a_deletion_takes_away() -> None:
    cluster = load_text(INPUTS).cluster
    plan = plan_lab(cluster, "churn", prefix="nw")
    grown = plan_pod(plan, "shop/web-1", "n1", None, [ServedPort(8080, TCP)])
    added = grown.endpoint("shop/web-1")
    assert added is not None and added.node == "n1"
    assert added.ips[0] in next(n for n in plan.nodes if n.name == "n1").pod_cidr
    mine, rest = pod_parts(grown, "shop/web-1")
    assert rest == plan
    involved = {added.netns, "nw-churn-node-n1", "nw-churn-fabric"}
    assert {n.name for n in mine.namespaces} == involved
    assert {r.netns for r in mine.routes} == {added.netns, "nw-churn-node-n1", "nw-churn-fabric"}
    with pytest.raises(LabError, match="already in lab"):
        plan_pod(grown, "shop/web-1", None, None, ())
    with pytest.raises(LabError, match="already used"):
        plan_pod(plan, "shop/web-2", None, IPv4Address("10.7.1.10"), ())
    with pytest.raises(LabError, match="no node 'n9'"):
        plan_pod(plan, "shop/web-2", "n9", None, ())


def test_changes_replay_on_the_inputs_in_order() -> None:
    cluster = load_text(INPUTS).cluster
    changes = [
        PodChange("add", "shop/web-1", (("app", "web"),), node="n1", ip=IPv4Address("10.7.1.2")),
        PodChange("label", "shop/web-1", (("tier", "front"),), ("app",)),
        PodChange("delete", "shop/api-0"),
    ]
    after = replay(cluster, changes)
    assert after.endpoints_by_key["shop/web-1"].labels == {"tier": "front"}
    assert "shop/api-0" not in after.endpoints_by_key
    assert len(after.endpoints) == len(cluster.endpoints)


def test_label_arguments_are_checked() -> None:
    assert parse_labels("app=web, tier=front") == (("app", "web"), ("tier", "front"))
    assert parse_label_edits(["app=api", "tier-"]) == ((("app", "api"),), ("tier",))
    for bad in (["app"], ["a b=c"], ["app=-x"], []):
        with pytest.raises(LabError):
            parse_label_edits(bad)
    with pytest.raises(LabError, match="KEY=VALUE"):
        parse_labels("app")


# --- a real lab (root) ------------------------------------------------------------------------


@pytest.fixture
def lab(lab_env: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = "churn"
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text(INPUTS)
    destroy_lab(name, TEST_PREFIX, lab_env)
    try:
        yield name, inputs
    finally:
        destroy_lab(name, TEST_PREFIX, lab_env)


def invoke(*arguments: str) -> str:
    result = CliRunner().invoke(app, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


def probe(name: str) -> dict[tuple[str, str], str]:
    """(src, dst) -> result for every pair on 8080/TCP; every probe must agree with the
    engine on the lab's inputs with its changes replayed."""
    result = CliRunner().invoke(app, ["lab", "probe", "--name", name, "--compare", "-o", "json"])
    rows = json.loads(result.output[result.output.index("[") : result.output.rindex("]") + 1])
    assert result.exit_code == 0 and all(r["match"] is not False for r in rows), rows
    return {(str(r["src"]), str(r["dst"])): str(r["result"]) for r in rows if r["port"] == 8080}


def table(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-s", "list", "table", "inet", "netwarden"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def skeleton(listing: str) -> str:
    """The table without its elements: declarations and every chain and rule, as listed."""
    return re.sub(r"elements = \{[^}]*\}", "elements", listing)


@pytest.mark.root
def test_pods_come_change_and_go_with_element_changes_only(lab: tuple[str, Path]) -> None:
    name, inputs = lab
    invoke("lab", "up", "-f", str(inputs), "--name", name, "--enforce")
    nodes = {n.name: n.netns for n in load_state(name).plan.nodes}
    before = {node: skeleton(table(netns)) for node, netns in nodes.items()}

    out = invoke(
        "lab", "pod", "add", "shop/web-1", "--name", name, "--labels", "app=web",
        "--node", "n1", "--ports", "8080/TCP",
    )  # fmt: skip
    assert out.count("no rule rewritten") == 2, out
    out = invoke(
        "lab", "pod", "add", "shop/api-1", "--name", name, "--labels", "app=api",
        "--node", "n2", "--ports", "8080/TCP",
    )  # fmt: skip
    results = probe(name)
    assert results["shop/web-1", "shop/api-0"] == "connected"  # a new peer of the allow
    assert results["shop/web-0", "shop/api-1"] == "connected"  # a new subject of it
    assert results["shop/api-0", "shop/api-1"] == "timeout"  # isolated from the start

    out = invoke("lab", "pod", "label", "shop/web-1", "app=other", "--name", name)
    assert "n2: 0 element(s) added, 1 removed; no rule rewritten" in out, out
    results = probe(name)
    assert results["shop/web-1", "shop/api-0"] == "timeout"  # relabelled: access lost
    assert results["shop/web-0", "shop/api-0"] == "connected"

    state = load_state(name)
    web_1 = state.plan.endpoint("shop/web-1")
    assert web_1 is not None
    address, netns = str(web_1.ips[0]), web_1.netns
    ifname = next(link.router_ifname for link in state.plan.links if link.leaf_netns == netns)
    assert address in table(nodes["n1"]) and ifname in table(nodes["n1"])
    out = invoke("lab", "pod", "del", "shop/web-1", "--name", name)
    assert out.count("no rule rewritten") == 2, out
    for node_netns in nodes.values():  # its address and interface are gone everywhere
        assert address not in table(node_netns) and ifname not in table(node_netns)
    assert netns not in lab_namespaces(TEST_PREFIX)
    results = probe(name)
    assert "shop/web-1" not in {src for src, _ in results}

    after = {node: skeleton(table(netns)) for node, netns in nodes.items()}
    assert after == before  # every chain and rule byte for byte: only elements changed
    assert [c.action for c in load_state(name).changes] == ["add", "add", "label", "delete"]

"""`NodeCompiler`: pods that come, go and change labels placed without compiling again, and
always the same elements as a full compile of the new inventory."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from benchmarks.generate import generate_cluster

from netwarden.dataplane.nft_delta import NodeCompiler
from netwarden.dataplane.nft_ruleset import SetContents
from netwarden.dataplane.nft_update import ElementChange, LoadedRuleset, plan_update
from netwarden.dataplane.nftables import calico_interfaces, compile_ruleset
from netwarden.dialects import load_text
from netwarden.model import ClusterState, Endpoint, EndpointKind
from tests.dataplane.test_nftables import PODS

NODE = "node-000"


def elements(contents: Sequence[SetContents]) -> dict[str, frozenset[str]]:
    return {c.name: frozenset(c.elements) for c in contents}


def as_sets(changes: Sequence[ElementChange]) -> dict[str, tuple[frozenset[str], ...]]:
    return {c.name: (frozenset(c.removed), frozenset(c.added)) for c in changes}


def check_same_as_full(compiler: NodeCompiler, cluster: ClusterState) -> None:
    full = compile_ruleset(cluster, NODE, calico_interfaces(cluster, NODE))
    kept = elements(compiler.ruleset.contents)
    for name, held in elements(full.contents).items():
        assert kept[name] == held, name
    assert set(full.chain_lines) <= set(compiler.ruleset.chain_lines)


@pytest.mark.slow
def test_random_churn_matches_a_full_compile_every_time() -> None:
    cluster = load_text(generate_cluster(pods=240, policies=60, seed=5)).cluster
    compiler = NodeCompiler(cluster, NODE, calico_interfaces(cluster, NODE))
    rng = random.Random(5)
    tenants = [e for e in cluster.endpoints if e.kind is EndpointKind.POD and e.labels.get("team")]
    local = [e for e in tenants if e.node == NODE]
    incremental = 0
    for step in range(24):
        endpoints = list(cluster.endpoints)
        removed: list[Endpoint] = []
        added: list[Endpoint] = []
        action = step % 3
        if action == 0:  # a replica of a workload, here or on another node
            template = rng.choice(local if step % 2 else tenants)
            node = NODE if step % 2 else "node-001"
            added = [
                replace(
                    template,
                    name=f"new-{step}",
                    ips=(IPv4Address(f"10.244.250.{step + 1}"),),
                    node=node,
                )
            ]
        else:
            victim = rng.choice([e for e in endpoints if e in tenants or e.name.startswith("new")])
            removed = [victim]
            if action == 1:  # relabelled as another pod of its namespace
                other = rng.choice([t for t in tenants if t.namespace == victim.namespace])
                added = [replace(victim, labels=dict(other.labels))]
        for endpoint in removed:
            endpoints.remove(endpoint)
        endpoints += added
        cluster = replace(cluster, endpoints=tuple(endpoints))
        before = LoadedRuleset.of(compiler.ruleset)
        ruleset, changes = compiler.update(
            cluster, removed, added, calico_interfaces(cluster, NODE)
        )
        incremental += changes is not None
        if changes is not None:  # what it says changed is what comparing every set finds
            assert as_sets(changes) == as_sets(plan_update(before, ruleset).changes)
        check_same_as_full(compiler, cluster)
    assert incremental >= 16  # most churn is a pure element change


def test_a_pod_of_a_class_no_chain_serves_compiles_again_and_says_why() -> None:
    cluster = load_text(
        PODS.replace("nodeName: n1", f"nodeName: {NODE}").replace("nodeName: n2", "nodeName: x")
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: c-only, namespace: x}
spec:
  podSelector: {matchLabels: {app: c}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
"""
    ).cluster
    compiler = NodeCompiler(cluster, NODE, calico_interfaces(cluster, NODE))
    assert compiler.full_compiles == 1
    a = cluster.endpoints_by_key["x/a"]
    # A second `a` on the node: same class (unselected), a peer of c-only: elements only.
    a2 = replace(a, name="a2", ips=(IPv4Address("10.1.0.20"),))
    after = replace(cluster, endpoints=(*cluster.endpoints, a2))
    ruleset, changes = compiler.update(after, [], [a2], calico_interfaces(after, NODE))
    assert changes is not None and compiler.full_compiles == 1
    assert {c.name for c in changes} >= {"known4", "egress_dispatch", "ingress_dispatch"}
    # A `c` on the node: the class that c-only selects has no chain here yet.
    c2 = replace(a, name="c2", labels={"app": "c"}, ips=(IPv4Address("10.1.0.21"),))
    later = replace(after, endpoints=(*after.endpoints, c2))
    ruleset, changes = compiler.update(later, [], [c2], calico_interfaces(later, NODE))
    assert changes is None and compiler.full_compiles == 2
    assert "no chain serves its ingress class" in compiler.last_reason
    check_same_as_full(compiler, later)
    assert ruleset.skeleton != compile_ruleset(after, NODE, calico_interfaces(after, NODE)).skeleton


def test_an_address_already_held_is_never_placed_blindly() -> None:
    cluster = load_text(PODS.replace("nodeName: n1", f"nodeName: {NODE}")).cluster
    compiler = NodeCompiler(cluster, NODE, calico_interfaces(cluster, NODE))
    a = cluster.endpoints_by_key["x/a"]
    twin = replace(a, name="twin")  # the same address as x/a
    after = replace(cluster, endpoints=(*cluster.endpoints, twin))
    _, changes = compiler.update(after, [], [twin], calico_interfaces(after, NODE))
    assert changes is None and "held by another endpoint" in compiler.last_reason

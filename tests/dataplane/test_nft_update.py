"""Incremental updates: element-only transactions when the skeleton holds, the full table
otherwise, the generation guard that refuses a stale state, and the fallback (root tests load
them into throwaway namespaces)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netwarden.dataplane.apply import apply_ruleset, list_table
from netwarden.dataplane.nft_update import (
    LoadedRuleset,
    apply_update,
    plan_update,
    read_loaded,
    write_loaded,
)
from netwarden.dataplane.nftables import Ruleset, calico_interfaces, compile_ruleset
from netwarden.dialects import load_text
from netwarden.errors import ApplyError, InputError
from tests.dataplane.conftest import TEST_PREFIX
from tests.dataplane.test_nftables import PODS, pod

POLICY = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 8080}]}]
"""


def ruleset_of(text: str, node: str = "n1") -> Ruleset:
    cluster = load_text(text).cluster
    return compile_ruleset(cluster, node, calico_interfaces(cluster, node))


BEFORE = ruleset_of(PODS + POLICY)
# One more `b` pod on n1 (a peer of the policy and a local pod) and one more `a` pod on n2.
AFTER = ruleset_of(
    PODS
    + POLICY
    + pod("b2", "10.1.0.13", "{app: b}")
    + pod("a2", "10.1.0.14", "{app: a}", node="n2")
)


def test_new_pods_change_elements_only_and_keep_the_skeleton() -> None:
    assert AFTER.skeleton == BEFORE.skeleton
    assert AFTER.chain_lines == BEFORE.chain_lines
    update = plan_update(LoadedRuleset.of(BEFORE), AFTER)
    assert not update.full
    changed = {c.name: c for c in update.changes}
    assert changed["known4"].added == ("10.1.0.13", "10.1.0.14") and not changed["known4"].removed
    (peer_set,) = [n for n in changed if n.startswith("addr4_")]
    assert changed[peer_set].added == ("10.1.0.13",)  # a2 is no `b`: only b2 joins the peers
    b2 = calico_interfaces(load_text(PODS + pod("b2", "10.1.0.13", "{app: b}")).cluster, "n1")
    assert changed["ingress_dispatch"].added == (f'"{b2["x/b2"]}" : accept',)
    # known x2, the peer set, two dispatch entries; nothing else (a2 lives on n2).
    assert update.added == 5 and update.removed == 0
    lines = update.script.splitlines()
    assert lines[1] == f"delete element inet netwarden generation {{ 0x{BEFORE.generation} }}"
    assert lines[2] == f"add element inet netwarden generation {{ 0x{AFTER.generation} }}"
    # New endpoints reach their policy last: set elements before dispatch entries.
    kinds = [line.split()[4] for line in lines[3:]]
    assert kinds.index("egress_dispatch") > kinds.index(peer_set)
    assert kinds[-2:] == ["egress_dispatch", "ingress_dispatch"]
    assert "chain" not in update.script and "rule" not in update.script


def test_removals_delete_dispatch_entries_first_and_map_keys_only() -> None:
    update = plan_update(LoadedRuleset.of(AFTER), BEFORE)
    assert not update.full and update.removed == 5 and update.added == 0
    lines = update.script.splitlines()[3:]
    assert lines[0].startswith("delete element inet netwarden egress_dispatch {")
    assert " : " not in lines[0] and " : " not in lines[1]  # a map element is deleted by key
    assert all(line.startswith("delete element") for line in lines)


def test_a_relabelled_local_pod_swaps_its_dispatch_entry() -> None:
    relabelled = ruleset_of((PODS + POLICY).replace("{app: b}", "{app: a}", 1))
    assert relabelled.skeleton == BEFORE.skeleton
    update = plan_update(LoadedRuleset.of(BEFORE), relabelled)
    (ingress,) = [c for c in update.changes if c.name == "ingress_dispatch"]
    assert len(ingress.removed) == 1 and len(ingress.added) == 1
    assert ingress.removed[0].endswith(": accept") and ": jump ingress_c_" in ingress.added[0]
    assert update.script.index("delete element inet netwarden ingress_dispatch") < (
        update.script.index("add element inet netwarden ingress_dispatch")
    )


def test_a_policy_change_or_no_state_replaces_the_table() -> None:
    other_policy = ruleset_of(PODS + POLICY.replace("port: 8080", "port: 9090"))
    assert other_policy.skeleton != BEFORE.skeleton
    assert plan_update(LoadedRuleset.of(BEFORE), other_policy).full
    assert plan_update(None, BEFORE).reason == "no previous state"
    other_node = ruleset_of(PODS + POLICY, "n2")
    assert "node n1" in plan_update(LoadedRuleset.of(BEFORE), other_node).reason
    assert plan_update(LoadedRuleset.of(BEFORE), BEFORE).describe().startswith("no change")


def test_state_files_round_trip_and_bad_ones_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "n1.json"
    assert read_loaded(path) is None
    write_loaded(path, LoadedRuleset.of(BEFORE))
    assert read_loaded(path) == LoadedRuleset.of(BEFORE)
    path.write_text("{not json")
    with pytest.raises(InputError, match=rf"{path}: unreadable ruleset state"):
        read_loaded(path)


# --- real nftables (root) ---------------------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"{TEST_PREFIX}-upd"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def stateless(netns: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-s", "list", "table", "inet", "netwarden"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def chains_of(listing: str) -> str:
    return listing[listing.index("\tchain ") :]


@pytest.mark.root
def test_an_incremental_update_loads_elements_and_leaves_every_rule(netns: str) -> None:
    first = apply_update(netns, None, BEFORE)
    assert first.update.full
    before = stateless(netns)
    second = apply_update(netns, first.state, AFTER)
    assert not second.update.full and not second.fallback
    after = stateless(netns)
    assert chains_of(after) == chains_of(before)  # byte for byte: no rule rewritten
    assert "10.1.0.13" in after and "10.1.0.14" in after
    # What the kernel holds equals the full replacement of the same ruleset.
    apply_ruleset(netns, AFTER.script)
    assert stateless(netns) == after


@pytest.mark.root
def test_a_stale_state_is_refused_by_the_generation_and_the_table_replaced(netns: str) -> None:
    first = apply_update(netns, None, BEFORE)
    apply_ruleset(netns, AFTER.script)  # someone else loaded another generation meanwhile
    done = apply_update(netns, first.state, BEFORE)
    assert done.update.full and "No such file or directory" in done.fallback
    replaced = stateless(netns)
    assert f"0x{BEFORE.generation}" in replaced and "10.1.0.13" not in replaced
    apply_ruleset(netns, BEFORE.script)
    assert stateless(netns) == replaced  # exactly the full ruleset, nothing mixed in


@pytest.mark.root
def test_a_rejected_update_leaves_the_table_as_it_was(netns: str) -> None:
    first = apply_update(netns, None, BEFORE)
    before = list_table(netns)
    broken = replace(
        AFTER,
        contents=tuple(
            replace(c, elements=(*c.elements, "not-an-address")) if c.name == "known4" else c
            for c in AFTER.contents
        ),
    )
    with pytest.raises(ApplyError, match="previous ruleset is still in place"):
        apply_update(netns, first.state, broken)
    assert list_table(netns) == before

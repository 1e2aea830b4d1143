"""Flow collection in a lab: turn flow logs on in every lab node, collect, turn them off.

The lab must enforce its policies (`lab up --enforce`). `lab_flow_logs` reloads each node's
ruleset compiled from the lab's inventory as it is now (its inputs with the `lab pod`
changes replayed, `lab_churn.lab_cluster`) with `flow_logs=True`: every ruleset is checked,
then loaded with one `nft -f` transaction per node, connection tracking kept. It starts a
`FlowCollector` on every node and, on the way out, loads the rulesets without flow logs again.

Each load is recorded in the lab state (`LabState.rulesets`, with the `LoadedRuleset` an
incremental update is computed against), as `lab up` and `lab pod` do: otherwise a later
`lab pod` command would compute its element changes against a ruleset that is no longer in
the table, and its generation guard would reject them. The rulesets loaded on the way out
are compiled from the state as it is then, so a `lab pod` change made while collecting is
kept. Not covered: `lab pod` compiles without flow logs, so a pod change made while
collecting replaces the nodes' rulesets without them (a full replacement: the skeleton
differs), and connections opened after it are not logged; the collector also names the
endpoints of the inventory as it was when collection started.

    with lab_flow_logs("shop") as collector:
        ...                                  # traffic between the lab's pods
        result = collector.stop()
    store.append(result.table)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from netwarden.dataplane.lab import LabState, load_state, save_state
from netwarden.dataplane.lab_churn import lab_cluster as lab_inventory
from netwarden.dataplane.lab_enforce import (
    enforce_lab,
    interface_prefix,
    lab_view,
    node_interfaces,
)
from netwarden.dataplane.lab_plan import LabNode
from netwarden.dataplane.nftables import Ruleset, compile_ruleset
from netwarden.errors import LabError
from netwarden.flows.collect import FlowCollector
from netwarden.model import ClusterState


def lab_cluster(state: LabState) -> ClusterState:
    """The cluster the lab runs: its inputs, its pod changes, the addresses it gave."""
    if not state.sources:
        raise LabError(f"lab {state.plan.name} recorded no inputs: `lab up` it again")
    return lab_view(lab_inventory(state.sources, state.changes), state.plan)


def compile_lab_rulesets(
    state: LabState, cluster: ClusterState, flow_logs: bool
) -> list[tuple[LabNode, Ruleset]]:
    """Every node's ruleset for `cluster` with the lab's interfaces (pure: nothing loaded)."""
    plan = state.plan
    interfaces = node_interfaces(plan)
    prefix = interface_prefix(plan)
    compiled = []
    for node in plan.nodes:
        mine = {k: v for k, v in interfaces[node.name].items() if k in cluster.endpoints_by_key}
        compiled.append(
            (node, compile_ruleset(cluster, node.name, mine, prefix, flow_logs=flow_logs))
        )
    return compiled


def load_lab_rulesets(
    name: str, directory: Path | None, flow_logs: bool
) -> tuple[LabState, ClusterState]:
    """Compile every node's ruleset from the lab state as it is now, check them all, load
    them node by node (connection tracking kept), and record them in the lab state."""
    state = load_state(name, directory)
    cluster = lab_cluster(state)
    applied = enforce_lab(compile_lab_rulesets(state, cluster, flow_logs), flush=False)
    state = replace(state, rulesets=applied)
    save_state(state, directory)
    return state, cluster


@contextmanager
def lab_flow_logs(name: str, directory: Path | None = None) -> Iterator[FlowCollector]:
    """A started collector on every node of lab `name`, with flow logs on while it runs."""
    state = load_state(name, directory)
    if not state.enforced:
        raise LabError(f"lab {name} enforces no policy: `lab up --enforce` (or `lab apply`)")
    state, cluster = load_lab_rulesets(name, directory, flow_logs=True)
    try:
        collector = FlowCollector(cluster, {node.name: node.netns for node in state.plan.nodes})
        collector.start()
        try:
            yield collector
        finally:
            collector.close()
    finally:
        load_lab_rulesets(name, directory, flow_logs=False)

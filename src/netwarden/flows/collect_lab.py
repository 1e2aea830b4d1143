"""Flow collection in a lab: turn flow logs on in every lab node, collect, turn them off.

The lab must enforce its policies (`lab up --enforce`). `lab_flow_logs` reloads each node's
ruleset compiled from the lab's own inputs with `flow_logs=True` (one `nft -f` transaction per
node, checked first, connection tracking kept), starts a `FlowCollector` on every node, and on
the way out loads the same rulesets without flow logs again.

    with lab_flow_logs("shop") as collector:
        ...                                  # traffic between the lab's pods
        result = collector.stop()
    store.append(result.table)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netwarden.dataplane.apply import apply_ruleset, check_ruleset
from netwarden.dataplane.lab import LabState, load_state
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import (
    interface_prefix,
    lab_view,
    node_interfaces,
    source_documents,
)
from netwarden.dataplane.nftables import compile_ruleset
from netwarden.dialects import load_documents
from netwarden.errors import LabError
from netwarden.flows.collect import FlowCollector
from netwarden.model import ClusterState


def lab_cluster(state: LabState) -> ClusterState:
    """The cluster the lab runs: its inputs, its pod changes, the addresses it gave."""
    if not state.sources:
        raise LabError(f"lab {state.plan.name} recorded no inputs: `lab up` it again")
    cluster = replay(load_documents(source_documents(state.sources)).cluster, state.changes)
    return lab_view(cluster, state.plan)


def load_lab_rulesets(state: LabState, cluster: ClusterState, flow_logs: bool) -> None:
    """Every node's ruleset from the lab's inputs, checked, then loaded node by node."""
    plan = state.plan
    interfaces = node_interfaces(plan)
    prefix = interface_prefix(plan)
    scripts = []
    for node in plan.nodes:
        mine = {k: v for k, v in interfaces[node.name].items() if k in cluster.endpoints_by_key}
        ruleset = compile_ruleset(cluster, node.name, mine, prefix, flow_logs=flow_logs)
        check_ruleset(node.netns, ruleset.script)
        scripts.append((node.netns, ruleset.script))
    for netns, script in scripts:
        apply_ruleset(netns, script)


@contextmanager
def lab_flow_logs(name: str, directory: Path | None = None) -> Iterator[FlowCollector]:
    """A started collector on every node of lab `name`, with flow logs on while it runs."""
    state = load_state(name, directory)
    if not state.enforced:
        raise LabError(f"lab {name} enforces no policy: `lab up --enforce` (or `lab apply`)")
    cluster = lab_cluster(state)
    collector = FlowCollector(cluster, {node.name: node.netns for node in state.plan.nodes})
    load_lab_rulesets(state, cluster, flow_logs=True)
    try:
        collector.start()
        yield collector
    finally:
        collector.close()
        load_lab_rulesets(state, cluster, flow_logs=False)

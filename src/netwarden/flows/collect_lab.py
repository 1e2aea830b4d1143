"""Flow collection in a lab: turn flow logs on in every lab node, collect, turn them off.

The lab must enforce its policies (`lab up --enforce`). `lab_flow_logs` sets the lab state's
`flow_logs` flag and reloads each node's ruleset compiled from the lab's inventory as it is
now (its inputs with the `lab pod` changes replayed, `lab_churn.lab_cluster`) with flow logs:
every ruleset is checked, then loaded with one `nft -f` transaction per node, connection
tracking kept. It starts a `FlowCollector` on every node and, on the way out, clears the flag
and loads the rulesets without flow logs again.

Each load is recorded in the lab state (`LabState.rulesets`, with the `LoadedRuleset` an
incremental update is computed against), as `lab up` and `lab pod` do: otherwise a later
`lab pod` command would compute its element changes against a ruleset that is no longer in
the table, and its generation guard would reject them. While the flag is set, every ruleset
the lab compiles (`lab pod add/del/label`, `lab apply`) logs too, so connections opened after
a pod change are still collected. The rulesets loaded on the way out are compiled from the
state as it is then, so a pod change made while collecting is kept.

The collector names endpoints from the inventory valid when each connection started
(`lab_timeline`): the inventory at the start, then one snapshot per `lab pod` change made
while collecting, taken when the change was made (`PodChange.at`). Not covered: `lab apply`
while collecting changes the policies the pending hits are decided with only from the next
collection on.

One collection per lab: the lab state records the collecting process (`LabState.collector`,
pid and start time), and a second collection is refused while that process runs (it could
not bind the NFLOG groups, and its end would turn flow logs off under the first). A
collector that died without cleaning up (SIGKILL, a crash) leaves the flag set; the next
collection takes it over, stopping the flow log readers the dead one left in the nodes.
Turning flow logs on or off is a read-modify-write of the lab state done under the lab's
lock (`lab_lock`), as every `lab pod` and `lab apply` is, so none of them loses the other's
change.

    with lab_flow_logs("shop") as collector:
        ...                                  # traffic between the lab's pods
        result = collector.stop()
    store.append(result.table)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from netwarden.dataplane.lab import (
    LabState,
    PodChange,
    kill_processes,
    load_state,
    save_state,
    state_path,
)
from netwarden.dataplane.lab_churn import lab_cluster as lab_inventory
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import compile_lab, enforce_lab, lab_view
from netwarden.dataplane.lab_lock import ProcessIdentity, lab_lock
from netwarden.errors import LabError
from netwarden.flows.collect import FlowCollector
from netwarden.flows.collect_sources import READER_FOLDER_PREFIX
from netwarden.flows.enrich import InventorySnapshot
from netwarden.model import ClusterState


def lab_cluster(state: LabState) -> ClusterState:
    """The cluster the lab runs: its inputs, its pod changes, the addresses it gave."""
    if not state.sources:
        raise LabError(f"lab {state.plan.name} recorded no inputs: `lab up` it again")
    return lab_view(lab_inventory(state.sources, state.changes), state.plan)


def load_lab_rulesets(
    state: LabState, directory: Path | None, collector: ProcessIdentity | None
) -> tuple[LabState, ClusterState]:
    """Compile every node's ruleset from `state`, check them all, load them node by node
    (connection tracking kept), and record them, the `flow_logs` flag (on while `collector`
    collects) and `collector` in the lab state. Must be called with the lab's lock held and
    `state` read under it."""
    cluster = lab_cluster(state)
    flow_logs = collector is not None
    applied = enforce_lab(compile_lab(cluster, state.plan, flow_logs), flush=False)
    state = replace(state, rulesets=applied, flow_logs=flow_logs, collector=collector)
    save_state(state, directory)
    return state, cluster


def claim_collection(state: LabState) -> ProcessIdentity | None:
    """Check that no collection runs in the lab: `LabError` naming the collecting process if
    one does. Returns the process of a collection that ended without turning flow logs off
    (killed, crashed: its flag is taken over; pid 0 when an older netwarden recorded none),
    or None."""
    recorded = state.collector
    if recorded is not None and recorded.running:
        raise LabError(
            f"lab {state.plan.name} is already collecting (netwarden process {recorded.pid}): "
            "one collection per lab; stop that one first"
        )
    if recorded is None and state.flow_logs:
        return ProcessIdentity(0, 0)
    return recorded


def stop_leftover_readers(state: LabState) -> int:
    """Stop the flow log readers (ulogd, conntrack) a dead collector left in the lab's nodes:
    they hold the NFLOG groups a new collection binds. The number stopped."""
    pids = []
    for node in state.plan.nodes:
        for pid in _netns_pids(node.netns):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            arguments = command.split(b"\0")
            program = arguments[0].rpartition(b"/")[2]
            if (program == b"ulogd" and READER_FOLDER_PREFIX.encode() in command) or (
                program == b"conntrack" and b"-E" in arguments
            ):
                pids.append(pid)
    return kill_processes(pids)


def _netns_pids(netns: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=30
    )
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def lab_timeline(
    start: ClusterState, started: float, changes: Sequence[PodChange]
) -> list[InventorySnapshot]:
    """The lab's inventory during a collection: `start` (the inventory when it began), then
    after each of the `lab pod` changes made meanwhile, from when it was made. Times never go
    back: a change without one (written by an older netwarden) counts from the change before."""
    snapshots = [InventorySnapshot(_moment(started), start)]
    cluster, since = start, started
    for change in changes:
        cluster = replay(cluster, [change])
        since = max(since, change.at if change.at is not None else since)
        snapshots.append(InventorySnapshot(_moment(since), cluster))
    return snapshots


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@contextmanager
def lab_flow_logs(name: str, directory: Path | None = None) -> Iterator[FlowCollector]:
    """A started collector on every node of lab `name`, with flow logs on while it runs.
    `LabError` if another collection runs in the lab."""
    with lab_lock(state_path(name, directory)):
        state = load_state(name, directory)
        if not state.enforced:
            raise LabError(f"lab {name} enforces no policy: `lab up --enforce` (or `lab apply`)")
        dead = claim_collection(state)
        if dead is not None:
            stopped = stop_leftover_readers(state)
            print(
                f"lab {name}: taking over flow logs from a collection that ended without "
                f"turning them off (process {dead.pid}; {stopped} flow log readers stopped)",
                file=sys.stderr,
            )
        started = time.time()
        state, cluster = load_lab_rulesets(state, directory, ProcessIdentity.current())
    known = len(state.changes)

    def timeline() -> list[InventorySnapshot]:
        """Read when collection stops: the `lab pod` changes made since it began."""
        now = load_state(name, directory)
        return lab_timeline(cluster, started, now.changes[known:])

    try:
        nodes = {node.name: node.netns for node in state.plan.nodes}
        collector = FlowCollector(cluster, nodes, timeline)
        collector.start()
        try:
            yield collector
        finally:
            collector.close()
    finally:
        with lab_lock(state_path(name, directory)):
            load_lab_rulesets(load_state(name, directory), directory, None)

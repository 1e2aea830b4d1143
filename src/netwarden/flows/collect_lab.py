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

The collector names endpoints, and decides `policies_pending`, from the inventory valid when
each connection started (`lab_timeline`): the inventory at the start, then one snapshot per
event made while collecting, taken when it was made. A `lab pod` change (`PodChange.at`) is
replayed on the inventory before it. A `lab apply` replaces the lab's inputs (policies,
staged policies, namespaces, pods); while the flag is set it records them with their time in
the lab state (`LabState.applied`), and the inventory after it is the one the collection
would have started with had those been the inputs, with every pod change made since replayed
on top, as `lab apply` itself replays the lab's pod changes on the inputs it loads. So a
record of a connection opened after a `lab apply` that changed the staged policies lists what
the new staged set would do. The collection's end clears `applied` (so the state does not
grow), as its start does (a dead collector may have left some).

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

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from netwarden.dataplane.lab import kill_processes, netns_pids
from netwarden.dataplane.lab_churn import lab_cluster as lab_inventory
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import compile_lab, enforce_lab, lab_view
from netwarden.dataplane.lab_lock import ProcessIdentity, lab_lock
from netwarden.dataplane.lab_plan import LabPlan
from netwarden.dataplane.lab_state import (
    AppliedSources,
    LabState,
    PodChange,
    SourceText,
    load_state,
    save_state,
    state_path,
)
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
        for pid in netns_pids(node.netns):
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


#: The inventory a collection would have started with, had the lab's inputs been these.
InputsInventory = Callable[[Sequence[SourceText]], ClusterState]


@dataclass(frozen=True)
class LabEvent:
    """A change of the lab made while collecting, at the time it counts from."""

    at: float  # Unix time
    made: PodChange | AppliedSources


def lab_timeline(
    start: ClusterState,
    started: float,
    changes: Sequence[PodChange],
    applied: Sequence[AppliedSources] = (),
    inventory_of: InputsInventory | None = None,
) -> list[InventorySnapshot]:
    """The lab's inventory during a collection: `start` (the inventory when it began), then
    after each change made meanwhile, from when it was made. A `lab pod` change is replayed on
    the inventory before it; after a `lab apply` (`applied`) the inventory is
    `inventory_of(its inputs)` with every pod change made since `started` replayed on it.
    `inventory_of` is needed only when something was applied."""
    snapshots = [InventorySnapshot(_moment(started), start)]
    cluster, replayed = start, list[PodChange]()
    for event in lab_events(started, changes, applied):
        if isinstance(event.made, PodChange):
            cluster = replay(cluster, [event.made])
            replayed.append(event.made)
        else:
            if inventory_of is None:
                raise ValueError("a lab apply while collecting needs `inventory_of` its inputs")
            cluster = replay(inventory_of(event.made.sources), replayed)
        snapshots.append(InventorySnapshot(_moment(event.at), cluster))
    return snapshots


def inputs_inventory(plan: LabPlan, changes: Sequence[PodChange]) -> InputsInventory:
    """For a collection that found the lab with `plan` and pod `changes`: the inventory it
    would have started with for other inputs (`lab_cluster` of them with that plan, so a pod
    deleted since keeps the address the lab gave it; one added since is replayed with its)."""

    def inventory_of(sources: Sequence[SourceText]) -> ClusterState:
        return lab_view(lab_inventory(sources, changes), plan)

    return inventory_of


def lab_events(
    started: float, changes: Sequence[PodChange], applied: Sequence[AppliedSources]
) -> list[LabEvent]:
    """Pod changes and applied inputs in the order they were made: by time (a pod change
    first on a tie), each kind in its recorded order. Times never go back: a pod change
    without one (written by an older netwarden) counts from the change before, and a time
    before the one before it (the clock was set back) counts as that one."""
    events = []
    for made in (changes, applied):
        since = started
        for event in made:
            since = max(since, event.at if event.at is not None else since)
            events.append(LabEvent(since, event))
    return sorted(events, key=lambda e: (e.at, isinstance(e.made, AppliedSources)))


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@contextmanager
def lab_flow_logs(
    name: str, directory: Path | None = None, notify: Callable[[str], None] = lambda _: None
) -> Iterator[FlowCollector]:
    """A started collector on every node of lab `name`, with flow logs on while it runs.
    `LabError` if another collection runs in the lab; `notify` hears of a dead one's flow
    logs taken over."""
    with lab_lock(state_path(name, directory)):
        state = load_state(name, directory)
        if not state.enforced:
            raise LabError(f"lab {name} enforces no policy: `lab up --enforce` (or `lab apply`)")
        dead = claim_collection(state)
        if dead is not None:
            stopped = stop_leftover_readers(state)
            notify(
                f"lab {name}: taking over flow logs from a collection that ended without "
                f"turning them off (process {dead.pid}; {stopped} flow log readers stopped)"
            )
        started = time.time()
        state = replace(state, applied=())  # a dead collector's: not this collection's
        state, cluster = load_lab_rulesets(state, directory, ProcessIdentity.current())
    known = len(state.changes)
    inventory_of = inputs_inventory(state.plan, state.changes)

    def timeline() -> list[InventorySnapshot]:
        """Read when collection stops: the `lab pod` changes and `lab apply` inputs made since
        it began."""
        now = load_state(name, directory)
        return lab_timeline(cluster, started, now.changes[known:], now.applied, inventory_of)

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
            # this collection is over: cleared, or the state grows with every collection
            state = replace(load_state(name, directory), applied=())
            load_lab_rulesets(state, directory, None)

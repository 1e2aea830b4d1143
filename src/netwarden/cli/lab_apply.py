"""`netwarden lab apply`: compile the inputs' policies for every lab node and load them again.

Holds the lab's lock (`lab_lock`) from reading the lab state to saving it; pods added with
`lab pod` stay in the lab's inventory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from netwarden.cli.common import FilesOption, stdout_console, warn
from netwarden.cli.lab_common import NameOption, load_inputs, up_state
from netwarden.dataplane.lab import require_root
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import compile_lab, enforce_lab, read_sources
from netwarden.dataplane.lab_lock import lab_lock
from netwarden.dataplane.lab_naming import check_lab_name
from netwarden.dataplane.lab_state import AppliedRuleset, AppliedSources, save_state, state_path
from netwarden.errors import UsageError
from netwarden.model import EndpointKind


def apply_policies(files: FilesOption, name: NameOption = "lab") -> None:
    """Compile the inputs' policies for every lab node and load them: one `nft -f`
    transaction per node. A ruleset that fails to load changes nothing."""
    if not files:
        raise UsageError("no inputs: give manifests with -f FILE or -f DIR")
    require_root()
    sources = read_sources(files)
    with lab_lock(state_path(check_lab_name(name))):  # from load to save: nobody else changes it
        state = up_state(name)
        # pods added with `lab pod` stay
        cluster = replay(load_inputs(sources).cluster, state.changes)
        plan = state.plan
        rulesets = compile_lab(cluster, plan, flow_logs=state.flow_logs)  # collecting: logged
        inputs = {e.key for e in cluster.endpoints if e.kind is EndpointKind.POD}
        lab_pods = {e.key for e in plan.endpoints if e.kind is EndpointKind.POD}
        for key in sorted(lab_pods - inputs):
            warn(f"{key} is in lab {name} but not in the inputs: its traffic is dropped")
        for key in sorted(inputs - lab_pods):
            warn(f"{key} is in the inputs but not in lab {name}: `lab up` again to add it")
        at = time.time()
        applied = enforce_lab(rulesets)
        recorded = state.applied
        if state.flow_logs and sources != state.sources:  # the collector decides with them
            recorded = (*recorded, AppliedSources(at, sources))
        save_state(replace(state, sources=sources, rulesets=applied, applied=recorded))
    if state.flow_logs:
        stdout_console().print(
            "a collection is running: the rulesets keep logging, and the records of "
            "connections from now on are named and pending-decided with these inputs"
        )
    print_rulesets(applied)


def print_rulesets(rulesets: Sequence[AppliedRuleset]) -> None:
    console = stdout_console()
    for ruleset in rulesets:
        console.print(
            f"node {ruleset.node}: nftables ruleset loaded ({ruleset.chains} chains, "
            f"{ruleset.rules} rules, {ruleset.sets} sets, {ruleset.elements} set elements)"
        )

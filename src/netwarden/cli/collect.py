"""`netwarden collect`: flow records from netwarden's own dataplane into a flow store.

    netwarden collect --lab shop --flows flows.duckdb --duration 5m
    netwarden collect -f inventory/ --node node-a --flows flows.duckdb   # on a node (agent)

With `--lab`, flow logs are turned on in every node of the lab for the collection and off
again after; `lab pod` changes made meanwhile keep them on, and each record names its
endpoints as they were when its connection started. On a node, the ruleset must have been
compiled with flow logs; `--netns` names the node's namespace when it is not this one.
Collection stops after `--duration`, or at Ctrl-C; what was collected is stored either way.
"""

from __future__ import annotations

import re
import time
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Annotated

import typer

from netwarden.cli.common import FilesOption, load_cluster, stderr_console, warn
from netwarden.cli.preview import FlowsOption
from netwarden.errors import UsageError
from netwarden.flows.collect import CollectResult, FlowCollector
from netwarden.flows.store import open_store

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """`30`, `30s`, `5m`, `1h` -> seconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise UsageError(f"--duration {text!r}: expected seconds, or a number with s, m or h")
    return float(found.group(1)) * _SECONDS[found.group(2)]


def collect_command(
    flows: FlowsOption,
    lab: Annotated[
        str | None, typer.Option("--lab", help="Collect in every node of this lab.")
    ] = None,
    files: FilesOption = [],  # noqa: B006 - Typer reads the default, never mutates it
    node: Annotated[
        str | None, typer.Option("--node", help="The node collected on (its name in -f).")
    ] = None,
    netns: Annotated[
        str | None, typer.Option("--netns", help="The node's network namespace (default: this).")
    ] = None,
    duration: Annotated[
        str, typer.Option("--duration", help="How long to collect: 30s, 5m, 1h.")
    ] = "60s",
) -> None:
    """Collect flow records (first packet's deciding rule, conntrack counters) into --flows."""
    seconds = parse_duration(duration)
    if (lab is None) == (node is None):
        raise UsageError("give either --lab NAME, or -f INVENTORY --node NAME")
    if lab is not None:
        from netwarden.dataplane.lab_state import load_state

        load_state(lab)  # no such lab: fail before a store file is made
    store = open_store(flows)  # before the lab changes: a bad store fails with nothing changed
    try:
        session: AbstractContextManager[FlowCollector]
        if lab is not None:
            from netwarden.flows.collect_lab import lab_flow_logs

            session = lab_flow_logs(lab, notify=warn)
        else:
            assert node is not None
            cluster = load_cluster(files)
            if node not in cluster.nodes_by_name:
                raise UsageError(f"node {node!r} is not in the inventory read with -f")
            collector = FlowCollector(cluster, {node: netns})
            collector.start()
            session = nullcontext(collector)
        with session as running:
            stderr_console().print(f"collecting for {seconds:g} s (Ctrl-C stops sooner)")
            with suppress(KeyboardInterrupt):  # Ctrl-C ends collection, not the command
                time.sleep(seconds)
            result = running.stop()
        report(result, store.append(result.table))
    finally:
        store.close()


def report(result: CollectResult, stored: int) -> None:
    table = result.table
    actions = table.column("action").to_pylist() if table.num_rows else []
    allowed = sum(1 for a in actions if a == "allow")
    for line in result.unreadable:
        warn(f"unreadable: {line}")
    if result.unmatched_connections:
        warn(
            f"{result.unmatched_connections} connections had no logged first packet (opened "
            "before collection began): not recorded"
        )
    typer.echo(
        f"{stored} records stored ({allowed} allowed, {len(actions) - allowed} denied) from "
        f"{result.packets} flow log packets ({result.ignored_packets} not endpoint traffic) "
        f"and {result.connections} conntrack entries"
        + (
            f", endpoints named from {result.inventories} inventory versions"
            if result.inventories > 1
            else ""
        )
    )

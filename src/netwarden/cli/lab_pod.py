"""`netwarden lab pod add|del|label`: churn in a running lab, enforced incrementally.

Each command changes the lab's inventory (kept in the lab state), makes or removes the pod's
namespace, link and server, and updates every node's ruleset with one `nft -f` transaction of
element changes (see `netwarden.dataplane.lab_churn`); it prints what changed per node.
While `netwarden collect --lab` runs, the rulesets keep their flow logs. Each command holds
the lab's lock (`lab_lock`) from reading the lab state to saving it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated

import typer

from netwarden.cli.common import stdout_console
from netwarden.dataplane.lab import require_root
from netwarden.dataplane.lab_churn import (
    NodeUpdate,
    add_pod,
    delete_pod,
    label_pod,
    parse_ip,
    parse_label_edits,
    parse_labels,
)
from netwarden.dataplane.lab_lock import lab_lock
from netwarden.dataplane.lab_naming import check_lab_name
from netwarden.dataplane.lab_state import LabState, load_state, state_path
from netwarden.dataplane.lab_topology import parse_ports
from netwarden.errors import LabError

pod_app = typer.Typer(
    name="pod",
    help="Add, delete or relabel a pod of a running lab; enforcement follows incrementally.",
    no_args_is_help=True,
    add_completion=False,
)

NameOption = Annotated[
    str, typer.Option("--name", help="Lab name: 1-12 lower-case letters and digits.")
]
PodArgument = Annotated[str, typer.Argument(metavar="NS/POD", help="The pod, namespace/name.")]


@pod_app.command("add")
def add(
    pod: PodArgument,
    name: NameOption = "lab",
    labels: Annotated[
        str, typer.Option("--labels", metavar="K=V,...", help="The pod's labels.")
    ] = "",
    node: Annotated[
        str | None, typer.Option("--node", help="Lab node (default: the one with fewest pods).")
    ] = None,
    ip: Annotated[
        str | None, typer.Option("--ip", help="IPv4 address (default: next free of the node).")
    ] = None,
    ports: Annotated[
        str,
        typer.Option("--ports", metavar="PORT/PROTO,...", help="Ports the pod's server serves."),
    ] = "",
) -> None:
    """Add a pod: its policy is loaded before its link exists."""
    served = parse_ports(ports) if ports.strip() else ()
    pod_labels, address = parse_labels(labels), parse_ip(ip)
    with _changing(name) as state:
        state, updates = add_pod(state, pod, pod_labels, node, address, served)
    added = state.plan.endpoint(pod)
    assert added is not None
    stdout_console(soft_wrap=True).print(
        f"pod {pod} added on node {added.node} at {added.ips[0]}"
        + (f", serving {', '.join(map(str, added.served))}" if added.served else "")
    )
    _print_updates(state, updates)


@pod_app.command("del")
def delete(pod: PodArgument, name: NameOption = "lab") -> None:
    """Delete a pod: its policy goes first (its interface is dropped), then its namespace."""
    with _changing(name) as state:
        state, updates = delete_pod(state, pod)
    stdout_console(soft_wrap=True).print(f"pod {pod} deleted")
    _print_updates(state, updates)


@pod_app.command("label")
def label(
    pod: PodArgument,
    changes: Annotated[
        list[str], typer.Argument(metavar="KEY=VALUE|KEY-...", help="Set or remove labels.")
    ],
    name: NameOption = "lab",
) -> None:
    """Set (`k=v`) or remove (`k-`) labels of a pod."""
    set_labels, unset = parse_label_edits(changes)
    with _changing(name) as state:
        state, updates = label_pod(state, pod, set_labels, unset)
    stdout_console(soft_wrap=True).print(f"pod {pod} relabelled")
    _print_updates(state, updates)


@contextmanager
def _changing(name: str) -> Iterator[LabState]:
    """The lab's state, read with the lab's lock held until the block has saved its change."""
    require_root()
    with lab_lock(state_path(check_lab_name(name))):
        state = load_state(name)
        if state.status != "up":
            raise LabError(f"lab {name} is not up (status {state.status}): `lab down` it and retry")
        yield state


def _print_updates(state: LabState, updates: Sequence[NodeUpdate]) -> None:
    console = stdout_console(soft_wrap=True)
    if not state.enforced:
        console.print(f"lab {state.plan.name} enforces no policy: no ruleset to update")
    elif state.flow_logs:
        console.print("a collection is running: the rulesets keep logging new connections")
    for update in updates:
        applied = update.applied
        if applied.fallback:
            console.print(f"node {update.node}: incremental update rejected: {applied.fallback}")
        console.print(
            f"node {update.node}: {applied.update.describe()} in {applied.seconds * 1000:.1f} ms"
        )

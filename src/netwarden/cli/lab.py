"""`netwarden lab`: a cluster description as real network namespaces, servers and probes.

    netwarden lab up -f cluster/ --name demo [--external 203.0.113.7] [--enforce]
    netwarden lab apply -f cluster/ --name demo   # compile + load the policies again
    netwarden lab probe --name demo [--probes probes.csv] [--compare] [-o json]
    netwarden lab status [--name demo]
    netwarden lab down --name demo        # or --all, also after a crash

Needs root. The work is `netwarden.dataplane` (plan, apply, probe); these modules only read
inputs and print. `lab up`, `lab down` and `lab status` are here, `lab apply` in `lab_apply`,
`lab probe` (and its comparison with the engine) in `lab_probe`, `lab pod` in `lab_pod`; the
`lab` app registers them all at the end of this module.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from netwarden.cli.common import FilesOption, stdout_console, warn
from netwarden.cli.lab_apply import apply_policies, print_rulesets
from netwarden.cli.lab_common import NameOption
from netwarden.cli.lab_pod import pod_app
from netwarden.cli.lab_probe import probe
from netwarden.dataplane.lab import (
    apply_lab,
    destroy_all,
    destroy_lab,
    ip_batches,
    lab_namespaces,
    lab_processes,
    name_prefix,
    server_command,
)
from netwarden.dataplane.lab_enforce import (
    compile_lab,
    enforce_lab,
    read_sources,
    source_documents,
)
from netwarden.dataplane.lab_manifests import served_ports
from netwarden.dataplane.lab_naming import check_lab_name
from netwarden.dataplane.lab_plan import plan_lab
from netwarden.dataplane.lab_state import list_states, load_state, state_dir
from netwarden.dataplane.lab_topology import LabPlan, parse_external
from netwarden.dialects import load_documents
from netwarden.errors import UsageError

lab_app = typer.Typer(
    name="lab",
    help="Build a cluster as real network namespaces, probe it with real connections.",
    no_args_is_help=True,
    add_completion=False,
)


def up(
    files: FilesOption,
    name: NameOption = "lab",
    external: Annotated[
        list[str] | None,
        typer.Option(
            "--external",
            metavar="IP[=PORT/PROTO,...]",
            help="An external endpoint (a namespace behind the fabric). Repeatable. Without "
            "ports it serves every port some pod serves.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the commands instead of running them.")
    ] = False,
    enforce: Annotated[
        bool,
        typer.Option(
            "--enforce",
            help="Compile the inputs' policies to nftables for every lab node and load them "
            "before any pod is connected.",
        ),
    ] = False,
) -> None:
    """Create the lab: namespaces, veth links, routes and a server per pod."""
    if not files:
        raise UsageError("no inputs: give manifests with -f FILE or -f DIR")
    check_lab_name(name)
    sources = read_sources(files)
    documents = source_documents(sources)
    result = load_documents(documents)
    for skipped in result.skipped:
        warn(str(skipped))
    plan = plan_lab(
        result.cluster,
        name,
        served=served_ports(documents, result.cluster),
        externals=[parse_external(text) for text in external or []],
        prefix=name_prefix(),
    )
    for message in plan.warnings:
        warn(message)
    rulesets = compile_lab(result.cluster, plan) if enforce else None  # before anything is made
    for notice in result.notices if enforce else ():
        warn(str(notice))
    if dry_run:
        print_commands(plan)
        for node, ruleset in rulesets or ():
            sys.stdout.write(f"ip netns exec {node.netns} nft -f - <<'EOF'\n{ruleset.script}EOF\n")
        return
    state = apply_lab(
        plan,
        sources=sources,
        enforce=(lambda: enforce_lab(rulesets, flush=False)) if rulesets is not None else None,
    )
    console = stdout_console()
    console.print(endpoint_table(plan))
    console.print(
        f"lab {name} up in {state.seconds:.2f} s: {len(plan.nodes)} nodes, "
        f"{len(plan.endpoints)} endpoints, {len(plan.namespaces)} namespaces, "
        f"{len(state.servers)} servers"
    )
    if state.enforced:
        print_rulesets(state.rulesets)


def down(
    name: NameOption = "lab",
    every: Annotated[
        bool, typer.Option("--all", help="Remove every lab, and anything a crash left behind.")
    ] = False,
) -> None:
    """Remove the lab: servers, namespaces (with their links) and its state file."""
    prefix = name_prefix()
    teardowns = destroy_all(prefix) if every else [destroy_lab(check_lab_name(name), prefix)]
    console = stdout_console()
    if not teardowns or all(
        not t.namespaces and not t.processes and not t.state_file for t in teardowns
    ):
        console.print("no lab to remove" if every else f"no lab named {name}")
        return
    for teardown in teardowns:
        console.print(
            f"lab {teardown.name} down: {teardown.namespaces} namespaces, "
            f"{teardown.processes} servers removed"
        )


def status(
    name: Annotated[str | None, typer.Option("--name", help="Show this lab's endpoints.")] = None,
) -> None:
    """List the labs, or one lab's endpoints."""
    console = stdout_console()
    if name is not None:
        state = load_state(check_lab_name(name))
        console.print(endpoint_table(state.plan))
        return
    prefix = name_prefix()
    table = Table(show_edge=False, pad_edge=False)
    headers = ("lab", "status", "nodes", "endpoints", "namespaces", "servers", "policy", "created")
    for header in headers:
        table.add_column(header)
    states = list_states()
    for state in states:
        plan = state.plan
        alive = set(lab_processes(plan.prefix))
        running = sum(1 for s in state.servers if s.pid in alive)
        table.add_row(
            plan.name,
            state.status,
            str(len(plan.nodes)),
            str(len(plan.endpoints)),
            f"{len(lab_namespaces(plan.prefix))}/{len(plan.namespaces)}",
            f"{running}/{len(state.servers)}",
            "nftables" if state.enforced else "-",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.created)),
        )
    known = {state.plan.prefix for state in states}
    leftovers = [n for n in lab_namespaces(f"{prefix}-") if not any(n.startswith(k) for k in known)]
    if not states and not leftovers:
        console.print(f"no lab is up (state files in {state_dir()})")
        return
    if states:
        console.print(table)
    if leftovers:
        warn(
            f"{len(leftovers)} namespace(s) without a lab state (e.g. {leftovers[0]}): "
            "lab down --all"
        )


def endpoint_table(plan: LabPlan) -> Table:
    table = Table(show_edge=False, pad_edge=False, title=f"lab {plan.name}")
    for header in ("endpoint", "kind", "node", "addresses", "serves", "namespace"):
        table.add_column(header, overflow="fold")
    for endpoint in plan.endpoints:
        table.add_row(
            Text(endpoint.key),
            endpoint.kind.value,
            endpoint.node or "",
            ", ".join(str(ip) for ip in endpoint.ips),
            Text(", ".join(str(p) for p in endpoint.served)),
            Text(endpoint.netns),
        )
    return table


def print_commands(plan: LabPlan) -> None:
    """What `lab up` would run, as a shell script."""
    out = sys.stdout
    for namespace in plan.namespaces:
        out.write(f"ip netns add {namespace.name}\n")
    for netns, lines in ip_batches(plan):
        out.write(f"ip -n {netns} -batch - <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    for server in plan.servers:
        out.write(" ".join(server_command(server)) + "\n")


# Registered here, in the order `lab --help` lists them (sub-apps come after the commands).
lab_app.command()(up)
lab_app.command("apply")(apply_policies)
lab_app.command()(probe)
lab_app.command()(down)
lab_app.command()(status)
lab_app.add_typer(pod_app, name="pod")

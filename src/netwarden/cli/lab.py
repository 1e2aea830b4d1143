"""`netwarden lab`: a cluster description as real network namespaces, servers and probes.

    netwarden lab up -f cluster/ --name demo [--external 203.0.113.7] [--enforce]
    netwarden lab apply -f cluster/ --name demo   # compile + load the policies again
    netwarden lab probe --name demo [--probes probes.csv] [--compare] [-o json]
    netwarden lab status [--name demo]
    netwarden lab down --name demo        # or --all, also after a crash

Needs root. The work is `netwarden.dataplane` (plan, apply, probe); this module only reads
inputs and prints.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from netwarden.cli.common import FilesOption, TableOrJson, stderr_console, stdout_console, warn
from netwarden.cli.evaluate import port_protocol, verdict_text
from netwarden.cli.lab_pod import pod_app
from netwarden.dataplane.lab import (
    apply_lab,
    destroy_all,
    destroy_lab,
    ip_batches,
    lab_namespaces,
    lab_processes,
    name_prefix,
    require_root,
    server_command,
)
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import (
    agrees,
    compile_lab,
    enforce_lab,
    engine_verdicts,
    lab_view,
    read_sources,
    source_documents,
)
from netwarden.dataplane.lab_lock import lab_lock
from netwarden.dataplane.lab_manifests import served_ports
from netwarden.dataplane.lab_plan import LabPlan, check_lab_name, parse_external, plan_lab
from netwarden.dataplane.lab_probe import (
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    ProbeOutcome,
    ProbeResult,
    matrix_probes,
    run_probes,
)
from netwarden.dataplane.lab_state import (
    AppliedRuleset,
    AppliedSources,
    LabState,
    SourceText,
    list_states,
    load_state,
    save_state,
    state_dir,
    state_path,
)
from netwarden.dialects import LoadResult, load_documents
from netwarden.dialects.probes import probe_location, read_probes
from netwarden.engine.batch import Probe
from netwarden.errors import InputError, LabError, UsageError
from netwarden.model import EndpointKind, protocol_name

lab_app = typer.Typer(
    name="lab",
    help="Build a cluster as real network namespaces, probe it with real connections.",
    no_args_is_help=True,
    add_completion=False,
)
lab_app.add_typer(pod_app, name="pod")

NameOption = Annotated[
    str,
    typer.Option("--name", help="Lab name: 1-12 lower-case letters and digits."),
]

_STYLES = {
    ProbeResult.CONNECTED: "bold green",
    ProbeResult.REFUSED: "bold red",
    ProbeResult.TIMEOUT: "bold yellow",
    ProbeResult.DROPPED: "bold yellow",
    ProbeResult.SKIPPED: "dim",
}


@lab_app.command()
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


@lab_app.command("apply")
def apply_policies(files: FilesOption, name: NameOption = "lab") -> None:
    """Compile the inputs' policies for every lab node and load them: one `nft -f`
    transaction per node. A ruleset that fails to load changes nothing."""
    if not files:
        raise UsageError("no inputs: give manifests with -f FILE or -f DIR")
    require_root()
    sources = read_sources(files)
    with lab_lock(state_path(check_lab_name(name))):  # from load to save: nobody else changes it
        state = _up_state(name)
        cluster = replay(_load(sources).cluster, state.changes)  # pods added with `lab pod` stay
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


def _up_state(name: str) -> LabState:
    state = load_state(check_lab_name(name))
    if state.status != "up":
        raise LabError(f"lab {name} is not up (status {state.status}): `lab down` it and retry")
    return state


def _load(sources: Sequence[SourceText]) -> LoadResult:
    result = load_documents(source_documents(sources))
    for skipped in result.skipped:
        warn(str(skipped))
    for notice in result.notices:
        warn(str(notice))
    return result


@lab_app.command()
def probe(
    name: NameOption = "lab",
    probes_file: Annotated[
        Path | None,
        typer.Option(
            "--probes",
            help="CSV file with the header src,dst,port,protocol (as for evaluate). Default: "
            "every endpoint to every other on every port it serves.",
        ),
    ] = None,
    output: Annotated[TableOrJson, typer.Option("-o", "--output", help="Output format.")] = (
        TableOrJson.TABLE
    ),
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each probe waits for an answer.")
    ] = DEFAULT_TIMEOUT,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, max=256, help="Probes run at once.")
    ] = DEFAULT_WORKERS,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Add the engine's verdict for the lab's inputs and whether the probe shows it "
            "(allowed: connected; denied: timeout or dropped). Exit code 1 on any mismatch.",
        ),
    ] = False,
) -> None:
    """Run probes as real connections: connected, refused, timeout or dropped."""
    require_root()
    state = _up_state(name)
    plan = state.plan
    if probes_file is not None:
        probes = read_probes(probes_file)
        check_names(plan, probes, probes_file)
    else:
        probes = matrix_probes(plan)
    verdicts: list[bool] | None = None
    if compare:
        if not state.sources:
            raise LabError(f"lab {name} recorded no inputs to compare with: `lab up` it again")
        if not state.enforced:
            warn(f"lab {name} enforces no policy (`lab up --enforce` or `lab apply`)")
        cluster = replay(_load(state.sources).cluster, state.changes)
        verdicts = engine_verdicts(lab_view(cluster, plan), probes)
    started = time.monotonic()
    outcomes = _run_with_progress(plan, probes, timeout, parallel)
    seconds = time.monotonic() - started
    matches = (
        [agrees(o, allowed) for o, allowed in zip(outcomes, verdicts, strict=True)]
        if verdicts is not None
        else None
    )
    if output is TableOrJson.JSON:
        write_json(outcomes, verdicts, matches)
    else:
        print_outcomes(outcomes, seconds, verdicts, matches)
    skipped = sum(1 for o in outcomes if o.result is ProbeResult.SKIPPED)
    if skipped:
        warn(f"{skipped} probe(s) skipped: the lab probes TCP and UDP only")
    wrong = sum(1 for match in matches or () if match is False)
    if wrong:
        warn(f"{wrong} probe(s) disagree with the engine")
        raise typer.Exit(1)


@lab_app.command()
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


@lab_app.command()
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


def check_names(plan: LabPlan, probes: Sequence[Probe], path: Path) -> None:
    """Every endpoint a probe names must be in the lab; the error names the probe's line."""
    known: dict[str, bool] = {}
    for index, probe in enumerate(probes):
        for column, name in (("src", probe.src), ("dst", probe.dst)):
            if name not in known:
                known[name] = plan.endpoint(name) is not None
            if not known[name]:
                raise InputError(
                    probe_location(path, index),
                    f"{name!r} is not in lab {plan.name} (an address outside the inventory "
                    "needs `lab up --external IP`)",
                    column,
                )


def _run_with_progress(
    plan: LabPlan, probes: Sequence[Probe], timeout: float, parallel: int
) -> list[ProbeOutcome]:
    console = stderr_console()
    columns = (
        TextColumn("probing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task("probing", total=len(probes))
        return run_probes(
            plan,
            probes,
            timeout=timeout,
            workers=parallel,
            on_done=lambda: bar.advance(task),
        )


def write_json(
    outcomes: Sequence[ProbeOutcome],
    verdicts: Sequence[bool] | None = None,
    matches: Sequence[bool | None] | None = None,
) -> None:
    """One JSON array, one object per probe in input order; with a comparison, each object
    also has `allowed` (the engine's verdict) and `match` (null when not probed)."""

    def row(index: int, o: ProbeOutcome) -> str:
        data: dict[str, object] = {
            "src": o.probe.src,
            "dst": o.probe.dst,
            "port": o.probe.port,
            "protocol": protocol_name(o.probe.protocol),
            "result": o.result.value,
        }
        if verdicts is not None and matches is not None:
            data["allowed"] = verdicts[index]
            data["match"] = matches[index]
        return json.dumps(data)

    rows = (row(i, o) for i, o in enumerate(outcomes))
    body = ",\n".join(rows)
    sys.stdout.write(f"[\n{body}\n]\n" if body else "[]\n")
    sys.stdout.flush()


def print_outcomes(
    outcomes: Sequence[ProbeOutcome],
    seconds: float,
    verdicts: Sequence[bool] | None = None,
    matches: Sequence[bool | None] | None = None,
) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for header in ("src", "dst", "port/proto"):
        table.add_column(header, overflow="fold")
    table.add_column("result", no_wrap=True)
    table.add_column("seen", overflow="fold")
    if verdicts is not None:
        table.add_column("engine", no_wrap=True)
        table.add_column("match", no_wrap=True)
    for index, outcome in enumerate(outcomes):
        probe = outcome.probe
        cells = [
            Text(probe.src),
            Text(probe.dst),
            Text(port_protocol(probe.port, probe.protocol)),
            Text(outcome.result.value, style=_STYLES[outcome.result]),
            Text(outcome.detail),
        ]
        if verdicts is not None and matches is not None:
            cells.append(verdict_text(verdicts[index]))
            match = matches[index]
            cells.append(
                Text("-", style="dim")
                if match is None
                else Text("yes", style="green")
                if match
                else Text("NO", style="bold red")
            )
        table.add_row(*cells)
    counts = Counter(o.result for o in outcomes)
    summary = ", ".join(f"{counts[r]} {r.value}" for r in ProbeResult if counts[r])
    if matches is not None:
        wrong = sum(1 for m in matches if m is False)
        summary += f"; {wrong} mismatch{'es' if wrong != 1 else ''} with the engine"
    rate = len(outcomes) / seconds if seconds > 0 else 0.0
    console = stdout_console()
    console.print(table)
    console.print(f"{summary or 'no probes'} in {seconds:.2f} s ({rate:.0f} probes/s)")

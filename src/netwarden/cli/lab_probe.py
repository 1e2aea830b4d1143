"""`netwarden lab probe`: probes as real connections, compared with the engine on request,
reported as a table or JSON."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from netwarden.cli.common import TableOrJson, stderr_console, stdout_console, warn
from netwarden.cli.evaluate import port_protocol, verdict_text
from netwarden.cli.lab_common import NameOption, load_inputs, up_state
from netwarden.dataplane.lab import require_root
from netwarden.dataplane.lab_churn import replay
from netwarden.dataplane.lab_enforce import agrees, engine_verdicts, lab_view
from netwarden.dataplane.lab_probe import (
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    ProbeOutcome,
    ProbeResult,
    matrix_probes,
    run_probes,
)
from netwarden.dataplane.lab_topology import LabPlan
from netwarden.dialects.probes import probe_location, read_probes
from netwarden.engine.batch import Probe
from netwarden.errors import InputError, LabError
from netwarden.model import protocol_name

_STYLES = {
    ProbeResult.CONNECTED: "bold green",
    ProbeResult.REFUSED: "bold red",
    ProbeResult.TIMEOUT: "bold yellow",
    ProbeResult.DROPPED: "bold yellow",
    ProbeResult.SKIPPED: "dim",
}


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
    state = up_state(name)
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
        cluster = replay(load_inputs(state.sources).cluster, state.changes)
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

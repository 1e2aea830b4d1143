"""`netwarden preview`: which stored flows would change verdict under proposed policies.

Also the pieces the flow-reading commands share: `--flows STORE`, `--since/--until`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from netwarden.analysis.preview import Baseline, PreviewReport, preview_store
from netwarden.cli.common import FilesOption, load_cluster, stdout_console
from netwarden.cli.flows_options import parse_time
from netwarden.errors import UsageError
from netwarden.flows.store import FlowStore, open_store

FlowsOption = Annotated[
    str,
    typer.Option(
        "--flows",
        metavar="STORE",
        help="Flow store: a DuckDB file (or duckdb:PATH), chdb:DIR or clickhouse://HOST/DB.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="Only flows that started at or after: ISO 8601 time, or an age (24h, 7d)."
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Only flows that started before: ISO 8601 time, or an age."),
]
WhereOption = Annotated[
    str | None,
    typer.Option("--where", help='Flow filter, e.g. dest_namespace = "shop" AND proto = "tcp".'),
]


@contextmanager
def existing_store(target: str) -> Iterator[FlowStore]:
    """Open a store that must already exist (a typo must not read a new, empty database)."""
    local = target.removeprefix("duckdb:")
    if "://" not in target and not target.startswith("chdb:") and not Path(local).exists():
        raise UsageError(f"flow store {target!r} does not exist")
    store = open_store(target)
    try:
        yield store
    finally:
        store.close()


def scan_flows(
    target: str, where: str | None, since: str | None, until: str | None, columns: tuple[str, ...]
) -> Any:
    """The records of a store that match the common flow options, as one Arrow table."""
    from netwarden.flows.filter import FlowFilter

    condition = FlowFilter.parse(where) if where else None
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with existing_store(target) as store:
        return store.scan(where=condition, since=start, until=end, columns=list(columns))


class PreviewFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MD = "md"


def preview_command(
    files: FilesOption,
    flows: FlowsOption,
    since: SinceOption = None,
    until: UntilOption = None,
    where: WhereOption = None,
    baseline: Annotated[
        Baseline,
        typer.Option(
            "--baseline",
            help="Compare with the recorded action, or with the enforced policies of the input "
            "(when it holds staged ones).",
        ),
    ] = Baseline.RECORDED,
    output: Annotated[PreviewFormat, typer.Option("-o", "--output")] = PreviewFormat.TABLE,
    limit: Annotated[int, typer.Option("--limit", help="Table rows shown (0: all).")] = 50,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 when any flow changes verdict.")
    ] = False,
) -> None:
    """Replay stored flows against proposed policies (-f): which would change verdict, why.

    With staged policies in the input, the proposed verdicts are the staged policy set's: a
    staged policy is judged on real traffic before it is enforced."""
    from netwarden.flows.filter import FlowFilter

    cluster = load_cluster(files)
    condition = FlowFilter.parse(where) if where else None
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    with existing_store(flows) as store:  # the store folds the records: only groups leave it
        report = preview_store(cluster, store, condition, start, end, baseline)
    if output is PreviewFormat.JSON:
        json.dump(report_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif output is PreviewFormat.MD:
        sys.stdout.write(report_markdown(report))
    else:
        print_report(report, limit)
    if fail_on_change and report.changed_records:
        raise typer.Exit(1)


def report_json(report: PreviewReport) -> dict[str, Any]:
    return {
        "records": report.records,
        "replayed": report.replayed,
        "skipped": [asdict(s) for s in report.skipped],
        "changed_records": report.changed_records,
        "newly_allowed_records": report.newly_allowed,
        "newly_denied_records": report.newly_denied,
        "proposed": "staged" if report.staged else "policies",
        "changes": [asdict(change) for change in report.changes],
    }


def _summary(report: PreviewReport) -> str:
    skipped = sum(s.count for s in report.skipped)
    proposed = "the staged policy set" if report.staged else "the proposed policies"
    return (
        f"{report.records} records: {report.replayed} replayed against {proposed}, "
        f"{skipped} not replayable; {report.changed_records} change verdict "
        f"({report.newly_denied} newly denied, {report.newly_allowed} newly allowed)"
    )


def report_markdown(report: PreviewReport) -> str:
    lines = [f"{_summary(report)}.", ""]
    for skipped in report.skipped:
        lines.append(
            f"- not replayed: {skipped.count} records, {skipped.reason} "
            f"(first at row {skipped.first_row})"
        )
    if report.skipped:
        lines.append("")
    if report.changes:
        lines.append(
            "| source | destination | port | before | after | decided by "
            "| records | flows | bytes |"
        )
        lines.append("|---|---|---|---|---|---|---:|---:|---:|")
        for c in report.changes:
            cells = [c.source, c.dest, f"{c.port}/{c.protocol}", c.before, f"**{c.after}**"]
            cells += [f"`{c.policy}`", str(c.records), str(c.flows), str(c.bytes)]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def print_report(report: PreviewReport, limit: int) -> None:
    console = stdout_console()
    shown = report.changes if limit <= 0 else report.changes[:limit]
    if shown:
        table = Table(show_edge=False, pad_edge=False)
        for header in ("source", "destination", "port", "change", "decided by"):
            table.add_column(header, overflow="fold")
        for header in ("records", "flows", "bytes"):
            table.add_column(header, justify="right")
        for c in shown:
            style = "bold red" if c.after == "deny" else "bold green"
            change = Text.assemble(f"{c.before} -> ", (c.after, style))
            table.add_row(
                c.source,
                c.dest,
                f"{c.port}/{c.protocol}",
                change,
                c.policy,
                str(c.records),
                str(c.flows),
                str(c.bytes),
            )
        console.print(table)
        if len(shown) < len(report.changes):
            console.print(f"... {len(report.changes) - len(shown)} more rows (--limit 0: all)")
    for skipped in report.skipped:
        console.print(
            f"not replayed: {skipped.count} records, {skipped.reason} "
            f"(first at row {skipped.first_row})"
        )
    console.print(_summary(report))

"""`netwarden flows ...`: import flow logs into a store, query them, follow a workload,
rank talkers, move records to and from Parquet, apply retention."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pyarrow as pa  # type: ignore[import-untyped]
import typer
from rich.table import Table

from netwarden.cli.common import FilesOption, load_cluster, stderr_console, stdout_console
from netwarden.cli.flows_alerts import alerts_command
from netwarden.cli.flows_options import (
    SinceOption,
    StoreOption,
    UntilOption,
    parse_age,
    parse_size,
    parse_time,
)
from netwarden.cli.flows_output import TABLE_COLUMNS, QueryOutput, emit
from netwarden.errors import UsageError
from netwarden.flows.enrich import InventorySnapshot, enrich
from netwarden.flows.filter import FlowFilter
from netwarden.flows.importers import ImportResult, importer
from netwarden.flows.schema import FLOW_COLUMNS
from netwarden.flows.store import Aggregate, open_store

flows_app = typer.Typer(
    help="Flow records: import, query, timeline, top talkers, Parquet, retention.",
    no_args_is_help=True,
)

#: How many rejected records `flows import` lists (all are counted).
_SHOWN_REJECTIONS = 10


class TopBy(StrEnum):
    SOURCE = "source"
    DEST = "dest"
    PAIR = "pair"


def _filter(text: str | None) -> FlowFilter | None:
    return FlowFilter.parse(text) if text else None


def quote(value: str) -> str:
    """A filter-language string literal for `value`."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@flows_app.command("import")
def import_command(
    store: StoreOption,
    paths: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Flow log files.")],
    format: Annotated[str, typer.Option("--format", help="hubble, calico, calico-dns or vpc.")],
    vpc_format: Annotated[
        str | None,
        typer.Option("--vpc-format", help="VPC log format, e.g. '${version} ${srcaddr} ...'."),
    ] = None,
    inventory: FilesOption = [],  # noqa: B006 (Typer reads the default, never mutates it)
    inventory_time: Annotated[
        str | None,
        typer.Option(
            "--inventory-time", help="When the -f inventory was taken (default: always valid)."
        ),
    ] = None,
    snapshot: Annotated[
        list[str],
        typer.Option(
            "--snapshot",
            metavar="TIME=PATH",
            help="An inventory taken at TIME (ISO 8601); records get the latest one taken at"
            " or before their start. Repeatable.",
        ),
    ] = [],  # noqa: B006 (Typer reads the default, never mutates it)
) -> None:
    """Read flow logs, add endpoint identity from the inventory valid at each record's time,
    store them."""
    reader = importer(format)
    # Read and check everything before storing anything: a bad file stores nothing.
    results: list[ImportResult] = [reader.read(str(path), vpc_format=vpc_format) for path in paths]
    snapshots = []
    if inventory:
        taken_at = parse_time(inventory_time) or datetime(1970, 1, 1, tzinfo=UTC)
        snapshots.append(InventorySnapshot(taken_at, load_cluster(inventory)))
    for spec in snapshot:
        when, equals, where = spec.partition("=")
        snapshot_time = parse_time(when) if equals and where else None
        if snapshot_time is None:
            raise UsageError(f"--snapshot {spec!r}: expected TIME=PATH")
        snapshots.append(InventorySnapshot(snapshot_time, load_cluster([Path(where)])))
    enriched = [enrich(result.table, snapshots) for result in results]
    target = open_store(store)
    try:
        # One append, one INSERT: the files go in together or not at all.
        target.append(pa.concat_tables(enriched))
    finally:
        target.close()
    _print_import(results)


def _print_import(results: list[ImportResult]) -> None:
    table = Table("file", "in", "stored", "rejected")
    for result in results:
        table.add_row(
            result.path, str(result.records_in), str(result.stored), str(len(result.rejected))
        )
    if len(results) > 1:
        table.add_row(
            "total",
            str(sum(r.records_in for r in results)),
            str(sum(r.stored for r in results)),
            str(sum(len(r.rejected) for r in results)),
        )
    stdout_console().print(table)
    errors = stderr_console()
    for result in results:
        for rejection in result.rejected[:_SHOWN_REJECTIONS]:
            errors.print(
                f"{result.path}:{rejection.line}: rejected: {rejection.reason}", markup=False
            )
        hidden = len(result.rejected) - _SHOWN_REJECTIONS
        if hidden > 0:
            errors.print(f"{result.path}: ... and {hidden} more rejected", markup=False)


@flows_app.command()
def query(
    store: StoreOption,
    filter_text: Annotated[
        str | None,
        typer.Argument(metavar="[FILTER]", help='e.g. dest_namespace = "pci" AND action = "deny"'),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", help="Comma-separated columns: sum counters per group."),
    ] = None,
    output: Annotated[
        QueryOutput, typer.Option("-o", "--output", help="Output format.")
    ] = QueryOutput.TABLE,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (required for parquet).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many rows.")] = None,
) -> None:
    """Records (or groups) matching a filter, oldest first."""
    where = _filter(filter_text)
    if output is QueryOutput.PARQUET and out is None:
        raise UsageError("-o parquet writes a file: give it with --out PATH")
    target = open_store(store)
    try:
        if group_by:
            keys = tuple(c.strip() for c in group_by.split(",") if c.strip())
            result = target.aggregate(
                Aggregate(keys, limit=limit), where, parse_time(since), parse_time(until)
            )
        else:
            result = target.scan(where, parse_time(since), parse_time(until), limit=limit)
            if output is QueryOutput.TABLE:
                result = result.select(list(TABLE_COLUMNS))
    finally:
        target.close()
    emit(result, output, out)


@flows_app.command()
def timeline(
    store: StoreOption,
    workload: Annotated[str, typer.Argument(metavar="NS/POD", help="The pod to follow.")],
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[QueryOutput, typer.Option("-o", "--output")] = QueryOutput.TABLE,
    out: Annotated[Path | None, typer.Option("--out")] = None,
) -> None:
    """Everything a pod did and everything done to it, in time order (forensics)."""
    namespace, slash, pod = workload.partition("/")
    if not slash or not namespace or not pod:
        raise UsageError(f"{workload!r}: expected NAMESPACE/POD")
    where = FlowFilter.parse(
        f"(source_namespace = {quote(namespace)} AND source_name = {quote(pod)})"
        f" OR (dest_namespace = {quote(namespace)} AND dest_name = {quote(pod)})"
    )
    target = open_store(store)
    try:
        result = target.scan(where, parse_time(since), parse_time(until))
    finally:
        target.close()
    emit(
        result if output is not QueryOutput.TABLE else result.select(list(TABLE_COLUMNS)),
        output,
        out,
    )


@flows_app.command()
def top(
    store: StoreOption,
    denied: Annotated[bool, typer.Option("--denied", help="Only denied records.")] = False,
    by: Annotated[
        TopBy, typer.Option("--by", help="Rank sources, destinations or pairs.")
    ] = TopBy.PAIR,
    order: Annotated[
        str, typer.Option("--order", help="num_flows, bytes_out, ... or records.")
    ] = "num_flows",
    count: Annotated[int, typer.Option("-n", help="How many to show.")] = 10,
    filter_text: Annotated[str | None, typer.Argument(metavar="[FILTER]")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[QueryOutput, typer.Option("-o", "--output")] = QueryOutput.TABLE,
    out: Annotated[Path | None, typer.Option("--out")] = None,
) -> None:
    """Top talkers (or, with --denied, the most denied)."""
    text = " AND ".join(f"({t})" for t in (filter_text, 'action = "deny"' if denied else None) if t)
    keys = {
        TopBy.SOURCE: ("source_namespace", "source_name_aggr"),
        TopBy.DEST: ("dest_namespace", "dest_name_aggr", "dest_port", "proto"),
        TopBy.PAIR: (
            "source_namespace",
            "source_name_aggr",
            "dest_namespace",
            "dest_name_aggr",
            "dest_port",
            "proto",
        ),
    }[by]
    target = open_store(store)
    try:
        result = target.aggregate(
            Aggregate(keys, order_by=order, limit=count),
            _filter(text),
            parse_time(since),
            parse_time(until),
        )
    finally:
        target.close()
    shown = [*keys, "records", "num_flows", "bytes_out", "bytes_in"]
    emit(result.select(shown) if output is QueryOutput.TABLE else result, output, out)


@flows_app.command("export")
def export_command(
    store: StoreOption,
    path: Annotated[Path, typer.Argument(metavar="PARQUET", help="File to write.")],
    filter_text: Annotated[str | None, typer.Argument(metavar="[FILTER]")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Write records to a Parquet file (the flow schema, zstd)."""
    target = open_store(store)
    try:
        written = target.export_parquet(
            str(path), _filter(filter_text), parse_time(since), parse_time(until)
        )
    finally:
        target.close()
    stdout_console().print(f"exported {written} records to {path}", markup=False)


@flows_app.command("import-parquet")
def import_parquet_command(
    store: StoreOption,
    paths: Annotated[
        list[Path], typer.Argument(metavar="PARQUET...", help="Files from flows export.")
    ],
) -> None:
    """Append records from Parquet files written by `flows export`."""
    target = open_store(store)
    try:
        from netwarden.flows.store_common import read_parquet_flows

        tables = [read_parquet_flows(str(path)) for path in paths]  # all read before any stored
        stored = sum(target.append(table) for table in tables)
    finally:
        target.close()
    stdout_console().print(f"imported {stored} records", markup=False)


@flows_app.command()
def retention(
    store: StoreOption,
    max_age: Annotated[
        str | None, typer.Option("--max-age", help="Keep this long: 30d, 12h, 2w.")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option("--max-size", help="Keep at most: 500MB, 10GB.")
    ] = None,
) -> None:
    """Delete records older than --max-age, then oldest days beyond --max-size."""
    if max_age is None and max_size is None:
        raise UsageError("give --max-age, --max-size or both")
    age = parse_age(max_age) if max_age is not None else None
    if max_age is not None and age is None:
        raise UsageError(f"--max-age {max_age!r}: expected an age like 30d or 12h")
    size = parse_size(max_size) if max_size is not None else None
    target = open_store(store)
    try:
        result = target.apply_retention(age, size)
    finally:
        target.close()
    stdout_console().print(
        f"deleted {result.deleted_rows} records; {result.remaining_rows} remain"
        f" ({result.remaining_bytes} bytes)",
        markup=False,
    )


# ------------------------------------------------------------------------------- output


flows_app.command("alerts")(alerts_command)

__all__ = ["FLOW_COLUMNS", "flows_app"]

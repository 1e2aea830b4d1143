"""`netwarden flows ...`: import flow logs into a store, query them, follow a workload,
rank talkers, move records to and from Parquet, apply retention."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import typer
from rich.table import Table

from netwarden.cli.common import FilesOption, load_cluster, stderr_console, stdout_console
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

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        "-s",
        metavar="STORE",
        help="Flow store: a DuckDB file, duckdb:PATH, chdb:DIR or clickhouse://host/db.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Records starting at or after: ISO time or an age (15m, 2h, 7d)."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Records starting before: ISO time or an age.")
]

#: What a terminal table shows of each record (json, csv and parquet get every column).
TABLE_COLUMNS = (
    "start_time", "source_namespace", "source_name", "source_ip", "dest_namespace", "dest_name",
    "dest_ip", "dest_port", "proto", "action", "reporter", "policies_enforced", "bytes_out",
    "bytes_in",
)  # fmt: skip

#: How many rejected records `flows import` lists (all are counted).
_SHOWN_REJECTIONS = 10


class QueryOutput(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


class TopBy(StrEnum):
    SOURCE = "source"
    DEST = "dest"
    PAIR = "pair"


def parse_age(text: str) -> timedelta | None:
    """`90s`, `15m`, `2h`, `7d`, `2w` as a duration; None if `text` is not an age."""
    age = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not age:
        return None
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age[2]]
    return timedelta(**{unit: int(age[1])})


def parse_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """An ISO 8601 time (UTC unless it says otherwise) or an age like `90s`, `15m`, `2h`, `7d`."""
    if text is None:
        return None
    age = parse_age(text)
    if age is not None:
        return (now or datetime.now(UTC)) - age
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r}: expected an ISO 8601 time or an age like 15m, 2h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_size(text: str) -> int:
    """`500MB`, `10GB`, `1TiB`, or plain bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise UsageError(f"{text!r}: expected a size like 500MB or 10GB")
    unit = (match[2] or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    powers |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(float(match[1]) * powers[unit])


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
    _emit(result, output, out)


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
    _emit(
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
    _emit(result.select(shown) if output is QueryOutput.TABLE else result, output, out)


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


class AlertOutput(StrEnum):
    TABLE = "table"
    JSON = "json"


@flows_app.command("alerts")
def alerts_command(
    store: StoreOption,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            metavar="FEEDS",
            help="Feed state (`feeds sync --state-dir`).",
            file_okay=False,
        ),
    ],
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[AlertOutput, typer.Option("-o", "--output")] = AlertOutput.TABLE,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when there is any alert, 0 when not.")
    ] = False,
) -> None:
    """Records to or from an address a threat feed lists, DNS lookups of a name a domain feed
    lists and records to or from the addresses they returned, per feed, indicator and pair."""
    from netwarden.flows.alerts import alert_rows, scan_alerts
    from netwarden.threatintel.state import FeedStore

    feeds = FeedStore(state_dir)
    if not any(feeds.entries(name) is not None for name in feeds.names()):
        raise UsageError(f"{state_dir}: no feed synced there (netwarden feeds sync --state-dir)")
    target = open_store(store)
    try:
        report = scan_alerts(target, feeds, parse_time(since), parse_time(until))
    finally:
        target.close()
    if report.unchecked_domain_feeds:
        stderr_console().print(
            f"not checked: domain feed(s) {', '.join(report.unchecked_domain_feeds)} (no DNS"
            " record among the scanned flow records: import DNS logs, e.g. --format calico-dns)",
            markup=False,
        )
    if output is AlertOutput.JSON:
        sys.stdout.write(json.dumps(alert_rows(report.alerts), indent=1) + "\n")
    else:
        table = Table("first seen", "last seen", "feed", "indicator", "dir", "source", "dest",
                      "ports", "action", "policy", "records")  # fmt: skip
        for alert in report.alerts:
            table.add_row(
                _json_default(alert.first_seen), _json_default(alert.last_seen), alert.feed,
                alert.indicator if alert.query in (None, alert.indicator)
                else f"{alert.indicator}\nquery {alert.query}",
                alert.direction, f"{alert.source_ip} {alert.source}",
                f"{alert.dest_ip} {alert.dest}", ",".join(alert.ports), ",".join(alert.actions),
                "\n".join(alert.policies), str(alert.records),
            )  # fmt: skip
        console = stdout_console()
        console.print(table)
        console.print(
            f"{len(report.alerts)} alerts from {report.records} records against"
            f" {len(report.ip_feeds)} IP feed(s)"
            + (
                f" and {len(report.domain_feeds)} domain feed(s) ({report.dns_records} DNS records)"
                if report.domain_feeds
                else ""
            )
            + f" in {report.seconds:.2f} s",
            style="dim",
            markup=False,
        )
    if exit_code and report.alerts:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------- output


def _plain(table: Any) -> Any:
    """Lists joined with `,` and times in ISO form: what CSV and a terminal table can show."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_list(column.type):
            column = pc.binary_join(column, ",")
        elif pa.types.is_timestamp(column.type):
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S.%fZ")
        columns[name] = column
    return pa.table(columns) if columns else table


def _emit(table: Any, output: QueryOutput, out: Path | None) -> None:
    if output is QueryOutput.PARQUET:
        assert out is not None
        pq.write_table(table, str(out), compression="zstd")
        stderr_console().print(f"wrote {table.num_rows} rows to {out}", markup=False)
        return
    if output is QueryOutput.JSON:
        text = json.dumps(table.to_pylist(), default=_json_default, indent=1) + "\n"
    elif output is QueryOutput.CSV:
        buffer = io.BytesIO()
        pcsv.write_csv(_plain(table), buffer)
        text = buffer.getvalue().decode()
    else:
        _print_table(table)
        return
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _print_table(table: Any) -> None:
    plain = _plain(table)
    shown = Table(*plain.column_names, show_lines=False)
    for row in plain.to_pylist():
        shown.add_row(*("" if v is None else str(v) for v in row.values()))
    console = stdout_console()
    console.print(shown)
    console.print(f"{table.num_rows} rows", style="dim", markup=False)


__all__ = ["FLOW_COLUMNS", "flows_app"]

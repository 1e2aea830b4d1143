"""AWS VPC Flow Logs: the default version 2 text format, custom `${field}` formats (fields
of versions 2 to 5 and later), and the Parquet files AWS delivers to S3.

Text records are space-separated fields in the order of the log format; S3 files start with
a header line naming the fields (used when no format is given) and are gzip-compressed
(`.log.gz`, read as they are), CloudWatch exports have no header (the default v2 format is
then assumed). `-` means "no value". Records with log-status NODATA (no traffic in the
window) or SKIPDATA (records lost during capture) carry no flow: they are reported among the
rejected, with that reason, so counts still add up.

Each record reports one direction as the interface saw it: `bytes`/`packets` become
`bytes_out`/`packets_out` (source to destination), `pkt-srcaddr`/`pkt-dstaddr` win over the
interface addresses when present (traffic through NAT or a load balancer), `flow-direction`
gives the reporter, the instance (else interface) id the host.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pcsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from netwarden.errors import InputError, UsageError
from netwarden.flows.importers.common import (
    ImportResult,
    Rejection,
    epoch_seconds,
    finish,
    protocol_names,
    reject_rows,
)
from netwarden.flows.importers.text_log import TextLog
from netwarden.model.location import Location

DEFAULT_FORMAT = (
    "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport}"
    " ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
)

#: Every field AWS documents (versions 2 to 8); the integer ones are checked and cast.
KNOWN_FIELDS = frozenset(
    {
        "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
        "protocol", "packets", "bytes", "start", "end", "action", "log-status",
        "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr",
        "region", "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service",
        "pkt-dst-aws-service", "flow-direction", "traffic-path", "ecs-cluster-arn",
        "ecs-cluster-name", "ecs-container-instance-arn", "ecs-container-instance-id",
        "ecs-container-id", "ecs-second-container-id", "ecs-service-name",
        "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id", "reject-reason",
    }
)  # fmt: skip
_INTEGER_FIELDS = ("srcport", "dstport", "protocol", "packets", "bytes", "start", "end")
_REQUIRED = ("srcaddr", "dstaddr", "start", "end", "action")
#: The fields a record's columns come from; the others are read past, not converted.
_USED_FIELDS = frozenset(
    {
        *_INTEGER_FIELDS, *_REQUIRED, "log-status", "pkt-srcaddr", "pkt-dstaddr",
        "flow-direction", "instance-id", "interface-id",
    }
)  # fmt: skip
_NUMBER = r"^[0-9]{1,18}$"


def parse_format(log_format: str) -> list[str]:
    """Field names of a `${field} ${field}` format string (UsageError for unknown ones)."""
    fields = re.findall(r"\$\{([a-z0-9-]+)\}", log_format)
    leftover = re.sub(r"\$\{[a-z0-9-]+\}", "", log_format).strip()
    if not fields or leftover:
        raise UsageError(
            f"VPC log format {log_format!r}: expected `${{field}}` names separated by spaces"
        )
    unknown = [f for f in fields if f not in KNOWN_FIELDS]
    if unknown:
        raise UsageError(f"VPC log format: unknown field(s) {', '.join(unknown)}")
    missing = [f for f in _REQUIRED if f not in fields]
    if missing:
        raise UsageError(f"VPC log format: needs the field(s) {', '.join(missing)}")
    return fields


def read(path: str, log_format: str | None = None) -> ImportResult:
    """Read a VPC flow log file: Parquet (by its magic bytes) or text, plain or gzip."""
    log = TextLog.open(path)
    if log.first_line[:4] == b"PAR1":
        return _read_parquet(path)
    return _read_text(log, log_format)


def _line_layout(data: bytes) -> tuple[Any, Any, Any]:
    """Start offset, end offset (before `\\n`/`\\r\\n`) and field count of every line (0 for
    a blank one)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    ends = np.append(newlines, len(raw)) if (len(raw) and raw[-1] != 10) else newlines
    starts = (
        np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
        if len(ends)
        else np.zeros(0, np.int64)
    )
    ends = ends.astype(np.int64)
    carriage = (ends > starts) & (raw[np.maximum(ends - 1, 0)] == 13)
    ends = ends - carriage
    spaces = np.flatnonzero(raw == 32)
    fields = np.searchsorted(spaces, ends) - np.searchsorted(spaces, starts) + 1
    blank = fields == ends - starts + 1  # nothing but spaces (or nothing at all)
    return starts, ends, np.where(blank, 0, fields)


def _read_text(log: TextLog, log_format: str | None) -> ImportResult:
    path, first_line = log.path, log.first_line
    fields, header_line = _fields(path, first_line, log_format)
    if log.size() == (len(first_line) if header_line else 0):
        return finish(path, 0, {}, [])  # a header alone, or nothing: no records
    fast = _fast_path(log, fields, header_line)
    if fast is not None:
        table, numbers = fast
        return _convert(path, table, numbers, len(numbers), [])
    # Some line has the wrong number of fields or is blank: read the whole text, find every
    # line's extent and field count, keep the good lines, report the others.
    data = log.text()
    starts, ends, counts = _line_layout(data)
    line_numbers = np.arange(1, len(starts) + 1)
    present = counts > 0  # blank lines are not records
    if header_line:
        present[header_line - 1] = False
    wrong = present & (counts != len(fields))
    rejected = [
        Rejection(int(n), f"{int(c)} fields, the log format has {len(fields)}")
        for n, c in zip(line_numbers[wrong], counts[wrong], strict=True)
    ]
    good = present & ~wrong
    records_in = int(present.sum())
    if not good.any():
        return finish(path, records_in, {}, rejected)
    kept = b"\n".join(data[s:e] for s, e in zip(starts[good], ends[good], strict=True))
    table = _parse_csv(pa.py_buffer(kept), fields)
    return _convert(path, table, line_numbers[good], records_in, rejected)


def _fields(path: str, first_line: bytes, log_format: str | None) -> tuple[list[str], int]:
    """The log format's fields and the header's line number (0: no header). An S3 file's
    first line names the fields; it must agree with a format given explicitly."""
    header = first_line.decode("utf-8", "replace").rstrip("\r\n").split(" ")
    if header[0] not in KNOWN_FIELDS:
        return parse_format(log_format or DEFAULT_FORMAT), 0
    fields = parse_format(log_format or " ".join(f"${{{name}}}" for name in header))
    if header != fields:
        raise InputError(
            Location(path, 1), f"header names {' '.join(header)}, the log format {' '.join(fields)}"
        )
    return fields, 1


def _fast_path(log: TextLog, fields: list[str], header_line: int) -> tuple[Any, Any] | None:
    """The common case, one multi-threaded CSV read of the whole text (a plain file straight
    from disk, read and parsed in blocks on all cores, never held whole in memory); None when
    a line has the wrong field count or is blank."""
    invalid = 0

    def count_invalid(_row: Any) -> str:
        nonlocal invalid
        invalid += 1
        return "skip"

    table = _parse_csv(log.arrow_source(), fields, count_invalid, skip_rows=header_line)
    if invalid:
        return None
    # The reader skips empty lines and ends rows at a lone `\r` too: row numbers are line
    # numbers only when rows and lines agree in number.
    lines = log.line_count() - header_line
    if table.num_rows != lines:
        return None
    return table, np.arange(1 + header_line, lines + 1 + header_line, dtype=np.int64)


def _parse_csv(source: Any, fields: list[str], on_invalid: Any = None, skip_rows: int = 0) -> Any:
    """The records as a table: integers typed by the CSV reader when they all parse (the
    common case), else every field as text for `_convert` to check value by value.

    `source` is a path or an Arrow buffer: the reader splits it into blocks and parses them
    on all cores (a Python file object would be read through the GIL, block by block). A
    path is opened as plain bytes: no decompression guessed from its name, and no memory
    map (a log truncated under it, as logrotate's copytruncate does, would be SIGBUS).
    Only the fields `_convert` uses are converted.
    """
    read_options = pcsv.ReadOptions(column_names=fields, block_size=1 << 22, skip_rows=skip_rows)
    parse_options = pcsv.ParseOptions(
        delimiter=" ", quote_char=False, invalid_row_handler=on_invalid
    )
    used = [name for name in fields if name in _USED_FIELDS]
    typed = {name: pa.int64() if name in _INTEGER_FIELDS else pa.string() for name in used}
    for column_types in (typed, dict.fromkeys(used, pa.string())):
        convert = pcsv.ConvertOptions(
            column_types=column_types,
            null_values=["-"],
            strings_can_be_null=True,
            include_columns=used,
        )
        stream = pa.OSFile(source) if isinstance(source, str) else pa.BufferReader(source)
        try:
            with stream:
                return pcsv.read_csv(stream, read_options, parse_options, convert)
        except pa.ArrowInvalid:
            continue  # a value that is not a number: read as text, reject it by line
    raise AssertionError("reading every field as text cannot fail on field counts checked before")


def _read_parquet(path: str) -> ImportResult:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise InputError(Location(path), f"not a readable Parquet file: {error}") from None
    # AWS writes `account_id` for the text format's `account-id`.
    renamed = table.rename_columns([name.replace("_", "-") for name in table.column_names])
    names = [n for n in renamed.column_names if n in KNOWN_FIELDS]
    parse_format(" ".join(f"${{{n}}}" for n in names))
    columns = {}
    for name in names:
        column = renamed.column(name)
        kind = pa.int64() if name in _INTEGER_FIELDS else pa.string()
        try:
            columns[name] = pc.cast(column, kind)
        except pa.ArrowInvalid:  # e.g. a text column with a bad number: checked row by row
            columns[name] = pc.cast(column, pa.string())
    table = pa.table(columns)
    lines = np.arange(1, table.num_rows + 1)  # Parquet has rows, not lines: 1-based row
    return _convert(path, table, lines, table.num_rows, [])


def _convert(
    path: str, table: Any, lines: Any, records_in: int, rejected: list[Rejection]
) -> ImportResult:
    columns = {name: table.column(name) for name in table.column_names}
    status = columns.get("log-status")
    checks: list[tuple[Any, str]] = []
    # Each check costs a pass and a mask; skip those a whole-column summary rules out.
    if status is not None and not pc.all(pc.equal(status, "OK")).as_py():
        checks.append((pc.equal(status, "NODATA"), "log-status NODATA: no traffic recorded"))
        checks.append(
            (pc.equal(status, "SKIPDATA"), "log-status SKIPDATA: records lost in capture")
        )
    for name in _REQUIRED:
        if columns[name].null_count:
            checks.append((pc.is_null(columns[name]), f"{name}: missing"))
    for name in _INTEGER_FIELDS:
        if name in columns and pa.types.is_string(columns[name].type):
            number = pc.match_substring_regex(columns[name], _NUMBER)
            checks.append((pc.invert(number), f"{name}: not a number"))
            columns[name] = pc.cast(pc.if_else(number, columns[name], None), pa.int64())
    for name in ("srcport", "dstport"):
        if name in columns and (pc.max(columns[name]).as_py() or 0) > 65535:
            checks.append((pc.greater(columns[name], 65535), f"{name}: out of range"))
    accepted = pc.equal(columns["action"], "ACCEPT")
    known_action = pc.or_(accepted, pc.equal(columns["action"], "REJECT"))
    if not pc.all(known_action).as_py():
        checks.append((pc.invert(known_action), "action: not ACCEPT or REJECT"))
    table = pa.table(columns).append_column("accepted", accepted)
    table, _lines, more = reject_rows(table, lines, checks)
    rejected = rejected + more
    if table.num_rows == 0:
        return finish(path, records_in, {}, rejected)

    def column(name: str) -> Any:
        return (
            table.column(name)
            if name in table.column_names
            else pa.nulls(table.num_rows, pa.string())
        )

    def integer(name: str, kind: Any = None) -> Any:
        kind = kind or pa.int64()
        if name not in table.column_names:
            return pa.nulls(table.num_rows, kind)
        return pc.cast(table.column(name), kind)

    def preferred(first: str, second: str) -> Any:
        """`first` where present, else `second` (a column the format lacks is all null)."""
        if first not in table.column_names:
            return column(second)
        return pc.coalesce(column(first), column(second))

    protocol = integer("protocol")
    # VPC logs write port 0 for ICMP: the schema says null where ports do not apply.
    ported = pc.fill_null(pc.is_in(protocol, pa.array([6, 17, 132], pa.int64())), False)

    def port(name: str) -> Any:
        number = integer(name, pa.int32())
        return number if pc.all(ported).as_py() else pc.if_else(ported, number, None)

    out: dict[str, Any] = {
        "start_time": epoch_seconds(column("start")),
        "end_time": epoch_seconds(column("end")),
        "source_ip": preferred("pkt-srcaddr", "srcaddr"),
        "dest_ip": preferred("pkt-dstaddr", "dstaddr"),
        "source_port": port("srcport"),
        "dest_port": port("dstport"),
        "proto": protocol_names(protocol),
        "action": pc.if_else(table.column("accepted"), "allow", "deny"),
        "host": preferred("instance-id", "interface-id"),
        "bytes_out": integer("bytes"),
        "packets_out": integer("packets"),
        "num_flows": pa.array(np.ones(table.num_rows, dtype=np.int64)),
    }
    if "flow-direction" in table.column_names:
        direction = column("flow-direction")
        out["reporter"] = pc.if_else(
            pc.equal(direction, "ingress"),
            "dst",
            pc.if_else(pc.equal(direction, "egress"), "src", None),
        )
    return finish(path, records_in, out, rejected)

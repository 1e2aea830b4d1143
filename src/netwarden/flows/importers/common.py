"""What every importer shares: the result record, JSON-lines reading that locates bad lines,
line numbering of records a reader parsed in one pass (blank lines skipped), DuckDB column
specs for `read_json`, and column helpers (protocol names, row rejection by mask)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.json as pj  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.schema import conform, empty_table
from netwarden.model.location import Location

#: Lines per pyarrow.json call: large enough to be fast, small enough that a bad line
#: costs a bisection of one chunk, not of the whole file.
_CHUNK_LINES = 1 << 17

#: Bytes per read when counting a file's lines.
_COUNT_BLOCK = 1 << 23

_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
#: Every protocol number's text (IANA numbers are 0..255), for a single gather per column.
_PROTOCOL_TEXT = pa.array([_PROTOCOL_NAMES.get(number, str(number)) for number in range(256)])


@dataclass(frozen=True)
class Rejection:
    """An input record that was not stored: where it was and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """Records read from one input: `table` (FLOW_SCHEMA) plus everything rejected.

    Invariant: `records_in == table.num_rows + len(rejected)`.
    """

    path: str
    records_in: int
    table: Any
    rejected: tuple[Rejection, ...]

    def __post_init__(self) -> None:
        stored = self.table.num_rows
        if self.records_in != stored + len(self.rejected):
            raise AssertionError(
                f"{self.path}: {self.records_in} records in, {stored} kept,"
                f" {len(self.rejected)} rejected"
            )

    @property
    def stored(self) -> int:
        return int(self.table.num_rows)


def read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise InputError(Location(path), "no such file")
    with open(path, "rb") as handle:
        return handle.read()


def read_first_line(path: str) -> bytes:
    """The file's first line with its newline (the whole file if it has none)."""
    if not os.path.isfile(path):
        raise InputError(Location(path), "no such file")
    with open(path, "rb") as handle:
        return handle.readline()


@dataclass(frozen=True)
class JsonRows:
    """JSON lines parsed against a schema: `table` rows come from the 1-based `lines`."""

    table: Any
    lines: Any  # numpy int64 array, one line number per row
    rejected: tuple[Rejection, ...]


def _duckdb_type(kind: Any) -> str:
    """The DuckDB type spelling of an Arrow type (the subset importer schemas use)."""
    if pa.types.is_struct(kind):
        fields = ", ".join(f'"{f.name}" {_duckdb_type(f.type)}' for f in kind)
        return f"STRUCT({fields})"
    if pa.types.is_list(kind):
        return f"{_duckdb_type(kind.value_type)}[]"
    simple = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN"}
    return simple[kind]


def duckdb_columns(schema: Any) -> str:
    """A `read_json(..., columns = ...)` argument for the fields of an Arrow schema."""
    return "{" + ", ".join(f"'{f.name}': '{_duckdb_type(f.type)}'" for f in schema) + "}"


def _read_json_duckdb(path: str, schema: Any) -> Any:
    """The whole file through DuckDB's JSON reader (about twice pyarrow's speed per CPU
    second here); None when any line fails, so the caller can locate the bad ones."""
    connection = duckdb.connect()
    try:
        relation = connection.sql(
            "SELECT * FROM read_json($path, format = 'newline_delimited',"
            f" columns = {duckdb_columns(schema)})",
            params={"path": path},
        )
        return relation.to_arrow_table().cast(schema)
    except (duckdb.Error, pa.ArrowException):
        return None
    finally:
        connection.close()


def count_lines(path: str) -> int:
    """Lines in a file (an unterminated last one counts), counted block by block: no copy of
    the whole file in memory."""
    block = np.empty(_COUNT_BLOCK, dtype=np.uint8)
    newlines, last = 0, 10
    with open(path, "rb", buffering=0) as handle:
        while size := handle.readinto(block.data):
            newlines += _newlines(block[:size])
            last = int(block[size - 1])
    return newlines + (last != 10)


def count_buffer_lines(raw: Any) -> int:
    """Lines in a numpy array of bytes (an unterminated last one counts)."""
    return _newlines(raw) + int(len(raw) > 0 and raw[-1] != 10)


def _newlines(raw: Any) -> int:
    """`\\n` bytes in a numpy array, compared block by block: one comparison over the whole
    array would allocate a mask as large as it. (numpy: 3x `bytes.count`.)"""
    return sum(
        int(np.count_nonzero(raw[start : start + _COUNT_BLOCK] == 10))
        for start in range(0, len(raw), _COUNT_BLOCK)
    )


def file_record_line_numbers(path: str, rows: int) -> Any:
    """`record_line_numbers` for a file a reader has already parsed; the file is read whole
    only when blank lines make the numbering differ."""
    if rows == count_lines(path):  # no blank lines: row i is line i + 1
        return np.arange(1, rows + 1, dtype=np.int64)
    return record_line_numbers(read_bytes(path), rows)


def record_line_numbers(data: bytes, rows: int) -> Any:
    """1-based line numbers of the `rows` records a reader found in `data` (JSON lines,
    blank lines skipped); None when the non-blank lines are not `rows` in number."""
    line_count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if rows == line_count:  # no blank lines: row i is line i + 1
        return np.arange(1, line_count + 1, dtype=np.int64)
    numbers = _record_lines(data)
    return numbers if len(numbers) == rows else None


def read_json_lines(data: bytes, schema: Any, path: str | None = None) -> JsonRows:
    """Parse newline-delimited JSON against `schema` (unknown fields ignored).

    Blank lines are not records. A line that is not JSON, or whose values do not fit the
    schema, is rejected with its number: the readers reject a whole block, so a failing
    chunk is bisected with pyarrow until the bad lines stand alone.
    """
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:  # the common case, a clean file: one multi-threaded read, no splitting
        whole = _read_json_duckdb(path, schema) if path else None
        if whole is None:
            whole = pj.read_json(pa.BufferReader(pa.py_buffer(data)), parse_options=options)
        numbers = record_line_numbers(data, whole.num_rows)
        if numbers is not None:
            return JsonRows(whole, numbers, ())
    except pa.ArrowInvalid:
        pass
    lines = data.split(b"\n")
    numbers = np.fromiter(
        (i for i, line in enumerate(lines, start=1) if line.strip()), dtype=np.int64
    )
    records = [lines[i - 1] for i in numbers]
    tables: list[Any] = []
    kept: list[Any] = []
    rejected: list[Rejection] = []

    def parse(start: int, stop: int) -> None:
        block = b"\n".join(records[start:stop])
        try:
            table = pj.read_json(pa.BufferReader(pa.py_buffer(block)), parse_options=options)
        except pa.ArrowInvalid as error:
            if stop - start == 1:
                reason = str(error).replace("JSON parse error: ", "").split(" in row ")[0]
                rejected.append(Rejection(int(numbers[start]), f"not a valid record: {reason}"))
                return
            middle = (start + stop) // 2
            parse(start, middle)
            parse(middle, stop)
            return
        if table.num_rows != stop - start:  # e.g. two objects on one line
            if stop - start == 1:
                rejected.append(Rejection(int(numbers[start]), "not one JSON object per line"))
                return
            middle = (start + stop) // 2
            parse(start, middle)
            parse(middle, stop)
            return
        tables.append(table)
        kept.append(numbers[start:stop])

    for start in range(0, len(records), _CHUNK_LINES):
        parse(start, min(start + _CHUNK_LINES, len(records)))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    line_numbers = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    return JsonRows(table, line_numbers, tuple(rejected))


def _record_lines(data: bytes) -> Any:
    """1-based numbers of the lines that hold something other than blanks, from the newline
    positions (numpy; only very short lines are looked at one by one)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    ends = newlines if (len(raw) and raw[-1] == 10) else np.append(newlines, len(raw))
    starts = np.concatenate(([0], newlines + 1))[: len(ends)]
    has_content = (ends - starts) > 8  # no JSON record fits in 8 bytes of blanks
    for index in np.flatnonzero(~has_content):
        has_content[index] = bool(data[starts[index] : ends[index]].strip())
    return np.flatnonzero(has_content).astype(np.int64) + 1


def reject_rows(
    table: Any, lines: Any, checks: list[tuple[Any, str]]
) -> tuple[Any, Any, list[Rejection]]:
    """Drop rows failing any check; `checks` are (boolean mask of bad rows, reason).

    Returns the kept table, their line numbers and the rejections (first failing check per
    row), all computed on columns.
    """
    bad = np.zeros(table.num_rows, dtype=bool)
    rejected: list[Rejection] = []
    for mask, reason in checks:
        flags = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
        fresh = flags & ~bad
        rejected.extend(Rejection(int(line), reason) for line in lines[fresh])
        bad |= flags
    if not bad.any():
        return table, lines, rejected
    keep = ~bad
    return table.filter(pa.array(keep)), lines[keep], rejected


def protocol_names(numbers: Any) -> Any:
    """IANA protocol numbers -> lowercase names (`tcp`, ...) or the number as text."""
    low, high = pc.min_max(numbers).values()
    if low.is_valid and low.as_py() >= 0 and high.as_py() < len(_PROTOCOL_TEXT):
        return pc.take(_PROTOCOL_TEXT, numbers)  # one gather instead of a pass per name
    text = pc.cast(numbers, pa.string())
    result = text
    for number, name in _PROTOCOL_NAMES.items():
        result = pc.if_else(pc.equal(numbers, number), name, result)
    return result


def finish(
    path: str, records_in: int, columns: dict[str, Any], rejected: list[Rejection]
) -> ImportResult:
    """Conform the columns to FLOW_SCHEMA and build the result (rejections by line)."""
    table = conform(pa.table(columns)) if columns else empty_table()
    rejected.sort(key=lambda r: r.line)
    return ImportResult(path, records_in, table, tuple(rejected))


def non_null_lists(lists: Any) -> Any:
    """Null lists as empty ones, rebuilt from lengths and flat values (fill_null with an
    empty-list scalar is slow on nested types)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    if lists.null_count == 0:
        return lists
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pc.list_flatten(lists))


def sort_lists(lists: Any) -> Any:
    """Each list's strings sorted (labels are stored sorted), computed on the flat values."""
    lists = non_null_lists(lists)
    if len(lists) == 0:
        return lists
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    order = pc.sort_indices(
        pa.table({"parent": parents, "value": flat}),
        sort_keys=[("parent", "ascending"), ("value", "ascending")],
    )
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    return pa.ListArray.from_arrays(offsets, pc.take(flat, order))


def null_if_dash(column: Any) -> Any:
    """`-` (and the empty string) mean "no value" in Calico and VPC logs."""
    missing = pc.or_(pc.equal(column, "-"), pc.equal(column, ""))
    return pc.if_else(pc.fill_null(missing, False), pa.scalar(None, column.type), column)


def epoch_seconds(column: Any) -> Any:
    """Unix seconds (int) -> timestamp[us, UTC]."""
    micros = pc.multiply(pc.cast(column, pa.int64()), 1_000_000)
    return pc.cast(micros, pa.timestamp("us", tz="UTC"))

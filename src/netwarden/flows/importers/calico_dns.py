"""Calico Enterprise DNS logs (JSON lines, the format Felix writes to dns.log and ships to
Elasticsearch, as docs.tigera.io "Configure DNS logs" lists it): `start_time`, `end_time`,
`type` (log / unlogged), `count`, `client_ip`, `client_name`, `client_name_aggr`,
`client_namespace`, `client_labels`, `servers[] {ip, name, name_aggr, namespace, labels}`,
`qname`, `qclass`, `qtype`, `rcode`, `rrsets[] {name, class, type, rdata[]}`, `latency_*`.

One log line is one flow record of the exchange: source = the client pod, destination = the
first server the line names (a line naming several stands for the same answer from each: it
is stored once), udp/53, `num_flows` = `count` (the lookups the line aggregates). The DNS
columns: `dns_qname` (lower case, no trailing dot), `dns_qtype`, `dns_rcode` (upper case:
NOERROR, NXDOMAIN, ...) and `dns_answers`, the `rdata` of the A, AAAA and CNAME rrsets
(addresses and CNAME targets, lower case, no trailing dot). Felix writes names as Unicode
(IDNA U-labels); non-ASCII names are stored as A-labels (`xn--...`), the form feeds list.

Felix writes times as RFC 3339 text; Elasticsearch documents may hold Unix seconds: both are
read. `client_labels` is an object (Felix) or a `key=value` list. A line of type `unlogged`
counts lookups Felix did not log in detail (`DNSLogsFilePerNodeLimit`): it has no client nor
name, so it is rejected with that reason, never stored as a record of nothing.

The file is parsed by DuckDB's JSON functions over all lines at once (one value per line, so
a bad line is located and rejected alone); no Python object is made per record.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.importers.common import (
    ImportResult,
    finish,
    non_null_lists,
    null_if_dash,
    reject_rows,
    sort_lists,
)
from netwarden.flows.importers.text_log import TextLog
from netwarden.model.location import Location

#: The top-level fields read, each as JSON where Felix and Elasticsearch differ in type.
_STRUCTURE = (
    '{"start_time": "JSON", "end_time": "JSON", "type": "VARCHAR", "count": "JSON",'
    ' "client_ip": "VARCHAR", "client_name": "VARCHAR", "client_name_aggr": "VARCHAR",'
    ' "client_namespace": "VARCHAR", "client_labels": "JSON", "servers": "JSON",'
    ' "qname": "VARCHAR", "qtype": "VARCHAR", "rcode": "VARCHAR", "rrsets": "JSON",'
    ' "host": "VARCHAR"}'
)
_SERVERS = '[{"ip": "VARCHAR", "name": "VARCHAR", "name_aggr": "VARCHAR", "namespace": "VARCHAR"}]'
_RRSETS = '[{"name": "VARCHAR", "type": "VARCHAR", "rdata": ["VARCHAR"]}]'
_NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"


def _time(field: str) -> str:
    """A time that is RFC 3339 text or Unix seconds (null when neither)."""
    return (
        f"CASE WHEN json_type(r.{field}) = 'VARCHAR'"
        f" THEN TRY_CAST(r.{field}->>'$' AS TIMESTAMPTZ)"
        f" WHEN json_type(r.{field}) IN {_NUMBER}"
        f" AND TRY_CAST(r.{field} AS DOUBLE) BETWEEN 0 AND 1e11"
        f" THEN to_timestamp(TRY_CAST(r.{field} AS DOUBLE)) END"
    )


_QUERY = f"""
WITH parsed AS (
  SELECT line, valid, kind,
         CASE WHEN kind = 'OBJECT' THEN json_transform(text, '{_STRUCTURE}') END AS r
  FROM (
    SELECT line, text, json_valid(text) AS valid,
           CASE WHEN json_valid(text) THEN json_type(text) END AS kind
    FROM dns_lines
  )
)
SELECT
  line,
  valid,
  kind = 'OBJECT' AS is_object,
  lower(r.type) AS type,
  {_time("start_time")} AS start_time,
  {_time("end_time")} AS end_time,
  r.start_time IS NULL AS no_start,
  r.end_time IS NULL AS no_end,
  CASE WHEN json_type(r.count) IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(r.count AS BIGINT) END
    AS count,
  r.client_ip AS client_ip,
  r.client_name AS client_name,
  r.client_name_aggr AS client_name_aggr,
  r.client_namespace AS client_namespace,
  CASE json_type(r.client_labels)
    WHEN 'OBJECT' THEN list_transform(
      map_entries(json_transform(r.client_labels, '"MAP(VARCHAR, VARCHAR)"')),
      lambda e: e.key || '=' || e.value)
    WHEN 'ARRAY' THEN json_transform(r.client_labels, '["VARCHAR"]')
  END AS client_labels,
  coalesce(json_type(r.client_labels) NOT IN ('OBJECT', 'ARRAY', 'NULL'), false)
    AS bad_labels,
  json_transform(r.servers, '{_SERVERS}')[1] AS server,
  coalesce(json_type(r.servers) NOT IN ('ARRAY', 'NULL'), false) AS bad_servers,
  lower(rtrim(r.qname, '.')) AS qname,
  upper(r.qtype) AS qtype,
  upper(r.rcode) AS rcode,
  list_transform(
    flatten(list_transform(
      list_filter(json_transform(r.rrsets, '{_RRSETS}'),
                  lambda s: upper(s.type) IN ('A', 'AAAA', 'CNAME')),
      lambda s: coalesce(s.rdata, []))),
    lambda v: lower(rtrim(v, '.'))) AS answers,
  coalesce(json_type(r.rrsets) NOT IN ('ARRAY', 'NULL'), false) AS bad_rrsets,
  r.host AS host
FROM parsed
ORDER BY line
"""


def read(path: str) -> ImportResult:
    """Read a Calico Enterprise DNS log file (JSON lines, plain or gzip)."""
    data = TextLog.open(path).text()
    lines, numbers, not_utf8 = _lines(data)
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("dns_lines", pa.table({"line": pa.array(numbers), "text": lines}))
        raw = connection.sql(_QUERY).to_arrow_table()
    except duckdb.Error as error:
        raise InputError(Location(path), f"cannot read DNS log: {error}") from None
    finally:
        connection.close()
    kind = raw.column("type")
    checks = [
        (pc.is_in(raw.column("line"), pa.array(not_utf8, pa.int64())), "not UTF-8 text"),
        (pc.invert(raw.column("valid")), "not a valid record: not JSON"),
        (pc.invert(raw.column("is_object")), "not one JSON object per line"),
        (
            pc.equal(kind, "unlogged"),
            "type unlogged: a count of lookups Felix did not log in detail"
            " (DNSLogsFilePerNodeLimit), no client nor name",
        ),
        (
            pc.and_(pc.is_valid(kind), pc.invert(pc.equal(kind, "log"))),
            "type: not log or unlogged",
        ),
        (raw.column("no_start"), "start_time: missing"),
        (pc.is_null(raw.column("start_time")), "start_time: not RFC 3339 text or Unix seconds"),
        (raw.column("no_end"), "end_time: missing"),
        (pc.is_null(raw.column("end_time")), "end_time: not RFC 3339 text or Unix seconds"),
        (pc.is_null(raw.column("count")), "count: missing or not an integer"),
        (pc.less(raw.column("count"), 0), "count: negative"),
        (pc.is_null(raw.column("qname")), "qname: missing"),
        (raw.column("bad_labels"), "client_labels: not an object or a list"),
        (raw.column("bad_servers"), "servers: not a list"),
        (raw.column("bad_rrsets"), "rrsets: not a list"),
    ]
    lines_of_rows = np.asarray(raw.column("line").to_numpy(), dtype=np.int64)
    table, _kept, rejected = reject_rows(raw, lines_of_rows, checks)
    records_in = len(numbers)
    if table.num_rows == 0:
        return finish(path, records_in, {}, rejected)
    return finish(path, records_in, _columns(table), rejected)


def _lines(data: bytes) -> tuple[Any, Any, list[int]]:
    """The lines of `data` that hold something, as an Arrow string array over one copy of the
    file (each value keeps its newline, which JSON reads as blank), their 1-based numbers, and
    the numbers of lines that are not UTF-8 (blanked: they are rejected, alone)."""
    lines = _line_array(data)
    not_utf8: list[int] = []
    try:
        lines.validate(full=True)  # UTF-8, checked by Arrow without a Python string
    except pa.ArrowInvalid:  # rare: find the bad lines one by one
        split = data.split(b"\n")
        for number, line in enumerate(split, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                not_utf8.append(number)
                split[number - 1] = b"{}"
        lines = _line_array(b"\n".join(split))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[: len(lines) + 1]
    # No JSON record fits in 8 bytes: only such short lines are looked at one by one.
    content = np.diff(offsets) > 8
    for index in np.flatnonzero(~content).tolist():
        content[index] = bool(lines[index].as_py().strip())
    keep = np.flatnonzero(content)
    if len(keep) < len(lines):
        lines = pc.take(lines, pa.array(keep))
    return lines, keep.astype(np.int64) + 1, not_utf8


def _line_array(data: bytes) -> Any:
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(raw == 10) + 1)).astype(np.int64)
    if starts[-1] == len(data):
        starts = starts[:-1]  # the file ends with a newline (or is empty): no line after it
    offsets = np.append(starts, len(data)).astype(np.int64)
    return pa.LargeStringArray.from_buffers(
        len(starts), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)
    )


def _columns(table: Any) -> dict[str, Any]:
    """The kept log lines as FLOW_SCHEMA columns."""
    namespace = null_if_dash(table.column("client_namespace"))
    server = table.column("server")
    server_namespace = null_if_dash(pc.struct_field(server, "namespace"))
    server_aggr = null_if_dash(pc.struct_field(server, "name_aggr"))
    # Felix names a server that is no pod `pvt` (a private address) or `pub` (public), as
    # its flow logs name a network endpoint.
    network = pc.fill_null(pc.is_in(server_aggr, pa.array(["pvt", "pub"])), False)
    rows = table.num_rows
    workload = pa.array(["workload"] * rows, pa.string()) if rows else pa.array([], pa.string())
    no_type = pa.nulls(rows, pa.string())
    return {
        "start_time": table.column("start_time"),
        "end_time": table.column("end_time"),
        "source_ip": null_if_dash(table.column("client_ip")),
        "dest_ip": null_if_dash(pc.struct_field(server, "ip")),
        "dest_port": pa.array(np.full(rows, 53, dtype=np.int32)),
        "proto": pa.array(["udp"] * rows, pa.string()),
        "source_type": pc.if_else(pc.is_valid(namespace), workload, no_type),
        "source_namespace": namespace,
        "source_name": null_if_dash(table.column("client_name")),
        "source_name_aggr": null_if_dash(table.column("client_name_aggr")),
        "source_labels": sort_lists(table.column("client_labels")),
        "dest_type": pc.if_else(
            network,
            pa.array(["external"] * rows, pa.string()),
            pc.if_else(pc.is_valid(server_namespace), workload, no_type),
        ),
        "dest_namespace": server_namespace,
        "dest_name": null_if_dash(pc.struct_field(server, "name")),
        "dest_name_aggr": server_aggr,
        "host": null_if_dash(table.column("host")),
        "num_flows": table.column("count"),
        "dns_qname": ascii_names(table.column("qname")),
        "dns_qtype": table.column("qtype"),
        "dns_rcode": table.column("rcode"),
        "dns_answers": _ascii_lists(table.column("answers")),
    }


def ascii_names(names: Any) -> Any:
    """DNS names with every non-ASCII one as its IDNA A-labels (`bücher.example` ->
    `xn--bcher-kva.example`); a name IDNA refuses stays as it is. Only distinct non-ASCII
    names are converted one by one (they are rare).

        >>> ascii_names(pa.array(["bücher.example", "evil.example", None])).to_pylist()
        ['xn--bcher-kva.example', 'evil.example', None]
    """
    names = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
    unicode = pc.invert(pc.fill_null(pc.string_is_ascii(names), True))
    if not pc.any(unicode).as_py():
        return names
    distinct = pc.unique(names.filter(unicode))
    converted = pa.array([_a_labels(name) for name in distinct.to_pylist()], pa.string())
    position = pc.index_in(names, value_set=distinct)
    return pc.if_else(unicode, pc.take(converted, position), names)


def _a_labels(name: str) -> str:
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _ascii_lists(lists: Any) -> Any:
    lists = non_null_lists(lists)
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    return pa.ListArray.from_arrays(offsets, ascii_names(pc.list_flatten(lists)))

"""Calico flow logs (JSON lines, the format Felix writes to flows.log and ships to
Elasticsearch): `start_time`, `source_namespace`, `dest_labels: {"labels": [...]}`,
`policies: {"enforced_policies": [...], "pending_policies": [...]}`, byte/packet counters.

Column names already match FLOW_SCHEMA; this reader maps Calico's endpoint types (wep, hep,
ns, net) to netwarden's, `-` to null, and epoch seconds to timestamps. Older Calico versions
write only `all_policies`: those count as enforced.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.importers.common import (
    ImportResult,
    epoch_seconds,
    finish,
    null_if_dash,
    read_json_lines,
    reject_rows,
    sort_lists,
)
from netwarden.flows.importers.text_log import TextLog
from netwarden.flows.schema import COUNTER_COLUMNS

_STRINGS = pa.list_(pa.string())
_ENDPOINT_TYPES = {"wep": "workload", "hep": "host", "ns": "networkset", "net": "external"}


def _side(side: str) -> list[Any]:
    return [
        (f"{side}_ip", pa.string()),
        (f"{side}_port", pa.int64()),
        (f"{side}_type", pa.string()),
        (f"{side}_namespace", pa.string()),
        (f"{side}_name", pa.string()),
        (f"{side}_name_aggr", pa.string()),
        (f"{side}_labels", pa.struct([("labels", _STRINGS)])),
    ]


_SCHEMA = pa.schema(
    [
        ("start_time", pa.int64()),
        ("end_time", pa.int64()),
        ("startTime", pa.int64()),
        ("endTime", pa.int64()),
        *_side("source"),
        *_side("dest"),
        ("proto", pa.string()),
        ("action", pa.string()),
        ("reporter", pa.string()),
        ("host", pa.string()),
        (
            "policies",
            pa.struct(
                [
                    ("all_policies", _STRINGS),
                    ("enforced_policies", _STRINGS),
                    ("pending_policies", _STRINGS),
                ]
            ),
        ),
        *[(name, pa.int64()) for name in COUNTER_COLUMNS],
    ]
)

_PROTOCOL_NUMBERS = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmpv6", "132": "sctp"}


def read(path: str) -> ImportResult:
    """Read a Calico flow log file (JSON lines, plain or gzip)."""
    log = TextLog.open(path)
    rows = read_json_lines(log.text(), _SCHEMA, path if log.inflated is None else None)
    raw = rows.table
    start = pc.coalesce(raw.column("start_time"), raw.column("startTime"))
    end = pc.coalesce(raw.column("end_time"), raw.column("endTime"))
    action = pc.utf8_lower(raw.column("action"))
    reporter = raw.column("reporter")
    checks = [
        (pc.is_null(start), "start_time: missing"),
        (pc.is_null(end), "end_time: missing"),
        (pc.invert(pc.is_in(action, pa.array(["allow", "deny"]))), "action: not allow or deny"),
        (
            pc.and_(pc.is_valid(reporter), pc.invert(pc.is_in(reporter, pa.array(["src", "dst"])))),
            "reporter: not src or dst",
        ),
    ]
    for side in ("source", "dest"):
        kind = raw.column(f"{side}_type")
        known = pa.array(list(_ENDPOINT_TYPES))
        checks.append(
            (
                pc.and_(pc.is_valid(kind), pc.invert(pc.is_in(kind, known))),
                f"{side}_type: not one of wep, hep, ns, net",
            )
        )
        port = raw.column(f"{side}_port")
        checks.append(
            (pc.or_(pc.less(port, 0), pc.greater(port, 65535)), f"{side}_port: out of range")
        )
    raw = raw.append_column("_start", start).append_column("_end", end)
    raw = raw.set_column(raw.schema.get_field_index("action"), "action", action)
    table, _lines, rejected = reject_rows(raw, rows.lines, checks)
    rejected = list(rows.rejected) + rejected
    records_in = rows.table.num_rows + len(rows.rejected)
    if table.num_rows == 0:
        return finish(path, records_in, {}, rejected)

    columns: dict[str, Any] = {
        "start_time": epoch_seconds(table.column("_start")),
        "end_time": epoch_seconds(table.column("_end")),
    }
    for side in ("source", "dest"):
        columns[f"{side}_ip"] = null_if_dash(table.column(f"{side}_ip"))
        columns[f"{side}_port"] = table.column(f"{side}_port")
        kind = table.column(f"{side}_type")
        for calico_name, name in _ENDPOINT_TYPES.items():
            kind = pc.if_else(pc.equal(kind, calico_name), name, kind)
        columns[f"{side}_type"] = kind
        for suffix in ("namespace", "name", "name_aggr"):
            columns[f"{side}_{suffix}"] = null_if_dash(table.column(f"{side}_{suffix}"))
        labels = pc.struct_field(table.column(f"{side}_labels"), "labels")
        columns[f"{side}_labels"] = sort_lists(labels)
    proto = pc.utf8_lower(table.column("proto"))
    for number, name in _PROTOCOL_NUMBERS.items():
        proto = pc.if_else(pc.equal(proto, number), name, proto)
    columns["proto"] = proto
    columns["action"] = table.column("action")
    columns["reporter"] = table.column("reporter")
    columns["host"] = null_if_dash(table.column("host"))
    policies = table.column("policies")
    enforced = pc.struct_field(policies, "enforced_policies")
    columns["policies_enforced"] = pc.coalesce(enforced, pc.struct_field(policies, "all_policies"))
    columns["policies_pending"] = pc.struct_field(policies, "pending_policies")
    for name in COUNTER_COLUMNS:
        columns[name] = table.column(name)
    return finish(path, records_in, columns, rejected)

"""Hubble flows: the lines `hubble observe -o json` prints, `{"flow": {...}, "node_name",
"time"}` with the flow's `IP`, `l4`, `source`/`destination` endpoints (labels like
`k8s:app=web`), `verdict`, `traffic_direction`, the policies that allowed or denied it
(`egress_allowed_by`, `ingress_denied_by`, ...) and, for DNS seen by Cilium's DNS proxy,
`l7: {type: REQUEST|RESPONSE, dns: {query, ips, ttl, cnames, rcode, qtypes, rrtypes}}`
(field names as in Cilium's `flow.proto`, printed by protojson: a zero `rcode` is left out).

A Hubble flow is one observed packet event, not an accounted connection: each becomes a
record with `num_flows = packets_out = 1` and no byte count (Hubble does not report one),
`num_flows_started = 1` for a TCP SYN without ACK. Policies become Calico-format hits
`<index>|default|<namespace>/<name>|<allow|deny>|0` (`knp.default.<name>` for policies
derived from a Kubernetes NetworkPolicy); Hubble does not report the rule index, so it is 0.

DNS: `query` -> `dns_qname` (lower case, no trailing dot), the first of `qtypes` ->
`dns_qtype`; for a RESPONSE, `rcode` -> `dns_rcode` by its IANA name (NOERROR, NXDOMAIN,
...) and `ips` then `cnames` -> `dns_answers` (lower case, no trailing dot).

The whole file goes through one DuckDB query: its JSON reader parses the lines on every core
into the few fields used, and the same query computes the flow columns and, per record, why
it is rejected (if it is). A file with a line that is not valid JSON for these fields falls
back to pyarrow's reader, which bisects to the bad lines; the same query then runs on the
records that parsed.
"""

from __future__ import annotations

import os
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.errors import InputError
from netwarden.flows.importers.common import (
    ImportResult,
    Rejection,
    duckdb_columns,
    file_record_line_numbers,
    finish,
    read_json_lines,
)
from netwarden.flows.importers.text_log import TextLog
from netwarden.flows.schema import FLOW_COLUMNS, conform
from netwarden.model.location import Location

_STRINGS = pa.list_(pa.string())
_PORTS = pa.struct([("source_port", pa.int64()), ("destination_port", pa.int64())])
_TCP = pa.struct(
    [
        ("source_port", pa.int64()),
        ("destination_port", pa.int64()),
        ("flags", pa.struct([("SYN", pa.bool_()), ("ACK", pa.bool_())])),
    ]
)
_ICMP = pa.struct([("type", pa.int64())])  # only its presence is used: the protocol
_ENDPOINT = pa.struct(
    [
        ("namespace", pa.string()),
        ("labels", _STRINGS),
        ("pod_name", pa.string()),
        ("workloads", pa.list_(pa.struct([("name", pa.string())]))),
    ]
)
_POLICIES = pa.list_(
    pa.struct([("name", pa.string()), ("namespace", pa.string()), ("labels", _STRINGS)])
)
_POLICY_FIELDS = (
    ("egress_allowed_by", "allow"),
    ("ingress_allowed_by", "allow"),
    ("egress_denied_by", "deny"),
    ("ingress_denied_by", "deny"),
)
_DNS = pa.struct(
    [
        ("query", pa.string()),
        ("ips", _STRINGS),
        ("cnames", _STRINGS),
        ("rcode", pa.int64()),
        ("qtypes", _STRINGS),
    ]
)
_FLOW = pa.struct(
    [
        ("time", pa.string()),
        ("verdict", pa.string()),
        ("IP", pa.struct([("source", pa.string()), ("destination", pa.string())])),
        (
            "l4",
            pa.struct(
                [
                    ("TCP", _TCP),
                    ("UDP", _PORTS),
                    ("SCTP", _PORTS),
                    ("ICMPv4", _ICMP),
                    ("ICMPv6", _ICMP),
                ]
            ),
        ),
        ("source", _ENDPOINT),
        ("destination", _ENDPOINT),
        ("node_name", pa.string()),
        ("traffic_direction", pa.string()),
        *[(name, _POLICIES) for name, _ in _POLICY_FIELDS],
        ("l7", pa.struct([("type", pa.string()), ("dns", _DNS)])),
    ]
)
#: The fields read from each line; everything else in it is skipped.
_SCHEMA = pa.schema([("flow", _FLOW), ("node_name", pa.string()), ("time", pa.string())])

#: Hubble verdicts -> action. Anything else (VERDICT_UNKNOWN, a new one) is rejected.
_ALLOW = ("FORWARDED", "REDIRECTED", "TRACED", "TRANSLATED", "AUDIT")
_DENY = ("DROPPED", "ERROR")
#: RFC 3339 with a zone, as Hubble writes times (a constant in the query: DuckDB compiles a
#: literal pattern once, a parameter once per row).
_TIME_PATTERN = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)"
_HOST_IDENTITIES = (
    "reserved:host",
    "reserved:remote-node",
    "reserved:kube-apiserver",
    "reserved:health",
)
_DERIVED_FROM_KNP = "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"

#: DNS RCODEs by number (IANA "DNS RCODEs"); another number is stored as its digits.
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI",
    16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG",
    22: "BADTRUNC", 23: "BADCOOKIE",
}  # fmt: skip


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def _sql_tuple(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _endpoint_sql(side: str, field: str) -> str:
    """An endpoint's columns: kind, namespace, pod, aggregate name (first workload, else
    the pod) and its Kubernetes labels."""
    endpoint = f"r.flow.{field}"
    labels = f"coalesce({endpoint}.labels, [])"
    return f"""
  CASE
    WHEN list_has_any({labels}, {_sql_list(_HOST_IDENTITIES)}) THEN 'host'
    WHEN len(list_filter({labels},
             lambda l: starts_with(l, 'reserved:world') OR starts_with(l, 'cidr:'))) > 0
      OR coalesce({endpoint}.namespace, '') = '' THEN 'external'
    ELSE 'workload'
  END AS {side}_type,
  nullif({endpoint}.namespace, '') AS {side}_namespace,
  nullif({endpoint}.pod_name, '') AS {side}_name,
  nullif(coalesce({endpoint}.workloads[1].name, {endpoint}.pod_name), '') AS {side}_name_aggr,
  -- `k8s:app=web` -> `app=web`; Cilium's own labels (`k8s:io.cilium...`, the namespace
  -- label) and other sources (`reserved:`, `cidr:`) are identity plumbing, not pod labels.
  list_sort(list_transform(
    list_filter({labels}, lambda l: starts_with(l, 'k8s:')
      AND NOT starts_with(l, 'k8s:io.cilium.')
      AND NOT starts_with(l, 'k8s:io.kubernetes.pod.namespace=')),
    lambda l: l[5:])) AS {side}_labels,"""


def _policy_hits_sql(field: str, action: str) -> str:
    return f"""list_transform(coalesce(r.flow.{field}, []), lambda p: 'default|'
      || CASE WHEN coalesce(p.namespace, '') <> '' THEN p.namespace || '/' ELSE '' END
      || CASE WHEN list_contains(p.labels, '{_DERIVED_FROM_KNP}') THEN 'knp.default.'
              ELSE '' END
      || p.name || '|{action}')"""


def _rcode_sql(number: str) -> str:
    names = " ".join(f"WHEN {code} THEN '{name}'" for code, name in RCODE_NAMES.items())
    return f"CASE {number} {names} ELSE {number}::VARCHAR END"


_DNS_SQL = "r.flow.l7.dns"
_IS_RESPONSE = f"({_DNS_SQL} IS NOT NULL AND r.flow.l7.type = 'RESPONSE')"

#: One row per input record, in input order: the flow columns, and `reason` (why the record
#: is rejected, null when it is kept). `{source}` is the JSON reader or a parsed table.
_QUERY = f"""
SELECT
  coalesce(r.flow.time, r.time) AS time_text,
  try_cast(time_text AS TIMESTAMPTZ) AS start_time,
  start_time AS end_time,
  CASE
    WHEN r.flow IS NULL THEN 'no flow object (not a flow event)'
    WHEN start_time IS NULL OR NOT regexp_full_match(time_text, '{_TIME_PATTERN}')
      THEN 'time: missing or not RFC 3339'
    WHEN r.flow.verdict IS NULL OR r.flow.verdict NOT IN {_sql_tuple((*_ALLOW, *_DENY))}
      THEN 'verdict: missing or unknown'
    WHEN r.flow.IP.source IS NULL OR r.flow.IP.destination IS NULL
      THEN 'IP: missing source or destination'
  END AS reason,
  r.flow.IP.source AS source_ip,
  r.flow.IP.destination AS dest_ip,
  try_cast(coalesce(r.flow.l4.TCP.source_port, r.flow.l4.UDP.source_port,
                    r.flow.l4.SCTP.source_port) AS INTEGER) AS source_port,
  try_cast(coalesce(r.flow.l4.TCP.destination_port, r.flow.l4.UDP.destination_port,
                    r.flow.l4.SCTP.destination_port) AS INTEGER) AS dest_port,
  CASE
    WHEN r.flow.l4.TCP IS NOT NULL THEN 'tcp'
    WHEN r.flow.l4.UDP IS NOT NULL THEN 'udp'
    WHEN r.flow.l4.SCTP IS NOT NULL THEN 'sctp'
    WHEN r.flow.l4.ICMPv4 IS NOT NULL THEN 'icmp'
    WHEN r.flow.l4.ICMPv6 IS NOT NULL THEN 'icmpv6'
  END AS proto,{_endpoint_sql("source", "source")}{_endpoint_sql("dest", "destination")}
  CASE WHEN r.flow.verdict IN {_sql_tuple(_DENY)} THEN 'deny' ELSE 'allow' END AS action,
  CASE r.flow.traffic_direction WHEN 'INGRESS' THEN 'dst' WHEN 'EGRESS' THEN 'src' END
    AS reporter,
  coalesce(r.flow.node_name, r.node_name) AS host,
  -- Each hit numbered by its position in the record's list, as Calico numbers them.
  list_transform(
    list_concat({", ".join(_policy_hits_sql(f, a) for f, a in _POLICY_FIELDS)}),
    lambda hit, i: (i - 1)::VARCHAR || '|' || hit || '|0') AS policies_enforced,
  1::BIGINT AS packets_out,
  1::BIGINT AS num_flows,
  (coalesce(r.flow.l4.TCP.flags.SYN, false)
    AND NOT coalesce(r.flow.l4.TCP.flags.ACK, false))::BIGINT AS num_flows_started,
  nullif(lower(rtrim({_DNS_SQL}.query, '.')), '') AS dns_qname,
  nullif(upper({_DNS_SQL}.qtypes[1]), '') AS dns_qtype,
  -- protojson leaves out a zero rcode: a response without one is NOERROR.
  CASE WHEN {_IS_RESPONSE} THEN {_rcode_sql(f"coalesce({_DNS_SQL}.rcode, 0)")} END
    AS dns_rcode,
  CASE WHEN {_IS_RESPONSE} THEN list_transform(
      list_concat(coalesce({_DNS_SQL}.ips, []), coalesce({_DNS_SQL}.cnames, [])),
      lambda answer: lower(rtrim(answer, '.')))
    ELSE [] END AS dns_answers
FROM {{source}} r
"""


def read(path: str) -> ImportResult:
    """Read `hubble observe -o json` output."""
    if not os.path.isfile(path):
        raise InputError(Location(path), "no such file")
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")
        records, lines, rejected = _records(connection, path)
    finally:
        connection.close()
    records_in = records.num_rows + len(rejected)
    reasons = records.column("reason")
    if reasons.null_count < len(reasons):  # some records fail a check: set them aside
        bad = np.asarray(pc.is_valid(reasons).to_numpy(zero_copy_only=False), dtype=bool)
        rejected.extend(
            Rejection(int(line), str(reason))
            for line, reason in zip(
                lines[bad], pc.filter(reasons, pa.array(bad)).to_pylist(), strict=True
            )
        )
        records = records.filter(pa.array(~bad))
    if records.num_rows == 0:
        return finish(path, records_in, {}, rejected)
    flows = conform(records.select([name for name in FLOW_COLUMNS if name in records.schema.names]))
    rejected.sort(key=lambda r: r.line)
    return ImportResult(path, records_in, flows, tuple(rejected))


def _records(connection: duckdb.DuckDBPyConnection, path: str) -> tuple[Any, Any, list[Rejection]]:
    """Every parsed record's row of `_QUERY`, its line number, and the lines that did not
    parse. The whole file in one read when it is clean; pyarrow's bisecting reader else."""
    log = TextLog.open(path)
    reader = f"read_json($path, format = 'newline_delimited', columns = {duckdb_columns(_SCHEMA)})"
    try:
        if log.inflated is None:  # DuckDB reads a plain file itself (a gzip one: below)
            records = connection.sql(
                _QUERY.replace("{source}", reader), params={"path": path}
            ).to_arrow_table()
            lines = file_record_line_numbers(path, records.num_rows)
            if lines is not None:
                return records, lines, []
    except duckdb.Error:
        pass  # a line that is not JSON, or not these fields' types: find which
    rows = read_json_lines(log.text(), _SCHEMA)
    connection.register("parsed_flows", rows.table)
    try:
        records = connection.sql(_QUERY.replace("{source}", "parsed_flows")).to_arrow_table()
    except duckdb.Error as error:
        raise InputError(Location(path), f"cannot read Hubble flows: {error}") from None
    return records, rows.lines, list(rows.rejected)

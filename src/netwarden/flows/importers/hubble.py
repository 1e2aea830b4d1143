"""Hubble flows: the lines `hubble observe -o json` prints, `{"flow": {...}, "node_name",
"time"}` with the flow's `IP`, `l4`, `source`/`destination` endpoints (labels like
`k8s:app=web`), `verdict`, `traffic_direction` and the policies that allowed or denied it
(`egress_allowed_by`, `ingress_denied_by`, ...).

A Hubble flow is one observed packet event, not an accounted connection: each becomes a
record with `num_flows = packets_out = 1` and no byte count (Hubble does not report one),
`num_flows_started = 1` for a TCP SYN without ACK. Policies become Calico-format hits
`<index>|default|<namespace>/<name>|<allow|deny>|0` (`knp.default.<name>` for policies
derived from a Kubernetes NetworkPolicy); Hubble does not report the rule index, so it is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from netwarden.flows.importers.common import (
    ImportResult,
    concat_lists,
    finish,
    list_has,
    list_has_prefix,
    non_null_lists,
    read_bytes,
    read_json_lines,
    reject_rows,
    sort_lists,
)

_STRINGS = pa.list_(pa.string())
_PORTS = pa.struct([("source_port", pa.int64()), ("destination_port", pa.int64())])
_TCP = pa.struct(
    [
        ("source_port", pa.int64()),
        ("destination_port", pa.int64()),
        ("flags", pa.struct([("SYN", pa.bool_()), ("ACK", pa.bool_())])),
    ]
)
_ICMP = pa.struct([("type", pa.int64()), ("code", pa.int64())])
_ENDPOINT = pa.struct(
    [
        ("namespace", pa.string()),
        ("labels", _STRINGS),
        ("pod_name", pa.string()),
        ("workloads", pa.list_(pa.struct([("name", pa.string()), ("kind", pa.string())]))),
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
    ]
)
_SCHEMA = pa.schema([("flow", _FLOW), ("node_name", pa.string()), ("time", pa.string())])

#: Hubble verdicts -> action. Anything else (VERDICT_UNKNOWN, a new one) is rejected.
_ALLOW = ("FORWARDED", "REDIRECTED", "TRACED", "TRANSLATED", "AUDIT")
_DENY = ("DROPPED", "ERROR")
_TIME_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$"
_HOST_IDENTITIES = (
    "reserved:host",
    "reserved:remote-node",
    "reserved:kube-apiserver",
    "reserved:health",
)
_DERIVED_FROM_KNP = "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"


def _get(struct: Any, name: str) -> Any:
    """A struct child with the parent's nulls applied (StructArray.field ignores them)."""
    return pc.struct_field(struct, name)


def read(path: str) -> ImportResult:
    """Read `hubble observe -o json` output."""
    rows = read_json_lines(read_bytes(path), _SCHEMA, path)
    raw = rows.table
    if raw.num_rows == 0:
        return finish(path, len(rows.rejected), {}, list(rows.rejected))
    flows = raw.column("flow").combine_chunks()
    time = pc.coalesce(_get(flows, "time"), raw.column("time").combine_chunks())
    verdict = _get(flows, "verdict")
    ip = _get(flows, "IP")
    checks = [
        (pc.is_null(flows), "no flow object (not a flow event)"),
        (
            pc.invert(pc.fill_null(pc.match_substring_regex(time, _TIME_PATTERN), False)),
            "time: missing or not RFC 3339",
        ),
        (pc.invert(pc.is_in(verdict, pa.array([*_ALLOW, *_DENY]))), "verdict: missing or unknown"),
        (
            pc.or_(pc.is_null(_get(ip, "source")), pc.is_null(_get(ip, "destination"))),
            "IP: missing source or destination",
        ),
    ]
    table = pa.table({"flow": flows, "time": time})
    table, _lines, rejected = reject_rows(table, rows.lines, checks)
    rejected = list(rows.rejected) + rejected
    records_in = raw.num_rows + len(rows.rejected)
    if table.num_rows == 0:
        return finish(path, records_in, {}, rejected)
    return finish(path, records_in, _columns(table), rejected)


def _columns(table: Any) -> dict[str, Any]:
    flows = table.column("flow").combine_chunks()
    count = len(flows)
    stamp = pc.cast(table.column("time"), pa.timestamp("ns", tz="UTC"))
    stamp = pc.cast(stamp, pa.timestamp("us", tz="UTC"), safe=False)
    l4 = _get(flows, "l4")
    tcp, udp, sctp = _get(l4, "TCP"), _get(l4, "UDP"), _get(l4, "SCTP")
    icmp4, icmp6 = _get(l4, "ICMPv4"), _get(l4, "ICMPv6")
    proto = pa.nulls(count, pa.string())
    for struct, name in (
        (icmp6, "icmpv6"),
        (icmp4, "icmp"),
        (sctp, "sctp"),
        (udp, "udp"),
        (tcp, "tcp"),
    ):
        proto = pc.if_else(pc.is_valid(struct), name, proto)
    ports = {}
    for end, field in (("source", "source_port"), ("dest", "destination_port")):
        ports[end] = pc.cast(
            pc.coalesce(_get(tcp, field), _get(udp, field), _get(sctp, field)), pa.int32()
        )
    flags = _get(tcp, "flags")
    syn = pc.fill_null(_get(flags, "SYN"), False)
    ack = pc.fill_null(_get(flags, "ACK"), False)
    started = pc.cast(pc.and_(syn, pc.invert(ack)), pa.int64())
    verdict = _get(flows, "verdict")
    direction = _get(flows, "traffic_direction")
    reporter = pc.if_else(
        pc.equal(direction, "INGRESS"),
        "dst",
        pc.if_else(pc.equal(direction, "EGRESS"), "src", None),
    )
    ones = pa.array(np.ones(count, dtype=np.int64))
    columns: dict[str, Any] = {
        "start_time": stamp,
        "end_time": stamp,
        "source_ip": _get(_get(flows, "IP"), "source"),
        "dest_ip": _get(_get(flows, "IP"), "destination"),
        "source_port": ports["source"],
        "dest_port": ports["dest"],
        "proto": proto,
        "action": pc.if_else(pc.is_in(verdict, pa.array(_DENY)), "deny", "allow"),
        "reporter": reporter,
        "host": _get(flows, "node_name"),
        "policies_enforced": _policies(flows, count),
        "packets_out": ones,
        "num_flows": ones,
        "num_flows_started": started,
    }
    for side, field in (("source", "source"), ("dest", "destination")):
        columns.update(_endpoint(side, _get(flows, field), count))
    return columns


def _endpoint(side: str, endpoint: Any, count: int) -> dict[str, Any]:
    labels = non_null_lists(_get(endpoint, "labels"))
    namespace = _get(endpoint, "namespace")
    pod = _get(endpoint, "pod_name")
    host = np.zeros(count, dtype=bool)
    for identity in _HOST_IDENTITIES:
        host |= list_has(labels, identity)
    world = list_has_prefix(labels, "reserved:world") | list_has_prefix(labels, "cidr:")
    has_namespace = np.asarray(pc.is_valid(pc.if_else(pc.equal(namespace, ""), None, namespace)))
    kind = np.where(host, "host", np.where(world | ~has_namespace, "external", "workload"))
    workloads = _get(endpoint, "workloads")
    first_workload = (
        pc.list_element(
            pc.if_else(pc.greater(pc.list_value_length(workloads), 0), workloads, None), 0
        )
        if len(workloads)
        else pa.nulls(count, pa.struct([("name", pa.string())]))
    )
    aggregate = pc.coalesce(_get(first_workload, "name"), pod)
    return {
        f"{side}_type": pa.array(kind),
        f"{side}_namespace": pc.if_else(pc.equal(namespace, ""), None, namespace),
        f"{side}_name": pc.if_else(pc.equal(pod, ""), None, pod),
        f"{side}_name_aggr": pc.if_else(pc.equal(aggregate, ""), None, aggregate),
        f"{side}_labels": _kubernetes_labels(labels),
    }


def _kubernetes_labels(labels: Any) -> Any:
    """`k8s:app=web` -> `app=web`; Cilium's own (`k8s:io.cilium...`, the namespace label) and
    non-Kubernetes sources (`reserved:`, `cidr:`) are identity plumbing, not pod labels."""
    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    flat = pc.list_flatten(labels)
    parents = pc.list_parent_indices(labels)
    keep = pc.and_(
        pc.starts_with(flat, "k8s:"),
        pc.invert(
            pc.or_(
                pc.starts_with(flat, "k8s:io.cilium."),
                pc.starts_with(flat, "k8s:io.kubernetes.pod.namespace="),
            )
        ),
    )
    values = pc.utf8_slice_codeunits(pc.filter(flat, keep), 4)
    kept_parents = np.asarray(pc.filter(parents, keep).to_numpy(), dtype=np.int64)
    counts = np.bincount(kept_parents, minlength=len(labels))
    offsets = np.zeros(len(labels) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return sort_lists(pa.ListArray.from_arrays(pa.array(offsets), values))


def _policies(flows: Any, count: int) -> Any:
    """Calico-format policy hits from the four allowed/denied lists, indexed per record."""
    parts = []
    for field, action in _POLICY_FIELDS:
        lists = non_null_lists(_get(flows, field))
        flat = pc.list_flatten(lists)
        if len(flat) == 0:
            parts.append(pa.ListArray.from_arrays(lists.offsets, pa.array([], pa.string())))
            continue
        knp = list_has(_get(flat, "labels"), _DERIVED_FROM_KNP)
        name = _get(flat, "name")
        name = pc.if_else(
            pa.array(knp), pc.binary_join_element_wise("knp.default.", name, ""), name
        )
        namespace = _get(flat, "namespace")
        qualified = pc.if_else(
            pc.fill_null(pc.greater(pc.utf8_length(namespace), 0), False),
            pc.binary_join_element_wise(namespace, name, "/"),
            name,
        )
        hits = pc.binary_join_element_wise("default", qualified, action, "|")
        offsets = pc.subtract(lists.offsets, lists.offsets[0])
        parts.append(pa.ListArray.from_arrays(offsets, hits))
    combined = concat_lists(parts, count)
    # Prefix each hit with its position in the record's list, as Calico numbers them.
    flat = pc.list_flatten(combined)
    parents = np.asarray(pc.list_parent_indices(combined).to_numpy(), dtype=np.int64)
    starts = np.asarray(combined.offsets.to_numpy(), dtype=np.int64)[parents]
    index = pa.array((np.arange(len(flat)) - starts).astype(str))
    numbered = pc.binary_join_element_wise(index, flat, "|")
    numbered = pc.binary_join_element_wise(numbered, "0", "|")
    return pa.ListArray.from_arrays(combined.offsets, numbered)

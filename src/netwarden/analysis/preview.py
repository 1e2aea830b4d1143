"""Impact preview: replay stored flows against a proposed policy set, report what changes.

Each record is replayed in the direction its reporter saw (Calico's flow logs, and netwarden's
collector, report `src` = the source's egress verdict and `dst` = the destination's ingress
verdict; a record without a reporter is judged on both). The verdict before is the recorded
`action` (or, with `Baseline.ENFORCED`, what the enforced policies of the same input decide);
the verdict after is what the proposed input decides: its staged policy set when it holds
staged policies, so a staged policy is judged on real traffic before it is enforced. Changes
are grouped by (source workload, destination workload, protocol, port) with the policy that
decides the new verdict.

All of it runs on columns: the records are folded into their distinct identity rows (with
record counts and counter sums) by the store itself (`FlowStore.fold`, `preview_store`), or by
Arrow for a table in memory (`preview`); `engine.flow_batch` turns those rows into probes, the
vectorized engine decides each distinct conversation once, and the changed ones are added up
per report row with numpy. No record ever becomes a Python object.

    report = preview_store(cluster, open_store("flows.duckdb"))
    for change in report.changes: print(change.source, change.dest, change.after)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netwarden.analysis.store_groups import fold_groups
from netwarden.engine.batch import BatchResult, DirectionColumns, ProbeBatch
from netwarden.engine.flow_batch import (
    FlowGroups,
    SkippedFlows,
    combine,
    group_flows,
)
from netwarden.engine.vectorized import VectorEngine
from netwarden.errors import UsageError
from netwarden.model import ClusterState, Endpoint, EndpointKind, protocol_name

if TYPE_CHECKING:
    from netwarden.flows.filter import FlowFilter
    from netwarden.flows.store import FlowStore

Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

#: Counter columns a preview adds up per change.
COUNTERS = ("num_flows", "bytes_in", "bytes_out")
#: Besides who talks to whom: what the record says happened, and who reported it.
RECORDED = ("action", "reporter")
#: The flow columns a preview reads (pass them to `FlowStore.scan`).
PREVIEW_COLUMNS = (
    "source_ip",
    "dest_ip",
    "dest_port",
    "proto",
    "source_type",
    "source_namespace",
    "source_name",
    "source_name_aggr",
    "dest_type",
    "dest_namespace",
    "dest_name",
    "dest_name_aggr",
    "action",
    "reporter",
    "num_flows",
    "bytes_in",
    "bytes_out",
)


class Baseline(StrEnum):
    """What a replayed verdict is compared with."""

    RECORDED = "recorded"  # the action the flow record carries
    ENFORCED = "enforced"  # the enforced policies of the proposed input (vs. its staged set)


@dataclass(frozen=True)
class VerdictChange:
    """Flows between two workloads on one port whose verdict changes the same way."""

    source: str
    dest: str
    protocol: str
    port: int
    before: str  # allow | deny
    after: str
    policy: str  # what decides the new verdict, as `netwarden explain` names it
    records: int
    flows: int
    bytes: int


@dataclass(frozen=True)
class PreviewReport:
    """Counts in = replayed + skipped; `changed_records` of the replayed change verdict."""

    records: int
    replayed: int
    skipped: tuple[SkippedFlows, ...]
    changed_records: int
    changes: tuple[VerdictChange, ...]
    staged: bool  # the proposed verdicts are the staged policy set's

    @property
    def newly_denied(self) -> int:
        return sum(c.records for c in self.changes if c.after == "deny")

    @property
    def newly_allowed(self) -> int:
        return sum(c.records for c in self.changes if c.after == "allow")


def workload_name(endpoint: Endpoint) -> str:
    """How reports name an end: `namespace/workload` for a pod of a workload, else its key."""
    if endpoint.kind is EndpointKind.POD and endpoint.workload:
        return f"{endpoint.namespace}/{endpoint.workload.rpartition('/')[2]}"
    return endpoint.key


def preview(
    cluster: ClusterState, table: Any, baseline: Baseline = Baseline.RECORDED
) -> PreviewReport:
    """Replay the records of `table` (flow columns) against `cluster`'s policies."""
    groups = group_flows(cluster, table, RECORDED, COUNTERS)
    return _report(cluster, groups, int(table.num_rows), baseline)


def preview_store(
    cluster: ClusterState,
    store: FlowStore,
    where: FlowFilter | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    baseline: Baseline = Baseline.RECORDED,
) -> PreviewReport:
    """Replay the matching records of `store` against `cluster`'s policies: the same report
    as `preview` of the time-ordered scan, from the store's fold of the records."""
    groups, records = fold_groups(cluster, store, RECORDED, COUNTERS, where, since, until)
    return _report(cluster, groups, records, baseline)


def _report(
    cluster: ClusterState, groups: FlowGroups, records: int, baseline: Baseline
) -> PreviewReport:
    """The replay of `records` folded into `groups`."""
    result = _decide(VectorEngine(cluster), groups.batch)
    if baseline is Baseline.ENFORCED and result.staged is None:
        raise UsageError("--baseline enforced compares with staged policies: the input has none")
    after = result.staged if result.staged is not None else result
    action_values, reporter_values = groups.extra_values
    reporter = _lookup(reporter_values, {"src": 0, "dst": 1}, groups.extra[:, 1], default=2)
    if baseline is Baseline.RECORDED:
        recorded = _lookup(action_values, {"deny": 0, "allow": 1}, groups.extra[:, 0], default=-1)
        known = recorded >= 0
        before = recorded == 1
    else:
        known = np.ones(len(groups.batch), dtype=np.bool_)
        before = _reported(result, reporter)
    changed = known & (before != _reported(after, reporter))
    skipped = list(groups.skipped)
    if not known.all():
        count, first = int(groups.records[~known].sum()), groups.first_row(~known)
        skipped.append(SkippedFlows("no recorded action", count, first))
    return PreviewReport(
        records=records,
        replayed=int(groups.records[known].sum()),
        skipped=tuple(skipped),
        changed_records=int(groups.records[changed].sum()),
        changes=_changes(groups, after, reporter, before, changed),
        staged=result.staged is not None,
    )


def _decide(engine: VectorEngine, batch: ProbeBatch) -> BatchResult:
    """`engine.evaluate(batch)`, deciding each distinct (source, destination, port, protocol)
    once: groups that differ only in recorded action or reporter share the verdict."""
    size = len(batch.endpoints)
    conversation, distinct = combine(
        [
            (batch.src.astype(np.int64), size),
            (batch.dst.astype(np.int64), size),
            (batch.port.astype(np.int64), 65536),
            (batch.protocol.astype(np.int64), 256),
        ]
    )
    if distinct.shape[0] == len(batch):
        return engine.evaluate(batch)
    columns = [distinct[:, i].astype(np.int32) for i in range(4)]
    return _spread(engine.evaluate(ProbeBatch(batch.endpoints, *columns)), batch, conversation)


def _spread(result: BatchResult, batch: ProbeBatch, index: Ints) -> BatchResult:
    """Verdicts of distinct conversations laid out per group (`index`: group -> conversation)."""

    def taken(columns: DirectionColumns) -> DirectionColumns:
        return DirectionColumns(
            columns.allowed[index],
            columns.reason[index],
            columns.policy[index],
            columns.rule[index],
        )

    staged = None if result.staged is None else _spread(result.staged, batch, index)
    return replace(
        result,
        batch=batch,
        egress=taken(result.egress),
        ingress=taken(result.ingress),
        staged=staged,
    )


def _lookup(values: list[Any], codes: dict[str, int], column: Ints, default: int) -> Ints:
    """Codes of an encoded column mapped through `codes` (case-insensitive)."""
    table = [codes.get(str(v).lower(), default) for v in values] + [default]
    mapped: Ints = np.array(table, dtype=np.int64)[column]
    return mapped


def _reported(result: BatchResult, reporter: Ints) -> Mask:
    """The verdict each group's reporter saw: src egress, dst ingress, unknown both."""
    both = result.egress.allowed & result.ingress.allowed
    chosen: Mask = np.where(
        reporter == 0, result.egress.allowed, np.where(reporter == 1, result.ingress.allowed, both)
    )
    return chosen


def _responsible(result: BatchResult, reporter: Ints) -> tuple[Mask, Ints]:
    """Per group: whether the egress decision is the one to name, and a code per distinct
    (direction, reason, policy, rule). A denial is named by the direction that denied it; an
    allowed flow by its reporter's direction (ingress when unknown)."""
    egress, ingress = result.egress, result.ingress
    denied_by_egress = ~egress.allowed & (reporter != 1)
    denied_by_ingress = ~ingress.allowed & (reporter != 0)
    use_egress = np.where(
        denied_by_egress, True, np.where(denied_by_ingress, False, reporter == 0)
    ).astype(np.bool_)
    reason = np.where(use_egress, egress.reason, ingress.reason).astype(np.int64)
    policy = np.where(use_egress, egress.policy, ingress.policy).astype(np.int64)
    rule = np.where(use_egress, egress.rule, ingress.rule).astype(np.int64)
    allowed = np.where(use_egress, egress.allowed, ingress.allowed).astype(np.int64)
    size = max(len(result.policies), len(result.profiles), 1)
    rules = int(max(egress.rule.max(initial=0), ingress.rule.max(initial=0))) + 2
    code, _ = combine(
        [
            (use_egress.astype(np.int64), 2),
            (allowed, 2),
            (reason, 16),
            (policy, size + 1),
            (rule, rules),
        ]
    )
    return use_egress, code


def _changes(
    groups: FlowGroups, after: BatchResult, reporter: Ints, before: Mask, changed: Mask
) -> tuple[VerdictChange, ...]:
    """Changed groups folded into report rows, biggest first."""
    chosen = np.flatnonzero(changed)
    if chosen.shape[0] == 0:
        return ()
    batch = groups.batch
    use_egress, decider = _responsible(after, reporter)
    names = [workload_name(endpoint) for endpoint in batch.endpoints]
    name_code = np.array(_dense_names(names), dtype=np.int64)
    rows, combos = combine(
        [
            (name_code[batch.src[chosen]], len(names)),
            (name_code[batch.dst[chosen]], len(names)),
            (batch.protocol[chosen].astype(np.int64), 256),
            (batch.port[chosen].astype(np.int64), 65536),
            (before[chosen].astype(np.int64), 2),
            (decider[chosen], int(decider.max()) + 1),
        ]
    )
    count = len(combos)

    def per_row(per_group: Ints) -> Ints:
        added = np.zeros(count, dtype=np.int64)
        np.add.at(added, rows, per_group[chosen])
        return added

    records = per_row(groups.records)
    flows = per_row(groups.sums["num_flows"])
    sent = per_row(groups.sums["bytes_in"] + groups.sums["bytes_out"])
    first_group = np.empty(count, dtype=np.int64)
    first_group[rows[::-1]] = chosen[::-1]  # any group of the row names it
    made = []
    for r in range(count):
        g = int(first_group[r])
        made.append(
            VerdictChange(
                source=names[int(batch.src[g])],
                dest=names[int(batch.dst[g])],
                protocol=protocol_name(int(batch.protocol[g])),
                port=int(batch.port[g]),
                before="allow" if before[g] else "deny",
                after="deny" if before[g] else "allow",
                policy=after.deciding(g, egress=bool(use_egress[g])),
                records=int(records[r]),
                flows=int(flows[r]),
                bytes=int(sent[r]),
            )
        )
    # Biggest first; the rest of the key only makes the order total (the same report whichever
    # order the groups came in).
    made.sort(
        key=lambda c: (
            -c.flows,
            -c.records,
            c.source,
            c.dest,
            c.port,
            c.protocol,
            c.before,
            c.policy,
        )
    )
    return tuple(made)


def _dense_names(names: list[str]) -> list[int]:
    """Equal names, equal codes: endpoints of one workload fold into one row."""
    seen: dict[str, int] = {}
    return [seen.setdefault(name, len(seen)) for name in names]

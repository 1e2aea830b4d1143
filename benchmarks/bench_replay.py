"""Impact preview throughput: 10,000,000 stored flows replayed against 1,000 policies.

    .venv/bin/python benchmarks/bench_replay.py                  # 10M flows, 5,000 pods
    .venv/bin/python benchmarks/bench_replay.py --quick          # 200k flows, 300 pods
    .venv/bin/python benchmarks/bench_replay.py --backend chdb   # the ClickHouse store

The cluster is `generate.py`'s (5,000 pods, 1,000 policies). Flow records are what a week of
flow logs holds: `--conversations` distinct (source, destination, port, protocol) between
pods and outside addresses (`generate_probes`), repeated with a skewed popularity over
`--flows` records, each with its own source port and time, a `src` and a `dst` reporter, and
the action the cluster *without its last 5% of policies* decided: replaying against the full
set is a proposal that adds those policies. The records are appended to a flow store (a
DuckDB file in a temporary directory, or chDB with `--backend chdb`; not timed).

Timed, as the median of `--runs`: `preview_store(cluster, store)`, what `netwarden preview
--flows STORE` runs: everything from the stored records to the grouped report (the store's
fold of the records, identity resolution, the vectorized engine, counting). Also timed once:
`preview(cluster, table)` from the same records as an Arrow table in memory (Arrow folds
them), whose report must be identical. The named peer, measured in the same run, is the
reference engine (`PolicyEngine.decide`) on a sample of the records, one flow at a time
(after resolving each record's endpoints, not timed); its rate is extrapolated to the whole
table. The sample's verdict changes are also checked against the replay's, so a fast wrong
answer shows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from generate import generate_cluster, generate_probes
from netwarden.analysis.preview import PreviewReport, preview, preview_store, workload_name
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine, VectorEngine
from netwarden.engine.batch import resolve_probes
from netwarden.flows.store import FlowStore, open_store
from netwarden.model import ClusterState, EndpointKind, Flow, protocol_name

T = TypeVar("T")


def timed(runs: int, work: Callable[[], T]) -> tuple[float, float, T]:
    """Median wall seconds and median CPU seconds (all threads) of `runs` calls, and the last
    call's result. CPU time shows the work when other processes share the cores."""
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu), result


def conversations(cluster: ClusterState, count: int, seed: int) -> dict[str, Any]:
    """`count` distinct conversations as columns, with both directions' recorded verdicts."""
    probes = list(dict.fromkeys(generate_probes(cluster, count * 2, seed)))[:count]
    current = replace(cluster, policies=cluster.policies[: len(cluster.policies) * 95 // 100])
    recorded = VectorEngine(current).evaluate(resolve_probes(current, probes))
    columns: dict[str, list[Any]] = {name: [] for name in ("source", "dest")}
    ends = {}
    for side in ("source", "dest"):
        names = [p.src if side == "source" else p.dst for p in probes]
        ends[side] = [_identity(cluster, name) for name in names]
    columns = {
        f"{side}_{field}": [end[i] for end in ends[side]]
        for side in ("source", "dest")
        for i, field in enumerate(("type", "namespace", "name", "name_aggr", "ip"))
    }
    columns["dest_port"] = [p.port or None for p in probes]
    columns["proto"] = [protocol_name(p.protocol).lower() for p in probes]
    columns["egress"] = recorded.egress.allowed.tolist()
    columns["ingress"] = recorded.ingress.allowed.tolist()
    return columns


def _identity(cluster: ClusterState, name: str) -> tuple[str, str, str, str, str | None]:
    endpoint = cluster.endpoint(name)
    assert endpoint is not None
    ip = str(endpoint.ips[0]) if endpoint.ips else None
    if endpoint.kind is EndpointKind.POD:
        assert endpoint.namespace is not None
        aggregate = endpoint.name.rsplit("-", 1)[0] + "-*"
        return ("workload", endpoint.namespace, endpoint.name, aggregate, ip)
    if endpoint.kind is EndpointKind.HOST:
        return ("host", "-", endpoint.node or endpoint.name, endpoint.node or "-", ip)
    return ("external", "-", "-", "pub", ip)


def flow_table(conversation: dict[str, Any], flows: int, seed: int) -> Any:
    """`flows` records drawn from the conversations (a few are most of the traffic), half of
    them reported by the source (egress verdict), half by the destination (ingress)."""
    rng = np.random.default_rng(seed)
    count = len(conversation["proto"])
    which = np.minimum(rng.pareto(1.2, flows) * count / 50, count - 1).astype(np.int64)
    which = rng.permutation(count)[which]  # popularity independent of generation order
    reporter_src = rng.random(flows) < 0.5
    indices = pa.array(which)
    columns = {}
    for name, values in conversation.items():
        if name in ("egress", "ingress"):
            continue
        columns[name] = pa.array(values).take(indices)
    egress = np.asarray(conversation["egress"])[which]
    ingress = np.asarray(conversation["ingress"])[which]
    allowed = np.where(reporter_src, egress, ingress)
    columns["action"] = pa.array(np.where(allowed, "allow", "deny"))
    columns["reporter"] = pa.array(np.where(reporter_src, "src", "dst"))
    columns["source_port"] = pa.array(rng.integers(32768, 61000, flows, dtype=np.int32))
    start = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1e6)
    times = np.sort(rng.integers(start, start + 7 * 86_400_000_000, flows))
    columns["start_time"] = pa.array(times, pa.timestamp("us", tz="UTC"))
    columns["end_time"] = pa.array(times + 300_000_000, pa.timestamp("us", tz="UTC"))
    columns["num_flows"] = pa.array(rng.integers(1, 5, flows))
    columns["bytes_in"] = pa.array(rng.integers(0, 100_000, flows))
    columns["bytes_out"] = pa.array(rng.integers(0, 100_000, flows))
    return pa.table(columns)


def reference(
    cluster: ClusterState, table: Any, sample: int
) -> tuple[float, Counter[tuple[str, str, int, str]]]:
    """Seconds for `PolicyEngine.decide` over the first `sample` records, and the records whose
    verdict (in their reporter's direction) differs from the recorded action, counted by
    (source, destination, port, recorded action) as the preview groups them."""
    rows = table.slice(0, sample).to_pylist()
    flows = []
    for row in rows:
        ends = []
        for side in ("source", "dest"):
            key = f"{row[f'{side}_namespace']}/{row[f'{side}_name']}"
            endpoint = cluster.endpoints_by_key.get(key) or cluster.endpoint(row[f"{side}_ip"])
            assert endpoint is not None
            ends.append(endpoint)
        protocol = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}[row["proto"]]
        flows.append(Flow(ends[0], ends[1], row["dest_port"] or 0, protocol))
    engine = PolicyEngine(cluster)
    start = time.perf_counter()
    verdicts = [engine.decide(flow) for flow in flows]
    seconds = time.perf_counter() - start
    changed: Counter[tuple[str, str, int, str]] = Counter()
    for row, flow, verdict in zip(rows, flows, verdicts, strict=True):
        decision = verdict.egress if row["reporter"] == "src" else verdict.ingress
        if ("allow" if decision.allowed else "deny") != row["action"]:
            key = (workload_name(flow.src), workload_name(flow.dst), flow.port, row["action"])
            changed[key] += 1
    return seconds, changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--flows", type=int, default=10_000_000)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=20_000, help="records for the peer")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("duckdb", "chdb"), default="duckdb")
    parser.add_argument("--quick", action="store_true", help="300 pods, 60 policies, 200k flows")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.policies, args.flows = 300, 60, 200_000
        args.conversations, args.sample, args.runs = 5_000, 2_000, 1

    with_store(args, "replay", run)


def with_store(
    args: argparse.Namespace,
    name: str,
    run: Callable[[argparse.Namespace, ClusterState, Any, FlowStore, float], None],
) -> None:
    """Generate the cluster and its flow records (`--pods --policies --conversations --flows
    --seed`), open an empty store of `--backend` in a scratch folder and hand them to `run`
    with the seconds making the records took; the store is closed and removed after."""
    cluster = load_text(generate_cluster(args.pods, args.policies, args.seed)).cluster
    made = time.perf_counter()
    table = flow_table(conversations(cluster, args.conversations, args.seed), args.flows, args.seed)
    made = time.perf_counter() - made
    with tempfile.TemporaryDirectory(prefix=f"netwarden-bench-{name}-") as directory:
        store = open_store(
            f"duckdb:{directory}/flows.duckdb" if args.backend == "duckdb" else f"chdb:{directory}"
        )
        try:
            run(args, cluster, table, store, made)
        finally:
            store.close()


def run(
    args: argparse.Namespace, cluster: ClusterState, table: Any, store: FlowStore, made: float
) -> None:
    stored = time.perf_counter()
    store.append(table)
    stored = time.perf_counter() - stored
    load_before = os.getloadavg()[0]
    replay_s, replay_cpu, report = timed(args.runs, lambda: preview_store(cluster, store))
    load = max(load_before, os.getloadavg()[0])
    table_s, table_cpu, in_memory = timed(1, lambda: preview(cluster, table))
    peer_s, peer_changed = reference(cluster, table, min(args.sample, table.num_rows))
    sample = min(args.sample, table.num_rows)
    rate, peer_rate = table.num_rows / replay_s, sample / peer_s
    agree = _agreement(cluster, table, sample, peer_changed)
    print(
        f"cluster   {len(cluster.endpoints)} endpoints, {len(cluster.policies)} policies; "
        f"{table.num_rows:,} flow records over {args.conversations:,} conversations "
        f"(made in {made:.1f} s, stored in {args.backend} in {stored:.1f} s)"
    )
    print(
        f"replay    {replay_s:8.3f} s  {rate:14,.0f} flows/s  store -> report "
        f"({report.changed_records:,} change verdict in {len(report.changes):,} rows; "
        f"{report.replayed:,} replayed)"
    )
    print(
        f"cpu       {replay_cpu:8.3f} s  {table.num_rows / replay_cpu:14,.0f} flows per CPU-second "
        f"(load average {load:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"table     {table_s:8.3f} s  {table.num_rows / table_s:14,.0f} flows/s  "
        f"Arrow table in memory -> report, once ({table_cpu:.3f} s CPU)"
    )
    print(
        f"peer      {peer_s:8.3f} s  {peer_rate:14,.0f} flows/s  "
        f"PolicyEngine.decide on {sample:,} records (extrapolated: "
        f"{table.num_rows / peer_rate:,.0f} s for all)"
    )
    print(f"ratio     {rate / peer_rate:8.1f} x  replay / reference engine")
    identical = "yes" if in_memory == report else "NO"
    print(f"identical {identical}: the store's and the in-memory table's reports")
    print(f"agreement {agree}")
    if in_memory != report:
        raise SystemExit("the replay from the store and from the table differ")
    if not agree.startswith("all"):
        raise SystemExit("the replay and the reference engine disagree on the sample")


def _agreement(
    cluster: ClusterState, table: Any, sample: int, expected: Counter[tuple[str, str, int, str]]
) -> str:
    """Replay the sample alone; its changes, grouped, must be the reference engine's."""
    report: PreviewReport = preview(cluster, table.slice(0, sample))
    found: Counter[tuple[str, str, int, str]] = Counter()
    for change in report.changes:
        found[(change.source, change.dest, change.port, change.before)] += change.records
    if found != expected:
        return f"{sum(found.values())} changed by replay, {sum(expected.values())} by reference"
    return f"all {sample:,} sampled records: the same {sum(expected.values()):,} changes"


if __name__ == "__main__":
    main()

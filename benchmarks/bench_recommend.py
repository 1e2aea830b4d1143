"""Recommendation throughput: policies from a few million stored flow records.

    .venv/bin/python benchmarks/bench_recommend.py                  # 3M records, 5,000 pods
    .venv/bin/python benchmarks/bench_recommend.py --quick          # 200k records, 300 pods
    .venv/bin/python benchmarks/bench_recommend.py --backend chdb   # the ClickHouse store

The cluster is `generate.py`'s (5,000 pods; its 1,000 policies only decide the recorded
actions). The records are `bench_replay.py`'s: `--conversations` distinct (source,
destination, port, protocol) repeated with a skewed popularity over `--flows` records, each
with its own source port and time, a `src` and a `dst` reporter, and the action the cluster
decided, appended to a flow store (a DuckDB file in a temporary directory, or chDB; not timed).

Timed, as the median of `--runs`: `recommend_store(cluster, store)`, what `netwarden recommend
--flows STORE` runs (the store folds the records into distinct identity rows; only those leave
it), for every namespace with observed pods. The named peer, measured in the same run, is the
previous way: `recommend(cluster, store.scan(columns=RECOMMEND_COLUMNS))`, every record read
into Arrow and folded there. Their recommendations must be equal. Then the proof: every stored
record is replayed (`preview_store`) against the recommended policies alone; no record
recorded as allowed may become denied, except those the recommendation's notes name (ICMP,
which a Kubernetes NetworkPolicy cannot allow alone).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Any

from bench_replay import timed, with_store
from netwarden.analysis.preview import preview_store
from netwarden.analysis.recommend import (
    RECOMMEND_COLUMNS,
    Recommendation,
    recommend,
    recommend_store,
)
from netwarden.flows.store import FlowStore
from netwarden.model import ClusterState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--flows", type=int, default=3_000_000)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=("duckdb", "chdb"), default="duckdb")
    parser.add_argument("--quick", action="store_true", help="300 pods, 60 policies, 200k flows")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.policies, args.flows, args.conversations = 300, 60, 200_000, 5_000

    with_store(args, "recommend", run)


def run(
    args: argparse.Namespace, cluster: ClusterState, table: Any, store: FlowStore, made: float
) -> None:
    stored = time.perf_counter()
    store.append(table)
    stored = time.perf_counter() - stored
    records = table.num_rows
    load_before = os.getloadavg()[0]
    fold_s, fold_cpu, folded = timed(args.runs, lambda: recommend_store(cluster, store))
    scan_s, scan_cpu, scanned = timed(
        args.runs, lambda: recommend(cluster, store.scan(columns=RECOMMEND_COLUMNS))
    )
    load = max(load_before, os.getloadavg()[0])
    read_fold, _, rows = timed(args.runs, lambda: store.fold(RECOMMEND_COLUMNS))
    read_scan, _, _ = timed(args.runs, lambda: store.scan(columns=RECOMMEND_COLUMNS))
    print(
        f"cluster   {len(cluster.endpoints)} endpoints; {records:,} flow records over "
        f"{args.conversations:,} conversations (made in {made:.1f} s, stored in "
        f"{args.backend} in {stored:.1f} s)"
    )
    print(
        f"fold      {fold_s:8.3f} s  {records / fold_s:14,.0f} records/s  store fold -> "
        f"recommendation ({len(folded.policies):,} policies for {len(folded.groups):,} "
        f"workload groups; {folded.allowed_records:,} allowed records used)"
    )
    print(
        f"peer      {scan_s:8.3f} s  {records / scan_s:14,.0f} records/s  store scan -> Arrow "
        "-> recommendation (the previous way)"
    )
    print(f"ratio     {scan_s / fold_s:8.1f} x  fold / scan")
    print(
        f"cpu       {fold_cpu:8.3f} s fold, {scan_cpu:.3f} s scan "
        f"(load average {load:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"read      {read_fold:8.3f} s  store.fold: {rows.num_rows:,} identity rows leave the "
        f"store; store.scan: {read_scan:.3f} s for {records:,} rows"
    )
    identical = folded == scanned
    print(f"identical {'yes' if identical else 'NO'}: the fold's and the scan's recommendations")
    proof = _replay(cluster, store, folded)
    print(f"replay    {proof}")
    if not identical:
        raise SystemExit("the recommendations from the fold and from the scan differ")
    if not proof.startswith("all"):
        raise SystemExit("the recommended policies deny observed allowed traffic")


def _replay(cluster: ClusterState, store: FlowStore, recommendation: Recommendation) -> str:
    """Every stored record replayed against the recommended policies alone: what was allowed
    stays allowed, but for the conversations the notes say the target cannot allow."""
    after = replace(cluster, policies=recommendation.policies)
    start = time.perf_counter()
    report = preview_store(after, store)
    seconds = time.perf_counter() - start
    noted = [
        change
        for change in report.changes
        if change.after == "deny" and change.protocol.upper() == "ICMP"
    ]
    denied = [change for change in report.changes if change.after == "deny"]
    closed = sum(change.records for change in noted)
    if len(denied) != len(noted):
        wrong = sum(change.records for change in denied) - closed
        return f"{wrong:,} allowed records denied by the recommended policies"
    return (
        f"all {report.replayed:,} replayed records ({seconds:.1f} s): no allowed one denied but "
        f"{closed:,} ICMP ones in {len(recommendation.notes):,} notes; "
        f"{report.newly_allowed:,} recorded denials opened (by groups or the other direction)"
    )


if __name__ == "__main__":
    main()

"""Reading a generated cluster: manifests text -> documents -> ClusterState (issue #4).

    .venv/bin/python benchmarks/bench_load.py                 # 2,000 / 10,000 / 100,000 pods
    .venv/bin/python benchmarks/bench_load.py --pods 10000    # one size
    .venv/bin/python benchmarks/bench_load.py --quick         # 500 pods, one run

Each size has one policy per five pods. Printed per size, each the median of `--runs` runs in
CPU and wall seconds: `read` (YAML -> documents that know their lines, `read_text`), `load`
(the whole of `load_text`: read, validate, build the cluster), and the named peer measured in
the same run, plain `yaml.load_all(text, Loader=yaml.CSafeLoader)`, which builds the same data
but knows no line. `compose` is how netwarden read before (PyYAML `compose_all` with libyaml,
then SafeConstructor over the nodes), measured up to 10,000 pods; `--no-compose` skips it.
`agreement` says whether every document's data equals the peer's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from generate import generate_cluster
from netwarden.dialects import load_text
from netwarden.dialects.source import read_text


class Timing:
    """Median CPU and wall seconds of some runs."""

    def __init__(self, runs: int, work: Callable[[], Any]) -> None:
        cpu, wall = [], []
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            self.result = work()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        self.cpu, self.wall = statistics.median(cpu), statistics.median(wall)

    def row(self, label: str, note: str) -> str:
        return f"{label:<9}{self.cpu:8.2f} s cpu {self.wall:8.2f} s wall  {note}"


def peer(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=yaml.CSafeLoader))


def compose_then_construct(text: str) -> list[Any]:
    """netwarden's reading before: keep every node tree for line look-ups."""
    constructor = SafeConstructor()
    kept = []
    for node in yaml.compose_all(text, Loader=yaml.CSafeLoader):
        if node is not None:
            kept.append((constructor.construct_document(node), node))
    return kept


def measure(pods: int, runs: int, with_compose: bool) -> None:
    text = generate_cluster(pods=pods, policies=pods // 5, seed=1)
    size = len(text.encode()) / 1e6
    print(f"\n{pods:,} pods, {pods // 5:,} policies, {size:.1f} MB of YAML, median of {runs}")
    baseline = Timing(runs, lambda: peer(text))
    read = Timing(runs, lambda: read_text(text, "generated.yaml"))
    load = Timing(runs, lambda: load_text(text, "generated.yaml"))
    print(baseline.row("peer", "yaml.load_all(CSafeLoader): data only, no lines"))
    print(read.row("read", "read_text: data + lines"))
    print(load.row("load", "load_text: read + validate + build the cluster"))
    if with_compose and pods <= 10_000:
        before = Timing(runs, lambda: compose_then_construct(text))
        print(before.row("compose", "compose_all + SafeConstructor (the reading before)"))
        print(f"speed-up {before.cpu / read.cpu:8.2f} x read vs compose (cpu)")
    print(f"ratio    {read.cpu / baseline.cpu:8.2f} x read / peer (cpu)")
    print(f"ratio    {load.cpu / baseline.cpu:8.2f} x load / peer (cpu)")
    agree = [document.data for document in read.result] == [
        d for d in baseline.result if d is not None
    ]
    print(f"agreement {'yes' if agree else 'NO'}: {len(read.result):,} documents")
    cluster = load.result.cluster
    print(f"cluster  {len(cluster.endpoints):,} endpoints, {len(cluster.policies):,} policies")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, action="append", help="repeatable")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 pods, one run")
    parser.add_argument("--no-compose", action="store_true", help="skip the reading before")
    args = parser.parse_args()
    sizes = [500] if args.quick else (args.pods or [2_000, 10_000, 100_000])
    runs = 1 if args.quick else args.runs
    for pods in sizes:
        measure(pods, 1 if pods >= 100_000 else runs, not args.no_compose)


if __name__ == "__main__":
    main()

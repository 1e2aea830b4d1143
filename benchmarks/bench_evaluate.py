"""Batch evaluation throughput: 1,000,000 probes against 5,000 pods and 1,000 policies.

    .venv/bin/python benchmarks/bench_evaluate.py --pods 5000 --policies 1000 --probes 1000000
    .venv/bin/python benchmarks/bench_evaluate.py --calico
    .venv/bin/python benchmarks/bench_evaluate.py --quick

Generates a seeded cluster as manifests (`generate.py`; with `--calico`, a Calico-heavy one:
tiers, GlobalNetworkPolicies, network sets, entity rules, service accounts, host endpoints,
staged policies) and reads it through the real dialects, then times, each as the median of
`--runs` runs: reading the manifests, resolving the probes' names to endpoint indices, and
`VectorEngine(cluster).evaluate`. The named peer, measured in the same run, is the
single-flow `PolicyEngine.decide` on a sample of the same probes; the ratio is vectorized
probes/s over single-flow probes/s. The sample's verdicts are also compared, so a fast wrong
answer shows, and the probes the vectorized engine handed to the single-flow fallback are
counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

from generate import generate_calico_cluster, generate_cluster, generate_probes
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine, VectorEngine
from netwarden.engine.batch import BatchResult, Probe, resolve_probes
from netwarden.model import ClusterState, Flow

T = TypeVar("T")


def timed(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    """Median seconds of `runs` calls, and the last call's result."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def single_flow(
    cluster: ClusterState, probes: list[Probe], result: BatchResult
) -> tuple[float, int]:
    """Seconds for `PolicyEngine.decide` over `probes` (the first of the batch), and how many
    verdicts differ from the batch result in either direction."""
    flows = []
    for probe in probes:
        src, dst = cluster.endpoint(probe.src), cluster.endpoint(probe.dst)
        assert src is not None and dst is not None
        flows.append(Flow(src, dst, probe.port, probe.protocol))
    engine = PolicyEngine(cluster)
    start = time.perf_counter()
    verdicts = [engine.decide(flow) for flow in flows]
    seconds = time.perf_counter() - start
    differ = sum(
        (v.egress.allowed, v.egress.deciding, v.ingress.allowed, v.ingress.deciding)
        != (
            bool(result.egress.allowed[i]),
            result.deciding(i, True),
            bool(result.ingress.allowed[i]),
            result.deciding(i, False),
        )
        for i, v in enumerate(verdicts)
    )
    return seconds, differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=10_000, help="probes for the peer")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="300 pods, 60 policies, 20k probes")
    parser.add_argument("--calico", action="store_true", help="a Calico-heavy cluster")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.policies, args.probes, args.sample = 300, 60, 20_000, 2_000

    generate = generate_calico_cluster if args.calico else generate_cluster
    text = generate(args.pods, args.policies, args.seed)
    load_s, loaded = timed(args.runs, lambda: load_text(text, "generated.yaml"))
    cluster = loaded.cluster
    probes = generate_probes(cluster, args.probes, args.seed)
    resolve_s, batch = timed(args.runs, lambda: resolve_probes(cluster, probes))
    engines: list[VectorEngine] = []

    def evaluate() -> BatchResult:
        engines.append(VectorEngine(cluster))
        return engines[-1].evaluate(batch)

    evaluate_s, result = timed(args.runs, evaluate)
    engine = engines[-1]
    staged = engine.staged_engine
    fallback = engine.reference_decisions + (staged.reference_decisions if staged else 0)
    sample = probes[: args.sample]
    peer_s, differ = single_flow(cluster, sample, result)

    rate = len(batch) / evaluate_s
    peer_rate = len(sample) / peer_s
    print(
        f"cluster   {'Calico' if args.calico else 'Kubernetes'}: "
        f"{len(cluster.endpoints)} endpoints, {len(cluster.policies)} policies, "
        f"{len(cluster.network_sets)} network sets, {len(text) / 1e6:.1f} MB of manifests"
    )
    print(f"load      {load_s:8.3f} s")
    print(f"resolve   {resolve_s:8.3f} s  ({len(batch)} probes)")
    print(
        f"evaluate  {evaluate_s:8.3f} s  {rate:12,.0f} probes/s  "
        f"({result.allowed.mean():.1%} allowed)"
    )
    print(
        f"peer      {peer_s:8.3f} s  {peer_rate:12,.0f} probes/s  "
        f"single-flow PolicyEngine.decide on {len(sample)} probes"
    )
    print(f"ratio     {rate / peer_rate:8.1f} x  vectorized / single-flow")
    print(f"agreement {len(sample) - differ}/{len(sample)} sampled verdicts identical")
    print(f"fallback  {fallback} probe directions decided one by one by the single-flow engine")
    if differ:
        raise SystemExit(f"{differ} sampled verdicts differ from the single-flow engine")


if __name__ == "__main__":
    main()

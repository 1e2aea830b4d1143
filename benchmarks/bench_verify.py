"""`netwarden verify` on a generated cluster: 10,000 pods, 2,000 policies, one requirement of
each type (issue #4 target: under 30 s end to end).

    .venv/bin/python benchmarks/bench_verify.py                      # 10,000 pods / 2,000 policies
    .venv/bin/python benchmarks/bench_verify.py --pods 2000 --policies 400
    .venv/bin/python benchmarks/bench_verify.py --quick              # 500 / 100, one run

Times, each the median of `--runs` runs: reading the manifests, computing the connectivity
map, checking the requirements on it (with each counter-example decided by the reference
engine), and the whole of it. The named peer, measured in the same run, is checking the same
requirements pair by pair: one probe per (source, destination, port atom) the requirements
span, decided by the vectorized batch engine (`resolve_probes` + `evaluate`). The peer runs on
a sample of those probes and its time is extrapolated to all of them; on the sample, every
verdict that `verify` implies (an isolation that holds means no allowed probe) is checked.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from generate import generate_cluster
from netwarden.analysis import ConnectivityMap, compute_connectivity
from netwarden.analysis.requirements import RequirementResult, check_requirements, describe
from netwarden.dialects import load_text
from netwarden.dialects.requirements import read_requirements
from netwarden.dialects.source import read_text
from netwarden.engine import evaluate
from netwarden.engine.batch import Probe, resolve_probes
from netwarden.engine.matching import selects
from netwarden.model import ClusterState, Requirement
from netwarden.model.requirements import DefaultDeny, Egress, Isolation, Only, Reachable

T = TypeVar("T")

REQUIREMENTS = """\
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: tenant-0-isolated-from-tenant-1}
spec:
  type: isolation
  controls: [PCI-DSS-4.0:1.3.1]
  from: {namespaces: tenant == "tenant-0"}
  to: {namespaces: tenant == "tenant-1"}
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: db-only-from-api}
spec:
  type: only
  from: {pods: app == "api"}
  to: {pods: app == "db", namespaces: env == "prod"}
  ports: [{port: 5432}]
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: prod-default-deny}
spec:
  type: defaultDeny
  workloads: {namespaces: env == "prod"}
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: prod-egress}
spec:
  type: egress
  workloads: {namespaces: env == "prod"}
  allowed: [{networks: [203.0.113.0/24], ports: [{port: 443}]}]
---
apiVersion: netwarden.io/v1alpha1
kind: Requirement
metadata: {name: frontend-reaches-api}
spec:
  type: reachable
  from: {pods: app == "frontend"}
  to: {pods: app == "api"}
  ports: [{port: 8080}]
"""


def timed(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    """Median wall-clock seconds of `runs` calls, and the last call's result. The median CPU
    seconds of this process are kept in `CPU` under the same work, for machines whose cores
    other jobs share."""
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = work()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU.append(statistics.median(cpu))
    return statistics.median(times), result


#: CPU seconds of each `timed` work, in call order.
CPU: list[float] = []


def verify(text: str, requirements: list[Requirement]) -> list[RequirementResult]:
    """What `netwarden verify` does: read, map, check."""
    cluster = load_text(text, "generated.yaml").cluster
    return check_requirements(cluster, requirements)


def spans(
    cluster: ClusterState, cmap: ConnectivityMap, requirement: Requirement
) -> tuple[list[int], list[int]]:
    """The sources and destinations (indices into the map's endpoints) a pair-by-pair check
    of `requirement` has to look at."""
    pods = [i for i, r in enumerate(cmap.ranges) if r is None]
    externals = [i for i, r in enumerate(cmap.ranges) if r is not None]

    def picked(selector: object) -> list[int]:
        return [i for i in pods if selects(selector, cmap.endpoints[i], cluster)]  # type: ignore[arg-type]

    check = requirement.check
    match check:
        case Isolation() | Reachable():
            return picked(check.src.pods), picked(check.dst.pods)
        case Only():
            return pods + externals, picked(check.dst.pods)
        case DefaultDeny():
            return picked(check.workloads.pods), externals[:1]
        case Egress():
            return picked(check.workloads.pods), externals
    raise AssertionError(check)


def peer(
    cluster: ClusterState, cmap: ConnectivityMap, requirements: list[Requirement], sample: int
) -> tuple[float, int, float, bool]:
    """Seconds to decide `sample` pair-by-pair probes, the number of probes a full
    pair-by-pair check needs, the extrapolated seconds, and whether the sampled isolation
    probes agree with `verify`."""
    rng = random.Random(1)
    atoms = cmap.atoms
    total = 0
    probes: list[Probe] = []
    isolation_probes = 0
    per_requirement = max(1, sample // len(requirements))
    for requirement in requirements:
        sources, destinations = spans(cluster, cmap, requirement)
        count = len(sources) * len(destinations) * len(atoms)
        if isinstance(requirement.check, DefaultDeny):
            count = len(sources) * 2  # one probe per workload and direction
        total += count
        for _ in range(min(per_requirement, count)):
            s, d = rng.choice(sources), rng.choice(destinations)
            atom = rng.randrange(len(atoms))
            src, dst = cmap.endpoints[s], cmap.endpoints[d]
            probes.append(
                Probe(src.key, dst.key, int(atoms.start[atom]), int(atoms.protocol[atom]))
            )
        if isinstance(requirement.check, Isolation):
            isolation_probes = len(probes)
    start = time.perf_counter()
    result = evaluate(cluster, resolve_probes(cluster, probes))
    seconds = time.perf_counter() - start
    isolated = check_requirements(cluster, requirements[:1], cmap)[0].holds
    sampled_allowed = bool(np.any(result.allowed[:isolation_probes]))
    agrees = not (isolated and sampled_allowed)
    return seconds, total, seconds * total / max(len(probes), 1), agrees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=200_000, help="probes for the peer")
    parser.add_argument("--quick", action="store_true", help="500 pods, 100 policies, 1 run")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.policies, args.runs, args.sample = 500, 100, 1, 20_000

    text = generate_cluster(args.pods, args.policies, args.seed)
    requirements = read_requirements(read_text(REQUIREMENTS, "requirements.yaml"))
    load_s, loaded = timed(args.runs, lambda: load_text(text, "generated.yaml"))
    cluster = loaded.cluster

    def mapped() -> ConnectivityMap:
        cmap = compute_connectivity(cluster)
        _ = cmap.class_reps
        return cmap

    map_s, cmap = timed(args.runs, mapped)
    check_s, results = timed(args.runs, lambda: check_requirements(cluster, requirements, cmap))
    total_s, _ = timed(args.runs, lambda: verify(text, requirements))
    peer_s, peer_probes, peer_total_s, agrees = peer(cluster, cmap, requirements, args.sample)

    print(
        f"cluster   {len(cluster.endpoints)} endpoints, {len(cluster.policies)} policies, "
        f"{len(text) / 1e6:.1f} MB of manifests; map: {cmap.class_reps.shape[0]} classes, "
        f"{len(cmap.atoms)} port atoms, {sum(r is not None for r in cmap.ranges)} IP atoms"
    )
    load_cpu, map_cpu, check_cpu, total_cpu = CPU
    print("          wall (median)  cpu (median)")
    print(f"read      {load_s:8.3f} s  {load_cpu:8.3f} s")
    print(f"map       {map_s:8.3f} s  {map_cpu:8.3f} s")
    print(f"check     {check_s:8.3f} s  {check_cpu:8.3f} s  ({len(requirements)} requirements)")
    print(
        f"verify    {total_s:8.3f} s  {total_cpu:8.3f} s  read + map + check (target: under 30 s)"
    )
    for result in results:
        verdict = "HOLDS" if result.holds else "FAILS"
        example = f": {describe(result.counterexample)}" if result.counterexample else ""
        if not result.holds and result.counterexample is None:
            example = f": {result.message}"
        print(f"  {verdict} {result.requirement.kind.value:<11} {result.requirement.name}{example}")
    print(
        f"peer      {peer_total_s:8.1f} s  pair by pair with the vectorized engine: "
        f"{peer_probes:,} probes, extrapolated from {min(args.sample, peer_probes):,} "
        f"decided in {peer_s:.2f} s"
    )
    print(f"ratio     {peer_total_s / (map_s + check_s):8.1f} x  pair by pair / map + check")
    print(f"agreement {'yes' if agrees else 'NO'}: sampled isolation probes against verify")
    if not agrees:
        raise SystemExit("the sampled pair-by-pair probes contradict verify")


if __name__ == "__main__":
    main()

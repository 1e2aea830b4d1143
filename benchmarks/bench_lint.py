"""`netwarden lint` at scale, against NCA's `--sanity` (its redundancy and emptiness checks).

    .venv/bin/python benchmarks/bench_lint.py                    # 10,000 pods, 2,000 policies
    .venv/bin/python benchmarks/bench_lint.py --sizes 2000x400 --runs 3
    .venv/bin/python benchmarks/bench_lint.py --quick            # 60x12: a smoke run

Per size, two seeded generated clusters (`generate.py`):

- the issue's cluster, `generate_cluster(pods, policies, seed=1)` with everything netwarden
  reads (AdminNetworkPolicies, the baseline, hostNetwork agents): `netwarden lint -f F -o json
  --fail-on never` as its own process, the median wall time of `--runs` runs with its CPU time
  and peak RSS (measured as bench_connectivity measures), and once in-process the split
  between reading the manifests and linting. Issue #4's target: under 30 s for 10,000 pods.
- the cluster both tools read (`peer_nca.parity_cluster`: NetworkPolicies only, no hostNetwork
  pods): netwarden lint and NCA (the named peer) `nca --sanity F --pod_list F --ns_list F`,
  killed after `--nca-timeout` seconds; the ratio is NCA's time over netwarden's. The policies
  NCA calls redundant and those netwarden calls redundant or selecting nothing (NW303, NW201)
  are compared and the overlap printed (they answer close, not identical, questions: NCA
  also counts a policy whose every rule is redundant; netwarden proves removal changes no
  verdict, both directions, all tiers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:  # imported as benchmarks.bench_lint, or run as a script from benchmarks/
    from benchmarks.bench_connectivity import Measurement, figure, measure

    from benchmarks import generate, peer_nca
except ModuleNotFoundError:
    import generate  # type: ignore[no-redef]
    import peer_nca  # type: ignore[no-redef]
    from bench_connectivity import Measurement, figure, measure  # type: ignore[no-redef]

from netwarden.analysis.lint import lint_cluster
from netwarden.dialects import load_paths

SIZES = ((10_000, 2_000),)
QUICK = ((60, 12),)
#: pods -> seconds: issue #4's target for the whole `lint` run.
TARGETS = {10_000: 30.0}
_REDUNDANT = re.compile(r"^NetworkPolicy (\S+) is redundant", re.MULTILINE)


def netwarden_command(manifests: Path, output: Path) -> list[str]:
    netwarden = Path(sys.executable).parent / "netwarden"
    if not netwarden.exists():
        raise FileNotFoundError(f"{netwarden} is missing: run `make install`")
    command = [str(netwarden), "lint", "-f", str(manifests), "-o", "json"]
    return [*command, "--fail-on", "never", "--output", str(output)]


def nca_command(manifests: Path, output: Path) -> list[str]:
    nca = peer_nca.nca_binary()
    if not nca.exists():
        raise FileNotFoundError(f"{nca}: NCA is not installed; run `make .venv-peer`")
    file = str(manifests)
    command = [str(nca), "--sanity", file, "--pod_list", file, "--ns_list", file, "--return_0"]
    return [*command, "--file_out", str(output)]


def median_run(runs: int, command: list[str], timeout: float) -> Measurement:
    found = [measure(command, timeout) for _ in range(runs)]
    for m in found:
        if m.error:
            raise RuntimeError(f"{' '.join(command)}: {m.error}")
    if any(m.timed_out for m in found):
        return Measurement(timeout, 0, timed_out=True)
    return Measurement(
        statistics.median(m.seconds for m in found),
        max(m.peak_bytes for m in found),
        cpu_seconds=statistics.median(m.cpu_seconds for m in found),
    )


def phases(manifests: Path) -> tuple[float, float, float, float, dict[str, int]]:
    """In-process: wall and CPU seconds to read the manifests, wall and CPU seconds to lint,
    findings per check."""
    wall, cpu = time.perf_counter(), time.process_time()
    cluster = load_paths([manifests]).cluster
    read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    findings = lint_cluster(cluster)
    lint_wall, lint_cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts: dict[str, int] = {}
    for found in findings:
        counts[found.id] = counts.get(found.id, 0) + 1
    return read_wall, read_cpu, lint_wall, lint_cpu, dict(sorted(counts.items()))


def redundant_by_netwarden(report: Path) -> set[str]:
    findings = json.loads(report.read_text())["findings"]
    return {
        f["subject"].removeprefix("NetworkPolicy ")
        for f in findings
        if f["id"] in ("NW303", "NW201") and f["subject"].startswith("NetworkPolicy ")
    }


def nca_redundant(manifests: Path, timeout: float) -> tuple[Measurement, set[str]]:
    """NCA --sanity, measured, and the policies it calls redundant."""
    output = manifests.parent / "nca-sanity.txt"
    output.unlink(missing_ok=True)  # NCA's --file_out appends
    measured = measure(nca_command(manifests, output), timeout)
    if measured.timed_out or measured.error or not output.exists():
        return measured, set()
    return measured, set(_REDUNDANT.findall(output.read_text()))


def run_size(pods: int, policies: int, args: argparse.Namespace, work: Path) -> None:
    full = work / f"cluster-{pods}.yaml"
    full.write_text(generate.generate_cluster(pods, policies, args.seed), encoding="utf-8")
    size_mb = full.stat().st_size / 1e6
    print(f"\n{pods:,} pods, {policies:,} policies ({size_mb:.1f} MB of manifests)")
    if not args.quick:  # the smoke run keeps to the in-process split
        ours = median_run(args.runs, netwarden_command(full, work / "full.json"), args.timeout)
        print(f"  netwarden lint (all kinds)    {figure(ours)}")
        target = TARGETS.get(pods)
        if target is not None and not ours.timed_out:
            # Wall time is only meaningful on an idle machine; CPU time barely moves with load.
            load = os.getloadavg()[0]
            print(
                f"  target < {target:.0f} s              wall {_met(ours.seconds, target)}, "
                f"CPU {_met(ours.cpu_seconds, target)} (load average {load:.1f} on "
                f"{os.cpu_count()} cores)"
            )
    read_wall, read_cpu, lint_wall, lint_cpu, counts = phases(full)
    print(
        f"  in-process (all kinds)        read {read_wall:.2f} s ({read_cpu:.2f} s CPU), "
        f"lint {lint_wall:.2f} s ({lint_cpu:.2f} s CPU)"
    )
    print(f"    findings                    {counts}")
    parity = work / f"parity-{pods}.yaml"
    parity.write_text(peer_nca.parity_cluster(pods, policies, args.seed), encoding="utf-8")
    (work / "nca").mkdir(exist_ok=True)
    prepared = peer_nca.prepare_inputs([parity], work / "nca")
    report = work / "parity.json"
    same = median_run(args.runs, netwarden_command(prepared.path, report), args.timeout)
    print(f"  netwarden lint (NCA's input)  {figure(same)}")
    if args.no_nca:
        return
    nca, theirs = nca_redundant(prepared.path, args.nca_timeout)
    print(f"  NCA --sanity (peer)           {figure(nca)}")
    if nca.timed_out or nca.error or same.timed_out:
        return
    ratio = nca.seconds / same.seconds
    cpu_ratio = nca.cpu_seconds / max(same.cpu_seconds, 1e-9)
    print(
        f"  ratio                         {ratio:8.1f} x  NCA time / netwarden time "
        f"({cpu_ratio:.1f} x in CPU time)"
    )
    mine = redundant_by_netwarden(report)
    print(
        f"  redundant policies            NCA {len(theirs)}, netwarden {len(mine)}, "
        f"both {len(theirs & mine)}"
    )


def _met(seconds: float, target: float) -> str:
    return f"{seconds:.1f} s {'met' if seconds < target else 'MISSED'}"


def parse_size(text: str) -> tuple[int, int]:
    pods, _, policies = text.partition("x")
    return int(pods), int(policies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="e.g. 2000x400,10000x2000 (pods x policies)")
    parser.add_argument("--quick", action="store_true", help="60 pods, 12 policies, one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="per netwarden run")
    parser.add_argument("--nca-timeout", type=float, default=600.0)
    parser.add_argument("--no-nca", action="store_true", help="skip the peer")
    args = parser.parse_args()
    sizes = QUICK if args.quick else SIZES
    if args.sizes:
        sizes = tuple(parse_size(part) for part in args.sizes.split(","))
    if args.quick:
        args.runs = 1
    with tempfile.TemporaryDirectory(prefix="netwarden-bench-lint-") as folder:
        for pods, policies in sizes:
            run_size(pods, policies, args, Path(folder))


if __name__ == "__main__":
    main()

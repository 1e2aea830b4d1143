"""Connectivity maps at scale: `netwarden connectivity` against NCA on the same clusters.

    .venv/bin/python benchmarks/bench_connectivity.py                      # the four sizes
    .venv/bin/python benchmarks/bench_connectivity.py --sizes 500x100,2000x400 --runs 3
    .venv/bin/python benchmarks/bench_connectivity.py --quick              # 500x100 only

Each size is a seeded generated cluster (`generate.py` through `peer_nca.parity_cluster`:
namespaces of ~100 pods with app/tier/team labels, named container ports, NetworkPolicies with
matchLabels, matchExpressions, namespaceSelector, ipBlock with except, named ports and port
ranges; no AdminNetworkPolicy and no hostNetwork pod, so that both tools answer the same
question). It is written once as Namespace and Pod manifests, which NCA reads as they are
(`--keep DIR` leaves them there as `cluster-<pods>.yaml`).

netwarden: `netwarden connectivity -f cluster.yaml --by workload -o csv` (the aggregated map)
and, up to `--pod-csv-max` pods, `--by pod -o csv` (every pod pair, NCA's question), each the
median wall time of `--runs` runs and the largest peak RSS. Every run is its own process,
measured by a fresh wrapper process (`getrusage(RUSAGE_CHILDREN).ru_maxrss`), so one run's
peak never hides in another's. NCA, the named peer, runs once per size (`nca --connectivity
... -o txt_no_fw_rules --output_endpoints pods`), killed after `--nca-timeout` seconds;
once it has timed out, larger sizes do not run it. The ratio is NCA's time over netwarden's
by-pod time (the same question), or over the by-workload time where by-pod was not run.
With `--check` (on by default up to 2,000 pods), NCA's map and netwarden's by-pod CSV are
compared as flow sets on the pods both report, so a fast wrong answer shows.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

try:  # imported as benchmarks.bench_connectivity, or run as a script from benchmarks/
    from benchmarks import connectivity_sets as sets
    from benchmarks import peer_nca
except ModuleNotFoundError:
    import connectivity_sets as sets  # type: ignore[no-redef, import-not-found]
    import peer_nca  # type: ignore[no-redef, import-not-found]

SIZES = ((500, 100), (2_000, 400), (10_000, 2_000), (100_000, 10_000))
#: (pods, seconds, bytes): issue #4's targets on 2 cores, for the by-workload map.
TARGETS = {2_000: (2.0, None), 10_000: (10.0, None), 100_000: (60.0, 4 * 2**30)}

#: Runs a command as its only child and reports the child's wall time, CPU time (user + system,
#: which other load on the machine barely changes) and peak RSS (KiB).
#: An address-space limit (bytes, 0 for none) keeps a runaway peer from taking the machine.
WRAPPER = """
import json, resource, subprocess, sys, time
limit = int(sys.argv[1])
def cap():
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
start = time.perf_counter()
done = subprocess.run(sys.argv[2:], preexec_fn=cap, stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": seconds, "peak_kib": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime, "returncode": done.returncode,
                  "stderr": done.stderr.decode(errors="replace")[-2000:]}))
"""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_bytes: int
    timed_out: bool = False
    cpu_seconds: float = 0.0
    error: str = ""  # the command failed: its exit code and the end of its stderr


def measure(command: list[str], timeout: float, memory_limit: int = 0) -> Measurement:
    """One run of `command` in a fresh wrapper process; the wrapper and the command are killed
    together after `timeout` seconds. A failing command is reported in `error`."""
    wrapper = [sys.executable, "-c", WRAPPER, str(memory_limit), *command]
    process = subprocess.Popen(
        wrapper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return Measurement(timeout, 0, timed_out=True)
    if process.returncode != 0:
        raise RuntimeError(f"measuring {command[:3]} failed: {err.strip()[-1000:]}")
    report = json.loads(out)
    error = ""
    if report["returncode"] != 0:
        last = (report["stderr"].strip().splitlines() or [""])[-1]
        error = f"exit {report['returncode']}: {last[:200]}"
    peak = report["peak_kib"] * 1024
    return Measurement(report["seconds"], peak, cpu_seconds=report["cpu"], error=error)


def median_of(runs: int, command: list[str], timeout: float) -> Measurement:
    """Median wall time of `runs` runs; the largest peak of them."""
    found = [measure(command, timeout) for _ in range(runs)]
    for m in found:
        if m.error:  # netwarden failing is a bug to see, not a figure
            raise RuntimeError(f"{' '.join(command)}: {m.error}")
    if any(m.timed_out for m in found):
        return Measurement(timeout, 0, timed_out=True)
    return Measurement(
        statistics.median(m.seconds for m in found),
        max(m.peak_bytes for m in found),
        cpu_seconds=statistics.median(m.cpu_seconds for m in found),
    )


def netwarden_command(manifests: Path, by: str, output: Path) -> list[str]:
    netwarden = str(Path(sys.executable).parent / "netwarden")
    if not Path(netwarden).exists():
        raise FileNotFoundError(f"{netwarden} is missing: run `make install`")
    command = [netwarden, "connectivity", "-f", str(manifests), "--by", by, "-o", "csv"]
    return [*command, "--output", str(output)]


def nca_command(manifests: Path, output: Path) -> list[str]:
    nca = peer_nca.nca_binary()
    if not nca.exists():
        raise FileNotFoundError(f"{nca}: NCA is not installed; run `make .venv-peer`")
    file = str(manifests)
    command = [str(nca), "--connectivity", file, "--pod_list", file, "--ns_list", file]
    command += ["-o", "txt_no_fw_rules", "--output_endpoints", "pods"]
    return [*command, "--file_out", str(output)]


def figure(m: Measurement | None) -> str:
    if m is None:
        return "not run"
    if m.timed_out:
        return f"> {m.seconds:.0f} s (killed)"
    if m.error:
        return f"failed after {m.seconds:.1f} s ({m.error})"
    return f"{m.seconds:8.2f} s  {m.peak_bytes / 2**20:8.0f} MiB peak  {m.cpu_seconds:8.2f} s CPU"


def check_parity(manifests: Path, nca_output: Path, pod_csv: Path) -> str:
    """NCA's map against netwarden's by-pod CSV, on the pods both report."""
    prepared = peer_nca.prepare_inputs([manifests], manifests.parent / "check")
    names = peer_nca.nca_pod_names(prepared.documents)
    nca_map, _ = peer_nca.read_nca_txt(nca_output.read_text())
    shared = set(names.values())

    def both(end: sets.End) -> bool:
        return isinstance(end, sets.IPRange) or end in shared

    nca_map = nca_map.restrict(lambda e: e != peer_nca.LIVESIM_DNS).rename(names).restrict(both)
    ours = sets.read_connectivity_csv(pod_csv.read_text()).restrict(both)
    report = sets.compare(nca_map, ours, "NCA", "netwarden", pods=len(shared))
    return ("equal: " if report.equal else "DIFFERENT: ") + report.render(5)


def run_size(
    pods: int, policies: int, args: argparse.Namespace, work: Path, nca_allowed: bool
) -> Measurement | None:
    """Measure one size and print its lines; returns NCA's measurement (None: not run)."""
    start = time.perf_counter()
    manifests = work / f"cluster-{pods}.yaml"
    manifests.write_text(peer_nca.parity_cluster(pods, policies, args.seed), encoding="utf-8")
    (work / "check").mkdir(exist_ok=True)
    size_mb = manifests.stat().st_size / 1e6
    took = time.perf_counter() - start
    print(f"\n{pods:,} pods, {policies:,} policies ({size_mb:.1f} MB of manifests in {took:.1f} s)")
    timeout = args.netwarden_timeout
    by_workload = median_of(
        args.runs, netwarden_command(manifests, "workload", work / "workload.csv"), timeout
    )
    print(f"  netwarden --by workload  {figure(by_workload)}")
    by_pod = None
    if pods <= args.pod_csv_max:
        command = netwarden_command(manifests, "pod", work / "pod.csv")
        by_pod = median_of(args.runs, command, timeout)
        rows = sum(1 for _ in (work / "pod.csv").open()) - 1 if not by_pod.timed_out else 0
        print(f"  netwarden --by pod       {figure(by_pod)}  ({rows:,} rows)")
    nca = None
    if nca_allowed and pods <= args.nca_max_pods:
        nca_out = work / f"nca-{pods}.txt"
        nca_out.unlink(missing_ok=True)  # NCA's --file_out appends
        limit = int(args.nca_memory_gb * 2**30)
        nca = measure(nca_command(manifests, nca_out), args.nca_timeout, limit)
        print(f"  NCA (peer)               {figure(nca)}")
        baseline = by_pod if by_pod is not None and not by_pod.timed_out else by_workload
        label = "by pod" if baseline is by_pod else "by workload"
        if not nca.timed_out and not nca.error and not baseline.timed_out:
            ratio = nca.seconds / baseline.seconds
            cpu_ratio = nca.cpu_seconds / max(baseline.cpu_seconds, 1e-9)
            print(
                f"  ratio                    {ratio:8.1f} x  NCA time / netwarden {label} time "
                f"({cpu_ratio:.1f} x in CPU time)"
            )
            if args.check and by_pod is not None and pods <= args.check_max:
                verdict = check_parity(manifests, nca_out, work / "pod.csv")
                print(f"  check                    {verdict}")
    else:
        print("  NCA (peer)               not run" + ("" if nca_allowed else ": timed out before"))
    target = TARGETS.get(pods)
    if target is not None and not by_workload.timed_out:
        seconds, memory = target
        met = by_workload.seconds < seconds and (memory is None or by_workload.peak_bytes < memory)
        goal = f"< {seconds:.0f} s" + (f", < {memory / 2**30:.0f} GiB" if memory else "")
        print(f"  target (by workload)     {goal}: {'met' if met else 'NOT MET'}")
    return nca


def parse_size(text: str) -> tuple[int, int]:
    """`2000x400` -> (2000, 400)."""
    pods, _, policies = text.strip().partition("x")
    return int(pods), int(policies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="pods x policies, comma separated: 500x100,2000x400")
    parser.add_argument("--runs", type=int, default=3, help="netwarden runs per figure")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nca-timeout", type=float, default=600.0, help="seconds, then killed")
    parser.add_argument("--nca-max-pods", type=int, default=100_000)
    parser.add_argument("--nca-memory-gb", type=float, default=8.0, help="NCA's address space")
    parser.add_argument("--netwarden-timeout", type=float, default=1800.0)
    parser.add_argument("--pod-csv-max", type=int, default=2_000, help="largest by-pod run")
    parser.add_argument("--check-max", type=int, default=2_000, help="largest parity check")
    parser.add_argument("--no-check", dest="check", action="store_false")
    parser.add_argument("--quick", action="store_true", help="one size, one run, NCA 60 s")
    parser.add_argument("--keep", metavar="DIR", help="write the clusters and outputs here")
    args = parser.parse_args()
    sizes = list(SIZES)
    if args.sizes:
        sizes = [parse_size(item) for item in args.sizes.split(",")]
    if args.quick:  # the smallest size unless --sizes names one, a short leash for NCA
        sizes = sizes if args.sizes else [SIZES[0]]
        args.runs, args.nca_timeout = 1, 60.0
    print(
        f"netwarden connectivity vs NCA {peer_nca.NCA_VERSION}: median of {args.runs} runs, "
        f"NCA killed after {args.nca_timeout:.0f} s, {os.cpu_count()} cores"
    )
    nca_allowed = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-connectivity-") as tmp:
            work = Path(tmp)
            if args.keep:  # the clusters (cluster-<pods>.yaml, read by NCA as they are) stay
                work = Path(args.keep)
                work.mkdir(parents=True, exist_ok=True)
            for pods, policies in sizes:
                nca = run_size(pods, policies, args, work, nca_allowed)
                if nca is not None and (nca.timed_out or nca.error):
                    nca_allowed = False
    except (RuntimeError, FileNotFoundError) as error:
        print(f"bench_connectivity: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

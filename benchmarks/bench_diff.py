"""Semantic diffs at scale: `netwarden diff` on a pull request that edits one policy, against
NCA's `--semantic_diff` on the same files.

    .venv/bin/python benchmarks/bench_diff.py                      # 2,000 and 10,000 pods
    .venv/bin/python benchmarks/bench_diff.py --sizes 10000x2000 --runs 3
    .venv/bin/python benchmarks/bench_diff.py --quick              # 150x30, one run

Per size, two inputs from `generate.py` (same seed):

- the repository: `generate_cluster` (AdminNetworkPolicies, hostNetwork agents, ipBlocks over
  the pod network) laid out as a GitOps repository does it: cluster-scoped files, and per
  namespace one file of pods and one of policies. The change edits one NetworkPolicy (it gains
  an ingress rule opening TCP 7070 from every namespace). Measured: `netwarden diff --base
  BASE_DIR --head HEAD_DIR -o md`, and `--base-ref HEAD --head REPO` on a git repository
  whose commit holds the base and whose working tree holds the head (the CI use). Issue #4's
  target: under 30 s at 10,000 pods.
- the peer input: `peer_nca.parity_cluster` (what NCA reads too) as one base and one head
  file, the same kind of edit. Measured: `netwarden diff --base a.yaml --head b.yaml -o txt`
  and NCA (`nca --semantic_diff b.yaml --base_np_list a.yaml` with pod and namespace lists),
  the named peer, once, killed after `--nca-timeout` seconds; once it has timed out, larger
  sizes do not run it. The ratio is NCA's time over netwarden's on these files.

Every figure is the median wall time of `--runs` runs, each its own process measured by a
fresh wrapper (`bench_connectivity.measure`), with its peak RSS and CPU time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

try:  # imported as benchmarks.bench_diff, or run as a script from benchmarks/
    from benchmarks.bench_connectivity import Measurement, figure, measure, median_of

    from benchmarks import generate, peer_nca
except ModuleNotFoundError:
    import generate  # type: ignore[no-redef, import-not-found]
    import peer_nca  # type: ignore[no-redef, import-not-found]
    from bench_connectivity import (  # type: ignore[no-redef, import-not-found]
        Measurement,
        figure,
        measure,
        median_of,
    )

SIZES = ((2_000, 400), (10_000, 2_000))
QUICK = (150, 30)
#: Issue #4: `diff` on the 10,000-pod cluster finishes in under 30 s.
TARGETS = {10_000: 30.0}
#: The port the edited policy opens.
NEW_PORT = 7070
_SEPARATOR = re.compile(r"(?m)^---\s*\n")
_KIND = re.compile(r"(?m)^kind: (\S+)")
_METADATA = re.compile(r"(?ms)^metadata:(.*?)(?=^\S|\Z)")
_NAMESPACE = re.compile(r"\bnamespace: ([a-z0-9.-]+)")


def split_documents(text: str) -> list[str]:
    """A multi-document YAML text cut at its `---` lines (the generator writes no others)."""
    return [doc for doc in _SEPARATOR.split(text) if doc.strip()]


def layout(text: str) -> dict[str, list[str]]:
    """Documents per repository file: cluster-scoped kinds in `cluster/<kind>.yaml`, namespaced
    ones in `<namespace>/pods.yaml` and `<namespace>/policies.yaml`."""
    files: dict[str, list[str]] = defaultdict(list)
    for doc in split_documents(text):
        kind_match, metadata = _KIND.search(doc), _METADATA.search(doc)
        namespace = _NAMESPACE.search(metadata[1]) if metadata else None
        kind = kind_match[1] if kind_match else "unknown"
        if namespace is None:
            files[f"cluster/{kind.lower()}.yaml"].append(doc)
        elif kind == "NetworkPolicy":
            files[f"{namespace[1]}/policies.yaml"].append(doc)
        else:
            files[f"{namespace[1]}/pods.yaml"].append(doc)
    return files


def edit_one_policy(files: dict[str, list[str]]) -> tuple[dict[str, list[str]], str]:
    """A copy where one NetworkPolicy with egress rules (else ingress rules) gains one more:
    TCP NEW_PORT to (from) every namespace. Returns the files and `namespace/name (direction)`.
    Egress first: in the generated cluster AdminNetworkPolicies decide most ingress first."""
    for direction, peer in (("egress", "to"), ("ingress", "from")):
        for name in sorted(files):
            if not name.endswith("/policies.yaml"):
                continue
            for i, doc in enumerate(files[name]):
                policy: dict[str, Any] = yaml.safe_load(doc)
                spec = policy["spec"]
                if not (spec.get(direction) and spec["podSelector"]):
                    continue
                rule = {peer: [{"namespaceSelector": {}}], "ports": [{"port": NEW_PORT}]}
                spec[direction].append(rule)
                edited = dict(files)
                edited[name] = [*files[name][:i], yaml.safe_dump(policy), *files[name][i + 1 :]]
                meta = policy["metadata"]
                return edited, f"{meta['namespace']}/{meta['name']} ({direction})"
    raise RuntimeError("no NetworkPolicy with egress or ingress rules to edit")


def write_tree(root: Path, files: dict[str, list[str]]) -> None:
    for name, docs in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\n".join(docs), encoding="utf-8")


def write_file(path: Path, files: dict[str, list[str]]) -> None:
    path.write_text("---\n".join(d for name in sorted(files) for d in files[name]), "utf-8")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            *list(args),
        ],
        check=True,
        capture_output=True,
    )


def netwarden(*args: str | Path) -> list[str]:
    binary = Path(sys.executable).parent / "netwarden"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing: run `make install`")
    return [str(binary), "diff", *map(str, args)]


def nca_command(base: Path, head: Path) -> list[str]:
    nca = peer_nca.nca_binary()
    if not nca.exists():
        raise FileNotFoundError(f"{nca}: NCA is not installed; run `make .venv-peer`")
    command = [str(nca), "--semantic_diff", str(head), "--base_np_list", str(base)]
    command += ["--pod_list", str(head), "--ns_list", str(head)]
    return [*command, "--base_pod_list", str(base), "--base_ns_list", str(base)]


def changed_count(markdown: Path) -> int:
    """Added plus removed connections, from the summary line of an md report."""
    found = re.search(r"\*\*(\d+) connections? added, (\d+) removed", markdown.read_text("utf-8"))
    return int(found[1]) + int(found[2]) if found else 0


def run_size(
    pods: int, policies: int, args: argparse.Namespace, work: Path, nca_allowed: bool
) -> Measurement | None:
    """Measure one size, print its lines; returns NCA's measurement (None: not run)."""
    start = time.perf_counter()
    here = work / f"{pods}"
    files = layout(generate.generate_cluster(pods, policies, args.seed))
    edited, policy = edit_one_policy(files)
    write_tree(here / "base", files)
    write_tree(here / "head", edited)
    repo = here / "repo"
    write_tree(repo, files)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    write_tree(repo, edited)
    parity, parity_policy = edit_one_policy(
        layout(peer_nca.parity_cluster(pods, policies, args.seed))
    )
    write_file(
        here / "parity-base.yaml", layout(peer_nca.parity_cluster(pods, policies, args.seed))
    )
    write_file(here / "parity-head.yaml", parity)
    took = time.perf_counter() - start
    print(f"\n{pods:,} pods, {policies:,} policies (inputs written in {took:.1f} s)")
    print(f"  change: NetworkPolicy {policy} gains a rule: TCP {NEW_PORT}, every namespace")
    timeout = args.netwarden_timeout
    report = here / "diff.md"
    dirs = netwarden("--base", here / "base", "--head", here / "head", "-o", "md")
    by_dirs = median_of(args.runs, [*dirs, "--output", str(report)], timeout)
    rows = changed_count(report)
    print(f"  netwarden --base/--head  {figure(by_dirs)}  ({rows:,} changed connections)")
    ref = median_of(args.runs, netwarden("--base-ref", "HEAD", "--head", repo, "-o", "md"), timeout)
    print(f"  netwarden --base-ref     {figure(ref)}")
    target = TARGETS.get(pods)
    if target is not None:
        worst = max(by_dirs.seconds, ref.seconds)
        met = not (by_dirs.timed_out or ref.timed_out) and worst < target
        load = os.getloadavg()[0]  # wall time on a busy machine says little: show how busy
        print(
            f"  target                   < {target:.0f} s: {'met' if met else 'NOT MET'} "
            f"(wall; load average {load:.1f} on {os.cpu_count()} cores, "
            f"{max(by_dirs.cpu_seconds, ref.cpu_seconds):.1f} s CPU)"
        )
    print(f"  peer input: one file per side, {parity_policy} edited the same way")
    base_file, head_file = here / "parity-base.yaml", here / "parity-head.yaml"
    files_run = netwarden("--base", base_file, "--head", head_file, "-o", "txt")
    on_files = median_of(args.runs, files_run, timeout)
    print(f"  netwarden (files)        {figure(on_files)}")
    if not (nca_allowed and pods <= args.nca_max_pods):
        print("  NCA (peer)               not run" + ("" if nca_allowed else ": timed out before"))
        return None
    limit = int(args.nca_memory_gb * 2**30)
    nca_out = here / "nca-diff.txt"
    nca_out.unlink(missing_ok=True)  # NCA's --file_out appends
    nca = measure(
        [*nca_command(base_file, head_file), "--file_out", str(nca_out)], args.nca_timeout, limit
    )
    if nca.error and nca_out.exists() and nca_out.stat().st_size:
        # NCA's exit code is its query's answer (non-zero: the versions differ), not a failure
        nca = Measurement(nca.seconds, nca.peak_bytes, cpu_seconds=nca.cpu_seconds)
    print(f"  NCA --semantic_diff      {figure(nca)}")
    if not nca.timed_out and not nca.error and not on_files.timed_out:
        ratio = nca.seconds / on_files.seconds
        cpu = nca.cpu_seconds / max(on_files.cpu_seconds, 1e-9)
        print(
            f"  ratio                    {ratio:8.1f} x  NCA time / netwarden time "
            f"({cpu:.1f} x in CPU time)"
        )
    return nca


def parse_size(text: str) -> tuple[int, int]:
    pods, _, policies = text.strip().partition("x")
    return int(pods), int(policies)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", help="pods x policies, comma separated: 2000x400,10000x2000")
    parser.add_argument("--runs", type=int, default=3, help="netwarden runs per figure")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nca-timeout", type=float, default=300.0, help="seconds, then killed")
    parser.add_argument("--nca-max-pods", type=int, default=100_000)
    parser.add_argument("--nca-memory-gb", type=float, default=8.0, help="NCA's address space")
    parser.add_argument("--netwarden-timeout", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="150x30, one run, NCA 60 s")
    parser.add_argument("--keep", metavar="DIR", help="write the inputs here")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES)
    if args.quick:
        sizes = sizes if args.sizes else [QUICK]
        args.runs, args.nca_timeout = 1, 60.0
    print(
        f"netwarden diff vs NCA {peer_nca.NCA_VERSION} --semantic_diff: median of {args.runs} "
        f"runs, NCA killed after {args.nca_timeout:.0f} s, {os.cpu_count()} cores"
    )
    nca_allowed = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
            work = Path(args.keep) if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            for pods, policies in sizes:
                nca = run_size(pods, policies, args, work, nca_allowed)
                if nca is not None and (nca.timed_out or nca.error):
                    nca_allowed = False
    except (RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"bench_diff: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

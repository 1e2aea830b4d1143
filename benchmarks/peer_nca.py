"""IBM's network-config-analyzer (NCA) as a peer: run it, read its connectivity map, compare.

    .venv/bin/python benchmarks/peer_nca.py -f examples/shop            # NCA vs reference engine
    .venv/bin/python benchmarks/peer_nca.py -f examples/shop --netwarden cli
    .venv/bin/python benchmarks/peer_nca.py --generated 60,14,3 --netwarden vectorized
    .venv/bin/python benchmarks/peer_nca.py --e2e       # the upstream e2e corpus, case by case

NCA lives in its own virtualenv (`make .venv-peer`, network-config-analyzer==2.1.0), never in
our lock file. Both tools read one filtered copy of the input (`prepare_inputs`): namespaces,
pods, workloads and Kubernetes NetworkPolicies, the constructs both support. Everything else
is listed and left out of both: NCA 2.1.0 ignores AdminNetworkPolicy, and treats a
hostNetwork pod as an ordinary pod, where netwarden (like Kubernetes implementations) treats
it as the node. NCA is run as `nca --connectivity F --pod_list F --ns_list F -o
txt_no_fw_rules --output_endpoints pods`, one line per (src, dst) pair.

The comparison is on the pods both report: NCA keeps at most two pods of each workload
(same namespace, owner and labels; `nca_pod_names` redoes that choice and maps NCA's names
for workload replicas, `web-1`, `web-2`, to netwarden's, `web-0`, `web-1`) and injects
`kube-system/kube-dns-livesim` when a policy names kube-dns labels no pod has; that pod is
left out. Then both maps are sets of (src, dst, protocol, port) compared exactly
(`connectivity_sets.compare`), IP ranges cut at the union of both sides' boundaries. Exit
status 1 when they differ.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import hexdigits
from typing import Any

import yaml

try:  # imported as benchmarks.peer_nca (tests), or run as a script from benchmarks/
    from benchmarks import connectivity_oracle as oracle
    from benchmarks import connectivity_sets as sets
    from benchmarks import generate
except ModuleNotFoundError:
    import connectivity_oracle as oracle  # type: ignore[no-redef, import-not-found]
    import connectivity_sets as sets  # type: ignore[no-redef, import-not-found]
    import generate  # type: ignore[no-redef, import-not-found]

from netwarden.dialects import load_paths
from netwarden.dialects.source import expand_paths
from netwarden.model.ports import parse_protocol

REPO = Path(__file__).resolve().parent.parent
#: The NCA release compared against (the Makefile's NCA_VERSION installs it).
NCA_VERSION = "2.1.0"
#: Where `make .venv-peer` installs NCA; NETWARDEN_NCA overrides it.
DEFAULT_NCA = REPO / ".venv-peer" / "bin" / "nca"
LIVESIM_DNS = "kube-system/kube-dns-livesim"
#: Kinds NCA expands into pods (nca/NetworkConfig/TopologyObjectsFinder.py, PodsFinder).
WORKLOAD_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
}
KEPT_KINDS = {"Namespace", "Pod", *WORKLOAD_KINDS}

Manifest = dict[str, Any]
#: libyaml when present: the inputs of the larger benchmark sizes are megabytes.
LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def nca_binary() -> Path:
    return Path(os.environ.get("NETWARDEN_NCA", DEFAULT_NCA))


@dataclass(frozen=True)
class PreparedInput:
    """One file both tools read, and what was left out of it (kind and name, why)."""

    path: Path
    left_out: tuple[str, ...]
    documents: tuple[Manifest, ...]


def _flatten(data: Any) -> list[Manifest]:
    if not isinstance(data, dict):
        return []
    if str(data.get("kind", "")).endswith("List") and isinstance(data.get("items"), list):
        return [d for item in data["items"] for d in _flatten(item)]
    return [data]


def _describe(doc: Manifest) -> str:
    meta = doc.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {where}{meta.get('name')}"


def prepare_inputs(paths: Sequence[str | Path], workdir: Path) -> PreparedInput:
    """Namespaces, pods, workloads and NetworkPolicies of `paths`, in one file under `workdir`;
    every other document is listed in `left_out` with the reason."""
    kept: list[Manifest] = []
    left_out: list[str] = []
    for path in expand_paths(list(paths)):
        for data in yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER):
            for doc in _flatten(data):
                kind, api = doc.get("kind"), str(doc.get("apiVersion", ""))
                if kind == "NetworkPolicy" and api.startswith("networking.k8s.io/"):
                    kept.append(doc)
                elif kind in KEPT_KINDS:
                    spec = doc.get("spec") or {}
                    template = (spec.get("template") or {}).get("spec") or {}
                    if spec.get("hostNetwork") or template.get("hostNetwork"):
                        left_out.append(f"{_describe(doc)}: hostNetwork (NCA: a pod)")
                    else:
                        kept.append(doc)
                else:
                    left_out.append(f"{_describe(doc)}: {api} {kind} not compared")
    pods = [d for d in kept if d.get("kind") == "Pod"]
    standing_in = [d for d in kept if d.get("kind") in WORKLOAD_KINDS and _pods_given(d, pods)]
    left_out += [f"{_describe(d)}: its pods are given" for d in standing_in]
    replaced = {id(d) for d in standing_in}
    kept = [d for d in kept if id(d) not in replaced]
    target = workdir / "cluster.yaml"
    target.write_text(yaml.dump_all(kept, Dumper=DUMPER, sort_keys=False), encoding="utf-8")
    return PreparedInput(target, tuple(left_out), tuple(kept))


def _pods_given(workload: Manifest, pods: list[Manifest]) -> bool:
    """Whether a Pod of the input is one of the workload's (netwarden then makes no stand-ins;
    NCA would add its own two): same namespace, and the selector's labels or the owner match."""
    meta = workload.get("metadata") or {}
    wanted = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for pod in pods:
        pod_meta = pod.get("metadata") or {}
        if pod_meta.get("namespace") != meta.get("namespace"):
            continue
        labels = pod_meta.get("labels") or {}
        owners = {str(o.get("name")) for o in pod_meta.get("ownerReferences") or []}
        if (wanted and wanted.items() <= labels.items()) or meta.get("name") in owners:
            return True
    return False


def _workload_name(namespace: str, pod: str, owners: list[Manifest]) -> str:
    """NCA's Pod.workload_name (nca/CoreDS/Peer.py): the owner, a ReplicaSet with a hash suffix
    standing for its Deployment; a pod without owner is its own workload."""
    if not owners:
        return f"{namespace}/{pod}(Pod)"
    name, kind = str(owners[0].get("name", "")), str(owners[0].get("kind", ""))
    if kind == "ReplicaSet":
        suffix = name[name.rfind("-") + 1 :]
        if all(c in hexdigits for c in suffix):
            return f"{namespace}/{name[: name.rfind('-')]}(Deployment-StatefulSet)"
    return f"{namespace}/{name}({kind})"


def nca_pod_names(documents: Sequence[Manifest]) -> dict[str, str]:
    """The pods NCA models, by NCA name -> netwarden name: at most two per workload and label
    set (TopologyObjectsFinder._add_peer), replicas of a workload named `<name>-1`, `-2`
    (netwarden: `<name>-0`, `-1`)."""
    names: dict[str, str] = {}
    seen: Counter[tuple[str, str, tuple[tuple[str, str], ...]]] = Counter()
    for doc in documents:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        if kind == "Pod":
            pods = [(str(meta.get("name")), str(meta.get("name")))]
            labels = meta.get("labels") or {}
            workload = _workload_name(namespace, pods[0][0], meta.get("ownerReferences") or [])
        elif kind in WORKLOAD_KINDS:
            spec = doc.get("spec") or {}
            replicas = int(spec.get("replicas", 1))
            if kind == "Job":
                replicas = int(spec.get("parallelism", 1))
            if kind == "CronJob":
                spec = (spec.get("jobTemplate") or {}).get("spec") or {}
            template = spec.get("template") or {}
            labels = (template.get("metadata") or {}).get("labels") or {}
            name = str(meta.get("name"))
            workload = f"{namespace}/{name}({kind})"
            pods = [(f"{name}-{i}", f"{name}-{i - 1}") for i in range(1, min(replicas, 2) + 1)]
        else:
            continue
        for nca_name, our_name in pods:
            group = (
                namespace,
                workload,
                tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            )
            if seen[group] < 2:
                seen[group] += 1
                names[f"{namespace}/{nca_name}"] = f"{namespace}/{our_name}"
    return names


@dataclass(frozen=True)
class NcaRun:
    """NCA's answer (None when it timed out) and how long it ran."""

    seconds: float
    output: str | None
    stderr: str


def run_nca(manifests: Path, timeout: float, nca: Path | None = None) -> NcaRun:
    """`nca --connectivity` on one file holding namespaces, pods and policies; killed (its
    whole process group) after `timeout` seconds."""
    binary = nca or nca_binary()
    if not binary.exists():
        raise FileNotFoundError(f"{binary}: NCA is not installed; run `make .venv-peer`")
    command = [str(binary), "--connectivity", str(manifests), "--pod_list", str(manifests)]
    command += ["--ns_list", str(manifests), "-o", "txt_no_fw_rules"]
    command += ["--output_endpoints", "pods"]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return NcaRun(time.perf_counter() - start, None, "")
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"nca exited {process.returncode}: {stderr.strip()[-2000:]}")
    return NcaRun(seconds, stdout, stderr)


_LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<connections>.+)$")
#: A cube's dimensions start `name:`; the protocols list itself holds `, ` (never `,x:`).
_DIMENSION = re.compile(r",(?=[a-z_]+:)")
#: NCA's protocol names it may print besides TCP/UDP/SCTP/ICMP (ProtocolNameResolver).
_NCA_PROTOCOLS = {"ICMPv6": 58, "IPv6-ICMP": 58, "HOPOPT": 0, "IGMP": 2, "GRE": 47}


def _protocol_number(name: str) -> int:
    number = _NCA_PROTOCOLS.get(name)
    if number is None:
        number = parse_protocol(name)
    if number is None:
        raise ValueError(f"NCA printed a protocol this reader does not know: {name!r}")
    return number


def _protocols(text: str) -> sets.Intervals:
    """`TCP, UDP` or `all but TCP` or `*`."""
    text = text.strip()
    if text == "*":
        return sets.PROTOCOL_SPACE
    negate = text.startswith("all but ")
    named = sets.normalize(
        (n, n)
        for n in (_protocol_number(p.strip()) for p in text.removeprefix("all but ").split(","))
    )
    return sets.subtract(sets.PROTOCOL_SPACE, named) if negate else named


def _cube(text: str) -> tuple[sets.Intervals, sets.Intervals]:
    """`{protocols:TCP, UDP,dst_ports:53}` -> (protocols, ports)."""
    protocols, ports = sets.PROTOCOL_SPACE, sets.PORT_SPACE
    for part in _DIMENSION.split(text.strip().removeprefix("{").removesuffix("}")):
        name, _, value = part.partition(":")
        if name == "protocols":
            protocols = _protocols(value)
        elif name == "dst_ports":
            ports = sets.parse_ports(value)
            if sets.subtract(protocols, sets.normalize((p, p) for p in sets.PORTED)):
                raise ValueError(f"ports on portless protocols in NCA cube {text!r}")
        else:  # src_ports, icmp, methods, paths, hosts: not in Kubernetes NetworkPolicy
            raise ValueError(f"NCA cube dimension {name!r} is not compared: {text!r}")
    return protocols, ports


def _cubes(text: str) -> list[str]:
    return ["{" + c.strip("{}") + "}" for c in text.split("},{")]


def read_nca_txt(text: str) -> tuple[sets.ConnectivityMap, set[str]]:
    """NCA's `txt_no_fw_rules` connectivity map -> a map, and the pod names it mentions."""
    found = sets.ConnectivityMap()
    everything = sets.ConnectivityMap()
    pods: set[str] = set()
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        src, dst = sets.parse_end(match["src"]), sets.parse_end(match["dst"])
        if src is None or dst is None:
            continue
        pods.update(end for end in (src, dst) if isinstance(end, str))
        connections = match["connections"].strip()
        if connections == "All connections":
            found.allow(src, dst, sets.PROTOCOL_SPACE, sets.PORT_SPACE)
            continue
        target = found
        if connections.startswith("All but "):  # everything, then the cubes taken away
            connections = connections.removeprefix("All but ")
            everything = sets.ConnectivityMap()
            everything.allow(src, dst, sets.PROTOCOL_SPACE, sets.PORT_SPACE)
            target = sets.ConnectivityMap()
        for cube in _cubes(connections):
            protocols, ports = _cube(cube)
            target.allow(src, dst, protocols, ports)
        if target is not found:
            _allow_difference(found, everything, target)
    return found, pods


def _allow_difference(
    into: sets.ConnectivityMap, whole: sets.ConnectivityMap, taken: sets.ConnectivityMap
) -> None:
    for (src, dst, protocol), ports in whole.ports.items():
        rest = sets.subtract(ports, taken.ports.get((src, dst, protocol), ()))
        if rest:
            into.allow(src, dst, ((protocol, protocol),), rest)
    for (src, dst), protocols in whole.protocols.items():
        rest = sets.subtract(protocols, taken.protocols.get((src, dst), ()))
        if rest:
            into.allow(src, dst, rest, sets.PORT_SPACE)


def netwarden_connectivity(manifests: Path, source: str) -> sets.ConnectivityMap:
    """netwarden's pod-level map: `cli` runs `netwarden connectivity --by pod -o csv`;
    `reference` decides every pod pair flow by flow with the reference engine, `vectorized`
    asks the same questions of the vectorized engine in one batch (connectivity_sets)."""
    if source == "reference":
        return oracle.reference_connectivity(load_paths([manifests]).cluster)
    if source == "vectorized":
        return oracle.vectorized_connectivity(load_paths([manifests]).cluster)
    netwarden = Path(sys.executable).parent / "netwarden"
    command = [str(netwarden), "connectivity", "-f", str(manifests), "--by", "pod", "-o", "csv"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return sets.read_connectivity_csv(done.stdout)


@dataclass(frozen=True)
class Parity:
    report: sets.ParityReport
    prepared: PreparedInput
    nca_seconds: float
    livesim: bool  # NCA injected its kube-dns stand-in
    nca_map: sets.ConnectivityMap  # NCA's answer on the pods both report, netwarden's names
    netwarden_map: sets.ConnectivityMap


def nca_parity(
    paths: Sequence[str | Path], workdir: Path, netwarden: str = "reference", timeout: float = 600
) -> Parity:
    """NCA and netwarden on the same filtered input, compared on the pods both report."""
    prepared = prepare_inputs(paths, workdir)
    run = run_nca(prepared.path, timeout)
    if run.output is None:
        raise TimeoutError(f"NCA did not finish within {timeout:.0f} s")
    nca_map, mentioned = read_nca_txt(run.output)
    names = nca_pod_names(prepared.documents)
    unknown = mentioned - set(names) - {LIVESIM_DNS}
    if unknown:
        raise ValueError(f"NCA reports pods the harness did not expect: {sorted(unknown)[:5]}")
    ours = netwarden_connectivity(prepared.path, netwarden)
    shared = set(names.values())

    def both(end: sets.End) -> bool:
        return isinstance(end, sets.IPRange) or end in shared

    nca_map = nca_map.restrict(lambda end: end != LIVESIM_DNS).rename(names).restrict(both)
    ours = ours.restrict(both)
    report = sets.compare(nca_map, ours, "NCA", f"netwarden ({netwarden})", pods=len(shared))
    return Parity(report, prepared, run.seconds, LIVESIM_DNS in mentioned, nca_map, ours)


def parity_cluster(pods: int, policies: int, seed: int) -> str:
    """A generated cluster made of what both tools read: Kubernetes NetworkPolicies only, no
    hostNetwork pods, no ipBlock over pod addresses (generate.py's keywords)."""
    return generate.generate_cluster(
        pods, policies, seed, admin_policies=False, host_network=False, pod_network_ipblocks=False
    )


@dataclass(frozen=True)
class CaseResult:
    """One upstream e2e case: NCA against netwarden, and each against upstream's verdicts."""

    name: str
    parity: Parity | None
    nca_error: str  # NCA refused the input
    nca_wrong: tuple[str, ...]  # upstream expectations NCA's map contradicts
    netwarden_wrong: tuple[str, ...]


def e2e_results(folder: Path, timeout: float = 120) -> list[CaseResult]:
    """Every case of the Kubernetes e2e corpus (tests/semantics/cases/k8s_e2e) through both
    tools; upstream's expected verdicts say which one is right where they differ."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.semantics.cases import load_cases

    results = []
    for case in load_cases(folder):
        with tempfile.TemporaryDirectory(prefix="nca-e2e-") as tmp:
            manifests = Path(tmp) / f"{case.name}.yaml"
            manifests.write_text(yaml.safe_dump_all(case.manifests(), sort_keys=False))
            workdir = Path(tmp) / "work"
            workdir.mkdir()
            try:
                parity = nca_parity([manifests], workdir, "reference", timeout)
            except RuntimeError as error:
                results.append(CaseResult(case.name, None, str(error), (), ()))
                continue
        expectations = case.expectations()
        nca_wrong = _contradicted(parity.nca_map, expectations)
        ours_wrong = _contradicted(parity.netwarden_map, expectations)
        results.append(CaseResult(case.name, parity, "", nca_wrong, ours_wrong))
    return results


def _contradicted(found: sets.ConnectivityMap, expectations: Sequence[Any]) -> tuple[str, ...]:
    """The upstream verdicts (`Expectation` rows) a map contradicts."""
    return tuple(
        str(e) for e in expectations if found.allows(e.src, e.dst, e.port, e.protocol) != e.allowed
    )


def _print_e2e(folder: Path, timeout: float) -> int:
    results = e2e_results(folder, timeout)
    for result in results:
        if result.nca_error:
            verdict = f"NCA rejects the input: {result.nca_error.splitlines()[-1][:120]}"
        elif result.parity is not None and result.parity.report.equal:
            verdict = "equal"
        else:
            verdict = "differ"
        print(f"{result.name:50} {verdict}")
        for label, wrong in (("NCA", result.nca_wrong), ("netwarden", result.netwarden_wrong)):
            if wrong:
                print(f"    {label} contradicts upstream on {len(wrong)}: {', '.join(wrong[:4])}")
    equal = sum(1 for r in results if r.parity is not None and r.parity.report.equal)
    print(f"{equal}/{len(results)} cases equal")
    return 0 if all(not r.netwarden_wrong for r in results) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-f", dest="paths", action="append", default=[], help="file or directory")
    parser.add_argument("--generated", help="pods,policies,seed: a generated cluster instead")
    parser.add_argument("--e2e", action="store_true", help="the upstream e2e cases, one by one")
    parser.add_argument(
        "--netwarden", choices=("reference", "vectorized", "cli"), default="reference"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds NCA may run")
    parser.add_argument("--limit", type=int, default=40, help="differences shown per side")
    args = parser.parse_args()
    try:
        if args.e2e:
            raise SystemExit(_print_e2e(REPO / "tests" / "semantics" / "cases" / "k8s_e2e", 120))
        _compare_inputs(parser, args)
    except (RuntimeError, TimeoutError, FileNotFoundError, ValueError) as error:
        print(f"peer_nca: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _compare_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="nca-parity-") as tmp:
        paths = list(args.paths)
        if args.generated:
            pods, policies, seed = (int(v) for v in args.generated.split(","))
            generated = Path(tmp) / "generated.yaml"
            generated.write_text(parity_cluster(pods, policies, seed), encoding="utf-8")
            paths.append(generated)
        if not paths:
            parser.error("give -f PATH, --generated PODS,POLICIES,SEED or --e2e")
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        parity = nca_parity(paths, workdir, args.netwarden, args.timeout)
    for item in parity.prepared.left_out:
        print(f"left out: {item}")
    if parity.livesim:
        print(f"NCA injected {LIVESIM_DNS}; it is not compared")
    print(f"NCA ran {parity.nca_seconds:.2f} s")
    print(parity.report.render(args.limit))
    if not parity.report.equal:
        raise SystemExit(1)
    print("equal")


if __name__ == "__main__":
    main()

"""nftables dataplane: compile, load, pod churn and packet cost, 1,000 to 50,000 pods.

    sudo .venv/bin/python benchmarks/bench_dataplane.py               # 1k / 10k / 50k pods
    sudo .venv/bin/python benchmarks/bench_dataplane.py --sizes 10000 --runs 5
    sudo .venv/bin/python benchmarks/bench_dataplane.py --quick        # smoke run, ~15 s

For each size: a seeded cluster (`generate.py`, 1,000 policies) read through the real
dialects, with 100 pods moved onto node-000 (every n-th tenant pod, so they span namespaces
and apps). Then, as medians of `--runs`:

- compile: `NodeCompiler` (resolve + render) for node-000; ruleset size (chains, rules, sets,
  set elements, script bytes).
- load: the full script into a fresh network namespace (`nft -c -f` then `nft -f`).
- churn: pod add / relabel / delete, local and remote pods, each through the incremental
  path (the delta compile of `nft_delta` plus one `nft -f` element transaction) into the
  namespace holding the ruleset; peer: a full reload (compile the new inventory, load the
  whole table), printed as the ratio full reload / incremental.
- traffic: a sender namespace behind an uplink veth and a local pod namespace behind a pod
  veth, routed through the node namespace; small UDP packets (packets forwarded per second,
  counted on the receiving interface) and TCP connection setups per second, with the
  ruleset loaded vs no ruleset (the peer), printed as the ratio. Each packet is a new flow
  for conntrack (UDP without replies), so every one walks the policy chains.

Every namespace is named `nwb<pid>...` and removed on exit, whatever happens. Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import IPv4Address
from typing import TypeVar

from generate import generate_cluster
from netwarden.dataplane.apply import apply_ruleset
from netwarden.dataplane.nft_delta import NodeCompiler
from netwarden.dataplane.nft_update import LoadedRuleset, apply_update
from netwarden.dataplane.nftables import calico_interface, compile_ruleset
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.model import TCP, UDP, ClusterState, Direction, Endpoint, EndpointKind, Flow

T = TypeVar("T")
NODE = "node-000"
LOCAL_PODS = 100
PREFIX = f"nwb{os.getpid() % 100000}"


def timed(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    """Median seconds of `runs` calls, and the last call's result."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def ip(*arguments: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", *arguments], input=stdin, text=True, check=True, capture_output=True)


@contextmanager
def namespaces(*names: str) -> Iterator[list[str]]:
    made = []
    try:
        for name in names:
            ip("netns", "add", f"{PREFIX}{name}")
            made.append(f"{PREFIX}{name}")
        yield made
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def localize(cluster: ClusterState, count: int) -> ClusterState:
    """`count` tenant pods (every n-th) on NODE, every other pod elsewhere."""
    pods = [e for e in cluster.endpoints if e.kind is EndpointKind.POD and e.labels.get("team")]
    chosen = {e.key for e in pods[:: max(1, len(pods) // count)][:count]}
    others = sorted({n.name for n in cluster.nodes} - {NODE}) or ["node-001"]
    endpoints = []
    for i, endpoint in enumerate(cluster.endpoints):
        if endpoint.key in chosen:
            endpoint = replace(endpoint, node=NODE)
        elif endpoint.kind is EndpointKind.POD and endpoint.node == NODE:
            endpoint = replace(endpoint, node=others[i % len(others)])
        endpoints.append(endpoint)
    return replace(cluster, endpoints=tuple(endpoints))


def interfaces_of(cluster: ClusterState) -> dict[str, str]:
    return {
        e.key: calico_interface(e.namespace or "", e.name)
        for e in cluster.endpoints
        if e.kind is EndpointKind.POD and e.node == NODE
    }


# --- churn ------------------------------------------------------------------------------------


def churn(
    cluster: ClusterState, compiler: NodeCompiler, netns: str, rounds: int, seed: int
) -> dict[str, list[tuple[float, float, bool]]]:
    """Per operation: (seconds end to end, seconds of the delta compile, incremental?)."""
    rng = random.Random(seed)
    state = LoadedRuleset.of(compiler.ruleset)
    interfaces = dict(compiler.interfaces)
    endpoints = list(cluster.endpoints)
    tenants = [e for e in endpoints if e.kind is EndpointKind.POD and e.labels.get("team")]
    found: dict[str, list[tuple[float, float, bool]]] = {}
    fresh = 0
    reasons: set[str] = set()

    def run(op: str, removed: list[Endpoint], added: list[Endpoint]) -> None:
        nonlocal state
        for endpoint in removed:
            endpoints.remove(endpoint)
            interfaces.pop(endpoint.key, None)
        for endpoint in added:
            endpoints.append(endpoint)
            if endpoint.node == NODE:
                interfaces[endpoint.key] = calico_interface(endpoint.namespace or "", endpoint.name)
        after = replace(cluster, endpoints=tuple(endpoints))
        start = time.perf_counter()
        ruleset, changes = compiler.update(after, removed, added, interfaces)
        compiled = time.perf_counter() - start
        applied = apply_update(netns, state, ruleset, changes)
        total = time.perf_counter() - start
        state = applied.state
        incremental = changes is not None and not applied.update.full
        found.setdefault(op, []).append((total, compiled, incremental))
        if changes is None:
            reasons.add(compiler.last_reason.split(": ", 1)[-1])

    for _ in range(rounds):
        for where in ("local", "remote"):
            # A local pod comes as one more replica of a workload the node runs, and is
            # relabelled as another workload of its namespace there: a pod of an endpoint
            # class no chain serves yet needs a compile (counted and named, not hidden).
            pool = [t for t in tenants if (t.node == NODE) == (where == "local")]
            template = rng.choice(pool)
            fresh += 1
            node = NODE if where == "local" else "node-001"
            pod = replace(template, name=f"bench-{fresh}", ips=(_address(fresh),), node=node)
            run(f"add {where}", [], [pod])
            peers = [t for t in pool if t.namespace == pod.namespace and t.labels != pod.labels]
            if peers:
                labels = dict(rng.choice(peers).labels)
            else:  # no other workload of its namespace here: a new version of its own
                labels = {**pod.labels, "version": "v2" if pod.labels["version"] == "v1" else "v1"}
            relabelled = replace(pod, labels=labels)
            run(f"relabel {where}", [pod], [relabelled])
            run(f"delete {where}", [relabelled], [])
    for reason in sorted(reasons):
        print(f"compiled again: {reason}")
    return found


def _address(n: int) -> IPv4Address:
    """Pod-network addresses no generated pod holds (up to 50,000 pods end below .250.0)."""
    return IPv4Address(f"10.244.{250 + n // 250 % 6}.{n % 250 + 1}")


def full_reload(cluster: ClusterState, netns: str) -> float:
    """The peer: one more pod by compiling everything again and replacing the table."""
    template = next(e for e in cluster.endpoints if e.labels.get("team") and e.node == NODE)
    pod = replace(template, name="bench-full", ips=(_address(62_000),))
    after = replace(cluster, endpoints=(*cluster.endpoints, pod))
    start = time.perf_counter()
    ruleset = compile_ruleset(after, NODE, interfaces_of(after))
    apply_ruleset(netns, ruleset.script)
    return time.perf_counter() - start


# --- traffic ----------------------------------------------------------------------------------

_UDP_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
payload = b"x" * 18
if sys.argv[4] == "reply":  # wait for the answer that makes the flow established
    s.settimeout(2.0)
    s.send(payload)
    s.recv(64)
end = time.perf_counter() + float(sys.argv[3])
n = 0
while time.perf_counter() < end:
    for _ in range(100):
        try:
            s.send(payload)
        except OSError:
            pass
    n += 100
print(n)
"""
_UDP_SERVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
if sys.argv[3] == "reply":  # answer the flow's first packet, then read no more
    data, peer = s.recvfrom(64)
    s.sendto(b"ok", peer)
time.sleep(3600)
"""
_TCP_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""
_TCP_CLIENT = """
import socket, sys, time
end = time.perf_counter() + float(sys.argv[3])
n = 0
while time.perf_counter() < end:
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
    c.settimeout(1.0)
    try:
        c.connect((sys.argv[1], int(sys.argv[2])))
        n += 1
    except OSError:
        pass
    c.close()
print(n)
"""


def in_netns(netns: str, code: str, *arguments: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code, *arguments]


def allowed_flows(cluster: ClusterState) -> dict[int, tuple[Endpoint, Endpoint, int]]:
    """Per protocol, a (remote source, local isolated destination, port) the policies allow."""
    engine = PolicyEngine(cluster)
    local = [e for e in cluster.endpoints if e.node == NODE and e.kind is EndpointKind.POD]
    remote = [e for e in cluster.endpoints if e.node != NODE and e.kind is EndpointKind.POD]
    found: dict[int, tuple[Endpoint, Endpoint, int]] = {}
    rng = random.Random(1)
    sources = rng.sample(remote, min(40, len(remote)))
    for dst in local:
        if not any(ps for _, ps in engine.selecting(dst, Direction.INGRESS)):
            continue
        ports = {(p.port, p.protocol) for p in dst.ports if p.protocol in (TCP, UDP)}
        # Policies most often let a namespace talk to itself: its remote pods first.
        neighbours = [e for e in remote if e.namespace == dst.namespace][:20]
        for src in neighbours + sources:
            for port, protocol in sorted(ports):
                if protocol not in found and engine.decide(Flow(src, dst, port, protocol)).allowed:
                    found[protocol] = (src, dst, port)
            if len(found) == 2:
                return found
    return found


#: (what is measured, protocol, whether the receiver answers each UDP flow once)
MEASUREMENTS = (
    ("tcp connects/s", TCP, False),
    ("udp pkts/s established", UDP, True),
    ("udp pkts/s all new", UDP, False),
)


def traffic(
    cluster: ClusterState, script: str, seconds: float, runs: int
) -> dict[str, tuple[float, float]]:
    """(rate with the ruleset, rate without) for TCP connects and small UDP packets: on a flow
    conntrack saw answered (established: the first rule accepts) and on one never answered
    (every packet is new and walks the destination's policy chains)."""
    flows = allowed_flows(cluster)
    results: dict[str, tuple[float, float]] = {}
    for name, protocol, reply in MEASUREMENTS:
        if protocol not in flows:
            print(f"traffic   {name}: no allowed flow to an isolated local pod found")
            continue
        src, dst, port = flows[protocol]
        with namespaces("n", "s", "d") as (node, sender, receiver):
            pod_if = calico_interface(dst.namespace or "", dst.name)
            uplink = f"up{os.getpid() % 100000}"
            wire(node, (sender, uplink, src.ips[0]), (receiver, pod_if, dst.ips[0]))
            sysctl(node, "net/ipv4/ip_forward", "1")
            mode = "reply" if reply else "silent"
            loaded: list[float] = []
            bare: list[float] = []
            for _ in range(runs):
                apply_ruleset(node, script)
                loaded.append(rate(protocol, sender, receiver, dst, port, seconds, mode))
                subprocess.run(["ip", "netns", "exec", node, "nft", "flush", "ruleset"], check=True)
                bare.append(rate(protocol, sender, receiver, dst, port, seconds, mode))
            results[name] = (statistics.median(loaded), statistics.median(bare))
    return results


ROUTER_MAC = "ee:ee:ee:ee:ee:ee"


def wire(node: str, *leaves: tuple[str, str, IPv4Address]) -> None:
    """Each leaf (namespace, the node's interface to it, its address) joined to `node` by a
    veth pair, routed both ways, with fixed MACs and permanent neighbours as the lab does:
    no ARP (nor proxy ARP's delay) takes part in a measurement."""
    node_lines = []
    leaf_lines: dict[str, list[str]] = {}
    for number, (leaf, ifname, address) in enumerate(leaves):
        mac = f"02:00:00:00:00:{number + 1:02x}"
        node_lines += [
            f"link add {ifname} address {ROUTER_MAC} type veth peer name eth0 address {mac} "
            f"netns {leaf}",
            f"link set {ifname} up",
            f"route add {address}/32 dev {ifname}",
            f"neigh replace {address} lladdr {mac} dev {ifname} nud permanent",
        ]
        leaf_lines[leaf] = [
            "link set lo up",
            "link set eth0 up",
            f"address add {address}/32 dev eth0",
            "route add default dev eth0",
            *(
                f"neigh replace {other} lladdr {ROUTER_MAC} dev eth0 nud permanent"
                for _, _, other in leaves
                if other != address
            ),
        ]
    ip("-n", node, "-batch", "-", stdin="\n".join(node_lines) + "\n")
    for leaf, lines in leaf_lines.items():
        ip("-n", leaf, "-batch", "-", stdin="\n".join(lines) + "\n")


def sysctl(netns: str, key: str, value: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", netns, "sh", "-c", f"echo {value} > /proc/sys/{key}"], check=True
    )


def rate(
    protocol: int,
    sender: str,
    receiver: str,
    dst: Endpoint,
    port: int,
    seconds: float,
    mode: str,
) -> float:
    """Connects per second, or UDP packets per second arriving at the receiver's interface;
    a fresh server each time, so that every measurement is a new flow."""
    address = str(dst.ips[0])
    code = _TCP_SERVER if protocol == TCP else _UDP_SERVER
    server = subprocess.Popen(
        in_netns(receiver, code, address, str(port), mode), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        client = _TCP_CLIENT if protocol == TCP else _UDP_SENDER
        before = rx_packets(receiver)
        done = subprocess.run(
            in_netns(sender, client, address, str(port), str(seconds), mode),
            capture_output=True,
            text=True,
            check=True,
        )
        if protocol == TCP:
            return int(done.stdout) / seconds
        return (rx_packets(receiver) - before) / seconds
    finally:
        server.kill()
        server.wait()


def rx_packets(netns: str) -> int:
    done = subprocess.run(
        ["ip", "-n", netns, "-s", "-j", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(done.stdout)[0]["stats64"]["rx"]["packets"])


# --- main -------------------------------------------------------------------------------------


def bench_size(pods: int, policies: int, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    cluster = localize(load_text(generate_cluster(pods, policies, args.seed)).cluster, LOCAL_PODS)
    interfaces = interfaces_of(cluster)
    print(
        f"\n== {pods:,} pods, {len(cluster.policies):,} policies; node {NODE} with "
        f"{len(interfaces)} local pods (generated and read in {time.perf_counter() - start:.1f} s)"
    )
    compile_runs = args.runs if pods <= 10_000 else 1
    compile_s, compiler = timed(compile_runs, lambda: NodeCompiler(cluster, NODE, interfaces))
    ruleset = compiler.ruleset
    print(
        f"compile   {compile_s:8.3f} s   {ruleset.chains} chains, {ruleset.rules} rules, "
        f"{ruleset.sets} sets, {ruleset.elements:,} set elements, "
        f"{len(ruleset.script) / 1e6:.2f} MB script  (median of {compile_runs})"
    )
    loads = []
    for _ in range(args.runs):
        with namespaces("l") as (netns,):
            began = time.perf_counter()
            apply_ruleset(netns, ruleset.script)
            loads.append(time.perf_counter() - began)
    print(f"load      {statistics.median(loads):8.3f} s   nft -c -f + nft -f into a fresh netns")
    with namespaces("c") as (netns,):
        apply_ruleset(netns, ruleset.script)
        found = churn(cluster, compiler, netns, args.churn, args.seed)
        reload_s = statistics.median(
            full_reload(cluster, netns) for _ in range(1 if pods > 10_000 else args.runs)
        )
    incremental = []
    for op, samples in found.items():
        totals = [s[0] for s in samples]
        incremental += totals
        delta = statistics.median(s[1] for s in samples)
        kept = sum(1 for s in samples if s[2])
        print(
            f"{op:16s} {statistics.median(totals) * 1000:7.1f} ms median, "
            f"max {max(totals) * 1000:6.1f} ms  (delta compile {delta * 1000:5.1f} ms; "
            f"{kept}/{len(samples)} element-only)"
        )
    median_churn = statistics.median(incremental)
    print(
        f"peer      full reload {reload_s * 1000:9.1f} ms (compile + load);  ratio full reload / "
        f"incremental {reload_s / median_churn:8.1f} x"
    )
    if args.traffic:
        for name, (loaded, bare) in traffic(
            cluster, ruleset.script, args.seconds, args.runs
        ).items():
            print(
                f"traffic   {name:15s} {loaded:12,.0f} with ruleset, {bare:12,.0f} without;  "
                f"ratio {loaded / bare:5.2f} x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--churn", type=int, default=5, help="rounds of add/relabel/delete")
    parser.add_argument("--seconds", type=float, default=1.0, help="per traffic measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-traffic", dest="traffic", action="store_false")
    parser.add_argument("--quick", action="store_true", help="one small cluster, short runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_dataplane needs root: it creates network namespaces")
    # SIGTERM unwinds like Ctrl-C, so every namespace made is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.sizes, args.policies, args.runs, args.churn, args.seconds = [400], 80, 1, 2, 0.3
    for pods in args.sizes:
        bench_size(pods, args.policies, args)


if __name__ == "__main__":
    main()

"""Flow ingest and query figures for the DuckDB store (medians over repeats).

    python benchmarks/bench_flows.py            # full sizes (100M-record query: minutes, GBs)
    python benchmarks/bench_flows.py --quick    # small sizes, seconds

Targets (issue #7): ingest > 1,000,000 records/s from VPC text and from Arrow batches,
> 200,000 records/s from Hubble JSON; a filtered query over 100,000,000 stored records < 5 s.
Ingest is timed end to end: read + parse + conform + DuckDB append + CHECKPOINT (the records
compressed in the file); each line also splits the wall time between the importer and the
store. VPC text is also timed with endpoint identity added (what `flows import -f` does).
Peer for Hubble: per-record `json.loads` + DuckDB `executemany`, measured in the same run.
Run it on a quiet machine (see `uptime`): both cores are used, other work halves them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from netwarden.dialects import load_paths
from netwarden.flows.duckdb_store import DuckDBFlowStore
from netwarden.flows.enrich import InventorySnapshot, enrich
from netwarden.flows.filter import FlowFilter
from netwarden.flows.importers import hubble, vpc
from netwarden.flows.schema import conform
from netwarden.flows.store import Aggregate

T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def _ips(rng: np.random.Generator, n: int) -> list[str]:
    octets = rng.integers(0, 256, (n, 2))
    return [f"10.244.{a}.{b}" for a, b in octets]


def write_vpc(path: Path, n: int, rng: np.random.Generator) -> None:
    src, dst = _ips(rng, n), _ips(rng, n)
    ports = rng.integers(1024, 65535, n)
    dports = rng.choice([443, 80, 5432, 53, 22], n)
    start = T0 + np.sort(rng.integers(0, 3600, n))
    actions = np.where(rng.random(n) < 0.9, "ACCEPT", "REJECT")
    header = (
        "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes"
        " start end action log-status\n"
    )
    with path.open("w") as out:
        out.write(header)
        out.writelines(
            f"2 123456789012 eni-0a1b2c3d {s} {d} {p} {dp} 6 {p % 50 + 1} {p * 7}"
            f" {t} {t + 60} {a} OK\n"
            for s, d, p, dp, t, a in zip(src, dst, ports, dports, start, actions, strict=True)
        )


def write_hubble(path: Path, n: int, rng: np.random.Generator) -> None:
    src, dst = _ips(rng, n), _ips(rng, n)
    ports = rng.integers(1024, 65535, n)
    with path.open("w") as out:
        for i in range(n):
            second = datetime.fromtimestamp(T0 + i // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            flow = {
                "time": f"{second}.{i % 1000:03d}123456Z",
                "verdict": "FORWARDED" if i % 10 else "DROPPED",
                "IP": {"source": src[i], "destination": dst[i], "ipVersion": "IPv4"},
                "l4": {
                    "TCP": {
                        "source_port": int(ports[i]),
                        "destination_port": 5432,
                        "flags": {"SYN": True},
                    }
                },
                "source": {
                    "ID": 1423,
                    "identity": 31882,
                    "namespace": "shop",
                    "labels": ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"],
                    "pod_name": f"web-{i % 50}",
                    "workloads": [{"name": "web", "kind": "Deployment"}],
                },
                "destination": {
                    "ID": 2211,
                    "identity": 8410,
                    "namespace": "shop",
                    "labels": ["k8s:app=db", "k8s:io.kubernetes.pod.namespace=shop"],
                    "pod_name": "db-0",
                },
                "Type": "L3_L4",
                "node_name": "kind-worker",
                "traffic_direction": "EGRESS",
                "is_reply": False,
                "Summary": "TCP Flags: SYN",
                "egress_allowed_by": [
                    {
                        "name": "allow-db",
                        "namespace": "shop",
                        "labels": ["k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"],
                    }
                ],
            }
            if i % 10 == 5:  # one flow in ten is a lookup seen by the DNS proxy
                flow |= _dns_exchange(i, int(ports[i]))
            out.write(
                json.dumps({"flow": flow, "node_name": "kind-worker", "time": flow["time"]}) + "\n"
            )


def _dns_exchange(i: int, port: int) -> dict[str, Any]:
    """The parts of a Hubble L7 DNS flow: a query, or (every other one) its answer."""
    query = f"svc-{i % 97}.shop.example.com."
    answered = (i // 10) % 2 == 1
    dns: dict[str, Any] = {"query": query, "observation_source": "proxy", "qtypes": ["A"]}
    if answered:
        dns |= {"ips": [f"203.0.113.{i % 250}"], "ttl": 30, "rrtypes": ["A"]}
        if i % 7 == 0:
            dns = {"query": query, "rcode": 3, "observation_source": "proxy", "qtypes": ["A"]}
    return {
        "l4": {"UDP": {"source_port": port, "destination_port": 53}},
        "Type": "L7",
        "l7": {"type": "RESPONSE" if answered else "REQUEST", "latency_ns": "1200000", "dns": dns},
        "Summary": f"DNS {'Answer' if answered else 'Query'} {query} A",
    }


def arrow_batch(n: int, rng: np.random.Generator) -> Any:
    start = pa.array(
        (T0 + np.sort(rng.integers(0, 3600, n))) * 1_000_000, pa.timestamp("us", tz="UTC")
    )
    return conform(
        pa.table(
            {
                "start_time": start,
                "end_time": start,
                "source_ip": pa.array(_ips(rng, n)),
                "dest_ip": pa.array(_ips(rng, n)),
                "dest_port": pa.array(rng.choice([443, 80, 5432], n).astype(np.int32)),
                "proto": pa.array(np.full(n, "tcp")),
                "source_namespace": pa.array(rng.choice(["shop", "pci", "jobs"], n)),
                "dest_namespace": pa.array(rng.choice(["shop", "pci", "jobs"], n)),
                "action": pa.array(np.where(rng.random(n) < 0.9, "allow", "deny")),
                "bytes_out": pa.array(rng.integers(0, 1 << 20, n)),
                "num_flows": pa.array(np.ones(n, dtype=np.int64)),
            }
        )
    )


class Rate(NamedTuple):
    """Records per wall-clock second, and per CPU second of this process (all threads): the
    second stays meaningful when other work shares the cores. `read` and `store` split the
    wall time (median seconds) between the importer and the store's append + checkpoint."""

    wall: float
    cpu: float
    read: float = 0.0
    store: float = 0.0

    def __str__(self) -> str:
        split = f"  [read {self.read:.3f} s + store {self.store:.3f} s]" if self.store else ""
        return f"{self.wall:>12,.0f} records/s  ({self.cpu:,.0f} per CPU-second){split}"


def ingest_rate(read: Callable[[], Any], work: Path, n: int, repeats: int) -> Rate:
    """Read + append + CHECKPOINT: the records are in the database file, compressed, when
    the clock stops (an append alone can leave row groups for the checkpoint to rewrite)."""

    def once() -> tuple[float, float, float, float]:
        path = work / f"ingest-{time.monotonic_ns()}.duckdb"
        store = DuckDBFlowStore(str(path))
        began, began_cpu = time.perf_counter(), time.process_time()
        table = read()
        read_done = time.perf_counter()
        stored = store.append(table)
        store.connection.execute("CHECKPOINT")
        ended = time.perf_counter()
        elapsed, cpu = ended - began, time.process_time() - began_cpu
        store.close()
        path.unlink()
        assert stored == n, (stored, n)
        return elapsed, cpu, read_done - began, ended - read_done

    runs = [once() for _ in range(repeats)]
    return Rate(
        n / statistics.median(r[0] for r in runs),
        n / statistics.median(r[1] for r in runs),
        statistics.median(r[2] for r in runs),
        statistics.median(r[3] for r in runs),
    )


def peer_hubble_rate(path: Path, n: int, work: Path) -> Rate:
    """The obvious loop: json.loads per line, a tuple per record, executemany."""
    connection = duckdb.connect(str(work / "peer.duckdb"))
    connection.execute(
        "CREATE TABLE flows (start_time VARCHAR, source_ip VARCHAR, dest_ip VARCHAR,"
        " source_port INTEGER, dest_port INTEGER, source_namespace VARCHAR, source_name VARCHAR,"
        " dest_namespace VARCHAR,"
        " dest_name VARCHAR, verdict VARCHAR, host VARCHAR, dns_qname VARCHAR)"
    )
    began, began_cpu = time.perf_counter(), time.process_time()
    rows = []
    with path.open() as lines:
        for line in lines:
            flow = json.loads(line)["flow"]
            ports = flow["l4"].get("TCP") or flow["l4"]["UDP"]
            rows.append(
                (
                    flow["time"],
                    flow["IP"]["source"],
                    flow["IP"]["destination"],
                    ports["source_port"],
                    ports["destination_port"],
                    flow["source"]["namespace"],
                    flow["source"]["pod_name"],
                    flow["destination"]["namespace"],
                    flow["destination"]["pod_name"],
                    flow["verdict"],
                    flow["node_name"],
                    flow.get("l7", {}).get("dns", {}).get("query"),
                )
            )
    connection.executemany("INSERT INTO flows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    connection.close()
    return Rate(n / elapsed, n / cpu)


def generate_stored(path: Path, n: int) -> None:
    """`n` records written by DuckDB itself, one hour of traffic per 10M, in time order."""
    store = DuckDBFlowStore(str(path))
    store.connection.execute(
        f"""INSERT INTO flows (start_time, end_time, source_ip, dest_ip, source_port, dest_port,
              proto, source_type, source_namespace, source_name, source_name_aggr, source_labels,
              dest_type, dest_namespace, dest_name, dest_name_aggr, dest_labels, action, reporter,
              host, policies_enforced, policies_pending, bytes_in, bytes_out, packets_in,
              packets_out, num_flows, num_flows_started, num_flows_completed)
        SELECT to_timestamp({T0} + i / 2800.0), to_timestamp({T0} + i / 2800.0 + 30),
               '10.244.' || (i % 251) || '.' || (i % 241),
               '10.245.' || (i % 239) || '.' || (i % 233),
               (i % 50000 + 1024)::INTEGER, [443, 80, 5432, 53, 8443][i % 5 + 1]::INTEGER, 'tcp',
               'workload', ['shop', 'pci', 'jobs', 'kube-system'][i % 4 + 1], 'web-' || (i % 97),
               'web-*', ['app=web'], 'workload',
               ['shop', 'pci', 'jobs', 'kube-system', 'mon'][(i // 7) % 5 + 1],
               'db-' || (i % 13), 'db-*', ['app=db'],
               CASE WHEN i % 17 = 0 THEN 'deny' ELSE 'allow' END,
               'src', 'node-' || (i % 40), ['0|default|shop/knp.default.allow-db|allow|0'], [],
               i % 9000, i % 7000, i % 90, i % 70, 1, 1, 1
        FROM range({n}) t(i)"""
    )
    store.close()


def query_times(path: Path, repeats: int) -> dict[str, tuple[float, float]]:
    store = DuckDBFlowStore(str(path))
    flow_filter = FlowFilter.parse(
        'dest_namespace = "pci" AND action = "deny" AND dest_port IN (443, 8443)'
    )
    since = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=10)

    def timed(run: Callable[[], Any]) -> tuple[float, float]:
        runs = []
        for _ in range(repeats):
            began, began_cpu = time.perf_counter(), time.process_time()
            run()
            runs.append((time.perf_counter() - began, time.process_time() - began_cpu))
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    figures = {
        "count(filter)": timed(lambda: store.count(flow_filter)),
        "count(filter, since)": timed(lambda: store.count(flow_filter, since=since)),
        "top 10 pairs (filter)": timed(
            lambda: store.aggregate(
                Aggregate(("source_name", "dest_name", "dest_port"), limit=10), flow_filter
            )
        ),
        "scan(filter, limit 1000)": timed(lambda: store.scan(flow_filter, limit=1000)),
    }
    store.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--stored", type=int, default=None, help="records for the query figures")
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    n_text, n_arrow = (20_000, 50_000) if quick else (1_000_000, 2_000_000)
    n_hubble, n_peer = (10_000, 2_000) if quick else (500_000, 10_000)
    n_stored = args.stored or (200_000 if quick else 100_000_000)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="netwarden-bench-flows-") as tmp:
        work = Path(tmp)
        print(
            f"sizes: vpc text {n_text:,}, arrow {n_arrow:,}, hubble {n_hubble:,} (peer {n_peer:,}),"
            f" stored {n_stored:,}; median of {repeats}"
        )
        vpc_path = work / "vpc.log"
        write_vpc(vpc_path, n_text, rng)
        vpc.read(str(vpc_path))  # warm-up: pyarrow.compute builds its kernels' wrappers lazily
        rate = ingest_rate(lambda: vpc.read(str(vpc_path)).table, work, n_text, repeats)
        print(f"ingest VPC text -> DuckDB:     {rate}  target > 1,000,000/s")
        # What `flows import -f inventory/` does: the same, plus endpoint identity (the
        # records' addresses are looked up in the example shop's inventory).
        shop = [InventorySnapshot(datetime(1970, 1, 1, tzinfo=UTC), load_paths([SHOP]).cluster)]
        rate = ingest_rate(
            lambda: enrich(vpc.read(str(vpc_path)).table, shop), work, n_text, repeats
        )
        print(f"  with identity (flows import -f): {rate}")
        table = arrow_batch(n_arrow, rng)
        rate = ingest_rate(lambda: table, work, n_arrow, repeats)
        print(f"ingest Arrow batch -> DuckDB:  {rate}  target > 1,000,000/s")
        hubble_path = work / "hubble.json"
        write_hubble(hubble_path, n_hubble, rng)
        rate = ingest_rate(lambda: hubble.read(str(hubble_path)).table, work, n_hubble, repeats)
        peer_path = work / "hubble-peer.json"
        write_hubble(peer_path, n_peer, rng)
        peer = peer_hubble_rate(peer_path, n_peer, work)
        print(f"ingest Hubble JSON -> DuckDB:  {rate}  target > 200,000/s")
        print(f"  peer json.loads+executemany: {peer}")
        print(
            f"  ratio to peer: {rate.wall / peer.wall:,.1f}x wall, {rate.cpu / peer.cpu:,.1f}x CPU"
        )
        stored_path = work / "stored.duckdb"
        began = time.perf_counter()
        generate_stored(stored_path, n_stored)
        print(
            f"generated {n_stored:,} stored records in {time.perf_counter() - began:.1f} s"
            f" ({stored_path.stat().st_size / 1e9:.2f} GB)"
        )
        for name, (seconds, cpu) in query_times(stored_path, repeats).items():
            print(
                f"query {name:<26} {seconds:8.3f} s ({cpu:.3f} CPU-s) over {n_stored:,} records"
                "  target < 5 s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

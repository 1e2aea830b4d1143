"""Policy recommendation, proven by replay: every observed allowed flow is allowed by the
recommended policies (written out and read back through the dialects), and nothing else
is: the reference engine's pod-pair reachability after is exactly the observed traffic."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from netwarden.analysis.recommend import (
    RECOMMEND_COLUMNS,
    Target,
    recommend,
    recommend_store,
    stable_labels,
    workload_groups,
)
from netwarden.cli.compile import dump
from netwarden.cli.main import app
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store
from netwarden.model import ICMP, TCP, UDP, ClusterState, Endpoint, EndpointKind, Flow
from tests.analysis.test_preview import T0, end_record

ENV: dict[str, str | None] = {"COLUMNS": "250", "FORCE_COLOR": None, "NO_COLOR": None}


def _pod(namespace: str, name: str, ip: str, labels: dict[str, str], host: bool = False) -> str:
    spec = "{nodeName: node-a, hostNetwork: true}" if host else "{nodeName: node-a}"
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {labels!r}}}
spec: {spec}
status: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}
"""


#: A small cluster with no policies: a web tier (Deployment pods with their template hash), an
#: API with a canary (the canary's labels include all of the API's), a database, cluster DNS,
#: Prometheus, and a hostNetwork node agent.
INVENTORY = (
    """\
apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
"""
    + "".join(
        f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        for ns in ("shop", "kube-system", "monitoring")
    )
    + _pod("shop", "web-7d4f9-abcde", "10.244.1.10", {"app": "web", "pod-template-hash": "7d4f9"})
    + _pod("shop", "web-7d4f9-fghij", "10.244.1.11", {"app": "web", "pod-template-hash": "7d4f9"})
    + _pod("shop", "api-0", "10.244.1.20", {"app": "api", "tier": "backend"})
    + _pod("shop", "api-1", "10.244.1.21", {"app": "api", "tier": "backend"})
    + _pod(
        "shop", "api-canary-0", "10.244.1.22", {"app": "api", "tier": "backend", "track": "canary"}
    )
    + _pod(
        "shop", "db-0", "10.244.1.30", {"app": "db", "statefulset.kubernetes.io/pod-name": "db-0"}
    )
    + _pod("kube-system", "coredns-0", "10.244.0.5", {"k8s-app": "kube-dns"})
    + _pod("kube-system", "node-agent-a", "172.18.0.2", {"app": "node-agent"}, host=True)
    + _pod("monitoring", "prometheus-0", "10.244.2.5", {"app": "prometheus"})
)

PAYMENT = ("198.51.100.10", "198.51.100.11")  # two halves of a /31: merged exactly
CUSTOMER = "203.0.113.7"
STRANGER = "192.0.2.99"  # never seen: must stay shut out


@pytest.fixture(scope="module")
def cluster() -> ClusterState:
    return load_text(INVENTORY, "inventory.yaml").cluster


def observed_flows(cluster: ClusterState) -> list[Flow]:
    """The traffic a week of flow logs showed as allowed."""

    def e(name: str) -> Endpoint:
        found = cluster.endpoint(name)
        assert found is not None, name
        return found

    webs = ["shop/web-7d4f9-abcde", "shop/web-7d4f9-fghij"]
    apis = ["shop/api-0", "shop/api-1"]
    flows = [Flow(e(w), e(a), 8080, TCP) for w in webs for a in apis]
    flows += [Flow(e("shop/web-7d4f9-abcde"), e("shop/api-canary-0"), 8080, TCP)]
    flows += [Flow(e(a), e("shop/db-0"), 5432, TCP) for a in apis]
    flows += [Flow(e(w), e("kube-system/coredns-0"), 53, UDP) for w in webs]  # UDP only
    flows += [Flow(e("shop/api-0"), e(ip), 443, TCP) for ip in PAYMENT]
    flows += [Flow(e(CUSTOMER), e(w), 443, TCP) for w in webs]
    flows += [Flow(e("monitoring/prometheus-0"), e(a), 9090, TCP) for a in apis]
    flows += [Flow(e("kube-system/node-agent-a"), e("shop/db-0"), 9187, TCP)]
    flows += [Flow(e("shop/api-1"), e("shop/db-0"), 0, ICMP)]
    return flows


def records(cluster: ClusterState) -> list[dict[str, Any]]:
    made = []
    for k, flow in enumerate(observed_flows(cluster)):
        for reporter in ("src", "dst"):
            made.append(_record(flow, reporter, "allow", k))
    # Seen, but denied: a recommendation must not open it.
    web, db = cluster.endpoint("shop/web-7d4f9-abcde"), cluster.endpoint("shop/db-0")
    assert web is not None and db is not None
    made.append(_record(Flow(web, db, 5432, TCP), "src", "deny", 0))
    return made


def _record(flow: Flow, reporter: str, action: str, k: int) -> dict[str, Any]:
    start = T0 + timedelta(seconds=k)
    return {
        "start_time": start,
        "end_time": start + timedelta(seconds=30),
        **end_record(flow.src, "source"),
        **end_record(flow.dst, "dest"),
        "dest_port": flow.port or None,
        "proto": {TCP: "tcp", UDP: "udp", ICMP: "icmp"}[flow.protocol],
        "action": action,
        "reporter": reporter,
        "num_flows": 1,
    }


def group_key(cluster: ClusterState, endpoint: Endpoint) -> Any:
    """Pods of one workload group are one peer; everything else is its address."""
    if endpoint.kind is EndpointKind.POD:
        return (endpoint.namespace, frozenset(stable_labels(endpoint).items()))
    return str(endpoint.ips[0])


def reload(cluster: ClusterState, manifests: list[dict[str, Any]]) -> ClusterState:
    """The inventory plus the written manifests, read back through the dialects."""
    return load_text(INVENTORY + "---\n" + dump(manifests), "recommended.yaml").cluster


def check_exact(
    cluster: ClusterState, after: ClusterState, staged: bool, icmp_allowed: bool
) -> None:
    """Every observed flow allowed; every other flow touching the shop namespace denied,
    except DNS over TCP next to observed DNS over UDP (allowed on purpose)."""
    engine = PolicyEngine(after)

    def allowed(flow: Flow) -> bool:
        verdict = engine.decide(flow)
        if staged:
            assert verdict.staged is not None
            verdict = verdict.staged
        return verdict.allowed

    seen = set()
    for flow in observed_flows(cluster):
        key = (group_key(cluster, flow.src), group_key(cluster, flow.dst), flow.protocol, flow.port)
        seen.add(key)
        if flow.port == 53:
            seen.add((key[0], key[1], TCP, 53))
        if flow.protocol == ICMP and not icmp_allowed:
            assert not allowed(flow), flow
            continue
        assert allowed(flow), flow
    ends = [e for e in cluster.endpoints]
    ends += [cluster.endpoint(ip) for ip in (*PAYMENT, CUSTOMER, STRANGER)]  # type: ignore[misc]
    ports = [(TCP, p) for p in (22, 53, 443, 5432, 8080, 9090, 9187)] + [
        (UDP, 53),
        (UDP, 5432),
        (ICMP, 0),
    ]
    opened = 0
    for src, dst in itertools.permutations(ends, 2):
        if "shop" not in (src.namespace, dst.namespace):
            continue  # the recommendation is for the shop namespace only
        for protocol, port in ports:
            flow = Flow(src, dst, port, protocol)
            key = (group_key(cluster, src), group_key(cluster, dst), protocol, port)
            if protocol == ICMP and not icmp_allowed:
                assert not allowed(flow) or key not in seen
            if allowed(flow):
                opened += 1
                assert key in seen, f"opened beyond what was observed: {flow}"
    assert opened >= len(observed_flows(cluster)) - 1


def test_groups_use_stable_labels_and_exact_selectors(cluster: ClusterState) -> None:
    groups = {g.name: g for g in workload_groups(cluster, "shop")}
    assert set(groups) == {"api", "db", "web", "api-2"}
    web = groups["web"]
    assert len(web.members) == 2 and "pod-template-hash" not in web.labels
    assert "statefulset.kubernetes.io/pod-name" not in groups["db"].labels
    # Each selector picks exactly its group's pods among the namespace's.
    for group in groups.values():
        picked = {
            e.key
            for e in cluster.endpoints
            if e.namespace == "shop" and group.selector.matches(e.labels)
        }
        assert picked == {m.key for m in group.members}, group.name


@pytest.mark.parametrize("target", [Target.K8S, Target.CALICO])
def test_recommended_policies_allow_exactly_the_observed_traffic(
    cluster: ClusterState, target: Target
) -> None:
    recommendation = recommend(cluster, from_records(records(cluster)), "shop", target)
    manifests = recommendation.manifests()
    kinds = {m["kind"] for m in manifests}
    assert kinds == ({"NetworkPolicy"} if target is Target.K8S else {"StagedNetworkPolicy"})
    assert recommendation.allowed_records == 2 * len(observed_flows(cluster))
    assert recommendation.denied_records == 1
    after = reload(cluster, manifests)
    check_exact(
        cluster, after, staged=target is Target.CALICO, icmp_allowed=target is Target.CALICO
    )
    if target is Target.K8S:
        assert any("ICMP" in note for note in recommendation.notes)
    text = yaml.safe_dump_all(manifests)
    assert "198.51.100.10/31" in text and f"{CUSTOMER}/32" in text and "172.18.0.2/32" in text
    assert "pod-template-hash" not in text


def test_a_namespace_not_in_the_inventory_is_an_error(cluster: ClusterState) -> None:
    with pytest.raises(Exception, match="not in the inventory"):
        recommend(cluster, from_records(records(cluster)), "nope")


def test_cli_recommend_from_a_duckdb_store(tmp_path: Path, cluster: ClusterState) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    store_path = tmp_path / "flows.duckdb"
    store = open_store(str(store_path))
    store.append(from_records(records(cluster)))
    store.close()
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "recommend",
            "-f",
            str(inventory),
            "--flows",
            str(store_path),
            "-n",
            "shop",
            "--target",
            "calico",
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    manifests = list(yaml.safe_load_all(result.stdout))
    assert {m["kind"] for m in manifests} == {"StagedNetworkPolicy"}
    check_exact(cluster, reload(cluster, manifests), staged=True, icmp_allowed=True)
    assert "1 denied left denied" in result.stderr

    # --where and --since/--until pick the records the store folds.
    options = ["--where", 'source_namespace = "monitoring"', "--since", T0.isoformat()]
    until = (T0 + timedelta(days=1)).isoformat()
    picked = runner.invoke(
        app,
        ["recommend", "-f", str(inventory), "--flows", str(store_path), *options, "--until", until],
        env=ENV,
    )
    assert picked.exit_code == 0, picked.stderr
    assert "4 records read: 4 allowed used, 0 denied left denied" in picked.stderr
    written = [
        (m["metadata"]["namespace"], m["metadata"]["name"])
        for m in yaml.safe_load_all(picked.stdout)
    ]
    assert written == [
        ("monitoring", "recommended-default-deny"),
        ("monitoring", "recommended-prometheus"),
        ("shop", "recommended-default-deny"),
        ("shop", "recommended-api"),
    ]
    bad = runner.invoke(
        app, ["recommend", "-f", str(inventory), "--flows", str(store_path), "-n", "nope"], env=ENV
    )
    assert bad.exit_code == 2
    assert bad.stderr.startswith("netwarden: error: ") and "Traceback" not in bad.stderr


def repeated_records(cluster: ClusterState, repeat: int) -> list[dict[str, Any]]:
    """`records` `repeat` times over, plus records a recommendation must count but not use
    (a pod the inventory lacks, an unknown protocol, no action, a port out of range) and the
    action spelled another way; each with a start of its own, stored in shuffled order."""
    made = [dict(record) for _ in range(repeat) for record in records(cluster)]
    template = next(r for r in made if r["source_name"] == "api-0" and r["dest_port"] == 443)
    odd = [
        {**template, "source_name": "ghost-0", "source_ip": "10.244.9.9"},
        {**template, "proto": "carrier-pigeon"},
        {**template, "action": None},
        {**template, "dest_port": 70000},
        {**template, "action": "Allow"},  # the same conversation as the template's
        {**template, "proto": "icmp", "dest_port": None},  # a second note for a NetworkPolicy
    ]
    made += odd * 3
    random.Random(7).shuffle(made)
    for i, record in enumerate(made):  # distinct starts: the time order is one row order
        record["start_time"] = T0 + timedelta(seconds=i)
    random.Random(8).shuffle(made)
    return made


def test_recommendation_from_a_store_fold_is_the_one_from_its_scan(
    flow_store: FlowStore, cluster: ClusterState
) -> None:
    """Many records of few conversations: the store folds them itself, and the recommendation
    (policies, groups, counts, notes, the rows of the first skipped records) is the one the
    records scanned in time order give; it is still exact (replayed with the reference
    engine)."""
    made = repeated_records(cluster, repeat=100)
    flow_store.append(from_records(made))
    scanned = flow_store.scan(columns=RECOMMEND_COLUMNS)
    for target in Target:
        for namespace in ("shop", None):
            folded = recommend_store(cluster, flow_store, namespace, target)
            assert folded == recommend(cluster, scanned, namespace, target)
    found = recommend_store(cluster, flow_store, "shop", Target.K8S)
    assert found.records == len(made)
    assert found.allowed_records == 100 * 2 * len(observed_flows(cluster)) + 3 + 3
    assert found.denied_records == 100
    assert {s.reason: s.count for s in found.skipped} == {
        "source endpoint not in the inventory": 3,
        "unknown protocol": 3,
        "port out of range": 3,
    }
    assert [note.split(" ICMP")[0] for note in found.notes] == [
        "shop/api-0 -> 198.51.100.10",
        "shop/api-1 -> shop/db-0",
    ]
    check_exact(cluster, reload(cluster, found.manifests()), staged=False, icmp_allowed=False)
    # Calico can allow ICMP: without the extra conversation, exactly the observed traffic.
    extra = FlowFilter.parse(f'NOT (proto = "icmp" AND dest_ip = "{PAYMENT[0]}")')
    staged = recommend_store(cluster, flow_store, "shop", Target.CALICO, extra)
    check_exact(cluster, reload(cluster, staged.manifests()), staged=True, icmp_allowed=True)
    # A window and a filter read the records a filtered scan reads.
    condition = FlowFilter.parse('source_namespace = "shop"')
    since, until = T0 + timedelta(seconds=500), T0 + timedelta(seconds=len(made) - 500)
    windowed = recommend_store(cluster, flow_store, "shop", Target.K8S, condition, since, until)
    scanned = flow_store.scan(condition, since, until, RECOMMEND_COLUMNS)
    assert windowed == recommend(cluster, scanned, "shop", Target.K8S)
    assert 0 < windowed.records < found.records


def test_recommendation_from_an_empty_store_denies_by_default(
    flow_store: FlowStore, cluster: ClusterState
) -> None:
    found = recommend_store(cluster, flow_store, "shop")
    assert (found.records, found.allowed_records, found.denied_records) == (0, 0, 0)
    assert [p.name for p in found.policies] == ["recommended-default-deny"]
    assert found == recommend(cluster, flow_store.scan(columns=RECOMMEND_COLUMNS), "shop")
    assert recommend_store(cluster, flow_store).policies == ()

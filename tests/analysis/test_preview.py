"""Impact preview: stored flows replayed against a proposed (staged) policy, checked record by
record against the reference engine, through the API and the CLI on a real DuckDB file."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from netwarden.analysis.preview import (
    PREVIEW_COLUMNS,
    Baseline,
    _decide,
    preview,
    preview_store,
    workload_name,
)
from netwarden.cli.main import app
from netwarden.dialects import load_paths
from netwarden.dialects.probes import read_probes
from netwarden.engine import PolicyEngine, VectorEngine
from netwarden.engine.flow_batch import group_flows
from netwarden.engine.verdict import Verdict
from netwarden.flows.filter import FlowFilter
from netwarden.flows.schema import from_records
from netwarden.flows.store import FlowStore, open_store
from netwarden.model import ClusterState, Endpoint, EndpointKind, Flow, protocol_name

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
ENV: dict[str, str | None] = {"COLUMNS": "250", "FORCE_COLOR": None, "NO_COLOR": None}

#: The backend team proposes: also accept the ingress controller, stop calling the payment
#: provider. Staged, so it changes nothing until enforced.
STAGED_BACKEND = """\
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: backend, namespace: shop}
spec:
  stagedAction: Set
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector: {matchLabels: {app: frontend}}
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
      ports: [{protocol: TCP, port: http-api}]
  egress:
    - to: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{protocol: TCP, port: 5432}]
"""

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def end_record(endpoint: Endpoint, side: str) -> dict[str, Any]:
    """One end of a flow record, as Calico writes it."""
    ip = str(endpoint.ips[0]) if endpoint.ips else None
    if endpoint.kind is EndpointKind.POD:
        return {
            f"{side}_type": "workload",
            f"{side}_namespace": endpoint.namespace,
            f"{side}_name": endpoint.name,
            f"{side}_name_aggr": endpoint.name.rsplit("-", 1)[0] + "-*",
            f"{side}_labels": sorted(f"{k}={v}" for k, v in endpoint.labels.items()),
            f"{side}_ip": ip,
        }
    return {
        f"{side}_type": "external",
        f"{side}_namespace": "-",
        f"{side}_name": "-",
        f"{side}_name_aggr": "pub",
        f"{side}_ip": ip,
    }


def flow_records(
    cluster: ClusterState, flows: list[Flow], seed: int = 1, repeat: int = 3
) -> list[dict[str, Any]]:
    """What a Calico cluster enforcing `cluster`'s policies logs for `flows`: a `src` record
    where the source is a pod, a `dst` record where the destination is a pod and egress let
    the flow out, each with the action of its direction; each conversation `repeat` times."""
    engine = PolicyEngine(cluster)
    rng = random.Random(seed)
    made = []
    for k in range(repeat):
        for flow in flows:
            verdict = engine.decide(flow)
            reporters = []
            if flow.src.kind is EndpointKind.POD:
                reporters.append(("src", verdict.egress.allowed))
            if flow.dst.kind is EndpointKind.POD and verdict.egress.allowed:
                reporters.append(("dst", verdict.ingress.allowed))
            for reporter, allowed in reporters:
                start = T0 + timedelta(minutes=5 * k)
                made.append(
                    {
                        "start_time": start,
                        "end_time": start + timedelta(minutes=5),
                        **end_record(flow.src, "source"),
                        **end_record(flow.dst, "dest"),
                        "source_port": rng.randint(32768, 60999),
                        "dest_port": flow.port or None,
                        "proto": protocol_name(flow.protocol).lower(),
                        "action": "allow" if allowed else "deny",
                        "reporter": reporter,
                        "host": "node-a",
                        "bytes_in": rng.randint(0, 5000),
                        "bytes_out": rng.randint(0, 5000),
                        "num_flows": rng.randint(1, 4),
                    }
                )
    return made


def shop_flows(cluster: ClusterState) -> list[Flow]:
    """The example's probes as flows (every path the shop has, allowed and denied)."""
    flows = []
    for probe in read_probes(SHOP / "probes.csv"):
        src, dst = cluster.endpoint(probe.src), cluster.endpoint(probe.dst)
        assert src is not None and dst is not None
        flows.append(Flow(src, dst, probe.port, probe.protocol))
    return flows


def expected_changes(
    proposed: ClusterState, records: list[dict[str, Any]], staged: bool
) -> Counter[tuple[str, str, int, str, str, str]]:
    """The reference engine, record by record: (source, dest, port, before, after, decided
    by) -> records whose verdict changes."""
    engine = PolicyEngine(proposed)
    found: Counter[tuple[str, str, int, str, str, str]] = Counter()
    for record in records:
        src = _end(proposed, record, "source")
        dst = _end(proposed, record, "dest")
        protocol = {"tcp": 6, "udp": 17, "icmp": 1}[record["proto"]]
        verdict: Verdict = engine.decide(Flow(src, dst, record["dest_port"] or 0, protocol))
        if staged:
            assert verdict.staged is not None
            verdict = verdict.staged
        decision = verdict.egress if record["reporter"] == "src" else verdict.ingress
        after = "allow" if decision.allowed else "deny"
        if after != record["action"]:
            key = (
                workload_name(src),
                workload_name(dst),
                record["dest_port"] or 0,
                record["action"],
                after,
                decision.deciding,
            )
            found[key] += 1
    return found


def _end(cluster: ClusterState, record: dict[str, Any], side: str) -> Endpoint:
    name = f"{record[f'{side}_namespace']}/{record[f'{side}_name']}"
    endpoint = cluster.endpoint(name) or cluster.endpoint(record[f"{side}_ip"])
    assert endpoint is not None
    return endpoint


@pytest.fixture(scope="module")
def shop() -> ClusterState:
    return load_paths([SHOP]).cluster


@pytest.fixture(scope="module")
def proposed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ClusterState]:
    staged = tmp_path_factory.mktemp("proposed") / "staged-backend.yaml"
    staged.write_text(STAGED_BACKEND)
    return staged, load_paths([SHOP, staged]).cluster


def test_preview_finds_exactly_the_changes_the_reference_engine_finds(
    shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    records = flow_records(shop, shop_flows(shop))
    report = preview(proposed[1], from_records(records))
    expected = expected_changes(proposed[1], records, staged=True)
    found = Counter(
        {(c.source, c.dest, c.port, c.before, c.after, c.policy): c.records for c in report.changes}
    )
    assert found == expected
    assert report.staged
    assert report.records == report.replayed == len(records)
    assert report.changed_records == sum(expected.values())
    # The proposal's two effects, both seen: the payment provider is cut off, the ingress
    # controller gets in (its src record was allowed before: only the dst record changes).
    assert found[
        ("shop/backend-0", "198.51.100.10", 443, "allow", "deny", "default (default deny)")
    ]
    assert found[
        (
            "ingress-nginx/controller-0",
            "shop/backend-0",
            8080,
            "deny",
            "allow",
            "default/shop/backend[ingress[0]]",
        )
    ]
    assert len(found) == 2


def test_change_rows_sum_the_counters_of_their_records(
    shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    records = flow_records(shop, shop_flows(shop), seed=5)
    report = preview(proposed[1], from_records(records))
    for change in report.changes:
        mine = [
            r
            for r in records
            if r["dest_port"] == change.port
            and r["action"] == change.before
            and _names(proposed[1], r) == (change.source, change.dest)
        ]
        # Every record of the pair/port/verdict changed the same way here.
        assert change.records == len(mine)
        assert change.flows == sum(r["num_flows"] for r in mine)
        assert change.bytes == sum(r["bytes_in"] + r["bytes_out"] for r in mine)


def _names(cluster: ClusterState, record: dict[str, Any]) -> tuple[str, str]:
    return workload_name(_end(cluster, record, "source")), workload_name(
        _end(cluster, record, "dest")
    )


def test_without_staged_policies_the_input_itself_is_the_proposal(shop: ClusterState) -> None:
    records = flow_records(shop, shop_flows(shop))
    # Replayed against the policies that produced them: nothing changes.
    unchanged = preview(shop, from_records(records))
    assert unchanged.changed_records == 0 and not unchanged.changes
    assert unchanged.replayed == len(records)
    # Without the shop's own policies, everything the default tier denied opens up.
    platform_only = load_paths(
        [
            SHOP / "namespaces.yaml",
            SHOP / "pods.yaml",
            SHOP / "policies" / "admin.yaml",
            SHOP / "policies" / "baseline.yaml",
        ]
    ).cluster
    opened = preview(platform_only, from_records(records))
    assert opened.changes and opened.newly_allowed > 0
    assert opened.changes == tuple(
        sorted(opened.changes, key=lambda c: (-c.flows, -c.records, c.source, c.dest, c.port))
    )
    assert expected_changes(platform_only, records, staged=False) == Counter(
        {(c.source, c.dest, c.port, c.before, c.after, c.policy): c.records for c in opened.changes}
    )


def test_records_that_cannot_be_replayed_are_counted_with_their_row(
    shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    records = flow_records(shop, shop_flows(shop), repeat=1)
    frontend_to_backend = next(
        r for r in records if r["source_name"] == "frontend-0" and r["dest_port"] == 8080
    )
    aggregated = {
        **frontend_to_backend,
        "source_name": "-",
        "source_ip": None,
        "source_name_aggr": "frontend-*",
    }
    ghost = {**frontend_to_backend, "source_name": "ghost-0", "source_ip": "10.244.9.9"}
    odd_protocol = {**frontend_to_backend, "proto": "carrier-pigeon"}
    no_action = {**frontend_to_backend, "action": None}
    table = from_records([*records, aggregated, ghost, odd_protocol, no_action])
    report = preview(proposed[1], table)
    n = len(records)
    skipped = {s.reason: (s.count, s.first_row) for s in report.skipped}
    assert skipped == {
        "source endpoint not in the inventory": (1, n + 1),
        "unknown protocol": (1, n + 2),
        "no recorded action": (1, n + 3),
    }
    # Counts in = replayed + not replayed; the aggregated record is replayed as a frontend pod.
    assert report.records == n + 4 == report.replayed + sum(c for c, _ in skipped.values())
    assert report.replayed == n + 1


def test_enforced_baseline_compares_the_staged_set_with_the_enforced_one(
    shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    records = flow_records(shop, shop_flows(shop))
    # Flip every recorded action: the recorded baseline now sees changes everywhere, the
    # enforced one (which ignores the record's action) exactly the staged policy's.
    flipped = [{**r, "action": "deny" if r["action"] == "allow" else "allow"} for r in records]
    by_engine = preview(proposed[1], from_records(flipped), Baseline.ENFORCED)
    by_record = preview(proposed[1], from_records(records))
    assert by_engine.changes == by_record.changes
    with pytest.raises(Exception, match="staged"):
        preview(shop, from_records(records), Baseline.ENFORCED)


def invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def test_cli_preview_from_a_duckdb_store(
    tmp_path: Path, shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    records = flow_records(shop, shop_flows(shop))
    store_path = tmp_path / "flows.duckdb"
    store = open_store(str(store_path))
    assert store.append(from_records(records)) == len(records)
    store.close()
    staged_file = proposed[0]

    result = invoke("preview", "-f", SHOP, "-f", staged_file, "--flows", store_path, "-o", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    expected = expected_changes(proposed[1], records, staged=True)
    assert body["records"] == body["replayed"] == len(records)
    assert body["changed_records"] == sum(expected.values())
    assert {
        (c["source"], c["dest"], c["port"], c["before"], c["after"], c["policy"]): c["records"]
        for c in body["changes"]
    } == dict(expected)

    # The first interval only, and only the shop's egress: a third of the records.
    first = invoke(
        "preview",
        "-f",
        SHOP,
        "-f",
        staged_file,
        "--flows",
        f"duckdb:{store_path}",
        "--until",
        "2026-11-27T08:05:00Z",
        "--where",
        'source_namespace = "shop"',
        "-o",
        "json",
    )
    assert first.exit_code == 0, first.stderr
    shop_first = [
        r
        for r in records
        if r["start_time"] < T0 + timedelta(minutes=5) and r["source_namespace"] == "shop"
    ]
    assert json.loads(first.stdout)["records"] == len(shop_first)

    table = invoke("preview", "-f", SHOP, "-f", staged_file, "--flows", store_path)
    assert table.exit_code == 0
    assert "allow -> deny" in table.stdout and "198.51.100.10" in table.stdout
    assert (
        f"{len(records)} records: {len(records)} replayed against the staged policy set"
        in table.stdout
    )

    markdown = invoke("preview", "-f", SHOP, "-f", staged_file, "--flows", store_path, "-o", "md")
    assert markdown.exit_code == 0
    assert "| shop/backend-0 | 198.51.100.10 | 443/TCP | allow | **deny** |" in markdown.stdout

    gate = invoke(
        "preview", "-f", SHOP, "-f", staged_file, "--flows", store_path, "--fail-on-change"
    )
    assert gate.exit_code == 1
    calm = invoke("preview", "-f", SHOP, "--flows", store_path, "--fail-on-change")
    assert calm.exit_code == 0, calm.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--flows", "missing.duckdb"), "does not exist"),
        (("--since", "yesterday"), "--since 'yesterday'"),
        (("--where", "dest_port = = 5"), "filter"),
        (("--baseline", "enforced"), "staged"),
    ],
)
def test_cli_preview_bad_input_exits_2(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    store_path = tmp_path / "flows.duckdb"
    open_store(str(store_path)).close()
    full = ["preview", "-f", SHOP, "--flows", store_path, *args]
    if args[0] == "--flows":
        full = ["preview", "-f", SHOP, "--flows", tmp_path / args[1]]
    result = invoke(*full)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("netwarden: error: ")
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_aggregated_records_of_two_workloads_are_told_apart(shop: ClusterState) -> None:
    """Same namespace, no name, no address: only `name_aggr` tells them apart."""
    records = flow_records(shop, shop_flows(shop), repeat=1)
    template = next(r for r in records if r["source_name"] == "frontend-0")
    aggregated = [
        {**template, "source_name": "-", "source_ip": None, "source_name_aggr": prefix}
        for prefix in ("frontend-*", "backend-*", "frontend-*")
    ]
    groups = group_flows(shop, from_records(aggregated))
    sources = sorted(
        (groups.batch.endpoints[int(i)].name, int(n))
        for i, n in zip(groups.batch.src, groups.records, strict=True)
    )
    assert sources == [("backend-0", 1), ("frontend-0", 2)]


def test_each_conversation_is_decided_once_with_the_verdicts_of_a_full_evaluation(
    proposed: tuple[Path, ClusterState],
) -> None:
    _, cluster = proposed
    records = flow_records(cluster, shop_flows(cluster))
    groups = group_flows(cluster, from_records(records), ("action", "reporter"))
    engine = VectorEngine(cluster)
    conversations = {
        (int(s), int(d), int(p), int(q))
        for s, d, p, q in zip(
            groups.batch.src,
            groups.batch.dst,
            groups.batch.port,
            groups.batch.protocol,
            strict=True,
        )
    }
    assert len(conversations) < len(groups.batch)  # src and dst records share conversations
    full, shared = engine.evaluate(groups.batch), _decide(engine, groups.batch)
    assert full.staged is not None and shared.staged is not None
    for whole, spread in ((full, shared), (full.staged, shared.staged)):
        for direction in ("egress", "ingress"):
            for field in ("allowed", "reason", "policy", "rule"):
                expected = getattr(getattr(whole, direction), field)
                assert np.array_equal(getattr(getattr(spread, direction), field), expected)
        labels = [
            spread.deciding(g, egress=e) for g in range(len(groups.batch)) for e in (True, False)
        ]
        assert labels == [
            whole.deciding(g, egress=e) for g in range(len(groups.batch)) for e in (True, False)
        ]


def odd_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record of each kind a replay skips or resolves another way."""
    template = next(r for r in records if r["source_name"] == "frontend-0")
    return [
        {**template, "source_name": "-", "source_ip": None, "source_name_aggr": "frontend-*"},
        {**template, "source_name": "ghost-0", "source_ip": "10.244.9.9"},
        {**template, "proto": "carrier-pigeon"},
        {**template, "action": None},
        {**template, "dest_port": 70000},
        {**template, "reporter": None},
    ]


def test_preview_of_a_store_is_the_preview_of_its_time_ordered_scan(
    flow_store: FlowStore, shop: ClusterState, proposed: tuple[Path, ClusterState]
) -> None:
    """The store folds the records itself; the report (changes, counts, and the rows of the
    first skipped records) is the one the records scanned in time order give."""
    records = flow_records(shop, shop_flows(shop), seed=3, repeat=2)
    records += odd_records(records) * 2
    random.Random(4).shuffle(records)
    for i, record in enumerate(records):  # one start each: the time order is one row order
        record["start_time"] = T0 + timedelta(seconds=i)
    random.Random(5).shuffle(records)
    flow_store.append(from_records(records))
    cluster = proposed[1]
    scanned = flow_store.scan(columns=PREVIEW_COLUMNS)
    for baseline in Baseline:
        from_store = preview_store(cluster, flow_store, baseline=baseline)
        assert from_store == preview(cluster, scanned, baseline)
    report = preview_store(cluster, flow_store)
    assert report.records == len(records) and report.changes
    assert {s.reason for s in report.skipped} == {
        "source endpoint not in the inventory",
        "unknown protocol",
        "port out of range",
        "no recorded action",
    }
    # A window and a filter: the same records a filtered scan reads.
    condition = FlowFilter.parse('source_namespace = "shop"')
    since, until = T0 + timedelta(seconds=10), T0 + timedelta(seconds=len(records) - 10)
    windowed = preview_store(cluster, flow_store, condition, since, until)
    scanned = flow_store.scan(condition, since, until, PREVIEW_COLUMNS)
    assert windowed == preview(cluster, scanned)
    assert 0 < windowed.records < report.records


def test_preview_of_an_empty_store_reports_nothing(
    flow_store: FlowStore, proposed: tuple[Path, ClusterState]
) -> None:
    report = preview_store(proposed[1], flow_store)
    assert (report.records, report.replayed, report.changed_records) == (0, 0, 0)
    assert report.changes == () and report.skipped == ()
    assert preview(proposed[1], flow_store.scan(columns=PREVIEW_COLUMNS)) == report

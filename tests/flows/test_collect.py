"""The collector on real packets (root; CI runs it): a lab enforcing policies, traffic with
known byte counts, allowed and denied, collected with ulogd2 and conntrack, stored in DuckDB.
Every connection is there once per reporter, with its endpoints, action, the deciding policy
the engine names and what the staged policies would decide, and bytes within 5% of what was
sent. Collection is recorded in the lab state and sees `lab pod` changes."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.apply import list_table
from netwarden.dataplane.lab_churn import add_pod
from netwarden.dataplane.lab_state import LabState, load_state
from netwarden.engine import PolicyEngine
from netwarden.engine.verdict import Decision, Reason
from netwarden.flows.collect import CollectResult
from netwarden.flows.collect_lab import lab_cluster, lab_flow_logs
from netwarden.flows.store import open_store
from netwarden.model import TCP, UDP, ClusterState, Flow
from tests.flows.lab_inputs import allow_ingress_yaml, lab_up, namespace_yaml, node_yaml, pod_yaml
from tests.flows.lab_traffic import Conversation, addresses, run

pytestmark = pytest.mark.root

PREFIX = "nwcol"
LAB = "flows"

INPUTS = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + node_yaml("n2")
    + pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + pod_yaml("web-1", "app: web", "n2", "10.7.2.12")
    + pod_yaml("api-0", "app: api", "n2", "10.7.2.10")
    + pod_yaml("db-0", "app: db", "n2", "10.7.2.11")
    + allow_ingress_yaml("api", "web", "8080/TCP", "5353/UDP")
    + allow_ingress_yaml("db", "api", 5432)
    + """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: api}}}]
    - to: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432}]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  stagedAction: Set
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]
"""
)


CONVERSATIONS = [
    Conversation("shop/web-0", "shop/api-0", 8080, TCP, 400_000, 100_000, True),  # across nodes
    Conversation("shop/web-1", "shop/api-0", 8080, TCP, 300_000, 60_000, True),  # same node
    Conversation("shop/api-0", "shop/db-0", 5432, TCP, 200_000, 40_000, True),  # no egress policy
    Conversation("shop/api-0", "shop/web-0", 9000, TCP, 150_000, 150_000, True),  # profile both
    Conversation("shop/web-0", "shop/api-0", 5353, UDP, 20 * 1000, 1000, True),
    Conversation("shop/web-0", "shop/db-0", 5432, TCP, 1000, 0, False),  # db's ingress denies
    Conversation("shop/db-0", "shop/api-0", 8080, TCP, 1000, 0, False),  # api's ingress denies
    Conversation("shop/web-1", "shop/db-0", 6000, TCP, 1000, 0, False),  # web's egress denies
]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with lab_up(LAB, INPUTS, PREFIX, tmp_path, monkeypatch) as state:
        yield state


def deciding_hit(decision: Decision, engine: PolicyEngine) -> str:
    """The final hit as Calico writes it, from the engine's decision (what `explain` shows)."""
    action = "allow" if decision.allowed else "deny"
    if decision.reason is Reason.NO_TIER_DECIDED:
        return f"__PROFILE__|__PROFILE__.kns.{decision.endpoint.namespace}|allow|0"
    policy, rule = decision.policy, decision.rule_index
    if decision.reason is Reason.TIER_DEFAULT:
        policy, rule = decision.steps[-1].policies[0], -1
    assert policy is not None and decision.reason in (Reason.RULE, Reason.TIER_DEFAULT)
    name = f"{policy.namespace}/{policy.calico_name}" if policy.namespace else policy.calico_name
    return f"{decision.tier}|{name}|{action}|{rule}"


def test_collected_records_match_the_traffic_and_the_engine(lab: Path, tmp_path: Path) -> None:
    state = load_state(LAB, lab)
    plan = state.plan
    netns, ips = addresses(plan)
    cluster: ClusterState = lab_cluster(state)
    engine = PolicyEngine(cluster)
    staged = PolicyEngine(cluster, staged=True)
    with lab_flow_logs(LAB, lab) as collector:
        logged = [list_table(node.netns) for node in plan.nodes]
        assert all("log prefix" in table for table in logged)
        allowed = [c for c in CONVERSATIONS if c.allowed]
        denied = [c for c in CONVERSATIONS if not c.allowed]
        clients = {c: run(c, netns, ips) for c in allowed}
        with ThreadPoolExecutor(len(denied)) as pool:  # each waits for its timeout
            clients.update(zip(denied, pool.map(lambda c: run(c, netns, ips), denied), strict=True))
        result: CollectResult = collector.stop()
    # Flow logs are off again once collection ends.
    assert all("log prefix" not in list_table(node.netns) for node in plan.nodes)

    store = open_store(str(tmp_path / "flows.duckdb"))
    assert store.append(result.table) == result.table.num_rows
    records = store.scan().to_pylist()
    store.close()
    assert not result.unreadable

    ours = {(ip, port) for ip, port in clients.values()}
    mine = [r for r in records if (r["source_ip"], r["source_port"]) in ours]
    counted = Counter((r["source_ip"], r["source_port"], r["reporter"]) for r in mine)
    assert all(n == 1 for n in counted.values()), counted  # every connection once per reporter
    expected_records = 0
    for conversation, (client_ip, client_port) in clients.items():
        src, dst = cluster.endpoint(conversation.src), cluster.endpoint(conversation.dst)
        assert src is not None and dst is not None
        verdict = engine.decide(Flow(src, dst, conversation.port, conversation.protocol))
        assert verdict.allowed == conversation.allowed
        pending = staged.decide(Flow(src, dst, conversation.port, conversation.protocol))
        reporters = [("src", verdict.egress, pending.egress)]
        if verdict.egress.allowed:  # a flow denied at egress never reaches the destination
            reporters.append(("dst", verdict.ingress, pending.ingress))
        for reporter, decision, staged_decision in reporters:
            expected_records += 1
            (record,) = [
                r
                for r in mine
                if (r["source_ip"], r["source_port"], r["reporter"])
                == (client_ip, client_port, reporter)
            ]
            what = f"{conversation} as {reporter}"
            assert record["dest_ip"] == ips[conversation.dst], what
            assert record["dest_port"] == conversation.port, what
            assert record["proto"] == ("tcp" if conversation.protocol == TCP else "udp"), what
            assert (record["source_namespace"], record["source_name"]) == tuple(
                conversation.src.split("/")
            )
            assert (record["dest_namespace"], record["dest_name"]) == tuple(
                conversation.dst.split("/")
            )
            assert record["source_type"] == record["dest_type"] == "workload"
            assert f"app={src.labels['app']}" in record["source_labels"]
            assert record["action"] == ("allow" if decision.allowed else "deny"), what
            assert record["policies_enforced"][-1].split("|", 1)[1] == deciding_hit(
                decision, engine
            ), what
            assert record["host"] == (src.node if reporter == "src" else dst.node)
            assert record["policies_pending"] == [f"0|{deciding_hit(staged_decision, staged)}"]
            if not decision.allowed or not verdict.allowed:
                continue
            sent, answered = conversation.sent, conversation.answer
            out, back = (
                (record["bytes_out"], record["bytes_in"])
                if reporter == "src"
                else (record["bytes_in"], record["bytes_out"])
            )
            assert sent <= out <= sent * 1.05, (what, out)
            assert answered <= back <= max(answered * 1.05, answered + 400), (what, back)
            assert record["packets_out"] > 0 and record["num_flows"] == 1
    assert len(mine) == expected_records
    # Enforced allows web -> api on 5353/udp; the staged replacement of `api` would not.
    (udp,) = [r for r in mine if r["dest_port"] == 5353 and r["reporter"] == "dst"]
    assert udp["action"] == "allow"
    assert udp["policies_pending"] == ["0|default|shop/staged:knp.default.api|deny|-1"]


def _generations(state: LabState) -> dict[str, tuple[str, str]]:
    """Per node: (the generation the lab state records, the one the node's table holds)."""
    found = {}
    for applied in state.rulesets:
        assert applied.loaded is not None
        held = re.search(
            r"set generation \{[^}]*elements = \{ 0x([0-9a-f]+)", list_table(applied.netns)
        )
        found[applied.node] = (applied.loaded.generation, held.group(1) if held else "")
    return found


def test_collection_is_recorded_in_the_lab_state_and_sees_pod_changes(
    lab: Path, tmp_path: Path
) -> None:
    """(b) a pod added with `lab pod add` before collecting is collected with its identity;
    (a) the flow-log rulesets are recorded in the lab state, so a `lab pod add` while
    collecting is computed against what the tables hold (no rejected transaction), and the
    rulesets loaded when collection ends keep that pod."""
    state, _ = add_pod(load_state(LAB, lab), "shop/web-2", (("app", "web"),), "n1", None, (), lab)
    before = _generations(state)
    assert all(recorded == held for recorded, held in before.values()), before
    netns, ips = addresses(state.plan)
    new_pod = Conversation("shop/web-2", "shop/api-0", 8080, TCP, 5000, 500, True)
    with lab_flow_logs(LAB, lab) as collector:
        during = load_state(LAB, lab)
        generations = _generations(during)
        assert all(recorded == held for recorded, held in generations.values()), generations
        assert all(generations[node] != before[node] for node in generations)  # flow logs on
        client = run(new_pod, netns, ips)
        result = collector.stop()
        # A pod change while collecting: computed against the recorded flow-log rulesets.
        _, updates = add_pod(during, "shop/web-3", (("app", "web"),), "n2", None, (), lab)
        assert updates and all(not u.applied.fallback for u in updates), updates
    after = load_state(LAB, lab)
    generations = _generations(after)
    assert all(recorded == held for recorded, held in generations.values()), generations
    assert all("log prefix" not in list_table(node.netns) for node in after.plan.nodes)
    assert [c.key for c in after.changes] == ["shop/web-2", "shop/web-3"]

    records = [r for r in result.table.to_pylist() if (r["source_ip"], r["source_port"]) == client]
    assert {r["reporter"] for r in records} == {"src", "dst"}, result
    for record in records:
        assert (record["source_namespace"], record["source_name"]) == ("shop", "web-2")
        assert record["source_labels"] == ["app=web"] and record["action"] == "allow"
    # web-3, added while collecting, keeps its policy after: web -> api is allowed.
    web3 = load_state(LAB, lab).plan.endpoint("shop/web-3")
    assert web3 is not None
    netns["shop/web-3"], ips["shop/web-3"] = web3.netns, str(web3.ips[0])
    run(Conversation("shop/web-3", "shop/api-0", 8080, TCP, 1000, 100, True), netns, ips)


def test_collect_cli_stores_lab_flows(lab: Path, tmp_path: Path) -> None:
    """`netwarden collect --lab` for a fixed time: the records land in the store, counted."""
    state = load_state(LAB, lab)
    netns, ips = addresses(state.plan)
    store_path = tmp_path / "cli.duckdb"
    outcome: dict[str, Any] = {}

    def collect() -> None:
        outcome["result"] = CliRunner().invoke(
            app, ["collect", "--lab", LAB, "--flows", str(store_path), "--duration", "4s"]
        )

    thread = threading.Thread(target=collect)
    thread.start()
    started = time.time()
    deadline = time.monotonic() + 20
    while len(_ready_readers(started)) < len(state.plan.nodes):  # ulogd bound on every node
        assert time.monotonic() < deadline and thread.is_alive(), "the collector never started"
        time.sleep(0.1)
    assert all("log prefix" in list_table(n.netns) for n in state.plan.nodes)
    run(CONVERSATIONS[0], netns, ips)
    thread.join(30)
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    store = open_store(str(store_path))
    records = store.scan().to_pylist()
    store.close()
    assert {(r["reporter"], r["action"], r["dest_port"]) for r in records} >= {
        ("src", "allow", 8080),
        ("dst", "allow", 8080),
    }
    assert f"{len(records)} records stored" in result.output


def _ready_readers(since: float) -> list[Path]:
    """The ulogd logs of collectors started since `since` that say ulogd is reading."""
    ready = []
    for log in Path(tempfile.gettempdir()).glob("netwarden-collect-*/ulogd.log"):
        try:  # another collector may be removing its folder right now
            if log.stat().st_mtime >= since - 1 and "entering main loop" in log.read_text():
                ready.append(log)
        except OSError:
            continue
    return ready

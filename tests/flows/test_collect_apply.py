"""`lab apply` while a collection runs: every record is named, and its `policies_pending`
decided, with the lab's inputs valid when its connection started.

- Without root: `lab_timeline` merges `lab pod` changes and applied inputs in time order; the
  inventory after an apply is the new inputs (with the addresses the lab gave) with every pod
  change made since the collection started replayed on them; old state files still load.
- Root (CI runs it): a real lab enforcing a policy and staging one; a connection, `lab pod
  label`, `lab apply` (the CLI) changing the staged policy, the enforced policies and a pod's
  labels, a second connection: the first record lists the old staged verdict, the second the
  new one, and `policies_enforced` is what the kernel logged for each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.apply import list_table
from netwarden.dataplane.lab_plan import LabPlan, plan_lab
from netwarden.dataplane.lab_state import (
    AppliedSources,
    LabState,
    PodChange,
    SourceText,
    load_state,
    save_state,
    state_path,
)
from netwarden.dialects import load_text
from netwarden.flows.collect import flow_records
from netwarden.flows.collect_lab import (
    inputs_inventory,
    lab_events,
    lab_flow_logs,
    lab_timeline,
)
from netwarden.flows.collect_sources import PacketLog, SourceOutput
from netwarden.model import TCP, ClusterState, Direction
from tests.flows.lab_inputs import (
    allow_ingress_yaml,
    lab_up,
    namespace_yaml,
    node_yaml,
    pod_yaml,
    staged_egress_deny_yaml,
)
from tests.flows.lab_traffic import Conversation, addresses, run

T0 = 1_795_000_000.0
PROFILE = ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]
STAGED_DENY = ["0|default|shop/staged:api-in|deny|0"]
STAGED_ALLOW = ["0|default|shop/staged:api-in|allow|0"]
CANARY_DENY = ["0|default|shop/staged:canary-out|deny|0"]

#: Pods without addresses: the lab gives them theirs (`lab_view`), before and after an apply.
UNIT_HEADER = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + pod_yaml("web-0", "app: web", "n1")
    + pod_yaml("api-0", "app: api", "n1")
)


def staged_api(action: str) -> str:
    """A staged policy on api-0's ingress: web's TCP 8080 gets `action`, before any enforced
    policy decides (order 50)."""
    return f"""---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {{name: api-in, namespace: shop}}
spec:
  order: 50
  selector: app == 'api'
  types: [Ingress]
  ingress:
    - action: {action}
      protocol: TCP
      source: {{selector: app == 'web'}}
      destination: {{ports: [8080]}}
"""


CANARY_OUT = staged_egress_deny_yaml("canary-out", "release == 'canary'")
BEFORE = (SourceText("cluster.yaml", UNIT_HEADER + staged_api("Deny")),)
AFTER = (SourceText("cluster.yaml", UNIT_HEADER + staged_api("Allow") + CANARY_OUT),)


def unit_plan() -> LabPlan:
    return plan_lab(load_text(BEFORE[0].text, "cluster.yaml").cluster, "unit")


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def staged_actions(cluster: ClusterState) -> dict[str, str]:
    """Each staged policy's name -> the action of its first rule."""
    found = {}
    for policy in cluster.policies:
        rules = policy.ingress or policy.egress
        if policy.staged is not None and rules:
            found[policy.name] = rules[0].action.name
    return found


def test_pod_changes_and_applied_inputs_make_one_timeline() -> None:
    """web-9 is added (T0+10), the inputs applied (T0+20: the staged api-in turns from deny
    to allow, canary-out is new), web-0 relabelled a canary (T0+30)."""
    plan = unit_plan()
    ips = {e.key: str(e.ips[0]) for e in plan.endpoints}
    inventory_of = inputs_inventory(plan, ())
    start = inventory_of(BEFORE)
    changes = [
        PodChange(
            "add",
            "shop/web-9",
            (("app", "web"),),
            node="n1",
            ip=IPv4Address("10.7.9.9"),
            at=T0 + 10,
        ),
        PodChange("label", "shop/web-0", (("release", "canary"),), at=T0 + 30),
    ]
    applied = [AppliedSources(T0 + 20, AFTER)]
    snapshots = lab_timeline(start, T0, changes, applied, inventory_of)

    assert [s.taken_at.timestamp() for s in snapshots] == [T0, T0 + 10, T0 + 20, T0 + 30]
    assert snapshots[0].cluster is start
    assert [staged_actions(s.cluster) for s in snapshots] == [
        {"api-in": "DENY"},
        {"api-in": "DENY"},
        {"api-in": "ALLOW", "canary-out": "DENY"},
        {"api-in": "ALLOW", "canary-out": "DENY"},
    ]
    # The pod added before the apply is still there after it; the lab's addresses too.
    web9 = [s.cluster.endpoints_by_key.get("shop/web-9") for s in snapshots]
    assert [w.labels if w else None for w in web9] == [None, {"app": "web"}] + [{"app": "web"}] * 2
    web0 = [s.cluster.endpoints_by_key["shop/web-0"] for s in snapshots]
    assert [w.labels for w in web0] == [{"app": "web"}] * 3 + [{"app": "web", "release": "canary"}]
    assert {str(w.ips[0]) for w in web0} == {ips["shop/web-0"]}

    def syn(src: str, sport: int, at: float, direction: Direction) -> PacketLog:
        hit = "__PROFILE__|__PROFILE__|allow|0"
        return PacketLog(direction, at, hit, TCP, src, ips["shop/api-0"], sport, 8080, 60)

    web0_ip = ips["shop/web-0"]
    packets = [
        syn(web0_ip, 40000, T0 + 5, Direction.INGRESS),
        syn("10.7.9.9", 40001, T0 + 15, Direction.INGRESS),
        syn(web0_ip, 40002, T0 + 20, Direction.INGRESS),  # at the apply: the new inputs
        syn("10.7.9.9", 40003, T0 + 25, Direction.INGRESS),
        syn(web0_ip, 40004, T0 + 25, Direction.EGRESS),
        syn(web0_ip, 40005, T0 + 35, Direction.EGRESS),
    ]
    result = flow_records(snapshots, {"n1": SourceOutput(packets=packets)})
    records = {r["source_port"]: r for r in result.table.to_pylist()}
    assert {port: r["policies_pending"] for port, r in records.items()} == {
        40000: STAGED_DENY,
        40001: STAGED_DENY,
        40002: STAGED_ALLOW,
        40003: STAGED_ALLOW,
        40004: PROFILE,  # not a canary yet
        40005: CANARY_DENY,  # the new staged policy, on the relabelled pod
    }
    assert records[40001]["source_name"] == records[40003]["source_name"] == "web-9"
    assert records[40005]["source_labels"] == ["app=web", "release=canary"]
    assert result.inventories == 4


def test_a_second_apply_replaces_the_first_and_keeps_every_pod_change() -> None:
    plan = unit_plan()
    inventory_of = inputs_inventory(plan, ())
    changes = [
        PodChange("label", "shop/web-0", (("release", "canary"),), at=T0 + 10),
        PodChange("delete", "shop/api-0", at=T0 + 30),
    ]
    applied = [AppliedSources(T0 + 20, AFTER), AppliedSources(T0 + 40, BEFORE)]
    snapshots = lab_timeline(inventory_of(BEFORE), T0, changes, applied, inventory_of)
    assert [staged_actions(s.cluster) for s in snapshots] == [
        {"api-in": "DENY"},
        {"api-in": "DENY"},
        {"api-in": "ALLOW", "canary-out": "DENY"},
        {"api-in": "ALLOW", "canary-out": "DENY"},
        {"api-in": "DENY"},  # back to the first inputs
    ]
    last = snapshots[-1].cluster.endpoints_by_key
    assert "shop/api-0" not in last  # the deletion, replayed on the inputs applied after it
    assert last["shop/web-0"].labels == {"app": "web", "release": "canary"}


def test_events_keep_time_order_and_never_go_back() -> None:
    """A pod change without a time counts from the one before; a time before the one before
    it (the clock was set back) counts as that one; on a tie the pod change comes first."""
    changes = [
        PodChange("label", "shop/web-0", (("a", "1"),), at=T0 + 10),
        PodChange("label", "shop/web-0", (("a", "2"),), at=None),  # an older state's
        PodChange("label", "shop/web-0", (("a", "3"),), at=T0 + 30),
    ]
    applied = [
        AppliedSources(T0 + 20, AFTER),
        AppliedSources(T0 + 15, BEFORE),  # the clock went back
        AppliedSources(T0 + 30, AFTER),  # a tie with the last pod change
    ]
    events = lab_events(T0, changes, applied)
    assert [(e.at, e.made) for e in events] == [
        (T0 + 10, changes[0]),
        (T0 + 10, changes[1]),
        (T0 + 20, applied[0]),
        (T0 + 20, applied[1]),
        (T0 + 30, changes[2]),
        (T0 + 30, applied[2]),
    ]
    start = load_text(BEFORE[0].text, "cluster.yaml").cluster
    with pytest.raises(ValueError, match="inventory_of"):
        lab_timeline(start, T0, changes, applied)
    assert len(lab_timeline(start, T0, changes)) == 4  # nothing applied: not needed


def test_applied_inputs_are_kept_in_the_state_file_and_old_files_load(tmp_path: Path) -> None:
    state = LabState(unit_plan(), "up", (), T0, 1.0, BEFORE, applied=(AppliedSources(T0, AFTER),))
    save_state(state, tmp_path)
    assert load_state("unit", tmp_path) == state
    path = state_path("unit", tmp_path)
    old = path.read_text().replace('"applied"', '"ignored-by-older-netwarden"')
    path.write_text(old)
    assert load_state("unit", tmp_path) == replace(state, applied=())


# --- a real lab -------------------------------------------------------------------------------

PREFIX = "nwhap"  # this module's labs: nwhap-apply-*
LAB = "apply"

LAB_HEADER = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + node_yaml("n2")
    + pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + allow_ingress_yaml("api", "web", 8080)
)


def api_pod(labels: str) -> str:
    return pod_yaml("api-0", labels, "n2", "10.7.2.10")


#: After the apply: an enforced Calico policy decides web -> api before the Kubernetes one
#: (order 100 < 1000), api-0 has one more label, and the staged api-in allows.
ENFORCED_FIRST = """---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: api-web, namespace: shop}
spec:
  order: 100
  selector: app == 'api'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}}]
"""
LAB_BEFORE = LAB_HEADER + api_pod("app: api") + staged_api("Deny")
LAB_AFTER = LAB_HEADER + api_pod("app: api, version: v2") + staged_api("Allow") + ENFORCED_FIRST
TO_API = Conversation("shop/web-0", "shop/api-0", 8080, TCP, 1500, 150, True)


@pytest.fixture
def apply_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with lab_up(LAB, LAB_BEFORE, PREFIX, tmp_path, monkeypatch) as directory:
        yield directory


def _lab(*arguments: str) -> str:
    result = CliRunner().invoke(app, ["lab", *arguments, "--name", LAB])
    assert result.exit_code == 0, result.output
    assert "a collection is running" in result.output
    return result.output


@pytest.mark.root
def test_records_follow_a_lab_apply_made_while_collecting(apply_lab: Path, tmp_path: Path) -> None:
    plan = load_state(LAB, apply_lab).plan
    netns, ips = addresses(plan)
    after = tmp_path / "after.yaml"
    after.write_text(LAB_AFTER)
    with lab_flow_logs(LAB, apply_lab) as collector:
        first = run(TO_API, netns, ips)
        _lab("pod", "label", "shop/web-0", "release=canary")
        _lab("apply", "-f", str(after))
        state = load_state(LAB, apply_lab)
        assert state.flow_logs and all("log prefix" in list_table(n.netns) for n in plan.nodes)
        assert [a.sources for a in state.applied] == [(SourceText(str(after), LAB_AFTER),)]
        second = run(TO_API, netns, ips)
        result = collector.stop()
    state = load_state(LAB, apply_lab)
    assert not state.flow_logs and state.applied == ()  # cleared with the collection
    assert state.sources == (SourceText(str(after), LAB_AFTER),)  # the apply is kept
    assert not result.unreadable and result.inventories >= 2, result

    found: dict[tuple[tuple[str, int], str], dict[str, Any]] = {}
    for record in result.table.to_pylist():
        client = (record["source_ip"], record["source_port"])
        if client in (first, second):
            assert (client, record["reporter"]) not in found, record  # once per reporter
            found[(client, record["reporter"])] = record
    assert len(found) == 4, found
    expected = {
        # (client, reporter): (enforced, pending, web-0's labels, api-0's labels)
        (first, "src"): (PROFILE, PROFILE, ["app=web"], ["app=api"]),
        (first, "dst"): (
            ["0|default|shop/knp.default.api|allow|0"],
            STAGED_DENY,
            ["app=web"],
            ["app=api"],
        ),
        (second, "src"): (
            PROFILE,
            PROFILE,
            ["app=web", "release=canary"],
            ["app=api", "version=v2"],
        ),
        (second, "dst"): (
            ["0|default|shop/api-web|allow|0"],
            STAGED_ALLOW,
            ["app=web", "release=canary"],
            ["app=api", "version=v2"],
        ),
    }
    for key, (enforced, pending, source_labels, dest_labels) in expected.items():
        record = found[key]
        assert record["action"] == "allow", record
        assert record["policies_enforced"] == enforced, record
        assert record["policies_pending"] == pending, record
        assert (record["source_name"], record["source_labels"]) == ("web-0", source_labels)
        assert (record["dest_name"], record["dest_labels"]) == ("api-0", dest_labels)

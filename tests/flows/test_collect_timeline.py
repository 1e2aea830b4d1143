"""Without root: collected records are named from the inventory valid when their connection
started (timed snapshots, as `enrich` picks them), `policies_pending` is decided on that same
inventory, and a lab's `lab pod` changes become such snapshots (`lab_timeline`)."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from netwarden.dataplane.lab_state import PodChange
from netwarden.dialects import load_text
from netwarden.flows.collect import flow_records
from netwarden.flows.collect_lab import lab_timeline
from netwarden.flows.collect_sources import PacketLog, SourceOutput
from netwarden.flows.enrich import InventorySnapshot
from netwarden.model import TCP, ClusterState, Direction
from tests.flows.lab_inputs import namespace_yaml, node_yaml, pod_yaml, staged_egress_deny_yaml

T0 = 1_795_000_000.0
ALLOW = "__PROFILE__|__PROFILE__|allow|0"

BASE = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + pod_yaml("api-0", "app: api", "n1", "10.7.2.10")
    + staged_egress_deny_yaml("no-canary-out", "release == 'canary'")
)


def pod(name: str, ip: str, labels: str) -> str:
    """A pod of shop on n1, the only node."""
    return pod_yaml(name, labels, "n1", ip)


def inventory(*pods: str) -> ClusterState:
    return load_text(BASE + "".join(pods), "inventory.yaml").cluster


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def syn(src: str, sport: int, at: float, dst: str = "10.7.2.10") -> PacketLog:
    return PacketLog(Direction.EGRESS, at, ALLOW, TCP, src, dst, sport, 8080, 60)


def by_port(snapshots: list[InventorySnapshot], *packets: PacketLog) -> dict[int, Any]:
    result = flow_records(snapshots, {"n1": SourceOutput(packets=list(packets))})
    return {r["source_port"]: r for r in result.table.to_pylist()} | {0: result}


def test_records_are_named_from_the_inventory_of_their_start() -> None:
    """web-0 is relabelled at T0+10, deleted at T0+20 and its address given to other-0;
    new-0 appears at T0+10. Each connection names what held its address when it started."""
    snapshots = [  # given out of order: the collector sorts them by time
        InventorySnapshot(
            moment(T0 + 20),
            inventory(pod("new-0", "10.7.1.20", "app: web"), pod("other-0", "10.7.1.10", "app: x")),
        ),
        InventorySnapshot(moment(T0), inventory(pod("web-0", "10.7.1.10", "app: web"))),
        InventorySnapshot(
            moment(T0 + 10),
            inventory(
                pod("web-0", "10.7.1.10", "app: web, release: canary"),
                pod("new-0", "10.7.1.20", "app: web"),
            ),
        ),
    ]
    records = by_port(
        snapshots,
        syn("10.7.1.10", 40000, T0 - 5),  # before the first snapshot: the first one
        syn("10.7.1.10", 40001, T0 + 5),
        syn("10.7.1.10", 40002, T0 + 10),  # at a snapshot's time: that snapshot
        syn("10.7.1.10", 40003, T0 + 25),
        syn("10.7.1.20", 40004, T0 + 5),  # before new-0 existed: an address nobody had
        syn("10.7.1.20", 40005, T0 + 15),
    )
    named = {
        port: (r["source_type"], r["source_name"], r["source_labels"])
        for port, r in records.items()
        if port
    }
    assert named == {
        40000: ("workload", "web-0", ["app=web"]),
        40001: ("workload", "web-0", ["app=web"]),
        40002: ("workload", "web-0", ["app=web", "release=canary"]),
        40003: ("workload", "other-0", ["app=x"]),
        40004: ("external", "-", []),
        40005: ("workload", "new-0", ["app=web"]),
    }
    assert all(records[port]["dest_name"] == "api-0" for port in named)
    # The staged policy denies a canary's egress: only while web-0 was one.
    canary = ["0|default|shop/staged:no-canary-out|deny|0"]
    profile = ["0|__PROFILE__|__PROFILE__.kns.shop|allow|0"]
    pending = {port: records[port]["policies_pending"] for port in named}
    assert pending == {
        40000: profile,
        40001: profile,
        40002: canary,
        40003: profile,
        40004: [],  # not a workload then: no policy could decide it
        40005: profile,
    }
    assert records[0].inventories == 3


def test_one_cluster_names_every_record() -> None:
    cluster = inventory(pod("web-0", "10.7.1.10", "app: web"))
    result = flow_records(cluster, {"n1": SourceOutput(packets=[syn("10.7.1.10", 40000, T0)])})
    (record,) = result.table.to_pylist()
    assert (record["source_name"], result.inventories) == ("web-0", 1)


def test_lab_pod_changes_become_snapshots_from_when_they_were_made() -> None:
    start = inventory(pod("web-0", "10.7.1.10", "app: web"))
    changes = [
        PodChange("label", "shop/web-0", (("release", "canary"),), at=T0 + 10),
        PodChange(
            "add",
            "shop/new-0",
            (("app", "web"),),
            node="n1",
            ip=IPv4Address("10.7.1.20"),
            at=T0 + 12,
        ),
        PodChange("delete", "shop/web-0", at=T0 + 20),
        PodChange("label", "shop/new-0", (("tier", "x"),), at=None),  # an older state's
    ]
    snapshots = lab_timeline(start, T0, changes)
    times = [s.taken_at.timestamp() for s in snapshots]
    assert times == [T0, T0 + 10, T0 + 12, T0 + 20, T0 + 20]
    assert snapshots[0].cluster is start
    web = [s.cluster.endpoints_by_key.get("shop/web-0") for s in snapshots]
    assert [w.labels if w else None for w in web] == [
        {"app": "web"},
        {"app": "web", "release": "canary"},
        {"app": "web", "release": "canary"},
        None,
        None,
    ]
    new = [s.cluster.endpoints_by_key.get("shop/new-0") for s in snapshots]
    assert [n.labels if n else None for n in new] == [
        None,
        None,
        {"app": "web"},
        {"app": "web"},
        {"app": "web", "tier": "x"},
    ]
    records = by_port(
        snapshots,
        syn("10.7.1.10", 40000, T0 + 1),
        syn("10.7.1.10", 40001, T0 + 11),
        syn("10.7.1.20", 40002, T0 + 13),
        syn("10.7.1.10", 40003, T0 + 21),
        syn("10.7.1.20", 40004, T0 + 21),  # the last of two snapshots of one time
    )
    named = [(records[p]["source_name"], records[p]["source_labels"]) for p in range(40000, 40005)]
    assert named == [
        ("web-0", ["app=web"]),
        ("web-0", ["app=web", "release=canary"]),
        ("new-0", ["app=web"]),
        ("-", []),
        ("new-0", ["app=web", "tier=x"]),
    ]

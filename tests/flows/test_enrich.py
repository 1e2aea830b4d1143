"""Endpoint identity from the inventory valid at each record's time."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from netwarden.dialects import load_text
from netwarden.flows.enrich import InventorySnapshot, _keys, enrich
from netwarden.flows.schema import from_records

_BEFORE = """
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {zone: a}}
status: {addresses: [{type: InternalIP, address: 192.168.0.10}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d4f, uid: u1, controller: true}]
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}]}
"""
_SETS = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: threat-feed, labels: {feed: blocklist}}
spec: {nets: [198.51.100.0/24, "2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partner, labels: {zone: partner}}
spec: {nets: [198.51.0.0/16]}
"""
# Later the address 10.244.1.10 belongs to another pod in another namespace.
_AFTER = """
apiVersion: v1
kind: Pod
metadata: {name: batch-7, namespace: jobs, labels: {app: batch}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.10, podIPs: [{ip: 10.244.1.10}]}
"""
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _record(when: datetime, source: str, dest: str | None, **extra: object) -> dict[str, object]:
    return {"start_time": when, "end_time": when, "source_ip": source, "dest_ip": dest, **extra}


def test_identity_comes_from_the_snapshot_valid_at_the_record_time() -> None:
    snapshots = [
        InventorySnapshot(T0, load_text(_BEFORE + "---" + _SETS).cluster),
        InventorySnapshot(T0 + timedelta(hours=1), load_text(_AFTER + "---" + _SETS).cluster),
    ]
    table = from_records(
        [
            _record(T0 + timedelta(minutes=5), "10.244.1.10", "198.51.100.7"),
            _record(T0 + timedelta(hours=2), "10.244.1.10", "198.51.3.3"),
            _record(
                T0 - timedelta(hours=1), "192.168.0.10", "2001:db8::1"
            ),  # before every snapshot
            _record(T0, "not-an-ip", None),
            _record(T0, "10.244.1.10", "8.8.8.8", source_type="workload", source_namespace="kept"),
        ]
    )
    rows = enrich(table, snapshots).to_pylist()
    early, late, host, junk, typed = rows
    assert (early["source_type"], early["source_namespace"], early["source_name"]) == (
        "workload",
        "shop",
        "web-1",
    )
    assert early["source_name_aggr"] == "web-5d4f" and early["source_labels"] == ["app=web"]
    assert (early["dest_type"], early["dest_name"], early["dest_labels"]) == (
        "networkset",
        "threat-feed",
        ["feed=blocklist"],
    )
    assert (late["source_namespace"], late["source_name"]) == (
        "jobs",
        "batch-7",
    )  # the IP was reused
    assert late["dest_name"] == "partner"  # /16 only: longest prefix that matches
    assert (host["source_type"], host["source_name"]) == ("host", "node-a")  # earliest snapshot
    assert host["dest_name"] == "threat-feed"  # IPv6 network set
    assert junk["source_type"] == "external" and junk["dest_type"] == "external"
    assert typed["source_namespace"] == "kept"  # records that know their endpoint keep it
    assert typed["dest_type"] == "external"


def test_without_inventory_untyped_sides_are_external() -> None:
    rows = enrich(from_records([_record(T0, "10.0.0.1", "10.0.0.2")]), []).to_pylist()
    assert rows[0]["source_type"] == rows[0]["dest_type"] == "external"
    assert rows[0]["source_labels"] == [] and rows[0]["source_namespace"] is None


def test_no_address_known_leaves_typed_sides_and_makes_the_others_external() -> None:
    snapshot = InventorySnapshot(T0, load_text(_AFTER, "after.yaml").cluster)
    records = [
        _record(T0, "192.0.2.1", "192.0.2.2"),
        _record(T0, "192.0.2.3", "192.0.2.4", source_type="workload", source_name="kept"),
    ]
    plain, typed = enrich(from_records(records), [snapshot]).to_pylist()
    assert (plain["source_type"], plain["source_name"], plain["dest_labels"]) == (
        "external",
        None,
        [],
    )
    assert (typed["source_type"], typed["source_name"], typed["dest_type"]) == (
        "workload",
        "kept",
        "external",
    )


def test_address_keys_on_columns_agree_with_the_ipaddress_module() -> None:
    texts = [
        "10.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.300", "01.2.3.4", "1.2.3", "",
        None, "2001:db8::1", "::ffff:10.0.0.1", "fe80::1:2", "not an address", "10.0.0.1 ",
    ]  # fmt: skip

    def reference(text: str | None) -> bytes:
        try:
            address = ipaddress.ip_address(text)  # type: ignore[arg-type]
        except ValueError:
            return b"\xff" * 16
        mapped = b"\x00" * 10 + b"\xff\xff" + address.packed
        return mapped if address.version == 4 else address.packed

    keys = _keys(pa.array(texts, pa.string()))
    assert [bytes(k).ljust(16, b"\x00") for k in keys] == [reference(t) for t in texts]

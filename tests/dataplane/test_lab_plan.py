"""The lab plan, without root: names, addresses, placement, served ports, rendering, state."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
import yaml

from netwarden.dataplane.lab import ip_batches
from netwarden.dataplane.lab_manifests import served_ports
from netwarden.dataplane.lab_plan import (
    ExternalSpec,
    LabEndpoint,
    LabPlan,
    Role,
    ServedPort,
    lab_prefix,
    parse_external,
    parse_ports,
    plan_lab,
)
from netwarden.dataplane.lab_probe import matrix_probes, resolve, run_probes
from netwarden.dataplane.lab_state import LabState, ServerProcess, load_state, save_state
from netwarden.dialects import load_documents, load_text
from netwarden.dialects.source import read_paths, read_text
from netwarden.engine.batch import Probe
from netwarden.errors import InputError, LabError
from netwarden.model import TCP, UDP, ClusterState, EndpointKind

FIXTURES = Path(__file__).parent / "fixtures" / "lab"
SMALL = FIXTURES / "small.yaml"
GOLDEN = FIXTURES / "small.commands"


def small_plan(name: str = "demo", **options: object) -> LabPlan:
    documents = read_paths([SMALL])
    cluster = load_documents(documents).cluster
    served = served_ports(documents, cluster)
    externals = [parse_external("203.0.113.7=443/TCP,53/UDP")]
    return plan_lab(cluster, name, served=served, externals=externals, **options)  # type: ignore[arg-type]


def cluster_of(text: str) -> ClusterState:
    return load_text(text).cluster


def pod(name: str, namespace: str = "x", ip: str | None = None, node: str | None = None) -> str:
    spec = {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]}
    if node:
        spec["nodeName"] = node
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"podIP": ip} if ip else {},
    }
    return yaml.safe_dump(doc) + "---\n"


def node(name: str, ip: str | None = None) -> str:
    status = {"addresses": [{"type": "InternalIP", "address": ip}]} if ip else {}
    return (
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}
        )
        + "---\n"
    )


def by_key(plan: LabPlan, key: str) -> LabEndpoint:
    endpoint = plan.endpoint(key)
    assert endpoint is not None, key
    return endpoint


# --- names ----------------------------------------------------------------------------------


def test_every_namespace_carries_the_lab_prefix_and_interface_names_fit() -> None:
    plan = small_plan()
    assert plan.prefix == "nw-demo-"
    assert all(ns.name.startswith("nw-demo-") for ns in plan.namespaces)
    assert len({ns.name for ns in plan.namespaces}) == len(plan.namespaces)
    names = [link.router_ifname for link in plan.links]
    assert all(len(name) <= 15 and name.startswith("nw") for name in names)
    assert len(set(names)) == len(names)
    assert all(link.leaf_ifname == "eth0" for link in plan.links)


def test_namespace_roles_one_per_pod_node_and_external() -> None:
    plan = small_plan()
    roles = sorted((ns.role.value, ns.name) for ns in plan.namespaces)
    assert roles == [
        ("external", "nw-demo-ext-203.0.113.7"),
        ("fabric", "nw-demo-fabric"),
        ("node", "nw-demo-node-node-a"),
        ("node", "nw-demo-node-node-b"),
        ("pod", "nw-demo-pod-shop.api-0"),
        ("pod", "nw-demo-pod-shop.db-0"),
        ("pod", "nw-demo-pod-shop.web-0"),
    ]
    assert {ns.name for ns in plan.namespaces if ns.forwarding} == {
        "nw-demo-fabric",
        "nw-demo-node-node-a",
        "nw-demo-node-node-b",
    }


def test_test_prefix_and_lab_name_rules() -> None:
    assert small_plan("t1", prefix="nwt").prefix == "nwt-t1-"
    for bad in ("", "a-b", "UPPER", "a" * 13, "a/b"):
        with pytest.raises(LabError, match="invalid lab name"):
            lab_prefix(bad)
    with pytest.raises(LabError, match="invalid lab prefix"):
        lab_prefix("demo", "nw-x")


def test_long_names_are_shortened_with_a_digest() -> None:
    long_pod = "p" + "-a" * 120
    plan = plan_lab(cluster_of(pod(long_pod, ip="10.0.0.5")), "demo")
    netns = by_key(plan, f"x/{long_pod}").netns
    assert netns.startswith("nw-demo-pod-x.p-a") and len(netns) <= 200


# --- addresses and placement ----------------------------------------------------------------


def test_inventory_addresses_are_kept_and_missing_ones_come_from_a_free_node_cidr() -> None:
    plan = small_plan()
    assert by_key(plan, "shop/web-0").ips == (IPv4Address("10.244.1.10"),)
    assert by_key(plan, "shop/db-0").ips == (IPv4Address("10.244.2.20"),)
    api = by_key(plan, "shop/api-0")
    node_b = next(n for n in plan.nodes if n.name == "node-b")
    assert api.node == "node-b" and api.ips[0] in node_b.pod_cidr
    given = [IPv4Address("10.244.1.10"), IPv4Address("10.244.2.20")]
    assert not any(ip in n.pod_cidr for n in plan.nodes for ip in given)


def test_host_network_pod_lives_in_its_node_namespace_at_the_node_ip() -> None:
    plan = small_plan()
    agent = by_key(plan, "monitoring/agent-0")
    assert agent.kind is EndpointKind.HOST
    assert agent.netns == "nw-demo-node-node-a"
    assert agent.ips == (IPv4Address("172.20.0.2"),)
    assert plan.endpoint("172.20.0.2") == agent


def test_node_address_without_a_host_pod_resolves_to_the_node_namespace() -> None:
    found = by_key(small_plan(), "172.20.0.3")
    assert found.netns == "nw-demo-node-node-b" and found.kind is EndpointKind.HOST


def test_pods_without_a_node_are_spread_over_the_nodes_in_order() -> None:
    text = node("n1", "192.0.2.1") + node("n2") + "".join(pod(f"p{i}") for i in range(4))
    plan = plan_lab(cluster_of(text), "demo")
    assert [e.node for e in plan.endpoints] == ["n1", "n2", "n1", "n2"]
    n2 = next(n for n in plan.nodes if n.name == "n2")
    assert n2.ips and n2.ips[0] in IPv4Network("172.31.0.0/16")


def test_an_inventory_without_nodes_gets_two_so_cross_node_paths_exist() -> None:
    plan = plan_lab(cluster_of(pod("a", ip="10.1.0.1") + pod("b", ip="10.1.0.2")), "demo")
    assert [n.name for n in plan.nodes] == ["node-0", "node-1"]
    assert {e.node for e in plan.endpoints} == {"node-0", "node-1"}


def test_a_pod_node_missing_from_the_inventory_is_made() -> None:
    plan = plan_lab(cluster_of(pod("a", node="worker-9")), "demo")
    assert [n.name for n in plan.nodes] == ["worker-9"]


def test_duplicate_addresses_are_an_error() -> None:
    with pytest.raises(LabError, match=r"10\.1\.0\.1 is used by both"):
        plan_lab(cluster_of(pod("a", ip="10.1.0.1") + pod("b", ip="10.1.0.1")), "demo")
    with pytest.raises(LabError, match="already an address"):
        plan_lab(
            cluster_of(pod("a", ip="10.1.0.1")), "demo", externals=[parse_external("10.1.0.1")]
        )


def test_ipv6_only_is_an_error_and_dual_stack_keeps_ipv4_with_a_warning() -> None:
    with pytest.raises(LabError, match="IPv4 only"):
        plan_lab(cluster_of(pod("a", ip="fd00::1")), "demo")
    doc = pod("a", ip="10.1.0.1").replace(
        "podIP: 10.1.0.1", "podIPs: [{ip: 10.1.0.1}, {ip: 'fd00::1'}]"
    )
    plan = plan_lab(cluster_of(doc), "demo")
    assert by_key(plan, "x/a").ips == (IPv4Address("10.1.0.1"),)
    assert any("fd00::1" in w for w in plan.warnings)


# --- links and routes -----------------------------------------------------------------------


def test_routes_reach_every_address_from_the_fabric_and_each_leaf_routes_via_the_gateway() -> None:
    plan = small_plan()
    fabric_routes = {r.destination for r in plan.routes if r.netns == "nw-demo-fabric"}
    for endpoint in plan.endpoints:
        for ip in endpoint.ips:
            assert IPv4Network(f"{ip}/32") in fabric_routes, endpoint.key
    leaves = [ns.name for ns in plan.namespaces if ns.role in (Role.POD, Role.EXTERNAL, Role.NODE)]
    for leaf in leaves:
        default = [r for r in plan.routes if r.netns == leaf and r.destination is None]
        assert len(default) == 1 and str(default[0].via) == "169.254.1.1"


def test_node_routes_to_its_pods_use_the_node_address_as_source() -> None:
    plan = small_plan()
    web = next(
        r
        for r in plan.routes
        if r.netns == "nw-demo-node-node-a" and str(r.destination) == "10.244.1.10/32"
    )
    assert str(web.src) == "172.20.0.2"


def test_rendered_commands_match_the_golden_file() -> None:
    """`UPDATE_GOLDEN=1 pytest tests/dataplane` rewrites the golden file."""
    text = "".join(
        f"## {netns}\n" + "\n".join(lines) + "\n" for netns, lines in ip_batches(small_plan())
    )
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_batches_run_fabric_then_nodes_then_leaves() -> None:
    order = [netns for netns, _ in ip_batches(small_plan())]
    assert order[0] == "nw-demo-fabric"
    assert set(order[1:3]) == {"nw-demo-node-node-a", "nw-demo-node-node-b"}


# --- served ports ---------------------------------------------------------------------------


def test_served_ports_include_unnamed_container_ports_and_the_lab_annotation() -> None:
    plan = small_plan()
    web = {str(p) for p in by_key(plan, "shop/web-0").served}
    assert web == {"80/TCP", "53/UDP", "8080/TCP", "9090/TCP", "5353/UDP"}
    assert {str(p) for p in by_key(plan, "shop/api-0").served} == {"8080/TCP", "8125/UDP"}
    assert any("SCTP" in w for w in plan.warnings)


def test_without_manifests_pods_serve_their_named_ports() -> None:
    plan = plan_lab(cluster_of(pod("a", ip="10.1.0.1")), "demo")
    assert by_key(plan, "x/a").served == (ServedPort(80, TCP),)


def test_externals_serve_their_ports_or_every_pod_port() -> None:
    plan = small_plan()
    assert {str(p) for p in by_key(plan, "203.0.113.7").served} == {"443/TCP", "53/UDP"}
    cluster = cluster_of(pod("a", ip="10.1.0.1"))
    plan = plan_lab(cluster, "demo", externals=[ExternalSpec(IPv4Address("198.51.100.1"))])
    assert by_key(plan, "198.51.100.1").served == (ServedPort(80, TCP),)


def test_one_server_per_namespace_with_the_union_of_its_endpoints_ports() -> None:
    plan = small_plan()
    assert len({s.netns for s in plan.servers}) == len(plan.servers) == 5
    node_a = next(s for s in plan.servers if s.netns == "nw-demo-node-node-a")
    assert {str(p) for p in node_a.ports} == {"9100/TCP", "9101/UDP"}


def test_a_bad_lab_annotation_is_an_input_error_at_its_line() -> None:
    text = pod("a").replace(
        "name: a\n", "name: a\n  annotations: {lab.netwarden.io/ports: '80/ICMP'}\n"
    )
    documents = read_text(text, "bad.yaml")
    cluster = load_documents(documents).cluster
    with pytest.raises(InputError, match=r"bad\.yaml:\d+: .*80/ICMP"):
        served_ports(documents, cluster)


def test_workload_templates_give_stand_in_pods_their_ports() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {lab.netwarden.io/ports: "7000/UDP"}
    spec:
      containers: [{name: c, ports: [{containerPort: 8080}]}]
"""
    documents = read_text(text, "deploy.yaml")
    cluster = load_documents(documents).cluster
    served = served_ports(documents, cluster)
    assert served == {
        "x/web-0": (ServedPort(7000, UDP), ServedPort(8080, TCP)),
        "x/web-1": (ServedPort(7000, UDP), ServedPort(8080, TCP)),
    }


def test_parse_external_and_ports() -> None:
    assert parse_external("203.0.113.7").ports is None
    assert [str(p) for p in parse_ports("53/udp, 80, 9/SCTP")] == ["9/SCTP", "53/UDP", "80/TCP"]
    for bad in ("nothing", "2001:db8::1", "203.0.113.7=0/TCP", "203.0.113.7=80/ICMP"):
        with pytest.raises(LabError):
            parse_external(bad)


# --- probes and state without root ----------------------------------------------------------


def test_full_matrix_is_every_other_endpoint_on_every_served_port() -> None:
    plan = small_plan()
    probes = matrix_probes(plan)
    assert all(p.src != p.dst for p in probes)
    expected = sum(
        len(dst.served) for src in plan.endpoints for dst in plan.endpoints if dst.key != src.key
    )
    assert len(probes) == expected == 48


def test_probes_naming_what_the_lab_lacks_fail_together() -> None:
    probes = [Probe("shop/web-0", "8.8.8.8", 53, UDP), Probe("x/nope", "shop/web-0", 80, TCP)]
    with pytest.raises(LabError, match=r"8\.8\.8\.8, x/nope .*--external"):
        resolve(small_plan(), probes)


def test_probe_timeout_is_bounded() -> None:
    with pytest.raises(LabError, match="timeout"):
        run_probes(small_plan(), [], timeout=120)


def test_state_round_trips_through_its_file(tmp_path: Path) -> None:
    state = LabState(small_plan(), "up", (ServerProcess("nw-demo-fabric", 42),), 1.0, 0.5)
    save_state(state, tmp_path)
    assert load_state("demo", tmp_path) == state
    with pytest.raises(LabError, match="no lab named 'other'"):
        load_state("other", tmp_path)


def test_served_ports_are_read_from_list_documents_too() -> None:
    text = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: x}
  spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 81}]}]}
"""
    documents = read_text(text, "list.yaml")
    cluster = load_documents(documents).cluster
    assert served_ports(documents, cluster) == {"x/a": (ServedPort(80, TCP), ServedPort(81, TCP))}


def test_a_host_pod_on_an_undeclared_node_gives_the_node_its_address() -> None:
    text = pod("h", ip="192.0.2.7", node="edge").replace("spec:\n", "spec:\n  hostNetwork: true\n")
    plan = plan_lab(cluster_of(text), "demo")
    assert [(n.name, n.ips) for n in plan.nodes] == [("edge", (IPv4Address("192.0.2.7"),))]
    assert by_key(plan, "x/h").netns == plan.nodes[0].netns


def test_the_gateway_address_is_reserved() -> None:
    with pytest.raises(LabError, match=r"169\.254\.1\.1 is used by both the lab's gateway and x/a"):
        plan_lab(cluster_of(pod("a", ip="169.254.1.1")), "demo")


HOST_ENDPOINTS = """
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.28.0.2}]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0}
spec:
  node: n1
  interfaceName: eth0
  expectedIPs: [172.28.0.2, 172.28.0.9]
  ports: [{name: exporter, port: 9100, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth1}
spec: {node: n1, interfaceName: eth1}
"""


def test_host_endpoints_live_in_their_node_namespace_with_failsafe_ports_served() -> None:
    plan = plan_lab(cluster_of(HOST_ENDPOINTS), "hep")
    (node,) = plan.nodes
    # The host endpoint's expectedIPs are the node's addresses, on its link to the fabric.
    assert node.ips == (IPv4Address("172.28.0.2"), IPv4Address("172.28.0.9"))
    assert {a.ip for a in plan.addresses if a.netns == node.netns} == set(node.ips)
    endpoint = plan.endpoint("172.28.0.9")
    assert endpoint is not None and endpoint.key == "n1-eth0" and endpoint.netns == node.netns
    served = {str(p) for p in endpoint.served}
    assert {"9100/TCP", "22/TCP", "179/TCP", "6443/TCP", "68/UDP"} <= served
    (server,) = plan.servers
    assert server.netns == node.netns and set(server.ips) == set(node.ips)
    # Without expectedIPs no flow is the host endpoint's: it is left out, with a warning.
    assert all(e.key != "n1-eth1" for e in plan.endpoints)
    assert any("n1-eth1" in warning for warning in plan.warnings)

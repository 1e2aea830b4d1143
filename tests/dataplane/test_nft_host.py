"""Calico host endpoints compiled to nftables: the rendered chains (no root), pod churn next to
them, and real packets to and from a node's own addresses in a lab (root), each probe showing
the engine's verdict: failsafe ports, tiers with Pass, profiles in order, default deny."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netwarden.dataplane.lab import apply_lab, destroy_lab
from netwarden.dataplane.lab_enforce import agrees, compile_lab, enforce_lab, engine_verdicts
from netwarden.dataplane.lab_plan import ExternalSpec, LabPlan, ServedPort, plan_lab
from netwarden.dataplane.lab_probe import run_probes
from netwarden.dataplane.nft_delta import NodeCompiler
from netwarden.dataplane.nftables import calico_interfaces, compile_ruleset, render_ruleset
from netwarden.dialects import load_text
from netwarden.engine.batch import Probe
from netwarden.engine.resolve import resolve_node
from netwarden.errors import CompileError
from netwarden.model import TCP, UDP, ClusterState, EndpointKind
from tests.dataplane.conftest import TEST_PREFIX
from tests.dataplane.test_nftables import chain

INVENTORY = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.29.0.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 172.29.0.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.29.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.29.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-0, namespace: shop, labels: {app: agent}}
spec:
  nodeName: n1
  hostNetwork: true
  containers: [{name: c, ports: [{name: metrics, containerPort: 7050}]}]
status: {podIP: 172.29.0.2}
"""

HOST_POLICY = """
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: db-host}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.29.0.2], profiles: [db-host, absent]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: db-host}
spec:
  ingress:
  - {action: Log, protocol: TCP}
  - {action: Pass, protocol: TCP, destination: {ports: [7001]}}
  - {action: Deny, protocol: TCP, destination: {ports: [7000]}}
  - {action: Allow, protocol: TCP, destination: {ports: ["7000:7100"]}}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-guard}
spec:
  tier: security
  order: 10
  selector: role == "db-host"
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [22, 8001]}}
  - {action: Pass, protocol: TCP, source: {nets: [10.29.0.0/16]}, destination: {ports: [8000, "7000:7100"]}}
  - {action: Allow, protocol: TCP, source: {nets: [10.29.0.0/16]}, destination: {ports: [8002]}}
"""

#: (probe, the engine's verdict): written out so the lab test cannot pass vacuously.
EXPECTED = [
    (Probe("shop/api-0", "172.29.0.2", 22, TCP), True),  # failsafe before the Deny
    (Probe("shop/api-0", "172.29.0.2", 8001, TCP), False),  # the tier denies
    (Probe("shop/api-0", "172.29.0.2", 8002, TCP), True),  # the tier allows
    (Probe("shop/api-0", "172.29.0.2", 8000, TCP), False),  # Pass, no profile rule: deny
    (Probe("shop/api-0", "172.29.0.2", 7000, TCP), False),  # Pass, then the profile's Deny
    (Probe("shop/api-0", "172.29.0.2", 7001, TCP), True),  # the profile's Pass passed over
    (Probe("shop/api-0", "172.29.0.2", 9000, TCP), False),  # tier default deny
    (Probe("shop/web-0", "172.29.0.2", 8002, TCP), True),  # a local pod, same chains
    (Probe("shop/web-0", "shop/agent-0", 7050, TCP), True),  # hostNetwork pod: the host's
    (Probe("172.29.0.2", "shop/api-0", 8080, TCP), False),  # egress: no policy, no profile
    (Probe("172.29.0.2", "shop/web-0", 8080, TCP), False),  # egress to a local pod too
    (Probe("172.29.0.2", "shop/api-0", 6443, TCP), True),  # failsafe outbound tcp:6443
    (Probe("172.29.0.2", "10.9.9.9", 53, UDP), True),  # failsafe outbound udp:53
    (Probe("172.29.0.3", "shop/web-0", 8080, TCP), True),  # n2 has no host endpoint
    (Probe("shop/api-0", "shop/web-0", 8080, TCP), True),  # forwarded: not the host's
]


def cluster_of(text: str) -> ClusterState:
    return load_text(text).cluster


def test_profiles_keep_allow_and_deny_in_order_after_the_tiers() -> None:
    script = compile_ruleset(
        cluster := cluster_of(INVENTORY + HOST_POLICY), "n1", calico_interfaces(cluster, "n1")
    ).script
    (entry,) = [line for line in script.splitlines() if "172.29.0.2 : jump host_ingress_c_" in line]
    class_chain = entry.split("jump ")[1].split()[0]
    rules = chain(script, class_chain)
    failsafe = next(i for i, r in enumerate(rules) if "failsafe inbound" in r)
    tier = next(i for i, r in enumerate(rules) if r.startswith("jump ingress_t_security_"))
    profile = next(i for i, r in enumerate(rules) if r.startswith("jump host_ingress_r_db_host"))
    assert failsafe < tier < profile
    assert "tcp . 22" in rules[failsafe] and "udp . 68" in rules[failsafe]
    assert rules[-1].startswith("counter drop")
    assert "absent" not in script  # a profile that does not exist has no rules to run
    profile_rules = [
        r for r in chain(script, rules[profile].split()[1]) if not r.startswith("comment")
    ]
    # Log and Pass are passed over in a profile, as the engine does.
    assert [r.split("counter ")[1].split()[0] for r in profile_rules] == ["drop", "accept"]
    assert "tcp dport 7000 " in profile_rules[0] and "tcp dport 7000-7100 " in profile_rules[1]
    # Egress: no policy selects the host endpoint, its profile has no egress rules: deny.
    (entry,) = [line for line in script.splitlines() if "172.29.0.2 : jump host_egress_c_" in line]
    egress = chain(script, entry.split("jump ")[1].split()[0])
    assert "failsafe outbound" in egress[2] and "udp . 53" in egress[2]
    assert egress[-1].startswith("counter drop")
    assert chain(script, "host_ingress")[-1] == "ip6 daddr vmap @host6_ingress_dispatch"


def test_an_address_two_host_endpoints_list_belongs_to_the_first() -> None:
    second = """
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-all, labels: {role: other}}
spec: {node: n1, interfaceName: "*", expectedIPs: [172.29.0.2, 172.29.0.9]}
"""
    cluster = cluster_of(INVENTORY + HOST_POLICY + second)
    ruleset = compile_ruleset(cluster, "n1", calico_interfaces(cluster, "n1"))
    (dispatch,) = [c for c in ruleset.contents if c.name == "host4_ingress_dispatch"]
    targets = dict(element.split(" : ") for element in dispatch.elements)
    assert set(targets) == {"172.29.0.2", "172.29.0.9"}
    assert targets["172.29.0.2"] != targets["172.29.0.9"]  # n1-eth0's tier vs none


def test_flow_logs_cover_the_host_endpoint_verdicts() -> None:
    cluster = cluster_of(INVENTORY + HOST_POLICY)
    interfaces = calico_interfaces(cluster, "n1")
    resolved = resolve_node(cluster, "n1", sorted(interfaces))
    script = render_ruleset(resolved, interfaces, "cali", flow_logs=True).script
    assert 'log prefix "__FAILSAFE__|__FAILSAFE__|allow|0 " group 3' in script
    assert 'log prefix "__PROFILE__|__PROFILE__.db-host|deny|2 " group 3' in script
    assert 'log prefix "__PROFILE__|__NO_MATCH__|deny|-1 " group 2' in script


def test_a_host_endpoint_holding_another_nodes_address_is_refused() -> None:
    moved = HOST_POLICY.replace("{node: n1,", "{node: n2,")
    cluster = cluster_of(INVENTORY + moved)
    with pytest.raises(CompileError, match=r"n1-eth0 holds this node's address 172\.29\.0\.2"):
        compile_ruleset(cluster, "n1", calico_interfaces(cluster, "n1"))


def test_an_own_end_match_telling_host_and_host_network_pod_apart_is_refused() -> None:
    text = (
        INVENTORY
        + HOST_POLICY
        + """
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: own-end}
spec:
  selector: role == "db-host"
  types: [Ingress]
  ingress: [{action: Allow, destination: {selector: role == "db-host"}}]
"""
    )
    cluster = cluster_of(text)
    with pytest.raises(CompileError, match=r"172\.29\.0\.2 is shared by n1-eth0, shop/agent-0"):
        compile_ruleset(cluster, "n1", calico_interfaces(cluster, "n1"))


def test_pod_churn_beside_host_endpoints_is_an_element_change() -> None:
    cluster = cluster_of(INVENTORY + HOST_POLICY)
    compiler = NodeCompiler(cluster, "n1", calico_interfaces(cluster, "n1"))
    web = cluster.endpoints_by_key["shop/web-0"]
    new = replace(web, name="web-1", ips=(IPv4Address("10.29.1.11"),))
    grown = replace(cluster, endpoints=(*cluster.endpoints, new))
    ruleset, changes = compiler.update(grown, [], [new], calico_interfaces(grown, "n1"))
    assert changes is not None, compiler.last_reason
    full = compile_ruleset(grown, "n1", calico_interfaces(grown, "n1"))
    assert ruleset.skeleton == full.skeleton
    assert {c.name: set(c.elements) for c in ruleset.contents} == {
        c.name: set(c.elements) for c in full.contents
    }
    assert not any(c.name.startswith("host") for c in changes)


# --- real packets (root) ----------------------------------------------------------------------


@pytest.fixture
def host_lab(tmp_path: Path) -> Iterator[tuple[ClusterState, LabPlan]]:
    cluster = cluster_of(INVENTORY + HOST_POLICY)
    served = {
        "n1-eth0": tuple(
            ServedPort(p.port, p.protocol) for p, _ in EXPECTED if p.dst == "172.29.0.2"
        ),
        "shop/agent-0": (ServedPort(7050, TCP),),
        "shop/api-0": (ServedPort(8080, TCP), ServedPort(6443, TCP)),
        "shop/web-0": (ServedPort(8080, TCP),),
    }
    plan = plan_lab(
        cluster,
        "hep",
        served=served,
        externals=[ExternalSpec(IPv4Address("10.9.9.9"), (ServedPort(53, UDP),))],
        prefix=TEST_PREFIX,
    )
    destroy_lab(plan.name, TEST_PREFIX, tmp_path)
    try:
        apply_lab(plan, tmp_path, enforce=lambda: enforce_lab(compile_lab(cluster, plan), False))
        yield cluster, plan
    finally:
        destroy_lab(plan.name, TEST_PREFIX, tmp_path)


@pytest.mark.root
def test_packets_to_and_from_a_node_show_the_engine_verdicts(
    host_lab: tuple[ClusterState, LabPlan],
) -> None:
    cluster, plan = host_lab
    (node,) = [e for e in plan.endpoints if e.kind is EndpointKind.HOST_ENDPOINT]
    assert node.netns.endswith("node-n1") and node.ips == (IPv4Address("172.29.0.2"),)
    probes = [probe for probe, _ in EXPECTED]
    verdicts = engine_verdicts(cluster, probes)
    assert verdicts == [allowed for _, allowed in EXPECTED]
    outcomes = run_probes(plan, probes, timeout=1.0, workers=16)
    wrong = [
        f"{o.probe}: engine {v}, probe {o.result.value} ({o.detail})"
        for o, v in zip(outcomes, verdicts, strict=True)
        if not agrees(o, v)
    ]
    assert not wrong, "\n".join(wrong)

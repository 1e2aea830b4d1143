"""The nftables backend: resolving and rendering without root, golden rulesets, and `nft -c`,
loading and atomic replacement in throwaway namespaces (root).

Golden rulesets live in `golden/<case>.<node>.nft`; `UPDATE_GOLDEN=1 pytest ...` rewrites them.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from netwarden.dataplane.apply import apply_ruleset, flush_conntrack, list_table
from netwarden.dataplane.lab_enforce import compile_lab
from netwarden.dataplane.lab_plan import plan_lab
from netwarden.dataplane.nftables import (
    PASS_MARK,
    NftablesBackend,
    Ruleset,
    calico_interface,
    calico_interfaces,
    compile_ruleset,
)
from netwarden.dialects import load_text
from netwarden.engine.resolve import resolve_node
from netwarden.errors import ApplyError, CompileError
from netwarden.model import ClusterState, Direction, EndpointKind
from tests.dataplane.conftest import TEST_PREFIX
from tests.semantics.cases import CALICO, CONFORMANCE, K8S_E2E, Case, load_cases

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = [
    K8S_E2E / "egress-cidr-except.yaml",  # ipBlock except: interval sets
    K8S_E2E / "ingress-from-ns-on-named-port.yaml",  # named ports: concatenation sets
    CALICO / "tier-pass-and-end-of-tier-deny.yaml",  # Calico tier, Pass, end-of-tier deny
    CALICO / "rule-fields.yaml",  # nets/notNets, notPorts, ICMP, notProtocol, ipVersion
    CONFORMANCE / "anp-egress-node-peers-01.yaml",  # ANP priorities, node peers, Pass
    CALICO / "host-endpoints-and-profiles.yaml",  # host endpoints: failsafe, profiles, deny
]

NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: x}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: y}}
"""


def pod(name: str, ip: str, labels: str = "{}", namespace: str = "x", node: str = "n1") -> str:
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  nodeName: {node}
  containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 53, protocol: UDP}}]}}]
status: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}
"""


PODS = (
    NAMESPACES
    + pod("a", "10.1.0.10", "{app: a}")
    + pod("b", "10.1.0.11", "{app: b}")
    + pod("c", "10.1.0.12", "{app: c}", namespace="y", node="n2")
)


def cluster_of(text: str) -> ClusterState:
    return load_text(text).cluster


def compiled(text: str, node: str = "n1") -> Ruleset:
    cluster = cluster_of(text)
    return compile_ruleset(cluster, node, calico_interfaces(cluster, node))


def chain(script: str, name: str) -> list[str]:
    """The rules of one chain of a script."""
    found = re.search(rf"\n\tchain {re.escape(name)} {{\n(.*?)\n\t}}", script, re.S)
    assert found is not None, name
    return [line.strip() for line in found.group(1).splitlines()]


def set_elements(script: str, name: str) -> str:
    found = re.search(rf"\tset {re.escape(name)} {{\n(.*?)\n\t}}", script, re.S)
    assert found is not None, name
    return found.group(1)


def set_names(script: str) -> list[str]:
    return re.findall(r"\tset (\S+) {", script)


def policy_rules(script: str) -> list[str]:
    """The rules of every policy chain."""
    names = re.findall(r"\tchain ((?:egress|ingress)_p_\S+) {", script)
    return [
        rule for name in names for rule in chain(script, name) if not rule.startswith("comment")
    ]


# --- resolving and rendering (no root) --------------------------------------------------------


def test_two_rules_with_the_same_peer_share_one_set() -> None:
    ruleset = compiled(
        PODS
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-a, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}]
    ports: [{port: 8080}]
  - from: [{podSelector: {matchLabels: {app: b}}}]
    ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}]
"""
    )
    rules = policy_rules(ruleset.script)
    (shared,) = [r for r in set_names(ruleset.script) if r.startswith("addr")]
    assert shared.startswith("addr4_to_a_0_")  # named after the first rule end it serves
    assert "10.1.0.11" in set_elements(ruleset.script, shared)
    assert sum(f"ip saddr @{shared}" in rule for rule in rules) == 3
    assert any("tcp dport 8080" in rule for rule in rules)
    assert any("udp dport 53" in rule for rule in rules)


def test_named_ports_are_address_protocol_port_sets() -> None:
    ruleset = compiled(
        PODS
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - ports: [{port: dns, protocol: UDP}, {port: http}]
"""
    )
    (name,) = [n for n in set_names(ruleset.script) if n.startswith("port")]
    body = set_elements(ruleset.script, name)
    assert "type ipv4_addr . inet_proto . inet_service" in body
    for ip in ("10.1.0.10", "10.1.0.11", "10.1.0.12"):
        assert f"{ip} . udp . 53" in body and f"{ip} . tcp . 8080" in body
    assert f"ip daddr . meta l4proto . th dport @{name}" in " ".join(policy_rules(ruleset.script))


def test_except_blocks_become_interval_ranges_and_known_pods_a_hash_set() -> None:
    ruleset = compiled(
        PODS
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/24, 10.3.0.0/16]}}]
"""
    )
    script = ruleset.script
    (nets_name,) = [n for n in set_names(script) if n.startswith("nets4_")]
    nets = set_elements(script, nets_name)
    assert "flags interval" in nets
    assert "10.0.0.0/16, 10.1.1.0-10.2.255.255, 10.4.0.0-10.255.255.255" in nets
    # The pods are in an except block: no known address matches, so the rule end's address
    # set is empty (it is there for pods that may come inside the block later).
    (addr,) = [n for n in set_names(script) if n.startswith("addr4_")]
    assert "elements" not in set_elements(script, addr)
    assert f"ip daddr != @known4 ip daddr @{nets_name} counter accept" in " ".join(
        policy_rules(script)
    )
    assert "10.1.0.10, 10.1.0.11, 10.1.0.12" in set_elements(script, "known4")


CALICO_TIERS = (
    PODS
    + """
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: guard}
spec:
  tier: security
  order: 10
  selector: app == "a"
  types: [Ingress]
  ingress:
  - {action: Log}
  - {action: Pass, source: {selector: app == "b"}}
  - {action: Deny, protocol: UDP}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{podSelector: {matchLabels: {app: b}}}], ports: [{port: 8080}]}]
"""
)


def test_pass_sets_a_mark_the_tier_returns_on_and_the_class_clears() -> None:
    script = compiled(CALICO_TIERS).script
    mark, keep = f"{PASS_MARK:#010x}", f"{~PASS_MARK & 0xFFFFFFFF:#010x}"
    guard = chain(script, "ingress_p_guard")
    (tier_name,) = re.findall(r"chain (ingress_t_security_\w+) {", script)
    (default_tier,) = re.findall(r"chain (ingress_t_default_\w+) {", script)
    (class_name,) = re.findall(r"chain (ingress_c_\w+) {", script)
    assert guard[1].startswith('counter log prefix "security/guard/0 " group 1')
    assert f"counter meta mark set meta mark | {mark} return" in guard[2]
    tier = chain(script, tier_name)
    assert tier[1:] == [
        "jump ingress_p_guard",
        f"meta mark & {mark} == {mark} return",
        'counter drop comment "security/(end of tier)"',
    ]
    assert chain(script, class_name)[1:] == [
        f"meta mark set meta mark & {keep}",
        f"jump {tier_name}",
        f"meta mark set meta mark & {keep}",
        f"jump {default_tier}",
        'counter accept comment "profile: no tier decided"',
    ]


def test_every_policy_rule_names_tier_policy_and_rule() -> None:
    script = compiled(CALICO_TIERS).script
    rules = policy_rules(script)
    assert rules and all(re.search(r'comment "[^/"]+/[^"]+/[^"]+"$', rule) for rule in rules)
    assert all(" counter " in f" {rule}" for rule in rules)
    assert any(rule.endswith('comment "default/x/a-from-b/ingress[0]"') for rule in rules)


def test_dispatch_maps_each_pod_and_drops_unknown_pod_interfaces() -> None:
    cluster = cluster_of(CALICO_TIERS)
    script = compile_ruleset(cluster, "n1", calico_interfaces(cluster, "n1")).script
    a, b = calico_interface("x", "a"), calico_interface("x", "b")
    (class_name,) = re.findall(r"chain (ingress_c_\w+) {", script)
    assert f'"{a}" : jump {class_name}' in script and f'"{b}" : accept' in script
    egress = re.search(r"map egress_dispatch {.*?}", script, re.S)
    assert egress is not None  # no egress policy: both accepted
    assert f'"{a}" : accept' in egress.group(0) and f'"{b}" : accept' in egress.group(0)
    forward = chain(script, "forward_egress")
    assert forward == [
        "type filter hook forward priority filter; policy accept;",
        "ct state established,related accept",
        "ct state invalid drop",
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
        'nd-neighbor-advert } accept comment "IPv6 neighbour discovery: not policy"',
        "iifname vmap @egress_dispatch",
        'iifname "cali*" counter drop comment "fail closed: no policy compiled for this interface"',
    ]
    assert "priority filter + 10" in chain(script, "forward_ingress")[0]
    assert script.splitlines()[1:3] == ["add table inet netwarden", "delete table inet netwarden"]


def test_not_ports_of_one_protocol_leave_other_protocols_alone() -> None:
    script = compiled(
        PODS
        + """
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: np, namespace: x}
spec:
  selector: app == "a"
  ingress:
  - {action: Allow, protocol: TCP, destination: {notPorts: [8081]}}
  - {action: Allow, destination: {notPorts: [http]}, protocol: TCP}
"""
    ).script
    rules = policy_rules(script)
    assert rules[0].startswith("meta l4proto tcp tcp dport != 8081 counter accept")
    assert re.search(r"ip daddr \. meta l4proto \. th dport != @port4_np_1_\w+ ", rules[1])


def test_staged_policies_are_never_compiled() -> None:
    plain = compiled(PODS)
    staged = compiled(
        PODS
        + """
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: lockdown, namespace: x}
spec: {selector: all(), ingress: [{action: Deny}]}
"""
    )
    assert staged.script == plain.script
    assert staged.rules == plain.rules


def test_host_endpoints_are_compiled_on_their_node_only() -> None:
    text = (
        PODS
        + """
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.18.0.2]}
"""
    )
    script = compiled(text, "n1").script
    assert "172.18.0.2 : jump host_ingress_c_" in script
    assert "172.18.0.2 : jump host_egress_c_" in script
    other = compiled(text, "n2").script
    assert other.count("host_") == 0 and compiled(text, "n2").rules > 0


def test_an_address_two_endpoints_share_but_a_peer_tells_apart_is_refused() -> None:
    text = (
        NAMESPACES
        + """
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.18.0.2]}
---
apiVersion: v1
kind: Pod
metadata: {name: h, namespace: y}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c}]}
status: {podIP: 172.18.0.2}
"""
        + pod("a", "10.1.0.10", "{app: a}", node="n2")
        + """
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: to-nodes}
spec:
  selector: app == "a"
  egress: [{action: Allow, destination: {selector: role == "node"}}]
"""
    )
    with pytest.raises(CompileError, match=r"172\.18\.0\.2 is shared by"):
        compiled(text, "n2")


def test_classes_group_pods_selected_alike() -> None:
    cluster = cluster_of(
        PODS
        + pod("d", "10.1.0.13", "{app: a}")
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: x}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}
"""
    )
    resolved = resolve_node(cluster, "n1", ["x/a", "x/b", "x/d"])
    ingress = resolved.direction(Direction.INGRESS)
    assert [c.endpoints for c in ingress.classes] == [("x/a", "x/d")]
    assert ingress.unselected == ("x/b",)
    assert resolved.direction(Direction.EGRESS).classes == ()


def test_ipv6_addresses_get_their_own_sets() -> None:
    text = (
        NAMESPACES
        + pod("a", "10.1.0.10", "{app: a}").replace(
            "podIPs: [{ip: 10.1.0.10}]", "podIPs: [{ip: 10.1.0.10}, {ip: 'fd00::10'}]"
        )
        + pod("b", "10.1.0.11", "{app: b}").replace(
            "podIPs: [{ip: 10.1.0.11}]", "podIPs: [{ip: 10.1.0.11}, {ip: 'fd00::11'}]"
        )
        + """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: b}}}, {ipBlock: {cidr: 'fd00:1::/64'}}]
"""
    )
    script = compiled(text).script
    assert "fd00::10, fd00::11" in set_elements(script, "known6")
    (addr,) = [n for n in set_names(script) if n.startswith("addr6_")]
    (nets,) = [n for n in set_names(script) if n.startswith("nets6_")]
    assert "fd00::11" in set_elements(script, addr)
    assert "fd00:1::/64" in set_elements(script, nets)
    rules = " ".join(policy_rules(script))
    assert f"ip6 saddr @{addr}" in rules and f"ip6 saddr != @known6 ip6 saddr @{nets}" in rules


def test_backend_compiles_with_calico_names_by_default() -> None:
    cluster = cluster_of(CALICO_TIERS)
    ruleset = NftablesBackend().compile(cluster, "n1")
    assert calico_interface("x", "a") in ruleset.script
    assert (
        calico_interface("x", "a") == "cali" + __import__("hashlib").sha1(b"x.a").hexdigest()[:11]
    )


# --- golden rulesets --------------------------------------------------------------------------


def golden_rulesets() -> Iterator[tuple[str, str]]:
    """(file name, script) for each golden case and node, with the lab's interface names."""
    for path in GOLDEN_CASES:
        case = Case(path, {**_shared(path), **yaml.safe_load(path.read_text())})
        cluster = case.cluster()
        plan = plan_lab(cluster, "golden", prefix="nw")
        for node, ruleset in compile_lab(cluster, plan):
            yield f"{path.stem}.{node.name}.nft", ruleset.script


def _shared(path: Path) -> dict[str, object]:
    shared = path.parent / "_cluster.yaml"
    return yaml.safe_load(shared.read_text()) if shared.exists() else {}


GOLDENS = dict(golden_rulesets())


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_ruleset(name: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(GOLDENS[name])
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert GOLDENS[name] == path.read_text()


def test_no_stale_goldens() -> None:
    assert sorted(p.name for p in GOLDEN.glob("*.nft")) == sorted(GOLDENS)


@pytest.mark.slow
def test_the_corpus_cases_all_compile() -> None:
    """Every case compiles for every lab node, host endpoint cases included."""
    hosts = []
    for folder in (CONFORMANCE, K8S_E2E, CALICO):
        for case in load_cases(folder):
            cluster = case.cluster()
            rulesets = compile_lab(cluster, plan_lab(cluster, "all", prefix="nw"))
            if any(e.kind is EndpointKind.HOST_ENDPOINT for e in cluster.endpoints):
                assert all("chain host_ingress {" in r.script for _, r in rulesets), case.name
                hosts.append(case.name)
    assert "host-endpoints-and-profiles" in hosts


# --- nft in throwaway namespaces (root) -------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"{TEST_PREFIX}-nft-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def nft_check(netns: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-c", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
    )


@pytest.mark.root
def test_goldens_pass_nft_check(netns: str) -> None:
    for name in sorted(GOLDENS):
        done = nft_check(netns, (GOLDEN / name).read_text())
        assert done.returncode == 0, f"{name}: {done.stderr}"


@pytest.mark.root
def test_unit_rulesets_pass_nft_check(netns: str) -> None:
    for text in (PODS, CALICO_TIERS):
        for node in ("n1", "n2"):
            done = nft_check(netns, compiled(text, node).script)
            assert done.returncode == 0, done.stderr


@pytest.mark.root
def test_a_ruleset_that_fails_to_load_leaves_the_previous_one(netns: str) -> None:
    good = compiled(CALICO_TIERS).script
    apply_ruleset(netns, good)
    before = list_table(netns)
    assert "chain ingress_p_guard" in before
    broken = good.replace("jump ingress_p_guard", "jump no_such_chain")
    with pytest.raises(ApplyError, match=r"previous ruleset is still in place.*line \d+"):
        apply_ruleset(netns, broken)
    assert list_table(netns) == before
    # A replacement swaps everything at once: nothing of the old table is left.
    apply_ruleset(netns, compiled(PODS).script)
    assert "guard" not in list_table(netns)
    flush_conntrack(netns)

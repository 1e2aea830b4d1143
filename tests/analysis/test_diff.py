"""The semantic diff equals the set difference of the reference engine's verdicts, brute
force over every pair of endpoints (pods and IP atoms) and every port atom, for changes that
open and close connections: a policy added, a port range widened, an ipBlock `except`
removed, a namespace relabelled, a pod added."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.analysis.aggregate import fw_rules
from netwarden.analysis.diff import ConnectivityDiff, compute_diff
from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.model import ClusterState, Flow
from tests.engine.test_vectorized import scenarios

NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: other}}
"""


def pod(namespace: str, name: str, app: str, ip: str, ports: str = "[]") -> str:
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}}}}}
spec:
  containers: [{{name: main, image: x, ports: {ports}}}]
status: {{podIP: {ip}}}
"""


PODS = (
    pod("shop", "web-0", "web", "10.0.1.10", "[{name: http, containerPort: 8080}]")
    + pod("shop", "db-0", "db", "10.0.1.20", "[{name: pg, containerPort: 5432}]")
    + pod("other", "client-0", "client", "10.0.2.10")
)
WEB_POD_1 = pod("shop", "web-1", "web", "10.0.1.11", "[{name: http, containerPort: 8080}]")

DB_POLICY = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: pg}]
"""


def web_policy(port: str = "port: 8080") -> str:
    return f"""
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress:
    - from: [{{namespaceSelector: {{matchLabels: {{team: other}}}}}}]
      ports: [{{protocol: TCP, {port}}}]
"""


def client_egress(excepted: str = "except: [192.0.2.0/24]") -> str:
    return f"""
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: client-egress, namespace: other}}
spec:
  podSelector: {{matchLabels: {{app: client}}}}
  policyTypes: [Egress]
  egress:
    - to: [{{ipBlock: {{cidr: 192.0.0.0/16, {excepted}}}}}]
      ports: [{{protocol: TCP, port: 443}}]
    - to: [{{namespaceSelector: {{}}}}]
"""


DENY_OTHER = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: other}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"""

ALL_V6 = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
BASE = NAMESPACES + PODS + DB_POLICY + web_policy() + client_egress()


def load(text: str) -> ClusterState:
    return load_text(text).cluster


Triple = tuple[str, str, int, int]  # (source, destination, protocol, port)


def brute_force(
    diff: ConnectivityDiff, base: ClusterState, head: ClusterState
) -> tuple[set[Triple], set[Triple]]:
    """(added, removed): every ordered pair of distinct endpoints (not both IP atoms), at the
    first and last port of every atom, decided by the reference engine on each side."""
    atoms = diff.head.atoms
    externals = [e for e, r in zip(diff.head.endpoints, diff.head.ranges, strict=True) if r]
    keys = sorted({e.key for e in base.endpoints} | {e.key for e in head.endpoints})
    base_engine, head_engine = PolicyEngine(base), PolicyEngine(head)
    names = [(k, False) for k in keys] + [(e.key, True) for e in externals]
    outside = {e.key: e for e in externals}
    added: set[Triple] = set()
    removed: set[Triple] = set()
    for src_key, src_out in names:
        for dst_key, dst_out in names:
            if src_key == dst_key or (src_out and dst_out):
                continue
            for atom in range(len(atoms)):
                protocol = int(atoms.protocol[atom])
                for port in {int(atoms.start[atom]), int(atoms.end[atom])}:
                    verdicts = []
                    for cluster, engine in ((base, base_engine), (head, head_engine)):
                        src = outside.get(src_key) or cluster.endpoints_by_key[src_key]
                        dst = outside.get(dst_key) or cluster.endpoints_by_key[dst_key]
                        verdicts.append(engine.decide(Flow(src, dst, port, protocol)).allowed)
                    triple = (src_key, dst_key, protocol, int(atoms.start[atom]))
                    if verdicts[1] and not verdicts[0]:
                        added.add(triple)
                    if verdicts[0] and not verdicts[1]:
                        removed.add(triple)
    return added, removed


def listed(diff: ConnectivityDiff) -> tuple[set[Triple], set[Triple]]:
    """The diff's by-pod changes expanded to (source, destination, atom) triples."""
    found: dict[str, set[Triple]] = {"added": set(), "removed": set()}
    endpoints, atoms = diff.head.endpoints, diff.head.atoms
    for change in diff.changes("pod"):
        source, _, rest = change.why.flow.partition(" -> ")
        assert source in {endpoints[m].key for m in change.src.members}
        assert rest.split()[0] in {endpoints[m].key for m in change.dst.members}
        for atom in atoms.atoms_of(change.ports).tolist():
            for s in change.src.members:
                for d in change.dst.members:
                    if s != d:
                        key = (endpoints[s].key, endpoints[d].key)
                        found[change.kind].add(
                            (*key, int(atoms.protocol[atom]), int(atoms.start[atom]))
                        )
    return found["added"], found["removed"]


def check(
    base_text: str,
    head_text: str,
    base_over_union: str | None = None,
    head_over_union: str | None = None,
) -> ConnectivityDiff:
    """The diff of two inputs, checked against the brute force; `base_over_union` is base
    with head's extra endpoints, what base's policies are judged on (and the converse)."""
    base, head = load(base_text), load(head_text)
    diff = compute_diff(base, head)
    judged_base = load(base_over_union) if base_over_union is not None else base
    judged_head = load(head_over_union) if head_over_union is not None else head
    expected = brute_force(diff, judged_base, judged_head)
    assert listed(diff) == expected
    assert diff.has_changes == any(expected)
    return diff


def changes(diff: ConnectivityDiff, by: str = "pod") -> list[tuple[str, str, str, str]]:
    return [(c.kind, c.src.name, c.dst.name, str(c.ports)) for c in diff.changes(by)]  # type: ignore[arg-type]


def test_no_change_is_empty() -> None:
    diff = check(BASE, BASE)
    assert not diff.has_changes and changes(diff) == [] and not diff.endpoints


def test_adding_a_default_deny_removes_ingress_to_its_namespace() -> None:
    diff = check(BASE, BASE + DENY_OTHER)
    found = changes(diff)
    assert found and all(kind == "removed" for kind, *_ in found)
    assert ("removed", "shop/web-0", "other/client-0", "All connections") in found
    why = next(c.why for c in diff.changes("pod") if c.src.name == "shop/web-0")
    assert why.flow.startswith("shop/web-0 -> other/client-0 ")
    assert "ingress: default/other/default-deny" not in why.denied_by  # no rule: tier default
    assert why.denied_by == "ingress: default (default deny)"
    assert "ingress: no-tier-decided" in why.allowed_by


def test_widening_a_port_range_adds_exactly_the_new_ports() -> None:
    diff = check(BASE, BASE.replace(web_policy(), web_policy("port: 8080, endPort: 8090")))
    assert changes(diff) == [("added", "other/client-0", "shop/web-0", "TCP 8081-8090")]
    change = next(diff.changes("pod"))
    assert change.why.flow == "other/client-0 -> shop/web-0 TCP 8081"
    assert (
        change.why.allowed_by
        == "egress: default/other/client-egress[egress[1]]; ingress: default/shop/web[ingress[0]]"
    )
    assert change.why.denied_by == "ingress: default (default deny)"


def test_removing_an_except_opens_the_excepted_range() -> None:
    diff = check(BASE, BASE.replace(client_egress(), client_egress("except: []")))
    assert changes(diff) == [("added", "other/client-0", "192.0.2.0-192.0.2.255", "TCP 443")]
    why = next(diff.changes("pod")).why
    assert why.flow == "other/client-0 -> 192.0.2.0 TCP 443"
    assert why.denied_by == "egress: default (default deny)"


def test_narrowing_back_is_the_mirror_image() -> None:
    wide = BASE.replace(web_policy(), web_policy("port: 8080, endPort: 8090"))
    forward = changes(check(BASE, wide))
    backward = changes(check(wide, BASE))
    assert [(k, s, d, p) for k, s, d, p in forward] == [
        ("added" if k == "removed" else "removed", s, d, p) for k, s, d, p in backward
    ]


def test_relabelling_a_namespace_closes_what_its_label_opened() -> None:
    relabelled = BASE.replace(
        "{name: other, labels: {team: other}}", "{name: other, labels: {team: partner}}"
    )
    diff = check(BASE, relabelled)
    assert changes(diff) == [("removed", "other/client-0", "shop/web-0", "TCP 8080")]
    assert diff.changes("pod").__next__().why.denied_by == "ingress: default (default deny)"
    assert not diff.endpoints  # a namespace's labels are not an endpoint's


def test_adding_a_pod_is_an_endpoint_change_not_a_connection_change() -> None:
    diff = check(BASE, BASE + WEB_POD_1, base_over_union=BASE + WEB_POD_1)
    assert changes(diff) == []
    assert diff.endpoints.only_in_head == ("shop/web-1",)
    assert diff.endpoints.only_in_base == () and diff.endpoints.changed == ()
    # by workload, the new pod is one group with its sibling
    assert not diff.has_changes


def test_a_pod_added_with_a_policy_change_is_judged_by_both_sides_policies() -> None:
    head = BASE.replace(web_policy(), web_policy("port: 8081")) + WEB_POD_1
    diff = check(BASE, head, base_over_union=BASE + WEB_POD_1)
    assert changes(diff, "workload") == [
        ("added", "other/client", "shop/web", "TCP 8081"),
        ("removed", "other/client", "shop/web", "TCP 8080"),
    ]
    assert len(changes(diff, "pod")) == 4  # two web pods, each gained and lost a port
    flows = [c.why.flow for c in diff.changes("workload")]
    assert flows == [
        "other/client-0 -> shop/web-0 TCP 8081",
        "other/client-0 -> shop/web-0 TCP 8080",
    ]
    assert diff.endpoints.only_in_head == ("shop/web-1",)


def test_a_pod_removed_and_a_relabelled_pod_are_reported() -> None:
    head = (NAMESPACES + PODS + DB_POLICY + web_policy() + client_egress()).replace(
        "{name: db-0, namespace: shop, labels: {app: db}}",
        "{name: db-0, namespace: shop, labels: {app: db, tier: data}}",
    )
    diff = check(BASE + WEB_POD_1, head, head_over_union=head + WEB_POD_1)
    assert diff.endpoints.only_in_base == ("shop/web-1",)
    assert diff.endpoints.changed == ("shop/db-0",)
    assert changes(diff) == []


@pytest.mark.parametrize(
    ("by", "sources"),
    [
        ("pod", ["shop/db-0", "shop/web-0", "0.0.0.0-255.255.255.255", ALL_V6]),
        ("workload", ["shop/db", "shop/web", "0.0.0.0-255.255.255.255", ALL_V6]),
    ],
)
def test_explanations_name_the_policy_on_each_side(by: str, sources: list[str]) -> None:
    allow_db = "policyTypes: [Ingress]\n  ingress: [{from: [{podSelector: {}}]}]"
    head = BASE + DENY_OTHER.replace("policyTypes: [Ingress]", allow_db)
    diff = compute_diff(load(BASE), load(head))
    found = list(diff.changes(by))  # type: ignore[arg-type]
    assert [c.src.name for c in found] == sources  # a bare podSelector: pods of `other` only
    for change in found:
        assert (change.kind, change.dst.name.split("-")[0]) == ("removed", "other/client")
        assert change.why.denied_by == "ingress: default (default deny)"
        egress = "not-a-subject" if change.src.is_external else "no-tier-decided"
        assert change.why.allowed_by == f"egress: {egress}; ingress: no-tier-decided"


def test_inventory_alignment_keeps_each_sides_own_labels() -> None:
    base = load(BASE)
    head = replace(
        base,
        namespaces=tuple(
            replace(n, labels={"team": "partner"}) if n.name == "other" else n
            for n in base.namespaces
        ),
    )
    diff = compute_diff(base, head)
    assert diff.base.cluster.namespace_labels["other"]["team"] == "other"
    assert diff.head.cluster.namespace_labels["other"]["team"] == "partner"
    assert diff.base.endpoints == tuple(diff.base.cluster.endpoints) + diff.base.endpoints[3:]


def by_index(diff: ConnectivityDiff) -> tuple[set[tuple[int, int, int]], set[tuple[int, int, int]]]:
    """(added, removed) as (source, destination, atom) indices, brute force over the diff's
    own endpoints (the inventory is the same on both sides)."""
    base, head = PolicyEngine(diff.base.cluster), PolicyEngine(diff.head.cluster)
    inside = diff.base.pods
    added, removed = set(), set()
    for s in range(diff.base.size):
        for d in range(diff.base.size):
            if s == d or not (inside[s] or inside[d]):
                continue
            for atom in range(len(diff.base.atoms)):
                before = base.decide(diff.base.flow(s, d, atom)).allowed
                after = head.decide(diff.head.flow(s, d, atom)).allowed
                if after and not before:
                    added.add((s, d, atom))
                if before and not after:
                    removed.add((s, d, atom))
    return added, removed


def listed_by_index(
    diff: ConnectivityDiff,
) -> tuple[set[tuple[int, int, int]], set[tuple[int, int, int]]]:
    found: dict[str, set[tuple[int, int, int]]] = {"added": set(), "removed": set()}
    for change in diff.changes("pod"):
        for atom in diff.head.atoms.atoms_of(change.ports).tolist():
            for s in change.src.members:
                found[change.kind].update((s, d, atom) for d in change.dst.members if s != d)
    return found["added"], found["removed"]


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.data())
def test_agrees_with_brute_force_on_random_policy_changes(
    scenario: tuple[ClusterState, object], data: st.DataObject
) -> None:
    """Random inventories, tiers and policies (Kubernetes and Calico, hosts and host
    endpoints); head drops some of base's policies and reorders the rest."""
    base, _ = scenario
    keep = data.draw(
        st.lists(st.booleans(), min_size=len(base.policies), max_size=len(base.policies))
    )
    kept = [p for p, k in zip(base.policies, keep, strict=True) if k]
    head = replace(base, policies=tuple(reversed(kept)))
    for before, after in ((base, head), (head, base)):
        diff = compute_diff(before, after)
        assert listed_by_index(diff) == by_index(diff)


def test_change_maps_group_into_firewall_rules_like_the_connectivity_map() -> None:
    clients = "".join(pod("other", f"client-{i}", "client", f"10.0.2.{10 + i}") for i in (1, 2))
    wide = BASE.replace(web_policy(), web_policy("port: 8080, endPort: 8090"))
    diff = compute_diff(load(BASE + clients), load(wide + clients))
    assert len(list(diff.changes("pod"))) == 3
    rules = fw_rules(diff.added, "pod")
    assert [([g.name for g in r.src], [g.name for g in r.dst], str(r.ports)) for r in rules] == [
        (["other/client-0", "other/client-1", "other/client-2"], ["shop/web-0"], "TCP 8081-8090")
    ]
    assert fw_rules(diff.removed, "pod") == []

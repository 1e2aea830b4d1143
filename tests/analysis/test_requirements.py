"""Requirements checked on the connectivity map: a passing and a failing case per type, each
counter-example exact and decided again by the reference engine, and the map-based answer
compared with a brute force over every pod pair and port with the reference engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.analysis import compute_connectivity
from netwarden.analysis.requirements import (
    RequirementResult,
    check_requirements,
    describe,
    responsible,
)
from netwarden.analysis.requirements_search import InCluster
from netwarden.analysis.requirements_witness import unnamed_address
from netwarden.dialects import load_paths, load_text
from netwarden.dialects.requirements import read_requirements
from netwarden.dialects.source import read_paths, read_text
from netwarden.engine import PolicyEngine, Reason, decide
from netwarden.engine.matching import selects
from netwarden.model import (
    TCP,
    All,
    ClusterState,
    EndpointSelector,
    Flow,
    Has,
    Not,
    PortMatch,
    Requirement,
    protocol_name,
)
from netwarden.model.requirements import EndpointSet, Isolation, Reachable
from tests.engine.test_vectorized import endpoint_selectors, keys, scenarios

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"

HEAD = "apiVersion: netwarden.io/v1alpha1\nkind: Requirement\nmetadata:\n  name: req\nspec:\n"


@pytest.fixture(scope="module")
def shop() -> ClusterState:
    return load_paths([SHOP]).cluster


def check(cluster: ClusterState, spec: str) -> RequirementResult:
    (requirement,) = read_requirements(read_text(HEAD + spec, "reqs.yaml"))
    (result,) = check_requirements(cluster, [requirement])
    return result


def flow_of(result: RequirementResult) -> tuple[str, str, int, str, bool]:
    assert result.counterexample is not None, result.message
    flow = result.counterexample.flow
    return (
        flow.src.key,
        flow.dst.key,
        flow.port,
        protocol_name(flow.protocol),
        result.counterexample.allowed,
    )


def assert_engine_agrees(cluster: ClusterState, result: RequirementResult, allowed: bool) -> None:
    """A fresh reference engine decides the counter-example as the result says."""
    assert result.counterexample is not None
    flow = result.counterexample.flow
    again = Flow(flow.src, flow.dst, flow.port, flow.protocol, flow.src_ip, flow.dst_ip)
    assert decide(cluster, again).allowed is allowed
    assert result.counterexample.allowed is allowed
    assert result.notes == ()


def test_the_shop_example_holds(shop: ClusterState) -> None:
    requirements = read_requirements(read_paths([SHOP / "requirements.yaml"]))
    results = check_requirements(shop, requirements)
    assert [(r.requirement.name, r.holds) for r in results] == [
        ("shop-isolated-from-tenant-b", True),
        ("tenant-b-isolated-from-shop", True),
        ("cardholder-data-only-from-backend", True),
        ("shop-default-deny", True),
        ("shop-egress-payment-provider-only", True),
        ("frontend-reaches-backend", True),
        ("backend-reaches-database", True),
    ]
    assert all(r.counterexample is None for r in results)
    assert results[0].message == "holds for 5 endpoints x 1 endpoint (3 class pairs checked)"


# (spec, counter-example (src, dst, port, protocol, allowed), message)
FAILING = [
    pytest.param(
        '  type: isolation\n  from: {namespaces: kubernetes.io/metadata.name == "monitoring"}\n'
        '  to: {namespaces: tenant == "shop"}\n',
        ("monitoring/prometheus-0", "shop/frontend-0", 9090, "TCP", True),
        "monitoring/prometheus-0 may connect to shop/frontend-0 on TCP 9090",
        id="isolation",
    ),
    pytest.param(
        '  type: only\n  from: {namespaces: kubernetes.io/metadata.name == "ingress-nginx"}\n'
        '  to: {pods: app == "frontend"}\n  ports: [{port: 443}]\n',
        ("monitoring/prometheus-0", "shop/frontend-0", 9090, "TCP", True),
        "monitoring/prometheus-0 is not in `from` but may connect to shop/frontend-0 on TCP 9090",
        id="only-from-outside-the-set",
    ),
    pytest.param(
        '  type: only\n  from: {namespaces: \'kubernetes.io/metadata.name in {"ingress-nginx", "monitoring"}\','
        " networks: [0.0.0.0/0]}\n"
        '  to: {pods: app == "frontend"}\n  ports: [{port: 443}]\n',
        ("monitoring/prometheus-0", "shop/frontend-0", 9090, "TCP", True),
        "monitoring/prometheus-0 may connect to shop/frontend-0 on TCP 9090, beyond the listed ports",
        id="only-on-other-ports",
    ),
    pytest.param(
        '  type: only\n  from: {namespaces: \'kubernetes.io/metadata.name in {"ingress-nginx", "monitoring"}\'}\n'
        '  to: {pods: app == "frontend"}\n',
        ("1.0.0.0", "shop/frontend-0", 443, "TCP", True),
        "1.0.0.0 is not in `from` but may connect to shop/frontend-0 on TCP 443",
        id="only-from-outside-the-cluster",
    ),
    pytest.param(
        '  type: defaultDeny\n  workloads: {namespaces: tenant == "tenant-b"}\n',
        ("1.0.0.0", "tenant-b/web-0", 1, "TCP", True),
        "tenant-b/web-0 is not isolated for ingress: 1/TCP from 1.0.0.0, which no rule names, is allowed",
        id="defaultDeny",
    ),
    pytest.param(
        '  type: egress\n  workloads: {namespaces: tenant == "shop"}\n'
        "  allowed: [{networks: [198.51.100.0/25], ports: [{port: 443}]}]\n",
        ("shop/backend-0", "198.51.100.128", 443, "TCP", True),
        "shop/backend-0 may connect outside the cluster to 198.51.100.128 on TCP 443, beyond the allowed destinations",
        id="egress",
    ),
    pytest.param(
        '  type: reachable\n  from: {pods: app == "frontend"}\n  to: {pods: app == "db"}\n'
        "  ports: [{port: 5432}]\n",
        ("shop/frontend-0", "shop/db-0", 5432, "TCP", False),
        "shop/frontend-0 cannot reach shop/db-0 on 5432/TCP (allowed: No connections)",
        id="reachable",
    ),
]


@pytest.mark.parametrize(("spec", "example", "message"), FAILING)
def test_failing_requirement_has_its_counter_example(
    shop: ClusterState, spec: str, example: tuple[str, str, int, str, bool], message: str
) -> None:
    result = check(shop, spec)
    assert not result.holds
    assert result.message == message
    assert flow_of(result) == example
    assert_engine_agrees(shop, result, example[-1])
    assert result.requirement.source is not None and str(result.requirement.source) == "reqs.yaml:1"


def test_counter_example_names_the_responsible_rules(shop: ClusterState) -> None:
    isolation = check(shop, FAILING[0].values[0])
    assert describe(isolation.counterexample) == (  # type: ignore[arg-type]
        "monitoring/prometheus-0 (10.244.2.40) -> shop/frontend-0 (10.244.1.10) 9090/TCP is ALLOWED "
        "(egress: no-tier-decided; ingress: default/shop/allow-prometheus[ingress[0]])"
    )
    verdict = isolation.counterexample.verdict  # type: ignore[union-attr]
    (blame,) = responsible(verdict.ingress)
    assert str(blame.location) == f"{SHOP / 'policies' / 'shop.yaml'}:121"
    reachable = check(shop, FAILING[-1].values[0])
    ingress = reachable.counterexample.verdict.ingress  # type: ignore[union-attr]
    assert ingress.reason is Reason.TIER_DEFAULT
    assert {b.location.line for b in responsible(ingress) if b.location} == {6, 92}


PASSING = [
    pytest.param(
        '  type: isolation\n  from: {namespaces: kubernetes.io/metadata.name == "monitoring"}\n'
        '  to: {namespaces: tenant == "shop"}\n  except: [{protocol: TCP, port: 9090}]\n',
        id="isolation-except",
    ),
    pytest.param(
        "  type: isolation\n  from: {networks: [10.0.0.0/8, 192.168.0.0/16]}\n"
        '  to: {pods: app == "frontend"}\n',
        id="isolation-from-private-networks",
    ),
    pytest.param(
        '  type: only\n  from: {namespaces: \'kubernetes.io/metadata.name in {"ingress-nginx", "monitoring"}\','
        " networks: [0.0.0.0/0]}\n"
        '  to: {pods: app == "frontend"}\n  ports: [{port: 443}, {port: 9090}]\n',
        id="only",
    ),
    pytest.param(
        "  type: defaultDeny\n  workloads: {pods: all(), namespaces: tenant == 'shop'}\n"
        "  directions: [Egress]\n",
        id="defaultDeny-egress",
    ),
    pytest.param(
        '  type: egress\n  workloads: {namespaces: tenant == "shop"}\n'
        "  allowed: [{networks: [198.51.0.0/16], except: [198.51.0.0/24], ports: [{port: 443}]}]\n",
        id="egress-with-except",
    ),
    pytest.param(
        '  type: reachable\n  from: {namespaces: kubernetes.io/metadata.name == "ingress-nginx"}\n'
        '  to: {pods: app == "frontend"}\n  ports: [{port: 443}]\n',
        id="reachable",
    ),
]


@pytest.mark.parametrize("spec", PASSING)
def test_passing_requirement(shop: ClusterState, spec: str) -> None:
    result = check(shop, spec)
    assert result.holds, result.message
    assert result.counterexample is None and result.notes == ()


def test_reachable_fails_on_an_empty_set_and_others_note_it(shop: ClusterState) -> None:
    result = check(
        shop,
        '  type: reachable\n  from: {pods: app == "nope"}\n  to: {pods: all()}\n  ports: [{port: 80}]\n',
    )
    assert not result.holds and result.message == "`from` selects no pod: nothing can be reached"
    result = check(shop, '  type: isolation\n  from: {pods: app == "nope"}\n  to: {pods: all()}\n')
    assert result.holds and result.notes == ("`from` selects nothing",)


LAB = (
    """\
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {zone: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {zone: b}}
---
apiVersion: v1
kind: List
items:
"""
    + "".join(
        f"""  - apiVersion: v1
    kind: Pod
    metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
    spec: {{nodeName: n1, containers: [{{name: c, image: x}}]}}
    status: {{podIP: {ip}}}
"""
        for name, ns, app, ip in [
            ("api-0", "app", "api", "10.0.1.1"),
            ("db-0", "app", "db", "10.0.1.2"),
            ("db-1", "app", "db", "10.0.1.3"),
            ("open-0", "app", "open", "10.0.1.4"),
            ("wide-0", "app", "wide", "10.0.1.5"),
            ("client-0", "other", "client", "10.0.2.1"),
        ]
    )
    + """\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: app}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: api}}}]
      ports: [{port: 5432}]
    - from: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432, endPort: 5433}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: app}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{namespaceSelector: {}}]
      ports: [{protocol: TCP}]
  egress:
    - to: [{ipBlock: {cidr: 198.51.100.0/24}}]
      ports: [{port: 443}]
    - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
      ports: [{protocol: UDP, port: 53}]
    - to: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: wide, namespace: app}
spec:
  podSelector: {matchLabels: {app: wide}}
  ingress:
    - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
"""
)


@pytest.fixture(scope="module")
def lab() -> ClusterState:
    result = load_text(LAB, "lab.yaml")
    assert result.skipped == ()
    return result.cluster


@pytest.mark.parametrize(
    ("spec", "example"),
    [
        # One port atom of the map (TCP 1-5431) straddles the excepted port: the first
        # port of it that the exception leaves out is the counter-example.
        (
            "  type: isolation\n  from: {pods: app == 'client'}\n  to: {pods: app == 'api'}\n  except: [{port: 1, endPort: 79}]\n",
            ("other/client-0", "app/api-0", 80, "TCP", True),
        ),
        # The zone's own pods replicating among themselves do not enter the zone; the api's
        # connection to db on 5433 is refused by db, so only 5432 is open: it holds. Without
        # api in `from`, api is an outsider.
        (
            "  type: only\n  from: {pods: app == 'open'}\n  to: {pods: app == 'db'}\n",
            ("app/api-0", "app/db-0", 5432, "TCP", True),
        ),
        # A pod no policy selects, and one whose rule allows every address: neither is isolated.
        (
            "  type: defaultDeny\n  workloads: {pods: app == 'open'}\n  directions: [Egress]\n",
            ("app/open-0", "1.0.0.0", 1, "TCP", True),
        ),
        (
            "  type: defaultDeny\n  workloads: {pods: app == 'wide'}\n  directions: [Ingress]\n",
            ("1.0.0.0", "app/wide-0", 1, "TCP", True),
        ),
        # 0.0.0.0/0 UDP 53 is open: anything but the allowed resolvers breaks the requirement.
        (
            "  type: egress\n  workloads: {pods: app == 'api'}\n  allowed:\n    - {networks: [198.51.100.0/24], ports: [{port: 443}]}\n    - {networks: [8.8.8.8/32], ports: [{protocol: UDP, port: 53}]}\n",
            ("app/api-0", "1.0.0.0", 53, "UDP", True),
        ),
        # Both db pods must reach each other on both ports: 5434 is not open.
        (
            "  type: reachable\n  from: {pods: app == 'db'}\n  to: {pods: app == 'db'}\n  ports: [{port: 5432, endPort: 5434}]\n",
            ("app/db-0", "app/db-1", 5434, "TCP", False),
        ),
    ],
)
def test_failing_corner_cases(
    lab: ClusterState, spec: str, example: tuple[str, str, int, str, bool]
) -> None:
    result = check(lab, spec)
    assert not result.holds
    assert flow_of(result) == example
    assert_engine_agrees(lab, result, example[-1])


@pytest.mark.parametrize(
    "spec",
    [
        "  type: isolation\n  from: {pods: app == 'client'}\n  to: {pods: app == 'api'}\n  except: [{protocol: TCP}]\n",
        "  type: only\n  from: {pods: app == 'api'}\n  to: {pods: app == 'db'}\n  ports: [{port: 5432}]\n",
        "  type: defaultDeny\n  workloads: {pods: \"app in {'api', 'db'}\"}\n  directions: [Ingress]\n",
        "  type: egress\n  workloads: {pods: app == 'api'}\n  allowed:\n    - {networks: [198.51.100.0/24], ports: [{port: 443}]}\n    - {networks: [0.0.0.0/0], ports: [{protocol: UDP, port: 53}]}\n",
        "  type: reachable\n  from: {pods: app == 'db'}\n  to: {pods: app == 'db'}\n  ports: [{port: 5432, endPort: 5433}]\n",
        # A single pod in both sets has no pair of distinct pods to check.
        "  type: reachable\n  from: {pods: app == 'api'}\n  to: {pods: app == 'api'}\n  ports: [{port: 1}]\n",
    ],
)
def test_passing_corner_cases(lab: ClusterState, spec: str) -> None:
    result = check(lab, spec)
    assert result.holds, result.message


def brute_force_isolated(cluster: ClusterState, src: set[str], dst: set[str]) -> bool:
    """No allowed flow from `src` pods to `dst` pods, pair by pair, on every port atom."""
    cmap = compute_connectivity(cluster)
    engine = PolicyEngine(cluster)
    for s, source in enumerate(cmap.endpoints):
        for d, destination in enumerate(cmap.endpoints):
            if source.key in src and destination.key in dst and s != d:
                for atom in range(len(cmap.atoms)):
                    if engine.decide(cmap.flow(s, d, atom)).allowed:
                        return False
    return True


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("tenant == 'shop'", "tenant == 'tenant-b'"),
        ("tenant == 'tenant-b'", "tenant == 'shop'"),
        ("kubernetes.io/metadata.name == 'monitoring'", "tenant == 'shop'"),
        ("kubernetes.io/metadata.name == 'ingress-nginx'", "tenant == 'shop'"),
        ("tenant == 'shop'", "kubernetes.io/metadata.name == 'kube-system'"),
        ("tenant == 'shop'", "kubernetes.io/metadata.name == 'monitoring'"),
        ("all()", "kubernetes.io/metadata.name == 'tenant-b'"),
    ],
)
def test_isolation_agrees_with_brute_force(shop: ClusterState, src: str, dst: str) -> None:
    result = check(
        shop, f'  type: isolation\n  from: {{namespaces: "{src}"}}\n  to: {{namespaces: "{dst}"}}\n'
    )
    namespaces = {ns.name: ns.labels for ns in shop.namespaces}

    def pods(text: str) -> set[str]:
        from netwarden.dialects.calico_selector import parse_selector

        selector = parse_selector(text)
        return {
            e.key
            for e in shop.endpoints
            if e.namespace and selector.matches(namespaces[e.namespace])
        }

    assert result.holds is brute_force_isolated(shop, pods(src), pods(dst))


def brute_force_reachable(
    cluster: ClusterState, src: set[str], dst: set[str], ports: list[tuple[int, int]]
) -> bool:
    """Every pod of `src` reaches every other pod of `dst` on every (port, protocol)."""
    engine = PolicyEngine(cluster)
    pods = [e for e in cluster.endpoints]
    return all(
        engine.decide(Flow(a, b, port, protocol)).allowed
        for a in pods
        if a.key in src
        for b in pods
        if b.key in dst and b.key != a.key
        for port, protocol in ports
    )


def brute_force_only(cluster: ClusterState, src: set[str], dst: set[str]) -> bool:
    """Nothing outside `src` (pods, hosts and every IP atom) reaches `dst` from outside `dst`."""
    cmap = compute_connectivity(cluster)
    engine = PolicyEngine(cluster)
    for s, source in enumerate(cmap.endpoints):
        if source.key in src or source.key in dst:
            continue
        for d, destination in enumerate(cmap.endpoints):
            if destination.key in dst:
                for atom in range(len(cmap.atoms)):
                    if engine.decide(cmap.flow(s, d, atom)).allowed:
                        return False
    return True


def pods_of(cluster: ClusterState, pods: str, namespaces: str) -> set[str]:
    from netwarden.dialects.calico_selector import parse_selector

    pod_selector, namespace_selector = parse_selector(pods), parse_selector(namespaces)
    labels = cluster.namespace_labels
    return {
        e.key
        for e in cluster.endpoints
        if e.namespace
        and pod_selector.matches(e.labels)
        and namespace_selector.matches(labels[e.namespace])
    }


SETS = [
    ("app == 'frontend'", "all()"),
    ("app == 'backend'", "all()"),
    ("app == 'db'", "all()"),
    ("all()", "kubernetes.io/metadata.name == 'monitoring'"),
    ("all()", "kubernetes.io/metadata.name == 'ingress-nginx'"),
    ("all()", "kubernetes.io/metadata.name == 'kube-system'"),
    ("all()", "tenant == 'tenant-b'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("to", SETS, ids=lambda s: s[0] + "/" + s[1])
@pytest.mark.parametrize("source", SETS, ids=lambda s: s[0] + "/" + s[1])
def test_reachable_and_only_agree_with_brute_force(
    shop: ClusterState, source: tuple[str, str], to: tuple[str, str]
) -> None:
    def endpoint_set(pair: tuple[str, str]) -> str:
        return f'{{pods: "{pair[0]}", namespaces: "{pair[1]}"}}'

    src, dst = pods_of(shop, *source), pods_of(shop, *to)
    reachable = check(
        shop,
        f"  type: reachable\n  from: {endpoint_set(source)}\n  to: {endpoint_set(to)}\n"
        "  ports: [{port: 443}, {protocol: UDP, port: 53}]\n",
    )
    expected = brute_force_reachable(shop, src, dst, [(443, 6), (53, 17)])
    if src and dst and (len(src | dst) > 1):
        assert reachable.holds is expected, reachable.message
    only = check(shop, f"  type: only\n  from: {endpoint_set(source)}\n  to: {endpoint_set(to)}\n")
    assert only.holds is brute_force_only(shop, src, dst), only.message


# Sets that pick some pods of a random cluster, often not all and rarely none.
_pod_sets = st.builds(
    EndpointSelector,
    pods=st.one_of(st.just(All()), st.builds(Has, keys), st.builds(Not, st.builds(Has, keys))),
)
requirement_sets = st.one_of(_pod_sets, _pod_sets, endpoint_selectors)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), requirement_sets, requirement_sets)
def test_isolation_and_reachable_agree_with_reference_on_random_clusters(
    scenario: tuple[ClusterState, object], a: EndpointSelector, b: EndpointSelector
) -> None:
    """Against every (source pod, destination pod, port atom) decided by the reference."""
    cluster, _ = scenario
    cmap = compute_connectivity(cluster)
    engine = PolicyEngine(cluster)
    inside = [i for i, r in enumerate(cmap.ranges) if r is None]
    src = [i for i in inside if selects(a, cmap.endpoints[i], cluster)]
    dst = [i for i in inside if selects(b, cmap.endpoints[i], cluster)]
    pairs = [(s, d) for s in src for d in dst if s != d]
    any_allowed = any(
        engine.decide(cmap.flow(s, d, atom)).allowed
        for s, d in pairs
        for atom in range(len(cmap.atoms))
    )
    tcp_atoms = [atom for atom in range(len(cmap.atoms)) if cmap.atoms.protocol[atom] == TCP]
    reach_tcp = all(
        engine.decide(cmap.flow(s, d, atom)).allowed for s, d in pairs for atom in tcp_atoms
    )
    isolation = Requirement("iso", Isolation(EndpointSet(a), EndpointSet(b)))
    reachable = Requirement("reach", Reachable(EndpointSet(a), EndpointSet(b), (PortMatch(TCP),)))
    iso_result, reach_result = check_requirements(cluster, [isolation, reachable], cmap)
    assert iso_result.holds is not any_allowed
    if not iso_result.holds:
        assert_engine_agrees(cluster, iso_result, True)
    if src and dst:
        assert reach_result.holds is reach_tcp
        if not reach_result.holds:
            assert_engine_agrees(cluster, reach_result, False)


def test_default_deny_witness_avoids_every_named_address(lab: ClusterState) -> None:
    """Two /1 blocks name every IPv4 address (unlike 0.0.0.0/0): the witness moves to IPv6;
    when every IPv6 address is named too, it falls back to the first IPv4 one."""
    policy = """\
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: halves, namespace: other}
spec:
  podSelector: {}
  ingress:
    - from: [{ipBlock: {cidr: 0.0.0.0/1}}, {ipBlock: {cidr: 128.0.0.0/1}}, {ipBlock: {cidr: BLOCK}}]
"""
    spec = "  type: defaultDeny\n  workloads: {pods: app == 'client'}\n  directions: [Ingress]\n"
    assert str(unnamed_address(lab, InCluster(lab))) == "1.0.0.0"
    partly = load_text(LAB + policy.replace("BLOCK", "'2000::/3'"), "lab.yaml").cluster
    assert str(unnamed_address(partly, InCluster(partly))) == "4000::"
    assert check(partly, spec).holds  # nothing allows 4000:: in
    everything = load_text(
        LAB + policy.replace("BLOCK", "'::/1'}}, {ipBlock: {cidr: '8000::/1'"), "lab.yaml"
    ).cluster
    assert str(unnamed_address(everything, InCluster(everything))) == "1.0.0.0"
    result = check(everything, spec)
    assert flow_of(result) == ("1.0.0.0", "other/client-0", 1, "TCP", True)
    assert_engine_agrees(everything, result, True)

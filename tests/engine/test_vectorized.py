"""The vectorized engine agrees with the single-flow reference (`PolicyEngine.decide`) on every
probe: verdict, reason, and the deciding tier, policy and rule, in each direction."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.engine import PolicyEngine, Reason, evaluate
from netwarden.engine.batch import Probe, resolve_probes
from netwarden.engine.vectorized import VectorEngine
from netwarden.model import (
    ADMIN_TIER,
    BASELINE_TIER,
    DEFAULT_TIER,
    ICMP,
    K8S_NETWORK_POLICY_ORDER,
    SCTP,
    TCP,
    UDP,
    Action,
    All,
    And,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    Flow,
    Global,
    Has,
    In,
    NamedPort,
    Namespace,
    NetworkPeer,
    Node,
    NodePeer,
    Not,
    Nothing,
    NotIn,
    Or,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Profile,
    Rule,
    Selector,
    StagedAction,
    Tier,
)
from tests.semantics.cases import Case, all_cases, flow_of

LABELS = {"app": ("web", "db", "api"), "tier": ("fe", "be"), "env": ("prod", "dev")}
NAMESPACES = ("ns-a", "ns-b", "ns-c", "ns-undeclared")
PORT_NAMES = ("http", "dns")
PORTS = (0, 53, 80, 81, 443, 8080)
PROTOCOLS = (TCP, UDP, SCTP, ICMP)
NODE_IPS = ("172.18.0.2", "172.18.0.3", "fd00:18::2")
EXTERNAL_IPS = ("192.168.1.5", "8.8.8.8", "10.1.0.10", "2001:db8::7", "fd00:18::9", *NODE_IPS)
NETWORKS = (
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.0.0/24",
    "10.1.0.8/29",
    "10.1.1.10/32",
    "172.18.0.0/16",
    "172.18.0.2/32",
    "192.168.0.0/16",
    "::/0",
    "fd00::/8",
    "fd00:18::/64",
    "2001:db8::/32",
)

keys = st.sampled_from(sorted(LABELS))
# Selectors also name the labels Calico adds to pods (namespace, service account).
selector_keys = st.sampled_from(
    (*sorted(LABELS), "projectcalico.org/namespace", "projectcalico.org/serviceaccount")
)


@st.composite
def label_sets(draw: st.DrawFn) -> dict[str, str]:
    chosen = draw(st.lists(keys, max_size=3, unique=True))
    return {key: draw(st.sampled_from(LABELS[key])) for key in chosen}


# Strategies are built once: building them per draw makes hypothesis re-validate them.
_values = st.frozensets(
    st.sampled_from(("web", "db", "prod", "fe", "x", "ns-a", "ns-b", "sa-1")), max_size=2
)
selectors: st.SearchStrategy[Selector] = st.recursive(
    st.one_of(
        st.just(All()),
        st.just(Nothing()),
        st.just(Global()),
        st.builds(Has, selector_keys),
        st.builds(In, selector_keys, _values),
        st.builds(NotIn, selector_keys, _values),
    ),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, max_size=3).map(tuple)),
    ),
    max_leaves=4,
)

# Broad selectors often, so that policies select pods and rules decide.
_broad = st.one_of(st.just(All()), st.builds(In, keys, _values), selectors)
endpoint_selectors = st.builds(
    EndpointSelector,
    pods=_broad,
    namespaces=st.one_of(st.just(All()), selectors),
    namespace=st.one_of(st.none(), st.none(), st.sampled_from(NAMESPACES)),
    host_endpoints=st.booleans(),
)


@st.composite
def network_peers(draw: st.DrawFn) -> NetworkPeer:
    cidr = ip_network(draw(st.sampled_from(NETWORKS)))
    # Blocks inside the CIDR (as the dialects require) and, sometimes, any block at all.
    inside = [ip_network(n) for n in NETWORKS if ip_network(n).version == cidr.version]
    inside = [n for n in inside if n.subnet_of(cidr) and n != cidr]  # type: ignore[arg-type]
    pool = inside or [ip_network("10.1.0.0/24")]
    excepted = draw(st.lists(st.sampled_from([*pool, ip_network(NETWORKS[2])]), max_size=2))
    return NetworkPeer(cidr, tuple(excepted))


peers: st.SearchStrategy[Peer] = st.one_of(
    endpoint_selectors, network_peers(), st.builds(NodePeer, selectors)
)


@st.composite
def port_matches(draw: st.DrawFn) -> PortMatch:
    protocol = draw(st.one_of(st.none(), st.sampled_from(PROTOCOLS)))
    if draw(st.booleans()):
        return PortMatch(protocol, name=draw(st.sampled_from((*PORT_NAMES, "unknown"))))
    if draw(st.booleans()):
        return PortMatch(protocol)
    start = draw(st.sampled_from(PORTS))
    end = draw(st.sampled_from([p for p in PORTS if p >= start] + [65535]))
    return PortMatch(protocol, PortRange(start, end))


def rule_lists(actions: tuple[Action, ...]) -> st.SearchStrategy[tuple[Rule, ...] | None]:
    rules = st.builds(
        Rule,
        action=st.sampled_from(actions),
        peers=st.lists(peers, max_size=3).map(tuple),
        ports=st.lists(port_matches(), max_size=3).map(tuple),
        name=st.sampled_from(("", "", "named-rule")),
    )
    return st.one_of(st.none(), st.lists(rules, max_size=3).map(tuple))


k8s_rule_lists = rule_lists((Action.ALLOW,))
_profile_rules = rule_lists((Action.ALLOW, Action.DENY)).map(lambda rules: rules or ())
tiered_rule_lists = rule_lists((Action.ALLOW, Action.DENY, Action.PASS, Action.LOG))


@st.composite
def network_policies(draw: st.DrawFn, name: str) -> Policy:
    """Kubernetes-NetworkPolicy shaped: default tier, order 1000, Allow rules, namespaced."""
    namespace = draw(st.sampled_from(NAMESPACES))
    return Policy(
        name=name,
        kind="NetworkPolicy",
        tier=DEFAULT_TIER.name,
        subject=EndpointSelector(pods=draw(_broad), namespace=namespace),
        namespace=namespace,
        order=K8S_NETWORK_POLICY_ORDER,
        ingress=draw(k8s_rule_lists),
        egress=draw(k8s_rule_lists),
    )


@st.composite
def tiered_policies(draw: st.DrawFn, name: str, tiers: tuple[str, ...]) -> Policy:
    """Admin, baseline or user-tier policies with every action and any order (ties too)."""
    namespace = draw(st.one_of(st.none(), st.sampled_from(NAMESPACES)))
    return Policy(
        name=name,
        kind="TestPolicy",
        tier=draw(st.sampled_from(tiers)),
        subject=draw(endpoint_selectors),
        namespace=namespace,
        order=draw(st.sampled_from((None, 0.0, 1.0, 1.0, 5.0))),
        ingress=draw(tiered_rule_lists),
        egress=draw(tiered_rule_lists),
    )


_deny_or_pass = st.sampled_from((Action.DENY, Action.PASS))


@st.composite
def tier_sets(draw: st.DrawFn) -> tuple[Tier, ...]:
    def default() -> Action:
        return draw(st.sampled_from((Action.PASS, Action.DENY, Action.ALLOW)))

    tiers = [
        Tier(ADMIN_TIER.name, ADMIN_TIER.order, default()),
        Tier(DEFAULT_TIER.name, DEFAULT_TIER.order, draw(_deny_or_pass)),
        Tier(BASELINE_TIER.name, BASELINE_TIER.order, default()),
    ]
    if draw(st.booleans()):  # a user tier, maybe tied in order with a built-in one
        tiers.append(Tier("user", draw(st.sampled_from((500.0, 1_000.0, 2e6))), default()))
    return tuple(tiers)


_declared_ports = st.lists(
    st.builds(
        NamedPort,
        st.sampled_from(PORT_NAMES),
        st.sampled_from((53, 80, 81)),
        st.sampled_from((TCP, UDP)),
    ),
    max_size=4,
).map(tuple)
_addresses = st.sampled_from(("10.1.0.{}", "10.1.1.{}", "fd00::{}", ""))
_namespaces = st.sampled_from(NAMESPACES)
_label_sets = label_sets()
_service_accounts = st.sampled_from((None, "sa-1", "sa-2"))


@st.composite
def inventories(draw: st.DrawFn) -> tuple[tuple[Namespace, ...], tuple[Node, ...], list[Endpoint]]:
    namespaces = tuple(
        Namespace(name, {"kubernetes.io/metadata.name": name, **draw(_label_sets)})
        for name in NAMESPACES[:3]
        if draw(st.booleans())
    )
    nodes = tuple(
        Node(
            f"node-{i}",
            draw(_label_sets),
            () if draw(st.booleans()) else (ip_address(NODE_IPS[i]),),
        )
        for i in range(draw(st.integers(0, 2)))
    )
    endpoints: list[Endpoint] = []
    for i in range(draw(st.integers(1, 7))):
        ip = draw(_addresses).format(10 + i)
        endpoints.append(
            Endpoint(
                kind=EndpointKind.POD,
                name=f"pod-{i}",
                namespace=draw(_namespaces),
                labels=draw(_label_sets),
                ips=(ip_address(ip),) if ip else (),
                ports=draw(_declared_ports),
                service_account=draw(_service_accounts),
            )
        )
    for node in nodes:
        if draw(st.booleans()):  # a hostNetwork pod shares its node's addresses
            endpoints.append(
                Endpoint(
                    kind=EndpointKind.HOST,
                    name=f"agent-{node.name}",
                    namespace="ns-a",
                    labels={"app": "web"},
                    ips=node.ips,
                    node=node.name,
                )
            )
        if node.ips and draw(st.booleans()):  # a Calico host endpoint on the node's address
            endpoints.append(
                Endpoint(
                    kind=EndpointKind.HOST_ENDPOINT,
                    name=f"{node.name}-eth0",
                    labels={"app": "web"},
                    ips=node.ips,
                    node=node.name,
                    profiles=("profile-0",),
                )
            )
    return namespaces, nodes, endpoints


_externals = st.lists(st.sampled_from(EXTERNAL_IPS), min_size=1, max_size=3, unique=True)
_services = st.lists(
    st.tuples(st.sampled_from((80, 80, 81, 53, *PORTS)), st.sampled_from((TCP, TCP, *PROTOCOLS))),
    min_size=1,
    max_size=3,
)
_inventories = inventories()
_tier_sets = tier_sets()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ClusterState, list[Probe]]:
    namespaces, nodes, endpoints = draw(_inventories)
    tiers = draw(_tier_sets)
    tier_names = (*(t.name for t in tiers), "undefined-tier")
    policies: list[Policy] = []
    for i in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            policies.append(draw(network_policies(f"np-{i}")))
        else:
            policies.append(draw(tiered_policies(f"tp-{i}", tier_names)))
    profile = Profile("profile-0", ingress=draw(_profile_rules), egress=draw(_profile_rules))
    cluster = ClusterState(
        namespaces, nodes, tuple(endpoints), tuple(policies), tiers, profiles=(profile,)
    )
    # Every pair of ends (pods, hosts, a few outside addresses) on a few ports each.
    names = [e.key for e in endpoints] + draw(_externals)
    services = draw(_services)
    probes = [Probe(s, d, port, proto) for s in names for d in names for port, proto in services]
    return cluster, probes


def check_agrees(cluster: ClusterState, probes: list[Probe]) -> None:
    """Every probe, both directions: the same verdict, reason and deciding policy/rule."""
    batch = resolve_probes(cluster, probes)
    result = evaluate(cluster, batch)
    engine = PolicyEngine(cluster)
    for i, probe in enumerate(probes):
        src, dst = cluster.endpoint(probe.src), cluster.endpoint(probe.dst)
        assert src is not None and dst is not None
        verdict = engine.decide(Flow(src, dst, probe.port, probe.protocol))
        for egress, decision in ((True, verdict.egress), (False, verdict.ingress)):
            columns = result.egress if egress else result.ingress
            expected = decision.deciding
            if decision.reason is Reason.PROFILE:
                assert columns.rule[i] == decision.rule_index
            got = (bool(columns.allowed[i]), result.deciding(i, egress))
            assert got == (decision.allowed, expected), (probe, egress)
            if decision.reason is Reason.RULE:
                assert result.policies[columns.policy[i]] is decision.policy
                assert columns.rule[i] == decision.rule_index
        assert bool(result.allowed[i]) == verdict.allowed
        if verdict.staged is not None:
            staged = result.staged
            assert staged is not None
            assert bool(staged.allowed[i]) == verdict.staged.allowed, probe
            for egress, decision in (
                (True, verdict.staged.egress),
                (False, verdict.staged.ingress),
            ):
                assert staged.deciding(i, egress) == decision.deciding, (probe, egress, "staged")
        else:
            assert result.staged is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_agrees_with_single_flow_engine(scenario: tuple[ClusterState, list[Probe]]) -> None:
    check_agrees(*scenario)


CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.path.parent.name}/{c.name}")
def test_semantics_case(case: Case) -> None:
    """The conformance and e2e corpus, through the vectorized path."""
    cluster = case.cluster()
    expectations = case.expectations()
    probes = []
    for expectation in expectations:
        flow = flow_of(cluster, expectation)
        probes.append(Probe(expectation.src, expectation.dst, flow.port, flow.protocol))
    result = evaluate(cluster, resolve_probes(cluster, probes))
    wrong = [
        f"{e}: expected {'allow' if e.allowed else 'deny'}, egress {result.deciding(i, True)}, "
        f"ingress {result.deciding(i, False)}"
        for i, e in enumerate(expectations)
        if bool(result.allowed[i]) != e.allowed
    ]
    staged = result.staged
    wrong += [
        f"{e}: the staged set should {'allow' if e.staged else 'deny'}"
        for i, e in enumerate(expectations)
        if e.staged is not None and (staged is None or bool(staged.allowed[i]) != e.staged)
    ]
    assert not wrong, "\n".join(wrong)
    check_agrees(cluster, probes)


def test_engine_reuses_work_across_batches_and_handles_empty_batches() -> None:
    web = Endpoint(EndpointKind.POD, "web", "shop", {"app": "web"}, (ip_address("10.0.0.1"),))
    db = Endpoint(EndpointKind.POD, "db", "shop", {"app": "db"}, (ip_address("10.0.0.2"),))
    web_pods = EndpointSelector(In("app", frozenset({"web"})), namespace="shop")
    only_web = Rule(Action.ALLOW, (web_pods,))
    policy = Policy(
        "db",
        "NetworkPolicy",
        DEFAULT_TIER.name,
        EndpointSelector(In("app", frozenset({"db"})), namespace="shop"),
        namespace="shop",
        order=K8S_NETWORK_POLICY_ORDER,
        ingress=(only_web,),
    )
    cluster = ClusterState(endpoints=(web, db), policies=(policy,))
    engine = VectorEngine(cluster)
    assert len(engine.evaluate(resolve_probes(cluster, [])).allowed) == 0
    probes = [Probe("shop/web", "shop/db", 5432, TCP), Probe("10.9.9.9", "shop/db", 5432, TCP)]
    for _ in range(2):
        result = engine.evaluate(resolve_probes(cluster, probes))
        assert result.allowed.tolist() == [True, False]
        assert result.deciding(1, False) == "default (default deny)"


def _pod(name: str, ip: str, *ports: NamedPort, node: str | None = None) -> Endpoint:
    kind = EndpointKind.HOST if node else EndpointKind.POD
    ips = (ip_address(ip),) if ip else ()
    return Endpoint(kind, name, "ns-a", {"app": name}, ips, tuple(ports), node=node)


def _ingress_policy(*rules: Rule, tier: str = ADMIN_TIER.name) -> Policy:
    return Policy(
        "p",
        "TestPolicy",
        tier,
        EndpointSelector(In("app", frozenset({"server"}))),
        order=1.0,
        ingress=rules,
        egress=rules,
    )


CORNERS = {
    # The first declaration of a (name, protocol) is the one a named port resolves to.
    "named-port-first-wins": ClusterState(
        endpoints=(
            _pod("client", "10.0.0.1"),
            _pod(
                "server",
                "10.0.0.2",
                NamedPort("http", 80, TCP),
                NamedPort("http", 81, TCP),
                NamedPort("http", 82, UDP),
            ),
        ),
        policies=(_ingress_policy(Rule(Action.DENY, ports=(PortMatch(name="http"),))),),
    ),
    # A named port with a protocol matches only flows of that protocol.
    "named-port-protocol": ClusterState(
        endpoints=(
            _pod("client", "10.0.0.1"),
            _pod("server", "10.0.0.2", NamedPort("http", 80, UDP)),
        ),
        policies=(_ingress_policy(Rule(Action.DENY, ports=(PortMatch(TCP, name="http"),))),),
    ),
    # A node without addresses: its host endpoints are the node peer.
    "node-peer-without-address": ClusterState(
        nodes=(
            Node("n1", {"env": "prod"}),
            Node("n2", {"env": "dev"}, (ip_address("172.18.0.3"),)),
        ),
        endpoints=(
            _pod("agent", "", node="n1"),
            _pod("agent2", "172.18.0.3", node="n2"),
            _pod("server", "10.0.0.2"),
        ),
        policies=(_ingress_policy(Rule(Action.DENY, (NodePeer(In("env", frozenset({"prod"}))),))),),
    ),
    # IPv6 blocks with except; an IPv4 except never removes an IPv6 address.
    "ipv6-except": ClusterState(
        endpoints=(
            _pod("client", "fd00::1:5"),
            _pod("other", "fd00::2:5"),
            _pod("server", "fd00::9"),
        ),
        policies=(
            _ingress_policy(
                Rule(
                    Action.DENY,
                    (
                        NetworkPeer(
                            ip_network("fd00::/64"),
                            (ip_network("fd00::2:0/112"), ip_network("10.0.0.0/8")),
                        ),
                    ),
                )
            ),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner(name: str) -> None:
    cluster = CORNERS[name]
    names = [e.key for e in cluster.endpoints] + ["10.0.0.9", "fd00::2:7", "172.18.0.3"]
    probes = [
        Probe(s, d, port, proto)
        for s in names
        for d in names
        for port in (80, 81, 82)
        for proto in (TCP, UDP)
    ]
    check_agrees(cluster, probes)


def test_calico_constructs_and_host_endpoints_are_vectorized() -> None:
    """A rule-wide protocol, a staged policy, a host endpoint as subject: once beyond the
    vectors, now decided by them (no probe goes to the reference), agreeing with it exactly."""
    server = _pod("server", "10.0.0.2")
    client = _pod("client", "10.0.0.1")
    host = Endpoint(
        EndpointKind.HOST_ENDPOINT,
        "eth0",
        None,
        {"app": "server"},
        (ip_address("172.18.0.9"),),
        node="n1",
    )
    calico_rule = Rule(Action.DENY, protocol=UDP)
    staged = replace(_ingress_policy(Rule(Action.DENY)), name="staged", staged=StagedAction.SET)
    cluster = ClusterState(
        endpoints=(client, server, host),
        policies=(
            _ingress_policy(calico_rule, Rule(Action.ALLOW, ports=(PortMatch(TCP),))),
            staged,
        ),
    )
    names = [e.key for e in cluster.endpoints] + ["10.0.0.9"]
    probes = [Probe(s, d, 80, proto) for s in names for d in names for proto in (TCP, UDP)]
    check_agrees(cluster, probes)
    engine = VectorEngine(cluster)
    engine.evaluate(resolve_probes(cluster, probes))
    assert engine.staged_engine is not None
    assert engine.reference_decisions == engine.staged_engine.reference_decisions == 0

"""Calico constructs through the vectorized engine: it agrees with `PolicyEngine` on every
probe (verdict, reason, deciding tier, policy or profile, and rule), and it decides them itself:
no probe of these scenarios is handed to the single-flow fallback."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_network
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.engine.batch import Probe, resolve_probes
from netwarden.engine.endpoint_vectors import EndpointVectors
from netwarden.engine.entity import in_any
from netwarden.engine.vectorized import VectorEngine
from netwarden.model import (
    ICMP,
    ICMPV6,
    SCTP,
    TCP,
    UDP,
    Action,
    All,
    ClusterState,
    Contains,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    EndsWith,
    EntityMatch,
    Global,
    Has,
    HttpMatch,
    IcmpMatch,
    In,
    NamedPort,
    Namespace,
    NetworkSet,
    Node,
    Not,
    Or,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Profile,
    Rule,
    Selector,
    Service,
    ServiceAccount,
    ServiceAccountMatch,
    ServicePort,
    StagedAction,
    StartsWith,
    Tier,
)
from netwarden.model.selector import Labels
from tests.engine.test_vectorized import (
    CASES,
    NAMESPACES,
    NETWORKS,
    check_agrees,
    network_peers,
    port_matches,
    selectors,
    tier_sets,
)
from tests.semantics.cases import Case, flow_of

ACCOUNTS = ("sa-1", "sa-2", "default")
SERVICES = (("ns-a", "svc-a"), ("ns-b", "svc-b"), ("ns-c", "missing"))
PROFILES = ("profile-0", "profile-1", "profile-missing")
NODE_IPS = ("172.18.0.2", "172.18.0.3", "fd00:18::2")
#: Outside addresses: in network sets, at nodes without endpoints, and anywhere.
EXTERNAL_IPS = ("198.51.100.7", "192.0.2.5", "10.1.0.9", "8.8.8.8", "2001:db8::7", *NODE_IPS)
SET_NETWORKS = (*NETWORKS, "198.51.100.0/24", "192.0.2.0/25", "10.1.0.10/32", "fd00::10/128")
PROBE_PORTS = ((80, TCP), (22, TCP), (53, UDP), (68, UDP), (6443, TCP), (81, SCTP), (0, ICMP))
PROBE_PORTS += ((0, ICMPV6), (8080, TCP), (179, TCP))

_keys = st.sampled_from(("app", "role", "tier", "env", "projectcalico.org/serviceaccount"))
_texts = st.sampled_from(("web", "db", "partner", "office", "prod", "sa-1", "w"))
calico_selectors: st.SearchStrategy[Selector] = st.one_of(
    selectors,
    st.builds(Contains, _keys, _texts),
    st.builds(StartsWith, _keys, _texts),
    st.builds(EndsWith, _keys, _texts),
    st.builds(In, st.just("role"), st.frozensets(_texts, min_size=1, max_size=2)),
)
# Scopes: global() alone and inside And / Or / Not, namespace labels, everything.
scopes: st.SearchStrategy[Selector | None] = st.one_of(
    st.none(),
    st.just(Global()),
    st.just(All()),
    st.builds(Not, st.just(Global())),
    st.builds(lambda s: Or((Global(), s)), selectors),
    selectors,
)
_networks = st.sampled_from(SET_NETWORKS).map(ip_network)
account_matches = st.builds(
    ServiceAccountMatch,
    names=st.frozensets(st.sampled_from(ACCOUNTS), max_size=2),
    selector=st.one_of(st.none(), calico_selectors),
)


_ENTITY_FIELDS = ("nets", "not_nets", "selector", "not_selector", "scope", "accounts", "service")


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`common` three times in four (hypothesis' one_of favours no branch reliably)."""
    return st.sampled_from((common, common, common, rare)).flatmap(lambda chosen: chosen)


_simple: st.SearchStrategy[Selector] = st.sampled_from(
    (
        All(),
        Has("app"),
        Has("role"),
        In("app", frozenset({"web", "db"})),
        In("role", frozenset({"partner", "office", "w"})),
        Not(Has("env")),
        Not(In("role", frozenset({"partner"}))),
    )
)
_broad: st.SearchStrategy[Selector] = mostly(_simple, calico_selectors)


@st.composite
def entity_matches(draw: st.DrawFn) -> EntityMatch:
    """One to three fields, so that matches are neither always nor never; the scope is a
    namespaced policy's own namespace or a namespace selector (now and then both: the model
    allows it, and the engine must agree)."""
    chosen = draw(st.sets(st.sampled_from(_ENTITY_FIELDS), min_size=1, max_size=3))

    def nets() -> tuple[Any, ...]:
        return tuple(draw(st.lists(_networks, min_size=1, max_size=2)))

    namespace, namespaces = None, None
    if "scope" in chosen or draw(st.booleans()):
        namespace = draw(st.one_of(st.none(), st.sampled_from(NAMESPACES)))
        if namespace is None or draw(st.integers(0, 4)) == 0:
            namespaces = draw(scopes)
    return EntityMatch(
        nets=nets() if "nets" in chosen else (),
        not_nets=nets() if "not_nets" in chosen else (),
        selector=draw(_broad) if "selector" in chosen else None,
        not_selector=draw(_broad) if "not_selector" in chosen else None,
        namespace=namespace,
        namespaces=namespaces,
        service_accounts=draw(account_matches) if "accounts" in chosen else None,
        service=draw(st.sampled_from(SERVICES)) if "service" in chosen else None,
    )


_entities = entity_matches()
endpoint_selectors = st.builds(
    EndpointSelector,
    pods=_broad,
    namespaces=mostly(st.just(All()), selectors),
    namespace=mostly(st.none(), st.sampled_from(NAMESPACES)),
    host_endpoints=st.booleans(),
    service_accounts=mostly(st.none(), _broad),
)
calico_peers: st.SearchStrategy[Peer] = mostly(
    _entities, st.one_of(endpoint_selectors, network_peers())
)
_icmp = st.builds(IcmpMatch, st.sampled_from((8, 128, 8, 3)), st.sampled_from((None, 0, 1)))
_protocols = st.sampled_from((TCP, TCP, UDP, SCTP, ICMP, ICMPV6))
_CONDITIONS = ("protocol", "not_protocol", "icmp", "not_icmp", "ip_version", "http", "local")


@st.composite
def calico_rules(draw: st.DrawFn, actions: tuple[Action, ...]) -> Rule:
    """A rule with a peer most of the time, and at most two rule-wide conditions. Calico rules
    have one peer at most; the model allows more (a Service with ports beside another peer
    takes its own path)."""
    conditions = draw(st.sets(st.sampled_from(_CONDITIONS), max_size=2))

    def given(field: str, strategy: st.SearchStrategy[Any]) -> Any:
        return draw(strategy) if field in conditions else None

    return Rule(
        action=draw(st.sampled_from(actions)),
        peers=draw(mostly(st.lists(calico_peers, max_size=1), st.lists(calico_peers)).map(tuple)),
        ports=draw(mostly(st.just(()), st.lists(port_matches(), max_size=2).map(tuple))),
        name=draw(st.sampled_from(("", "named-rule"))),
        local=given("local", _entities),
        not_ports=draw(mostly(st.just(()), st.lists(port_matches(), max_size=2).map(tuple))),
        protocol=given("protocol", _protocols),
        not_protocol=given("not_protocol", _protocols),
        icmp=given("icmp", _icmp),
        not_icmp=given("not_icmp", _icmp),
        ip_version=given("ip_version", st.sampled_from((4, 6))),
        http=given("http", st.just(HttpMatch(("GET",), ("/",)))),
    )


_rule_lists = st.lists(
    calico_rules((Action.ALLOW, Action.DENY, Action.PASS, Action.LOG)), max_size=4
)
_profile_rules = st.lists(
    calico_rules((Action.ALLOW, Action.DENY, Action.LOG, Action.PASS)), max_size=3
)
_staged = mostly(st.none(), st.sampled_from((StagedAction.SET, StagedAction.DELETE)))


@st.composite
def calico_policies(draw: st.DrawFn, tiers: tuple[str, ...]) -> Policy:
    namespace = draw(st.one_of(st.none(), st.sampled_from(NAMESPACES)))
    return Policy(
        # A small pool of names, so that staged policies stage enforced ones.
        name=f"p-{draw(st.integers(0, 4))}",
        kind=draw(st.sampled_from(("CalicoNetworkPolicy", "GlobalNetworkPolicy"))),
        tier=draw(st.sampled_from(tiers)),
        subject=draw(endpoint_selectors),
        namespace=namespace,
        order=draw(st.sampled_from((None, 0.0, 1.0, 1.0, 5.0))),
        ingress=draw(st.one_of(st.none(), _rule_lists.map(tuple), _rule_lists.map(tuple))),
        egress=draw(st.one_of(st.none(), _rule_lists.map(tuple), _rule_lists.map(tuple))),
        staged=draw(_staged),
    )


_label_sets = st.dictionaries(st.sampled_from(("app", "role", "tier", "env")), _texts, max_size=2)
_pod_addresses = st.sampled_from(("10.1.0.{}", "10.1.1.{}", "fd00::{}", "198.51.100.{}", ""))


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    namespaces = tuple(
        Namespace(name, {"kubernetes.io/metadata.name": name, **draw(_label_sets)})
        for name in NAMESPACES[:3]
        if draw(st.booleans())
    )
    accounts = tuple(
        ServiceAccount(name, namespace, draw(_label_sets))
        for namespace in NAMESPACES
        for name in ACCOUNTS
        if draw(st.booleans())
    )
    nodes = tuple(
        Node(f"node-{i}", draw(_label_sets), (ip_address(NODE_IPS[i]),))
        for i in range(draw(st.integers(0, 2)))
    )
    endpoints: list[Endpoint] = []
    for i in range(draw(st.integers(1, 6))):
        address = draw(_pod_addresses).format(10 + i)
        endpoints.append(
            Endpoint(
                kind=EndpointKind.POD,
                name=f"pod-{i}",
                namespace=draw(st.sampled_from(NAMESPACES)),
                labels=draw(_label_sets),
                ips=(ip_address(address),) if address else (),
                ports=draw(
                    st.lists(
                        st.builds(
                            NamedPort,
                            st.sampled_from(("http", "dns")),
                            st.sampled_from((53, 80, 8080)),
                            st.sampled_from((TCP, UDP)),
                        ),
                        max_size=2,
                    ).map(tuple)
                ),
                service_account=draw(st.sampled_from((None, *ACCOUNTS))),
            )
        )
    for node in nodes:
        if draw(st.booleans()):  # a hostNetwork pod at its node's address
            endpoints.append(
                Endpoint(
                    EndpointKind.HOST,
                    f"agent-{node.name}",
                    "ns-a",
                    {"app": "web"},
                    node.ips,
                    node=node.name,
                    ports=(NamedPort("http", 80, TCP),),
                )
            )
        if draw(st.booleans()):  # a host endpoint on the node's address, or on none
            endpoints.append(
                Endpoint(
                    EndpointKind.HOST_ENDPOINT,
                    f"{node.name}-eth0",
                    labels=draw(_label_sets),
                    ips=node.ips if draw(st.booleans()) else (),
                    node=node.name,
                    profiles=tuple(draw(st.lists(st.sampled_from(PROFILES), max_size=2))),
                    ports=(NamedPort("http", 8080, TCP),),
                )
            )
    if draw(st.booleans()):  # a host endpoint at an address of no node
        endpoints.append(
            Endpoint(
                EndpointKind.HOST_ENDPOINT,
                "bare-eth0",
                labels={"role": "partner"},
                ips=(ip_address("192.0.2.5"),),
                profiles=("profile-1",),
            )
        )
    return {
        "namespaces": namespaces,
        "service_accounts": accounts,
        "nodes": nodes,
        "endpoints": tuple(endpoints),
    }


@st.composite
def network_sets(draw: st.DrawFn) -> tuple[NetworkSet, ...]:
    made = [
        NetworkSet(
            f"set-{i}",
            tuple(draw(st.lists(_networks, min_size=1, max_size=3))),
            draw(_label_sets),
            draw(st.one_of(st.none(), st.sampled_from(NAMESPACES))),
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    if draw(st.booleans()):  # a feed-sized set: more networks than are tested one by one
        nets = draw(st.lists(_networks, min_size=9, max_size=14))
        made.append(NetworkSet("feed", tuple(nets), {"role": "feed"}))
    return tuple(made)


@st.composite
def services(draw: st.DrawFn, endpoints: tuple[Endpoint, ...]) -> tuple[Service, ...]:
    addresses = sorted({ip for e in endpoints for ip in e.ips} | {ip_address("8.8.8.8")}, key=str)
    ports = st.builds(ServicePort, st.sampled_from((80, 53, 8080)), st.sampled_from((TCP, UDP)))
    return tuple(
        Service(
            name,
            namespace,
            tuple(draw(st.lists(st.sampled_from(addresses), max_size=3))),
            tuple(draw(st.lists(ports, max_size=2))),
        )
        for namespace, name in SERVICES[:2]
    )


_inventories = inventories()
_network_sets = network_sets()
_tier_sets = tier_sets()


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ClusterState, list[Probe]]:
    inventory = draw(_inventories)
    tiers: tuple[Tier, ...] = draw(_tier_sets)
    names = tuple(t.name for t in tiers)
    policies = tuple(draw(calico_policies(names)) for _ in range(draw(st.integers(0, 7))))
    profiles = tuple(
        Profile(
            name,
            draw(_label_sets),
            ingress=tuple(draw(_profile_rules)),
            egress=tuple(draw(_profile_rules)),
        )
        for name in PROFILES[:2]
    )
    cluster = ClusterState(
        policies=policies,
        tiers=tiers,
        network_sets=draw(_network_sets),
        services=draw(services(inventory["endpoints"])),
        profiles=profiles,
        **inventory,
    )
    ends = [e.key for e in cluster.endpoints]
    ends += draw(st.lists(st.sampled_from(EXTERNAL_IPS), min_size=1, max_size=3, unique=True))
    ports = draw(st.lists(st.sampled_from(PROBE_PORTS), min_size=2, max_size=4, unique=True))
    ports.append(draw(st.sampled_from(((0, ICMP), (0, ICMPV6)))))  # ICMP conditions
    probes = [Probe(s, d, port, protocol) for s in ends for d in ends for port, protocol in ports]
    return cluster, probes


@dataclass
class Counted:
    """Calls of `PolicyEngine.decide_direction` while the vectorized engine evaluates."""

    calls: int = 0


def evaluate_counting(
    cluster: ClusterState, probes: list[Probe], monkeypatch: pytest.MonkeyPatch
) -> tuple[VectorEngine, int]:
    counted = Counted()
    original = PolicyEngine.decide_direction

    def counting(self: PolicyEngine, *args: Any) -> Any:
        counted.calls += 1
        return original(self, *args)

    engine = VectorEngine(cluster)
    with monkeypatch.context() as patched:
        patched.setattr(PolicyEngine, "decide_direction", counting)
        engine.evaluate(resolve_probes(cluster, probes))
    return engine, counted.calls


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_calico_agrees_without_fallback(
    scenario: tuple[ClusterState, list[Probe]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, probes = scenario
    check_agrees(cluster, probes)
    engine, calls = evaluate_counting(cluster, probes, monkeypatch)
    assert calls == 0
    assert engine.reference_decisions == 0
    staged = engine.staged_engine
    assert staged is None or staged.reference_decisions == 0


CALICO_CASES = [case for case in CASES if case.path.parent.name == "calico"]


@pytest.mark.parametrize("case", CALICO_CASES, ids=lambda c: c.name)
def test_calico_corpus_is_vectorized(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Calico corpus (whose verdicts test_vectorized checks) needs no fallback either."""
    cluster = case.cluster()
    probes = []
    for expectation in case.expectations():
        flow = flow_of(cluster, expectation)
        probes.append(Probe(expectation.src, expectation.dst, flow.port, flow.protocol))
    assert evaluate_counting(cluster, probes, monkeypatch)[1] == 0


@dataclass(frozen=True)
class Odd(Selector):
    """A selector node the label tables do not know: the vectors must not guess at it."""

    key: str

    def matches(self, labels: Labels) -> bool:
        return len(labels.get(self.key, "")) % 2 == 1


def _pod(name: str, ip: str, namespace: str = "ns-a", **labels: str) -> Endpoint:
    return Endpoint(EndpointKind.POD, name, namespace, labels, (ip_address(ip),))


EVERYTHING = All()


def _policy(
    *ingress: Rule, egress: tuple[Rule, ...] = (), subject: Selector = EVERYTHING
) -> Policy:
    return Policy(
        "p",
        "GlobalNetworkPolicy",
        "default",
        EndpointSelector(subject, host_endpoints=True),
        order=1.0,
        ingress=ingress,
        egress=egress,
    )


def _all_pairs(cluster: ClusterState, *extra: str) -> list[Probe]:
    names = [e.key for e in cluster.endpoints] + list(extra)
    return [Probe(s, d, p, proto) for s in names for d in names for p, proto in PROBE_PORTS]


def test_unknown_constructs_fall_back_and_still_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """A selector node, a policy field or a profile the vectors do not know: the probes they
    touch go to the reference, the rest stay vectorized, and every answer is exact."""
    web = _pod("web", "10.0.0.1", app="web")
    db = _pod("db", "10.0.0.2", app="db")
    host = Endpoint(
        EndpointKind.HOST_ENDPOINT,
        "eth0",
        None,
        {"app": "db"},
        (ip_address("172.18.0.9"),),
        profiles=("odd",),
    )
    odd_peer = EntityMatch(selector=Odd("app"))
    odd_profile = Profile("odd", ingress=(Rule(Action.ALLOW, (odd_peer,)),))
    cluster = ClusterState(
        endpoints=(web, db, host),
        policies=(_policy(Rule(Action.DENY, (odd_peer,)), subject=In("app", frozenset({"db"}))),),
        profiles=(odd_profile,),
    )
    probes = _all_pairs(cluster, "10.9.9.9")
    check_agrees(cluster, probes)
    engine, calls = evaluate_counting(cluster, probes, monkeypatch)
    assert 0 < calls == engine.reference_decisions < 2 * len(probes)


def test_service_ports_beside_another_peer() -> None:
    """A Service's ports count where the Service is the destination (an egress rule's peer,
    an ingress rule's local end), not at the source; beside another peer they do not narrow
    that peer."""
    web = _pod("web", "10.0.0.1", app="web")
    db = _pod("db", "10.0.0.2", app="db")
    api = _pod("api", "10.0.0.3", app="api")
    service = Service("db", "ns-a", (ip_address("10.0.0.2"),), (ServicePort(80, TCP),))
    to_service = EntityMatch(service=("ns-a", "db"))
    to_api = EntityMatch(selector=In("app", frozenset({"api"})))
    # At the source (an egress rule's local end) a Service's ports do not count.
    from_service = Rule(Action.DENY, local=to_service, protocol=TCP)
    egress = (from_service, Rule(Action.ALLOW, (to_service, to_api)), Rule(Action.DENY))
    local_service = Rule(Action.ALLOW, local=to_service)  # ingress: the local end is the dst
    cluster = ClusterState(
        endpoints=(web, db, api),
        policies=(_policy(local_service, Rule(Action.DENY), egress=egress),),
        services=(service,),
    )
    check_agrees(cluster, _all_pairs(cluster, "10.9.9.9"))


def test_named_not_ports_and_governed_host_endpoints() -> None:
    """notPorts by name resolve on the destination; a hostNetwork pod at a host endpoint's
    address is governed by it (failsafe ports, its policies, its profiles)."""
    node = Node("n1", {}, (ip_address("172.18.0.2"),))
    agent = Endpoint(
        EndpointKind.HOST, "agent", "ns-a", {}, node.ips, (NamedPort("http", 80, TCP),), "n1"
    )
    hep = Endpoint(
        EndpointKind.HOST_ENDPOINT,
        "n1-eth0",
        None,
        {"role": "node"},
        node.ips,
        node="n1",
        profiles=("allow-out", "missing"),
    )
    web = Endpoint(
        EndpointKind.POD,
        "web",
        "ns-a",
        {"app": "web"},
        (ip_address("10.0.0.1"),),
        (NamedPort("http", 8080, TCP),),
    )
    not_http = Rule(Action.ALLOW, not_ports=(PortMatch(TCP, name="http"),), protocol=TCP)
    profile = Profile("allow-out", egress=(Rule(Action.LOG), Rule(Action.ALLOW, protocol=TCP)))
    cluster = ClusterState(
        nodes=(node,),
        endpoints=(agent, hep, web),
        policies=(_policy(not_http, Rule(Action.PASS), subject=Has("role")),),
        profiles=(profile,),
    )
    check_agrees(cluster, _all_pairs(cluster, "10.9.9.9", "fd00::1"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(SET_NETWORKS).map(ip_network), min_size=1, max_size=20),
    st.lists(
        st.sampled_from((*EXTERNAL_IPS, "10.1.0.10", "fd00::10", "0.0.0.0", "::")), max_size=8
    ),
)
def test_addresses_in_many_networks(networks: list[Any], addresses: list[str]) -> None:
    """Merged, binary-searched ranges (many networks) agree with testing each network."""
    endpoints = [Endpoint(EndpointKind.EXTERNAL, a, ips=(ip_address(a),)) for a in addresses]
    endpoints.append(Endpoint(EndpointKind.EXTERNAL, "none"))
    vectors = EndpointVectors(ClusterState(), endpoints)
    found = vectors.inside_any(tuple(networks))
    expected = [bool(e.ips) and in_any(e.ips[0], tuple(networks)) for e in endpoints]
    assert found.tolist() == expected


def test_generated_calico_cluster_is_vectorized(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's Calico cluster reads cleanly through the Calico reader, uses what it
    claims to, and is decided without fallback, agreeing with the reference."""
    from benchmarks.generate import generate_calico_cluster, generate_probes

    text = generate_calico_cluster(pods=300, policies=60, seed=5)
    loaded = load_text(text, "generated.yaml")
    assert not loaded.skipped
    cluster = loaded.cluster
    assert cluster.network_sets and cluster.service_accounts and cluster.profiles
    assert any(e.kind is EndpointKind.HOST_ENDPOINT for e in cluster.endpoints)
    assert {p.kind for p in cluster.policies} >= {"GlobalNetworkPolicy", "CalicoNetworkPolicy"}
    assert any(p.staged is not None for p in cluster.policies)
    rules = [r for p in cluster.policies for r in (*(p.ingress or ()), *(p.egress or ()))]
    assert any(isinstance(peer, EntityMatch) for r in rules for peer in r.peers)
    assert any(r.not_ports or r.icmp or r.ip_version for r in rules)
    probes = generate_probes(cluster, 3000, seed=5)
    check_agrees(cluster, probes)
    engine, calls = evaluate_counting(cluster, probes, monkeypatch)
    assert calls == 0
    result = engine.evaluate(resolve_probes(cluster, probes))
    assert 0.0 < float(np.mean(result.allowed)) < 1.0


def test_staged_policies_are_vectorized_too() -> None:
    web = _pod("web", "10.0.0.1", app="web")
    db = _pod("db", "10.0.0.2", app="db")
    enforced = _policy(Rule(Action.ALLOW, protocol=TCP), Rule(Action.DENY))
    staged = replace(enforced, ingress=(Rule(Action.DENY, protocol=TCP),), staged=StagedAction.SET)
    cluster = ClusterState(endpoints=(web, db), policies=(enforced, staged))
    engine = VectorEngine(cluster)
    result = engine.evaluate(resolve_probes(cluster, _all_pairs(cluster)))
    assert result.staged is not None
    assert engine.staged_engine is not None and engine.staged_engine.reference_decisions == 0
    check_agrees(cluster, _all_pairs(cluster))


def test_ports_ranges_in_entity_free_rules() -> None:
    web = _pod("web", "10.0.0.1", app="web")
    db = _pod("db", "fd00::2", app="db")
    rules = (
        Rule(Action.DENY, ip_version=6, protocol=ICMPV6, icmp=IcmpMatch(128, 0)),
        Rule(Action.ALLOW, ports=(PortMatch(TCP, PortRange(1, 1024)),), not_protocol=UDP),
    )
    cluster = ClusterState(endpoints=(web, db), policies=(_policy(*rules),))
    check_agrees(cluster, _all_pairs(cluster, "10.9.9.9", "fd00::9"))

"""Entity-rule scoping as Calico does it, where the semantics corpus cannot go (host endpoints
are not compiled to nftables, so the lab cannot probe them) and against an independent oracle.

The oracle follows libcalico-go `updateprocessors/rules.go` (`getEndpointSelector`,
`parseServiceAccounts`) literally: the entity rule becomes one positive selector (namespace
selector keys prefixed `pcns.`, `all()` -> `has(projectcalico.org/namespace)`, `global()` ->
its negation, service account keys prefixed `pcsa.`, ANDed with `selector` and the scope) and
the written `notSelector`, both evaluated over the labels Calico gives each labelled thing at
the address (a pod's own plus `pcns.*` of its namespace and `pcsa.*` of its account, ...).
"""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwarden.dialects import load_text
from netwarden.engine import PolicyEngine
from netwarden.engine.batch import Probe, resolve_probes
from netwarden.engine.endpoint_vectors import EndpointVectors
from netwarden.engine.entity import entity_matches, in_any
from netwarden.engine.vector_entity import EntityVectors
from netwarden.engine.vectorized import evaluate
from netwarden.model import (
    TCP,
    All,
    And,
    ClusterState,
    Contains,
    Endpoint,
    EndpointKind,
    EntityMatch,
    Flow,
    Global,
    Has,
    In,
    Namespace,
    NetworkSet,
    Not,
    NotIn,
    Or,
    Selector,
    ServiceAccount,
    ServiceAccountMatch,
    external_endpoint,
)
from tests.engine.test_vectorized import check_agrees

HOSTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev, team: x}}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: prod, labels: {tier: frontend}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {serviceAccountName: web, containers: [{name: main, image: agnhost}]}
status: {podIP: 10.0.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: dev, labels: {app: api}}
spec: {serviceAccountName: api, containers: [{name: main, image: agnhost}]}
status: {podIP: 10.0.2.11}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [172.18.0.2]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: web-ingress}
spec:
  selector: app == "web"
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {namespaceSelector: all()}, destination: {ports: [80]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: global()}, destination: {ports: [81]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: "!has(team)"},
     destination: {ports: [82]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: "all() && !has(team)"},
     destination: {ports: [83]}}
  - {action: Allow, protocol: TCP, source: {serviceAccounts: {selector: "!has(tier)"}},
     destination: {ports: [84]}}
  - {action: Allow, protocol: TCP, source: {serviceAccounts: {names: [api]}},
     destination: {ports: [85]}}
  - {action: Allow, protocol: TCP, source: {notSelector: role == "node"}, destination: {ports: [86]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: env == "prod", notSelector: role == "node"},
     destination: {ports: [87]}}
"""
HEP, DEV_POD, PARTNER, OUTSIDE = "172.18.0.2", "dev/api", "198.51.100.7", "203.0.113.9"
#: Port -> the sources whose traffic to prod/web that rule lets in (all others: denied).
ADMITTED = {
    80: {DEV_POD},  # all(): every namespace, no host endpoint, no global set
    81: {HEP, PARTNER},  # global(): only the non-namespaced things
    82: {HEP, PARTNER},  # !has(pcns.team): no labels at all satisfies it; dev has team
    83: set(),  # all() && ...: never a non-namespaced thing; dev has team
    84: {HEP, PARTNER, DEV_POD},  # !has(pcsa.tier): dev/api's account has no object, no labels
    85: {DEV_POD},  # names: only pods run as an account
    86: {PARTNER, OUTSIDE, DEV_POD},  # a global policy: notSelector alone, no scope
    87: set(),  # scoped to env == prod: dev/api is in dev, nothing else is a pod of prod
}


def test_host_endpoints_and_global_sets_in_rule_scopes() -> None:
    cluster = load_text(HOSTS, "hosts.yaml").cluster
    sources = (HEP, DEV_POD, PARTNER, OUTSIDE)
    probes = [Probe(src, "prod/web", port, TCP) for port in ADMITTED for src in sources]
    engine = PolicyEngine(cluster)
    result = evaluate(cluster, resolve_probes(cluster, probes))
    for i, probe in enumerate(probes):
        src, dst = cluster.endpoint(probe.src), cluster.endpoint(probe.dst)
        assert src is not None and dst is not None
        expected = probe.src in ADMITTED[probe.port]
        decision = engine.decide(Flow(src, dst, probe.port, TCP)).ingress
        assert decision.allowed == expected, probe
        assert bool(result.ingress.allowed[i]) == expected, probe
    check_agrees(cluster, probes)


def _pod(namespace: str, name: str, ip: str, account: str | None = None, **labels: str) -> Endpoint:
    return Endpoint(
        EndpointKind.POD, name, namespace, labels, (ip_address(ip),), service_account=account
    )


WHY_NOT_CLUSTER = ClusterState(
    namespaces=(Namespace("prod", {"env": "prod"}), Namespace("dev", {"env": "dev"})),
    endpoints=(_pod("prod", "api", "10.0.1.11", "api", app="api"),),
    network_sets=(
        NetworkSet("trusted", (ip_network("10.0.1.11/32"),), {"trust": "high"}, "prod"),
        NetworkSet("quarantine", (ip_network("10.0.1.11/32"),), {"quarantine": "yes"}),
    ),
    service_accounts=(ServiceAccount("api", "prod", {"tier": "backend"}),),
)
API = WHY_NOT_CLUSTER.endpoints[0]
OUTSIDE_END = external_endpoint(ip_address(OUTSIDE))


@pytest.mark.parametrize(
    ("match", "end", "expected"),
    [
        # notSelector alone in a namespaced policy: the scope needs something of prod
        (
            EntityMatch(not_selector=Has("x"), namespace="prod"),
            OUTSIDE_END,
            "not in the namespaces",
        ),
        (EntityMatch(not_selector=Has("x"), namespace="prod"), API, ""),
        # ... and it looks at every namespace: the global set holding the pod's address
        (EntityMatch(not_selector=Has("quarantine"), namespace="prod"), API, "notSelector matches"),
        # a rule of nets alone, or an empty service account match, is not scoped
        (EntityMatch(nets=(ip_network("203.0.113.0/24"),), namespace="prod"), OUTSIDE_END, ""),
        (EntityMatch(namespace="prod", service_accounts=ServiceAccountMatch()), OUTSIDE_END, ""),
        # selector and account on one thing: the set has `trust`, only the pod has an account
        (
            EntityMatch(
                selector=In("trust", frozenset({"high"})),
                namespace="prod",
                service_accounts=ServiceAccountMatch(frozenset({"api"})),
            ),
            API,
            "service account does not match",
        ),
        (
            EntityMatch(
                selector=Has("app"),
                namespace="prod",
                service_accounts=ServiceAccountMatch(selector=In("tier", frozenset({"backend"}))),
            ),
            API,
            "",
        ),
        (EntityMatch(selector=Has("app"), namespace="dev"), API, "not in the namespaces"),
        (EntityMatch(selector=Has("role"), namespace="prod"), API, "selector does not match"),
    ],
)
def test_why_not(match: EntityMatch, end: Endpoint, expected: str) -> None:
    matched, why_not = entity_matches(match, end, end.ips[0], WHY_NOT_CLUSTER)
    assert matched == (expected == "")
    assert why_not.startswith(expected)


# The oracle: Calico's own rewriting, over Calico's labels.

NAMESPACE_LABEL = "projectcalico.org/namespace"
NAMESPACES = ("prod", "dev", "db")
ACCOUNTS = ("web", "api", "default")


def prefixed(selector: Selector, prefix: str) -> Selector:
    """Calico's `PrefixVisitor`: every label key gains the prefix."""
    match selector:
        case Has(key=key):
            return Has(prefix + key)
        case In(key=key, values=values):
            return In(prefix + key, values)
        case NotIn(key=key, values=values):
            return NotIn(prefix + key, values)
        case Contains(key=key, value=value):
            return Contains(prefix + key, value)
        case Not(term=term):
            return Not(prefixed(term, prefix))
        case And(terms=terms):
            return And(tuple(prefixed(t, prefix) for t in terms))
        case Or(terms=terms):
            return Or(tuple(prefixed(t, prefix) for t in terms))
    return selector


def rewritten_scope(selector: Selector) -> Selector:
    """`all()` -> `has(projectcalico.org/namespace)`, `global()` -> its negation."""
    match selector:
        case All():
            return Has(NAMESPACE_LABEL)
        case Global():
            return Not(Has(NAMESPACE_LABEL))
        case Not(term=term):
            return Not(rewritten_scope(term))
        case And(terms=terms):
            return And(tuple(rewritten_scope(t) for t in terms))
        case Or(terms=terms):
            return Or(tuple(rewritten_scope(t) for t in terms))
    return selector


def calico_selectors(match: EntityMatch) -> tuple[Selector | None, Selector | None]:
    """(positive selector, notSelector) as `getEndpointSelector` forms them."""
    scope: Selector | None = None
    if match.namespaces is not None:
        scope = rewritten_scope(prefixed(match.namespaces, "pcns."))
    elif match.namespace is not None:
        scope = In(NAMESPACE_LABEL, frozenset({match.namespace}))
    terms: list[Selector] = []
    accounts = match.service_accounts
    if accounts is not None and (accounts.names or accounts.selector is not None):
        if accounts.selector is not None:
            terms.append(prefixed(accounts.selector, "pcsa."))
        if accounts.names:
            terms.append(In("projectcalico.org/serviceaccount", accounts.names))
    if match.selector is not None:
        terms.append(match.selector)
    positive: Selector | None = And(tuple(terms)) if terms else None
    given = positive is not None or match.not_selector is not None
    if scope is not None and (given or match.namespaces is not None):
        positive = scope if positive is None else And((scope, positive))
    return positive, match.not_selector


def calico_labels(cluster: ClusterState, endpoint: Endpoint, ip: Any) -> list[dict[str, str]]:
    """The labels of every labelled thing at the address, as Calico's v1 model has them."""
    found: list[dict[str, str]] = []

    def of_namespace(namespace: str) -> dict[str, str]:
        labels = cluster.namespace_labels.get(namespace, {})
        return {f"pcns.{k}": v for k, v in labels.items()}

    if endpoint.kind is EndpointKind.POD and endpoint.namespace is not None:
        account = endpoint.service_account or "default"
        labels = cluster.service_account_labels.get((endpoint.namespace, account), {})
        found.append(
            {
                **of_namespace(endpoint.namespace),
                **{f"pcsa.{k}": v for k, v in labels.items()},
                NAMESPACE_LABEL: endpoint.namespace,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": account,
                **endpoint.labels,
            }
        )
    elif endpoint.kind is EndpointKind.HOST_ENDPOINT:
        found.append(dict(endpoint.labels))
    for network_set in cluster.network_sets:
        if in_any(ip, network_set.nets):
            if network_set.namespace is None:
                found.append(dict(network_set.labels))
            else:
                namespace = network_set.namespace
                own = {**network_set.labels, NAMESPACE_LABEL: namespace}
                found.append({**of_namespace(namespace), **own})
    return found


def calico_decides(match: EntityMatch, cluster: ClusterState, end: Endpoint) -> bool:
    positive, negative = calico_selectors(match)
    things = calico_labels(cluster, end, end.ips[0])
    if positive is not None and not any(positive.matches(t) for t in things):
        return False
    return negative is None or not any(negative.matches(t) for t in things)


_keys = st.sampled_from(("app", "role", "tier", "env", NAMESPACE_LABEL))
_values = st.sampled_from(("web", "db", "prod", "dev", "partner"))
_leaves: st.SearchStrategy[Selector] = st.one_of(
    st.just(All()),
    st.builds(Has, _keys),
    st.builds(In, _keys, st.frozensets(_values, min_size=1, max_size=2)),
    st.builds(NotIn, _keys, st.frozensets(_values, min_size=1, max_size=2)),
    st.builds(Contains, _keys, st.sampled_from(("e", "od"))),
)
_selectors: st.SearchStrategy[Selector] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda t: And(tuple(t))),
        st.lists(inner, min_size=2, max_size=3).map(lambda t: Or(tuple(t))),
    ),
    max_leaves=4,
)
_scopes = st.one_of(
    st.just(All()),
    st.just(Global()),
    st.just(Not(Global())),
    _selectors.map(lambda s: Or((Global(), s))),
    _selectors,
)
_labels = st.dictionaries(st.sampled_from(("app", "role", "tier", "env")), _values, max_size=2)
_set_networks = st.sampled_from(("10.0.0.0/16", "10.0.1.0/24", "198.51.100.0/24", "10.0.0.5/32"))


@st.composite
def matches(draw: st.DrawFn) -> EntityMatch:
    """Entity rules as Calico can write them: a namespaced policy's own namespace, or a
    namespace selector, or neither (a global policy)."""
    namespace, namespaces = None, None
    shape = draw(st.sampled_from(("namespaced", "namespace-selector", "global")))
    if shape == "namespaced":
        namespace = draw(st.sampled_from(NAMESPACES))
    elif shape == "namespace-selector":
        namespaces = draw(_scopes)
    accounts = draw(
        st.one_of(
            st.none(),
            st.builds(
                ServiceAccountMatch,
                st.frozensets(st.sampled_from(ACCOUNTS), max_size=2),
                st.one_of(st.none(), _selectors),
            ),
        )
    )
    return EntityMatch(
        selector=draw(st.one_of(st.none(), _selectors)),
        not_selector=draw(st.one_of(st.none(), _selectors)),
        namespace=namespace,
        namespaces=namespaces,
        service_accounts=accounts,
    )


@st.composite
def clusters(draw: st.DrawFn) -> ClusterState:
    endpoints = [
        Endpoint(
            EndpointKind.POD,
            f"pod-{i}",
            draw(st.sampled_from(NAMESPACES)),
            draw(_labels),
            (ip_address(f"10.0.{i % 2}.{5 + i}"),),
            service_account=draw(st.sampled_from(ACCOUNTS)),
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    if draw(st.booleans()):
        address = (ip_address("10.0.0.99"),)
        endpoints.append(Endpoint(EndpointKind.HOST_ENDPOINT, "eth0", None, draw(_labels), address))
    network_sets = tuple(
        NetworkSet(
            f"set-{i}",
            (ip_network(draw(_set_networks)),),
            draw(_labels),
            draw(st.one_of(st.none(), st.sampled_from(NAMESPACES))),
        )
        for i in range(draw(st.integers(0, 3)))
    )
    return ClusterState(
        namespaces=tuple(
            Namespace(name, draw(_labels)) for name in NAMESPACES if draw(st.booleans())
        ),
        endpoints=tuple(endpoints),
        network_sets=network_sets,
        service_accounts=tuple(
            ServiceAccount(name, namespace, draw(_labels))
            for namespace in NAMESPACES
            for name in ACCOUNTS[:2]
            if draw(st.booleans())
        ),
    )


@settings(max_examples=250, deadline=None)
@given(cluster=clusters(), match=matches())
def test_engines_are_calicos_selector_rewriting(cluster: ClusterState, match: EntityMatch) -> None:
    """Every endpoint and some outside addresses (in sets or not): the reference and the
    vectorized entity match against the oracle."""
    ends = [*cluster.endpoints]
    ends += [external_endpoint(ip_address(a)) for a in ("198.51.100.7", "10.0.0.200", OUTSIDE)]
    vectorized = EntityVectors(EndpointVectors(cluster, ends)).match(match)
    for i, end in enumerate(ends):
        expected = calico_decides(match, cluster, end)
        assert entity_matches(match, end, end.ips[0], cluster)[0] == expected, end.key
        assert bool(vectorized[i]) == expected, end.key

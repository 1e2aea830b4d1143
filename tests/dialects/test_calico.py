"""Reading Calico policies, staged policies and tiers: every field into the model, Calico's
defaults and scopes, every error located."""

from __future__ import annotations

import math
from ipaddress import ip_network
from pathlib import Path

import pytest

from netwarden.dialects import Notice, load_paths, load_text
from netwarden.errors import InputError
from netwarden.model import (
    ICMP,
    ICMPV6,
    SCTP,
    TCP,
    UDP,
    Action,
    All,
    EndpointSelector,
    EntityMatch,
    Global,
    Has,
    HttpMatch,
    IcmpMatch,
    In,
    Location,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    ServiceAccountMatch,
    StagedAction,
    Tier,
)

FIXTURES = Path(__file__).parent / "fixtures" / "calico"

NP = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
"""
GNP = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
"""


def web(selector: str) -> In:
    key, value = selector.split("=")
    return In(key, frozenset({value}))


def read(text: str) -> Policy:
    (policy,) = load_text(text, "c.yaml").cluster.policies
    return policy


def rules_of(head: str, rules: str, direction: str = "ingress") -> tuple[Rule, ...]:
    policy = read(f"{head}spec:\n  {direction}:\n{rules}")
    found = policy.ingress if direction == "ingress" else policy.egress
    assert found is not None
    return found


def test_network_policy_fields() -> None:
    result = load_text(
        NP
        + """\
spec:
  tier: default
  order: 10
  selector: app == "db"
  serviceAccountSelector: role == "db"
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    metadata: {name: from-api, annotations: {owner: data}}
    protocol: TCP
    source:
      selector: app == "api"
      notNets: [10.0.9.0/24]
    destination:
      ports: [5432, "6000:6010", pg]
      notPorts: [6005]
""",
        "c.yaml",
    )
    (policy,) = result.cluster.policies
    assert policy.name == "p" and policy.namespace == "shop" and policy.key == "shop/p"
    assert policy.kind == "CalicoNetworkPolicy" and policy.tier == "default"
    assert policy.order == 10.0 and policy.staged is None and policy.calico_name == "p"
    assert policy.subject == EndpointSelector(
        pods=web("app=db"), namespace="shop", service_accounts=web("role=db")
    )
    assert policy.egress == ()
    assert policy.source is not None and policy.source.line == 1
    (rule,) = policy.ingress or ()
    assert rule == Rule(
        action=Action.ALLOW,
        peers=(
            EntityMatch(
                selector=web("app=api"),
                not_nets=(ip_network("10.0.9.0/24"),),
                namespace="shop",
            ),
        ),
        ports=(
            PortMatch(TCP, PortRange(5432, 5432)),
            PortMatch(TCP, PortRange(6000, 6010)),
            PortMatch(TCP, name="pg"),
        ),
        name="from-api",
        not_ports=(PortMatch(TCP, PortRange(6005, 6005)),),
        protocol=TCP,
    )
    assert rule.source is not None and rule.source.line == 11
    assert result.notices == ()


def test_defaults_of_a_bare_policy() -> None:
    policy = read(NP.replace(", namespace: shop", "") + "spec: {}\n")
    assert policy.namespace == "default" and policy.tier == "default" and policy.order is None
    assert policy.subject == EndpointSelector(pods=All(), namespace="default")
    assert policy.ingress == () and policy.egress is None


@pytest.mark.parametrize("head", [NP, GNP], ids=["NetworkPolicy", "GlobalNetworkPolicy"])
@pytest.mark.parametrize(
    ("spec", "ingress", "egress"),
    [
        ("{}", 0, None),  # no rules: Ingress
        ("{ingress: [{action: Allow}]}", 1, None),
        ("{egress: [{action: Allow}]}", None, 1),  # egress rules only: Egress only
        ("{ingress: [{action: Deny}], egress: [{action: Allow}]}", 1, 1),
        ("{types: [Egress]}", None, 0),
        ("{types: [Ingress, Egress]}", 0, 0),
        ("{types: [], egress: [{action: Allow}]}", None, 1),  # empty: defaulted
    ],
)
def test_types_defaulting(head: str, spec: str, ingress: int | None, egress: int | None) -> None:
    policy = read(f"{head}spec: {spec}\n")
    assert (None if policy.ingress is None else len(policy.ingress)) == ingress
    assert (None if policy.egress is None else len(policy.egress)) == egress


def test_rules_of_a_direction_left_out_are_reported() -> None:
    result = load_text(NP + "spec:\n  types: [Egress]\n  ingress: [{action: Allow}]\n", "c.yaml")
    (policy,) = result.cluster.policies
    assert policy.ingress is None and policy.egress == ()
    message = "ingress rules are ignored: types does not include Ingress"
    assert result.notices == (Notice(Location("c.yaml", 6), message),)


def test_global_network_policy_subject_and_scope() -> None:
    policy = read(
        GNP
        + """\
spec:
  tier: default
  selector: role == "db"
  namespaceSelector: env == "prod"
  serviceAccountSelector: has(db)
  ingress:
  - action: Allow
    source: {selector: app == "api"}
  - action: Allow
    source: {namespaceSelector: global(), selector: role == "partner"}
  - action: Deny
    source: {nets: [10.0.0.0/8]}
"""
    )
    assert policy.kind == "GlobalNetworkPolicy" and policy.namespace is None
    assert policy.key == "g" and policy.calico_name == "g"
    assert policy.subject == EndpointSelector(
        pods=web("role=db"),
        namespaces=web("env=prod"),
        host_endpoints=False,  # pcns.env == "prod" holds for no host endpoint
        service_accounts=Has("db"),
    )
    assert [rule.peers for rule in policy.ingress or ()] == [
        (EntityMatch(selector=web("app=api")),),  # every namespace, every global thing
        (EntityMatch(selector=web("role=partner"), namespaces=Global()),),
        (EntityMatch(nets=(ip_network("10.0.0.0/8"),)),),
    ]


def test_global_policy_without_namespace_selector_selects_everywhere() -> None:
    policy = read(GNP + "spec: {}\n")
    assert policy.subject == EndpointSelector(pods=All(), namespaces=All(), host_endpoints=True)


@pytest.mark.parametrize(
    ("head", "source", "expected"),
    [
        # namespaced: selectors stay in the policy's namespace ...
        (NP, "{selector: app == 'a'}", EntityMatch(selector=web("app=a"), namespace="shop")),
        (
            NP,
            "{nets: [10.1.2.3]}",
            EntityMatch(nets=(ip_network("10.1.2.3/32"),), namespace="shop"),
        ),
        # ... unless a namespaceSelector widens them
        (NP, "{namespaceSelector: all()}", EntityMatch(namespaces=All())),
        (
            NP,
            "{namespaceSelector: global(), notSelector: has(x)}",
            EntityMatch(not_selector=Has("x"), namespaces=Global()),
        ),
        (GNP, "{selector: app == 'a'}", EntityMatch(selector=web("app=a"))),
        (GNP, "{namespaceSelector: env == 'dev'}", EntityMatch(namespaces=web("env=dev"))),
        # services: the policy's namespace unless given
        (NP, "{services: {name: pg}}", EntityMatch(namespace="shop", service=("shop", "pg"))),
        (
            NP,
            "{services: {name: pg, namespace: db}}",
            EntityMatch(namespace="shop", service=("db", "pg")),
        ),
        (GNP, "{services: {name: pg, namespace: db}}", EntityMatch(service=("db", "pg"))),
        (
            NP,
            "{serviceAccounts: {names: [api, web], selector: tier == 'x'}}",
            EntityMatch(
                namespace="shop",
                service_accounts=ServiceAccountMatch(frozenset({"api", "web"}), web("tier=x")),
            ),
        ),
        (
            GNP,
            "{serviceAccounts: {names: [api]}}",
            EntityMatch(service_accounts=ServiceAccountMatch(frozenset({"api"}))),
        ),
        (NP, "{serviceAccounts: {}}", None),  # an empty match restricts nothing
        (NP, "{}", None),
        (NP, "{selector: ''}", None),
    ],
)
def test_entity_scope(head: str, source: str, expected: EntityMatch | None) -> None:
    (rule,) = rules_of(head, f"  - action: Allow\n    source: {source}\n")
    assert rule.peers == (() if expected is None else (expected,))
    assert rule.local is None


def test_ingress_and_egress_place_source_and_destination() -> None:
    spec = """\
  - action: Allow
    protocol: UDP
    source: {selector: a == 'src'}
    destination: {selector: a == 'dst', ports: [53]}
"""
    (ingress,) = rules_of(GNP, spec, "ingress")
    (egress,) = rules_of(GNP, spec, "egress")
    src, dst = EntityMatch(selector=web("a=src")), EntityMatch(selector=web("a=dst"))
    assert (ingress.peers, ingress.local) == ((src,), dst)
    assert (egress.peers, egress.local) == ((dst,), src)
    assert ingress.ports == egress.ports == (PortMatch(UDP, PortRange(53, 53)),)


def test_destination_with_only_ports_leaves_local_unset() -> None:
    (rule,) = rules_of(NP, "  - {action: Allow, protocol: TCP, destination: {ports: [80]}}\n")
    assert rule.local is None and rule.peers == ()


@pytest.mark.parametrize(
    ("written", "number"),
    [
        ("TCP", TCP),
        ("tcp", TCP),
        ("Udp", UDP),
        ("ICMP", ICMP),
        ("ICMPv6", ICMPV6),
        ("icmpv6", ICMPV6),
        ("SCTP", SCTP),
        ("UDPLite", 136),
        ("udplite", 136),
        ("6", TCP),
        ("47", 47),
        ("255", 255),
    ],
)
def test_protocols(written: str, number: int) -> None:
    (rule,) = rules_of(NP, f"  - {{action: Deny, protocol: {written}, notProtocol: {written}}}\n")
    assert rule.protocol == number and rule.not_protocol == number


def test_actions_icmp_and_ip_version() -> None:
    rules = rules_of(
        GNP,
        """\
  - {action: Log}
  - {action: Pass, protocol: ICMP, icmp: {type: 8, code: 0}, notICMP: {type: 3}, ipVersion: 4}
  - {action: Deny, protocol: ICMPv6, icmp: {type: 128}, ipVersion: 6}
  - {action: Allow, protocol: ICMP, icmp: {}}
""",
    )
    assert [rule.action for rule in rules] == [Action.LOG, Action.PASS, Action.DENY, Action.ALLOW]
    assert (rules[1].icmp, rules[1].not_icmp, rules[1].ip_version) == (
        IcmpMatch(8, 0),
        IcmpMatch(3),
        4,
    )
    assert (rules[2].protocol, rules[2].icmp, rules[2].ip_version) == (ICMPV6, IcmpMatch(128), 6)
    assert rules[3].icmp is None  # no type: any ICMP message


def test_http_match_is_kept_with_a_notice() -> None:
    result = load_text(
        NP
        + """\
spec:
  ingress:
  - action: Allow
    http:
      methods: [GET, PUT]
      paths: [{exact: /api}, {prefix: /static/}]
""",
        "c.yaml",
    )
    (policy,) = result.cluster.policies
    (rule,) = policy.ingress or ()
    assert rule.http == HttpMatch(("GET", "PUT"), ("/api", "prefix:/static/"))
    assert [(n.location.line, n.message) for n in result.notices] == [
        (8, "http match is kept but not enforced at L3/L4")
    ]


@pytest.mark.parametrize(
    ("flag", "line", "where"),
    [("preDNAT", 6, "before DNAT"), ("doNotTrack", 6, "before connection tracking")],
)
def test_packet_path_flags_give_a_notice(flag: str, line: int, where: str) -> None:
    text = f"{GNP}spec:\n  applyOnForward: true\n  {flag}: true\n  ingress: [{{action: Deny}}]\n"
    result = load_text(text, "c.yaml")
    (notice,) = result.notices
    assert notice.location.line == line and flag in notice.message and where in notice.message
    assert "evaluates this policy as a normal policy" in notice.message
    (policy,) = result.cluster.policies
    assert policy.ingress is not None and len(policy.ingress) == 1


def test_apply_on_forward_alone_is_read_without_notice() -> None:
    result = load_text(GNP + "spec: {applyOnForward: true}\n", "c.yaml")
    assert result.notices == ()


# Staged policies


def test_staged_policies_have_the_kind_and_key_of_what_they_stage() -> None:
    result = load_text(
        NP
        + "spec: {selector: app == 'web'}\n---\n"
        + NP.replace("NetworkPolicy", "StagedNetworkPolicy")
        + "spec: {selector: app == 'web', ingress: [{action: Deny}]}\n---\n"
        + GNP.replace("GlobalNetworkPolicy", "StagedGlobalNetworkPolicy")
        + "spec: {stagedAction: Delete, tier: default}\n---\n"
        + GNP.replace("GlobalNetworkPolicy", "StagedGlobalNetworkPolicy").replace(": g}", ": h}")
        + "spec: {stagedAction: Set, order: 5, egress: [{action: Allow}]}\n",
        "c.yaml",
    )
    enforced, staged, deleted, added = result.cluster.policies
    assert (enforced.kind, enforced.key, enforced.staged) == ("CalicoNetworkPolicy", "shop/p", None)
    assert (staged.kind, staged.key, staged.staged) == (
        "CalicoNetworkPolicy",
        "shop/p",
        StagedAction.SET,
    )
    assert staged.calico_name == "staged:p" and staged.subject == enforced.subject
    assert staged.ingress is not None and staged.ingress[0].action is Action.DENY
    assert (deleted.kind, deleted.key, deleted.staged) == (
        "GlobalNetworkPolicy",
        "g",
        StagedAction.DELETE,
    )
    assert deleted.calico_name == "staged:g" and deleted.ingress is None and deleted.egress is None
    assert (added.staged, added.order, added.ingress) == (StagedAction.SET, 5.0, None)
    assert added.egress is not None and len(added.egress) == 1


SKNP = """\
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: api, namespace: shop}
"""
KNP = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{ports: [{port: 80}]}]
"""


def test_staged_kubernetes_network_policy() -> None:
    spec = "spec:\n  podSelector: {matchLabels: {app: api}}\n  ingress: [{ports: [{port: 80}]}]\n"
    cluster = load_text(KNP + "---\n" + SKNP + spec + "  stagedAction: Set\n").cluster
    enforced, staged = cluster.policies
    assert enforced.calico_name == "knp.default.api"
    assert staged.calico_name == "staged:knp.default.api" and staged.staged is StagedAction.SET
    assert (staged.kind, staged.tier, staged.order) == ("NetworkPolicy", "default", 1000.0)
    assert staged.ingress == enforced.ingress and staged.subject == enforced.subject
    (default_set,) = load_text(SKNP + spec).cluster.policies
    assert default_set.staged is StagedAction.SET


def test_staged_kubernetes_delete() -> None:
    (policy,) = load_text(SKNP + "spec: {stagedAction: Delete}\n").cluster.policies
    assert (policy.kind, policy.key, policy.staged) == (
        "NetworkPolicy",
        "shop/api",
        StagedAction.DELETE,
    )
    assert policy.ingress is None and policy.egress is None


def test_calico_names_of_kubernetes_policies() -> None:
    admin = """\
apiVersion: policy.networking.k8s.io/{version}
kind: {kind}
metadata: {{name: {name}}}
spec:
  {extra}subject: {{namespaces: {{}}}}
  ingress: [{{action: {action}, from: [{{namespaces: {{}}}}]}}]
"""
    docs = [
        admin.format(
            version="v1alpha1",
            kind="AdminNetworkPolicy",
            name="a",
            extra="priority: 1\n  ",
            action="Deny",
        ),
        admin.format(
            version="v1alpha1",
            kind="BaselineAdminNetworkPolicy",
            name="default",
            extra="",
            action="Deny",
        ),
        admin.format(
            version="v1alpha2",
            kind="ClusterNetworkPolicy",
            name="c",
            extra="tier: Admin\n  priority: 1\n  ",
            action="Deny",
        ),
        admin.format(
            version="v1alpha2",
            kind="ClusterNetworkPolicy",
            name="d",
            extra="tier: Baseline\n  priority: 1\n  ",
            action="Deny",
        ),
    ]
    names = [p.calico_name for p in load_text("---\n".join(docs)).cluster.policies]
    assert names == [
        "kanp.adminnetworkpolicy.a",
        "kbanp.baselineadminnetworkpolicy.default",
        "kcnp.kube-admin.c",
        "kcnp.kube-baseline.d",
    ]


def test_a_policy_and_its_staged_twice_is_a_duplicate() -> None:
    staged = NP.replace("NetworkPolicy", "StagedNetworkPolicy") + "spec: {}\n"
    with pytest.raises(InputError, match="duplicate staged CalicoNetworkPolicy shop/p"):
        load_text(staged + "---\n" + staged, "c.yaml")


# Tiers

TIER = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\n"


@pytest.mark.parametrize(
    ("spec", "order", "action"),
    [
        ("spec: {order: 100, defaultAction: Pass}", 100.0, Action.PASS),
        ("spec: {order: 2.5}", 2.5, Action.DENY),
        ("spec: {defaultAction: Deny}", math.inf, Action.DENY),
        ("", math.inf, Action.DENY),
    ],
)
def test_tiers(spec: str, order: float, action: Action) -> None:
    tiers = load_text(TIER + spec + "\n", "t.yaml").cluster.tiers_by_name
    assert tiers["security"] == Tier("security", order, action)
    assert tiers["security"].source is not None and tiers["security"].source.line == 1
    assert tiers["default"].order == 1_000_000  # the built-in tiers stay


def test_a_tier_named_like_a_builtin_keeps_its_order() -> None:
    text = TIER.replace("security", "default") + "spec: {order: 1000000}\n"
    assert load_text(text).cluster.tiers_by_name["default"].order == 1_000_000


def test_policy_in_an_undefined_tier_is_an_error() -> None:
    with pytest.raises(InputError) as caught:
        load_text(GNP + "spec: {tier: security}\n", "c.yaml")
    assert str(caught.value) == (
        "c.yaml:1: GlobalNetworkPolicy g: tier 'security' is not defined by a Tier"
    )
    (policy,) = load_text(TIER + "---\n" + GNP + "spec: {tier: security}\n").cluster.policies
    assert policy.tier == "security"


# Errors: every one names file, line, resource and field


def ingress(*fields: str) -> str:
    """`spec.ingress[0]` with these fields, one a line: the first is on line 6."""
    return "spec:\n  ingress:\n  - " + "\n    ".join(fields)


def egress(*fields: str) -> str:
    return ingress(*fields).replace("ingress", "egress")


A = "action: Allow"
TCP_ = "protocol: TCP"
I0 = "spec.ingress[0]"
E0 = "spec.egress[0]"

ERRORS = [
    # (document head, spec, line, field, message)
    (NP, ingress("action: Accept"), 6, f"{I0}.action", "'Allow', 'Deny', 'Log' or 'Pass'"),
    (NP, "spec:\n  ingress:\n  - {}", 6, f"{I0}.action", "Field required"),
    (NP, "spec:\n  order: high", 5, "spec.order", "valid number"),
    (NP, "spec:\n  types: [Ingress, Ingress]", 5, "spec.types", "listed more than once"),
    (NP, "spec:\n  types: [Both]", 5, "spec.types[0]", "'Ingress' or 'Egress'"),
    (NP, "spec:\n  selector: app = 'x'", 5, "spec.selector", "at column 5 in selector"),
    (NP, "spec:\n  serviceAccountSelector: global()", 5, "AccountSelector", "only be used in"),
    (NP, ingress(A, "protocol: GRE"), 7, f"{I0}.protocol", "unknown protocol 'GRE'"),
    (NP, ingress(A, "protocol: 0"), 7, f"{I0}.protocol", "out of range 1-255"),
    (NP, ingress(A, "notProtocol: 256"), 7, f"{I0}.notProtocol", "out of range 1-255"),
    (NP, ingress(A, "ipVersion: 5"), 7, f"{I0}.ipVersion", "4 or 6"),
    (NP, ingress(A, "destination:", "  ports: [80]"), 8, "destination.ports", "but no protocol"),
    (
        NP,
        egress(A, "destination:", "  notPorts: [1]"),
        8,
        f"{E0}.destination.notPorts",
        "no protocol",
    ),
    (NP, ingress(A, "protocol: ICMP", "destination:", "  ports: [80]"), 9, "ports", "not ICMP"),
    (NP, ingress(A, "protocol: UDPLite", "destination:", "  ports: [80]"), 9, "", "not UDPLite"),
    (NP, ingress(A, TCP_, "source:", "  ports: [80]"), 9, f"{I0}.source.ports", "not supported"),
    (NP, ingress(A, TCP_, "source:", "  notPorts: [80]"), 9, "source.notPorts", "not supported"),
    (NP, ingress(A, TCP_, "destination:", "  ports: [0]"), 9, "ports[0]", "port 0 is out of range"),
    (NP, ingress(A, TCP_, "destination:", "  ports: ['90:80']"), 9, "ports[0]", "above its end"),
    (NP, ingress(A, TCP_, "destination:", "  ports: ['1:70000']"), 9, "ports[0]", "70000 is out"),
    (NP, ingress(A, TCP_, "destination:", "  ports: [Web_Port]"), 9, "ports[0]", "'Web_Port'"),
    (
        NP,
        ingress(A, TCP_, "destination:", "  ports: ['80-90']"),
        9,
        "ports[0]",
        "invalid port name",
    ),
    (NP, ingress(A, TCP_, "destination:", "  ports: [8.5]"), 9, "ports[0]", "valid integer"),
    (
        NP,
        ingress(A, "icmp: {type: 8}"),
        7,
        f"{I0}.icmp",
        "icmp needs the rule's protocol to be ICMP",
    ),
    (NP, ingress(A, TCP_, "notICMP: {type: 8}"), 8, f"{I0}.notICMP", "ICMP or ICMPv6"),
    (
        NP,
        ingress(A, "protocol: ICMP", "icmp: {code: 1}"),
        8,
        f"{I0}.icmp",
        "code specified without",
    ),
    (NP, ingress(A, "protocol: ICMP", "icmp: {type: 255}"), 8, "icmp.type", "less than or equal"),
    (NP, ingress(A, "protocol: ICMP", "ipVersion: 6"), 8, "ipVersion", "ICMP needs ipVersion 4"),
    (
        NP,
        ingress(A, "notProtocol: ICMPv6", "ipVersion: 4"),
        8,
        "ipVersion",
        "ICMPv6 needs ipVersion 6",
    ),
    (NP, ingress(A, "source:", "  nets: [10.0.0.0/33]"), 8, f"{I0}.source.nets[0]", "invalid CIDR"),
    (
        NP,
        ingress(A, "source:", "  nets: [10.0.0.0/8]", "destination:", "  notNets: ['::1']"),
        10,
        "destination.notNets",
        "mixes IPv4 and IPv6",
    ),
    (NP, ingress(A, "ipVersion: 6", "source:", "  nets: [10.0.0.0/8]"), 9, "nets", "ipVersion 6"),
    (NP, ingress(A, "source:", "  selector: a == 'x' &&"), 8, f"{I0}.source.selector", "column 12"),
    (NP, ingress(A, "source:", "  notSelector: (has(a)"), 8, "source.notSelector", "expected ')'"),
    (NP, ingress(A, "source:", "  selector: global()"), 8, "source.selector", "only be used in"),
    (NP, ingress(A, "source:", "  namespaceSelector: global() && has(a)"), 8, "", "be combined"),
    (NP, ingress(A, "source:", "  namespaceSelector: a in {'b'"), 8, "namespaceSelector", "column"),
    (NP, ingress(A, "source:", "  serviceAccounts: {selector: '!'}"), 8, "s.selector", "column 2"),
    (
        NP,
        ingress(A, "destination:", "  services: {name: pg}"),
        8,
        "",
        "an ingress rule's destination",
    ),
    (NP, egress(A, "source:", "  services: {name: pg}"), 8, "source.services", "an egress rule's"),
    (
        NP,
        egress(A, "destination:", "  services: {name: pg}", "  selector: has(a)"),
        9,
        f"{E0}.destination.selector",
        "selector cannot be combined with services",
    ),
    (
        NP,
        egress(A, TCP_, "destination:", "  services: {name: pg}", "  ports: [80]"),
        10,
        f"{E0}.destination.ports",
        "ports cannot be combined with services",
    ),
    (NP, egress(A, "destination:", "  services: {namespace: db}"), 8, "name", "Field required"),
    (GNP, egress(A, "destination:", "  services: {name: pg}"), 8, "services", "needs a namespace"),
    (NP, ingress("action: Deny", "http: {methods: [GET]}"), 7, f"{I0}.http", "only valid on Allow"),
    (NP, egress(A, "http: {methods: [GET]}"), 7, f"{E0}.http", "not allowed in egress rules"),
    (NP, ingress(A, "protocol: UDP", "http: {}"), 7, f"{I0}.protocol", "TCP or none"),
    (NP, ingress(A, "http:", "  paths: [{exact: /a, prefix: /b}]"), 8, "paths[0]", "exactly one"),
    (NP, ingress(A, "http:", "  paths: [{exact: 'a?b'}]"), 8, "paths[0]", "invalid HTTP path"),
    (NP, ingress(A, "http:", "  methods: [GET, GET]"), 8, f"{I0}.http", "duplicate HTTP methods"),
    (NP, ingress(A, "source: [a]"), 7, f"{I0}.source", "valid dictionary"),
    (GNP, "spec:\n  namespaceSelector: global()", 5, "spec.namespaceSelector", "only be used in"),
    (
        GNP,
        "spec:\n  preDNAT: true\n  doNotTrack: true\n  applyOnForward: true",
        5,
        "spec.preDNAT",
        "preDNAT and doNotTrack cannot both be true",
    ),
    (
        GNP,
        "spec:\n  preDNAT: true\n  applyOnForward: true\n  egress: [{action: Allow}]",
        7,
        "spec.egress",
        "a preDNAT policy cannot have egress rules",
    ),
    (
        GNP,
        "spec:\n  preDNAT: true\n  applyOnForward: true\n  types: [Egress]",
        7,
        "spec.types",
        "a preDNAT policy cannot have the Egress type",
    ),
    (GNP, "spec:\n  doNotTrack: true", 5, "spec.applyOnForward", "must be true when preDNAT"),
    (GNP, "spec:\n  doNotTrack: yes please", 5, "spec.doNotTrack", "valid boolean"),
]


@pytest.mark.parametrize(("head", "spec", "line", "field", "message"), ERRORS)
def test_errors_are_located(head: str, spec: str, line: int, field: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_text(head + spec + "\n", "c.yaml")
    text = str(caught.value)
    resource = "NetworkPolicy shop/p" if head == NP else "GlobalNetworkPolicy g"
    assert text.startswith(f"c.yaml:{line}: {resource}: "), text
    assert field in text and message in text, text


SNP = NP.replace("NetworkPolicy", "StagedNetworkPolicy")


def tier(name: str) -> str:
    return TIER.replace("security", name)


STAGED_ERRORS = [
    (SNP, "spec:\n  stagedAction: Learn", 5, "spec.stagedAction", "Learn is not supported"),
    (SNP, "spec:\n  stagedAction: Remove", 5, "spec.stagedAction", "'Delete', 'Learn' or"),
    (
        SNP,
        "spec:\n  stagedAction: Delete\n  tier: default\n  selector: all()",
        7,
        "spec.selector",
        "must be empty when stagedAction is Delete",
    ),
    (
        SKNP,
        "spec:\n  stagedAction: Delete\n  podSelector: {matchLabels: {a: b}}",
        6,
        "spec.podSelector",
        "must be empty when stagedAction is Delete",
    ),
    (SKNP, "spec:\n  stagedAction: Ignore", 5, "spec.stagedAction", "Ignore is not supported"),
    (SKNP, "spec:\n  ingress:\n  - ports: [{port: 0}]", 6, "ports[0].port", "greater than"),
    (tier("Security"), "spec: {order: 1}", 3, "metadata.name", "invalid tier name 'Security'"),
    (tier("a.b"), "spec: {order: 1}", 3, "metadata.name", "invalid tier name 'a.b'"),
    (tier("default"), "spec: {order: 5}", 4, "spec.order", "tier's order must be 1000000"),
    (tier("adminnetworkpolicy"), "spec: {}", 4, "spec.order", "tier's order must be 1000"),
    (TIER, "spec: {defaultAction: Allow}", 4, "spec.defaultAction", "'Deny' or 'Pass'"),
    (TIER, "spec: {order: first}", 4, "spec.order", "valid number"),
]


@pytest.mark.parametrize(("head", "spec", "line", "field", "message"), STAGED_ERRORS)
def test_staged_and_tier_errors_are_located(
    head: str, spec: str, line: int, field: str, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_text(head + spec + "\n", "c.yaml")
    text = str(caught.value)
    assert text.startswith(f"c.yaml:{line}: "), text
    assert field in text and message in text, text


def test_selector_error_keeps_the_column() -> None:
    with pytest.raises(InputError) as caught:
        load_text(NP + "spec:\n  selector: has(a) &&& has(b)\n", "c.yaml")
    assert str(caught.value) == (
        "c.yaml:5: NetworkPolicy shop/p: spec.selector: expected '&&', found '&' "
        "at column 10 in selector 'has(a) &&& has(b)'"
    )


def test_nulls_read_as_absent() -> None:
    policy = read(NP + "spec:\n  selector:\n  ingress:\n  - action: Allow\n    source:\n")
    assert policy.subject.pods == All()
    assert policy.ingress is not None and policy.ingress[0].peers == ()


# A realistic setup, read from files


def test_tiered_calico_fixture() -> None:
    result = load_paths([FIXTURES / "tiered.yaml"])
    cluster = result.cluster
    assert result.skipped == () and result.notices == ()
    security = cluster.tiers_by_name["security"]
    assert (security.order, security.default_action) == (100.0, Action.PASS)
    guard, enforced, staged = cluster.policies
    assert (guard.kind, guard.tier, guard.order) == ("GlobalNetworkPolicy", "security", 10.0)
    assert guard.subject == EndpointSelector(
        pods=All(), namespaces=web("env=prod"), host_endpoints=False
    )
    assert guard.egress is None and guard.ingress is not None
    deny, partners, passing = guard.ingress
    assert deny.action is Action.DENY and deny.peers == (EntityMatch(namespaces=web("env=dev")),)
    assert partners.peers == (EntityMatch(selector=web("role=partner"), namespaces=Global()),)
    assert partners.ports == (
        PortMatch(TCP, PortRange(443, 443)),
        PortMatch(TCP, PortRange(8000, 8080)),
    )
    assert passing == Rule(Action.PASS)
    assert (enforced.kind, enforced.key, enforced.staged) == (
        "CalicoNetworkPolicy",
        "prod/web-from-office",
        None,
    )
    assert (staged.kind, staged.key, staged.staged) == (
        enforced.kind,
        enforced.key,
        StagedAction.SET,
    )
    assert staged.ingress is not None and staged.ingress[0].ports[-1] == PortMatch(
        TCP, PortRange(8443, 8443)
    )
    assert [s.key for s in cluster.network_sets] == ["partners", "prod/office"]
    assert cluster.network_sets[0].nets[1] == ip_network("203.0.113.7/32")
    (host,) = cluster.endpoints
    assert (host.name, host.node, host.profiles) == ("node1-eth0", "node1", ("node-defaults",))
    (profile,) = cluster.profiles
    assert profile.labels == {"managed": "true"} and profile.egress == (Rule(Action.ALLOW),)
    assert profile.ingress == ()

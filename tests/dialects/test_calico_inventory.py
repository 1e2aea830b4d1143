"""Reading Calico network sets, host endpoints and profiles into the model."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from netwarden.dialects import load_text
from netwarden.dialects.loader import DEFAULT_ALLOW
from netwarden.errors import InputError
from netwarden.model import (
    TCP,
    UDP,
    Action,
    Endpoint,
    EndpointKind,
    EntityMatch,
    In,
    NamedPort,
    NetworkSet,
    PortMatch,
    PortRange,
    Profile,
    Rule,
)

V3 = "apiVersion: projectcalico.org/v3\n"


def test_network_sets() -> None:
    result = load_text(
        V3
        + """\
kind: NetworkSet
metadata: {name: office, namespace: shop, labels: {role: office}}
spec:
  nets: [192.0.2.0/24, 10.1.2.3, "2001:db8::/64", 10.9.9.9/8]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: empty}
""",
        "s.yaml",
    )
    office, partners, empty = result.cluster.network_sets
    assert office == NetworkSet(
        name="office",
        nets=(
            ip_network("192.0.2.0/24"),
            ip_network("10.1.2.3/32"),  # a bare address is one address
            ip_network("2001:db8::/64"),
            ip_network("10.0.0.0/8"),  # host bits allowed
        ),
        labels={"role": "office"},
        namespace="shop",
    )
    assert office.source is not None and office.source.line == 1
    assert (partners.namespace, partners.key, partners.labels) == (
        None,
        "partners",
        {"role": "partner"},
    )
    assert (empty.namespace, empty.nets) == ("default", ())
    assert result.notices == ()


def test_allowed_egress_domains_give_a_notice() -> None:
    text = (
        V3 + "kind: GlobalNetworkSet\nmetadata: {name: d}\nspec:\n  allowedEgressDomains: [x.io]\n"
    )
    result = load_text(text, "s.yaml")
    (notice,) = result.notices
    assert notice.location.line == 5 and "allowedEgressDomains are not evaluated" in notice.message
    assert result.cluster.network_sets[0].nets == ()


def test_network_sets_of_the_same_name_in_different_scopes() -> None:
    text = V3 + "kind: GlobalNetworkSet\nmetadata: {name: a}\n---\n" + V3
    text += "kind: NetworkSet\nmetadata: {name: a}\n"
    assert [s.key for s in load_text(text).cluster.network_sets] == ["a", "default/a"]
    with pytest.raises(InputError, match="duplicate GlobalNetworkSet a"):
        load_text(V3 + "kind: GlobalNetworkSet\nmetadata: {name: a}\n---\n" + text)


HEP = V3 + "kind: HostEndpoint\nmetadata: {name: n1-eth0, labels: {role: node}}\n"


def test_host_endpoint() -> None:
    result = load_text(
        HEP
        + """\
spec:
  node: n1
  interfaceName: eth0
  expectedIPs: [172.18.0.2, "fd00::2"]
  profiles: [allow-out, projectcalico-default-allow]
  ports:
  - {name: kubelet, port: 10250, protocol: TCP}
  - {name: dns, port: 53, protocol: udp}
  - {name: other, port: 9000, protocol: 132}
""",
        "h.yaml",
    )
    (endpoint,) = result.cluster.endpoints
    assert endpoint == Endpoint(
        kind=EndpointKind.HOST_ENDPOINT,
        name="n1-eth0",
        namespace=None,
        labels={"role": "node"},
        ips=(ip_address("172.18.0.2"), ip_address("fd00::2")),
        ports=(
            NamedPort("kubelet", 10250, TCP),
            NamedPort("dns", 53, UDP),
            NamedPort("other", 9000, 132),
        ),
        node="n1",
        profiles=("allow-out", "projectcalico-default-allow"),
    )
    assert endpoint.key == "n1-eth0" and endpoint.source is not None and endpoint.source.line == 1
    # Calico's built-in allow-all profile is there when an endpoint names it
    assert result.cluster.profiles == (DEFAULT_ALLOW,)
    assert DEFAULT_ALLOW.ingress == DEFAULT_ALLOW.egress == (Rule(Action.ALLOW),)


@pytest.mark.parametrize(
    ("spec", "ips", "notices"),
    [
        ("{node: n1, interfaceName: '*', expectedIPs: [10.0.0.1]}", 1, 0),
        ("{node: n1, expectedIPs: [10.0.0.1]}", 1, 0),
        ("{node: n1, interfaceName: eth0}", 0, 1),  # nothing to attribute flows by
    ],
)
def test_host_endpoint_interface_or_addresses(spec: str, ips: int, notices: int) -> None:
    result = load_text(HEP + f"spec: {spec}\n")
    assert len(result.cluster.endpoints[0].ips) == ips
    assert len(result.notices) == notices
    assert not result.cluster.profiles  # no profile named, none added


def test_profile() -> None:
    result = load_text(
        V3
        + """\
kind: Profile
metadata: {name: allow-out}
spec:
  labelsToApply: {zone: dmz}
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == "mon"}
    destination: {ports: [9100]}
  egress:
  - action: Deny
    destination: {nets: [169.254.169.254]}
  - action: Allow
""",
        "p.yaml",
    )
    (profile,) = result.cluster.profiles
    assert profile == Profile(
        name="allow-out",
        labels={"zone": "dmz"},
        ingress=(
            Rule(
                Action.ALLOW,
                peers=(EntityMatch(selector=In("app", frozenset({"mon"}))),),  # cluster-wide
                ports=(PortMatch(TCP, PortRange(9100, 9100)),),
                protocol=TCP,
            ),
        ),
        egress=(
            Rule(Action.DENY, peers=(EntityMatch(nets=(ip_network("169.254.169.254/32"),)),)),
            Rule(Action.ALLOW),
        ),
    )
    assert [rule.source.line for rule in profile.egress if rule.source] == [12, 14]
    # a profile named like the built-in one replaces it
    text = V3 + "kind: Profile\nmetadata: {name: projectcalico-default-allow}\n---\n"
    text += (
        HEP + "spec: {node: n1, expectedIPs: [10.0.0.1], profiles: [projectcalico-default-allow]}\n"
    )
    (profile,) = load_text(text).cluster.profiles
    assert profile.ingress == () and profile.egress == ()


ERRORS = [
    # (kind and metadata, spec, line, field, message)
    (
        "kind: NetworkSet\nmetadata: {name: s}",
        "spec:\n  nets: [10.0.0.0/40]",
        5,
        "NetworkSet s: spec.nets[0]",
        "invalid CIDR '10.0.0.0/40'",
    ),
    (
        "kind: GlobalNetworkSet\nmetadata: {name: s}",
        "spec:\n  nets: 10.0.0.0/8",
        5,
        "GlobalNetworkSet s: spec.nets",
        "valid list",
    ),
    (
        "kind: NetworkSet\nmetadata:\n  name: s\n  labels: {projectcalico.org/namespace: x}",
        "spec: {}",
        5,
        "metadata.labels.projectcalico.org/namespace",
        "a reserved Calico label",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1",
        5,
        "HostEndpoint h: spec",
        "needs interfaceName or expectedIPs",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  interfaceName: eth0",
        5,
        "spec.node",
        "Field required",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1\n  expectedIPs: [10.0.0.0/8]",
        6,
        "spec.expectedIPs[0]",
        "invalid IP address '10.0.0.0/8'",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1\n  interfaceName: a-very-long-interface",
        6,
        "spec.interfaceName",
        "invalid interface name",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1\n  interfaceName: eth0\n  ports: [{name: x, port: 1, protocol: ICMP}]",
        7,
        "spec.ports[0].protocol",
        "must be TCP, UDP or SCTP",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1\n  interfaceName: eth0\n  ports:\n  - {name: x, port: 1}",
        8,
        "spec.ports[0].protocol",
        "Field required",
    ),
    (
        "kind: HostEndpoint\nmetadata: {name: h}",
        "spec:\n  node: n1\n  interfaceName: eth0\n  ports: [{name: X_Y, port: 1, protocol: TCP}]",
        7,
        "spec.ports[0].name",
        "invalid port name 'X_Y'",
    ),
    (
        "kind: Profile\nmetadata: {name: p}",
        "spec:\n  egress:\n  - action: Allow\n    destination:\n      services: {name: x}",
        8,
        "Profile p: spec.egress[0].destination.services",
        "needs a namespace",
    ),
    (
        "kind: Profile\nmetadata: {name: p}",
        "spec:\n  ingress:\n  - action: Allow\n    destination: {ports: [80]}",
        7,
        "spec.ingress[0].destination.ports",
        "rule with ports but no protocol",
    ),
    (
        "kind: Profile\nmetadata: {name: p}",
        "spec:\n  labelsToApply: {a: 1}",
        5,
        "spec.labelsToApply.a",
        "valid string",
    ),
]


@pytest.mark.parametrize(("head", "spec", "line", "field", "message"), ERRORS)
def test_errors_are_located(head: str, spec: str, line: int, field: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_text(f"{V3}{head}\n{spec}\n", "i.yaml")
    text = str(caught.value)
    assert text.startswith(f"i.yaml:{line}: "), text
    assert field in text and message in text, text


def test_duplicate_host_endpoints_and_profiles() -> None:
    hep = HEP + "spec: {node: n1, interfaceName: eth0}\n"
    with pytest.raises(InputError, match="duplicate n1-eth0"):
        load_text(hep + "---\n" + hep)
    profile = V3 + "kind: Profile\nmetadata: {name: p}\n"
    with pytest.raises(InputError, match="duplicate Profile p"):
        load_text(profile + "---\n" + profile)

"""Reading Services, EndpointSlices, Endpoints and ServiceAccounts, and resolving each Service
to the addresses and ports of its endpoints."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from netwarden.dialects import load_paths, load_text
from netwarden.errors import InputError
from netwarden.model import (
    TCP,
    UDP,
    ClusterState,
    IPAddress,
    Service,
    ServiceAccount,
    ServicePort,
)

FIXTURES = Path(__file__).parent / "fixtures" / "k8s_services"


def ips(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ip_address(text) for text in texts)


def services(text: str) -> dict[str, Service]:
    return {service.key: service for service in load_text(text, "s.yaml").cluster.services}


def pod(name: str, ip: str, labels: str, ports: str = "[]", namespace: str = "shop") -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}
spec:
  containers: [{{name: main, ports: {ports}}}]
status: {{podIP: {ip}}}
---
"""


SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
"""
ENDPOINTS = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop}\n"


def test_shop_fixture() -> None:
    result = load_paths([FIXTURES / "shop.yaml"])
    cluster = result.cluster
    assert result.skipped == () and result.notices == ()
    named = {"tier": "frontend", "projectcalico.org/name": "web"}
    assert cluster.service_accounts == (ServiceAccount("web", "shop", named),)
    assert cluster.service_account_labels == {("shop", "web"): named}
    by_key = cluster.services_by_key
    assert list(by_key) == [("shop", "web"), ("shop", "db"), ("shop", "legacy"), ("shop", "cache")]
    # from its pods: a named targetPort resolves on each pod
    assert by_key["shop", "web"] == Service(
        "web",
        "shop",
        ips("10.0.0.10", "10.0.0.11"),
        (
            ServicePort(8080, TCP, "http"),
            ServicePort(8081, TCP, "http"),
            ServicePort(9090, TCP, "metrics"),  # no targetPort: the port itself
        ),
    )
    # from its EndpointSlice, not-ready endpoints included
    assert by_key["shop", "db"] == Service(
        "db", "shop", ips("10.0.0.20", "10.0.0.21"), (ServicePort(5432, TCP),)
    )
    # from its Endpoints object: it has no selector
    assert by_key["shop", "legacy"] == Service(
        "legacy", "shop", ips("192.0.2.10", "192.0.2.11"), (ServicePort(8443, TCP),)
    )
    # a slice whose Service is not given still makes one
    assert by_key["shop", "cache"] == Service(
        "cache", "shop", ips("10.0.0.30", "10.0.0.31"), (ServicePort(6379, TCP, "redis"),)
    )
    assert by_key["shop", "cache"].source is not None
    assert by_key["shop", "web"].source is not None and by_key["shop", "web"].source.line == 40


def test_slices_win_over_endpoints_and_pods() -> None:
    text = pod("w", "10.0.0.1", "{app: web}")
    text += SERVICE + "spec: {selector: {app: web}, ports: [{port: 80}]}\n---\n"
    text += ENDPOINTS + "subsets: [{addresses: [{ip: 10.0.0.2}], ports: [{port: 80}]}]\n---\n"
    text += SLICE + "endpoints: [{addresses: [10.0.0.3]}]\nports: [{port: 8080}]\n---\n"
    text += SLICE.replace("web-1", "web-2") + "endpoints: [{addresses: [10.0.0.4]}]\n"
    text += "ports: [{port: 8080}, {port: 53, protocol: UDP}]\n"
    web = services(text)["shop/web"]
    assert web.ips == ips("10.0.0.3", "10.0.0.4")
    assert web.ports == (ServicePort(8080, TCP), ServicePort(53, UDP))
    # without slices, the Endpoints object
    text = pod("w", "10.0.0.1", "{app: web}")
    text += SERVICE + "spec: {selector: {app: web}, ports: [{port: 80}]}\n---\n"
    text += ENDPOINTS + "subsets: [{addresses: [{ip: 10.0.0.2}], ports: [{port: 80}]}]\n"
    assert services(text)["shop/web"].ips == ips("10.0.0.2")


def test_a_slice_port_without_number_means_every_port() -> None:
    text = SLICE + "endpoints: [{addresses: [10.0.0.3]}]\nports: [{name: all}]\n"
    assert services(text)["shop/web"].ports == ()


@pytest.mark.parametrize(
    ("spec", "expected_ips", "expected_ports"),
    [
        # only pods of the Service's namespace, matching every label of the selector
        (
            "{selector: {app: web, tier: fe}, ports: [{port: 80, targetPort: 8080}]}",
            ("10.0.0.1",),
            (ServicePort(8080, TCP),),
        ),
        # no selector: endpoints are managed by hand, no pod is picked
        ("{ports: [{port: 80}]}", (), (ServicePort(80, TCP),)),
        ("{selector: {}, ports: [{port: 80}]}", (), (ServicePort(80, TCP),)),
        # a named targetPort that a pod does not declare (for that protocol) adds nothing
        (
            "{selector: {app: web}, ports: [{port: 53, targetPort: dns, protocol: UDP}]}",
            ("10.0.0.1", "10.0.0.2"),
            (ServicePort(5353, UDP),),
        ),
        (
            "{selector: {app: web}, ports: [{port: 53, targetPort: dns}]}",
            ("10.0.0.1", "10.0.0.2"),
            (),
        ),
    ],
)
def test_services_resolved_from_pods(
    spec: str, expected_ips: tuple[str, ...], expected_ports: tuple[ServicePort, ...]
) -> None:
    text = pod(
        "a", "10.0.0.1", "{app: web, tier: fe}", "[{name: dns, containerPort: 5353, protocol: UDP}]"
    )
    text += pod("b", "10.0.0.2", "{app: web}")
    text += pod("c", "10.0.0.3", "{app: web, tier: fe}", namespace="other")
    text += SERVICE + f"spec: {spec}\n"
    web = services(text)["shop/web"]
    assert web.ips == ips(*expected_ips) and web.ports == expected_ports


def test_host_network_pods_back_services_with_node_addresses() -> None:
    text = """\
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: shop, labels: {app: web}}
spec: {hostNetwork: true, nodeName: n1, containers: [{name: main}]}
---
"""
    text += SERVICE + "spec: {selector: {app: web}, ports: [{port: 80}]}\n"
    assert services(text)["shop/web"].ips == ips("172.18.0.2")


def test_slices_without_service_or_addresses_are_reported() -> None:
    text = SLICE.replace("labels: {kubernetes.io/service-name: web}", "labels: {}")
    text += "endpoints: [{addresses: [10.0.0.3]}]\n---\n"
    text += SLICE.replace("IPv4", "FQDN") + "endpoints: [{addresses: [db.example.com]}]\n"
    result = load_text(text, "s.yaml")
    label = "kubernetes.io/service-name"
    assert result.cluster.services == ()
    assert [(n.location.line, n.message) for n in result.notices] == [
        (3, f"EndpointSlice without a {label} label belongs to no Service: ignored"),
        (10, "FQDN EndpointSlice: names are not evaluated, ignored"),
    ]


def test_defaults_and_the_cluster_lookup() -> None:
    text = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot}\n---\n"
    text += "apiVersion: v1\nkind: Service\nmetadata: {name: api}\n"
    cluster: ClusterState = load_text(text).cluster
    assert cluster.service_accounts == (
        ServiceAccount("robot", "default", {"projectcalico.org/name": "robot"}),
    )
    assert cluster.services_by_key["default", "api"] == Service("api", "default")


ERRORS = [
    # (document, line, field, message)
    (
        SERVICE + "spec:\n  ports:\n  - {port: 0}",
        6,
        "Service shop/web: spec.ports[0].port",
        "greater than or equal to 1",
    ),
    (
        SERVICE + "spec:\n  ports:\n  - {port: 80, protocol: ICMP}",
        6,
        "spec.ports[0].protocol",
        "'TCP', 'UDP' or 'SCTP'",
    ),
    (
        SERVICE + "spec:\n  ports:\n  - {port: 80, targetPort: Not_A_Name}",
        6,
        "spec.ports[0].targetPort",
        "invalid port name",
    ),
    (SERVICE + "spec:\n  selector: {app: [web]}", 5, "spec.selector.app", "valid string"),
    (
        SLICE.replace("addressType: IPv4\n", "") + "endpoints: []",
        1,
        "EndpointSlice shop/web-1: addressType",
        "Field required",
    ),
    (
        SLICE + "endpoints:\n- addresses: [10.0.0.300]",
        6,
        "endpoints[0].addresses[0]",
        "invalid IP address '10.0.0.300'",
    ),
    (SLICE + "endpoints:\n- addresses: []", 6, "endpoints[0].addresses", "at least 1 item"),
    (SLICE + "ports:\n- {port: 70000}", 6, "ports[0].port", "less than or equal to 65535"),
    (
        ENDPOINTS + "subsets:\n- addresses: [{ip: nowhere}]",
        5,
        "Endpoints shop/web: subsets[0].addresses[0].ip",
        "invalid IP address 'nowhere'",
    ),
    (ENDPOINTS + "subsets:\n- ports: [{name: x}]", 5, "subsets[0].ports[0].port", "Field required"),
    (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {namespace: a}",
        3,
        "ServiceAccount: metadata.name",
        "Field required",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), ERRORS)
def test_errors_are_located(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_text(text + "\n", "s.yaml")
    rendered = str(caught.value)
    assert rendered.startswith(f"s.yaml:{line}: "), rendered
    assert field in rendered and message in rendered, rendered


@pytest.mark.parametrize(
    ("document", "duplicate"),
    [
        (SERVICE + "spec: {}\n", "duplicate Service shop/web"),
        (SLICE, "duplicate EndpointSlice shop/web-1"),
        (ENDPOINTS, "duplicate Endpoints shop/web"),
        (
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n",
            "duplicate ServiceAccount default/a",
        ),
    ],
)
def test_duplicates_are_rejected(document: str, duplicate: str) -> None:
    with pytest.raises(InputError, match=duplicate):
        load_text(document + "---\n" + document)

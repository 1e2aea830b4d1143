"""Kubernetes Services and what backs them: Service, EndpointSlice (`discovery.k8s.io`),
Endpoints, and ServiceAccount.

Calico rules can name a Service (`services: {name, namespace}`): the addresses of its endpoints
and the ports they serve. Services, slices and Endpoints objects are read into records;
`resolve_services`, run by the loader once every input is read, makes one `Service` per name:
from its EndpointSlices if there are any, else from its Endpoints object, else from the pods its
selector picks in its namespace (their addresses, and each port's targetPort, a named targetPort
resolved on each pod). Not-ready endpoints are kept: they are still the Service's endpoints. A
slice or Endpoints object whose Service is not given still makes a Service of that name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Literal, TypeVar

from pydantic import Field

from netwarden.dialects.calico_rules import cleaned, notice
from netwarden.dialects.k8s_common import ObjectMeta, PortName, PortNumber
from netwarden.dialects.k8s_inventory import IP
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail, parse
from netwarden.model import (
    Endpoint,
    EndpointKind,
    IPAddress,
    Location,
    Service,
    ServiceAccount,
    ServicePort,
    parse_protocol,
)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"

Protocol = Literal["TCP", "UDP", "SCTP"]


def _protocol(name: Protocol) -> int:
    number = parse_protocol(name)
    assert number is not None
    return number


# Records: what the readers keep until every input is known.


@dataclass(frozen=True)
class ServicePortRecord:
    """One port of a Service: `target` is where the packets arrive on the endpoints (a number,
    or the name of a port the pods declare)."""

    name: str | None
    port: int
    target: int | str
    protocol: int


@dataclass(frozen=True)
class ServiceRecord:
    """A Service as written; `selector` None means its endpoints are not managed by selector."""

    name: str
    namespace: str
    selector: dict[str, str] | None = field(default=None, hash=False)
    ports: tuple[ServicePortRecord, ...] = ()
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class BackendRecord:
    """An EndpointSlice or Endpoints object: addresses and ports of one Service. `ports` None
    means every port (a slice port without a number)."""

    kind: str
    name: str
    namespace: str
    service: str
    ips: tuple[IPAddress, ...] = ()
    ports: tuple[ServicePort, ...] | None = ()
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


# Schemas


class ServicePortSpec(Schema):
    name: str = ""
    protocol: Protocol = "TCP"
    port: PortNumber
    target_port: PortNumber | PortName | None = None


class ServiceSpec(Schema):
    selector: dict[str, str] = {}
    ports: list[ServicePortSpec] = []


class ServiceResource(Schema):
    metadata: ObjectMeta
    spec: ServiceSpec = ServiceSpec()


class SliceEndpoint(Schema):
    addresses: list[str] = Field(min_length=1)


class SlicePort(Schema):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: PortNumber | None = None


class EndpointSliceResource(Schema):
    metadata: ObjectMeta
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: list[SliceEndpoint] = []
    ports: list[SlicePort] = []


class EndpointAddress(Schema):
    ip: IP


class EndpointPort(Schema):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: PortNumber


class EndpointSubset(Schema):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class EndpointsResource(Schema):
    metadata: ObjectMeta
    subsets: list[EndpointSubset] = []


class ServiceAccountResource(Schema):
    metadata: ObjectMeta


# Readers


def read_service(document: Document) -> list[ServiceRecord]:
    resource = parse(cleaned(document), ServiceResource)
    meta, spec = resource.metadata, resource.spec
    ports = tuple(
        ServicePortRecord(
            name=port.name or None,
            port=port.port,
            target=port.port if port.target_port is None else port.target_port,
            protocol=_protocol(port.protocol),
        )
        for port in spec.ports
    )
    record = ServiceRecord(
        name=meta.name,
        namespace=meta.namespace or "default",
        selector=dict(spec.selector) or None,
        ports=ports,
        source=document.location(),
    )
    return [record]


def read_endpoint_slice(document: Document) -> list[object]:
    """A slice of its Service's endpoints (named by the `kubernetes.io/service-name` label)."""
    document = cleaned(document)
    resource = parse(document, EndpointSliceResource)
    meta = resource.metadata
    service = meta.labels.get(SERVICE_NAME_LABEL)
    if not service:
        message = f"EndpointSlice without a {SERVICE_NAME_LABEL} label belongs to no Service"
        return [notice(document.location(("metadata",)), f"{message}: ignored")]
    if resource.address_type == "FQDN":
        where = document.location(("addressType",))
        return [notice(where, "FQDN EndpointSlice: names are not evaluated, ignored")]
    ips = []
    for i, endpoint in enumerate(resource.endpoints):
        for j, text in enumerate(endpoint.addresses):
            try:
                ips.append(ip_address(text))
            except ValueError:
                fail(document, ("endpoints", i, "addresses", j), f"invalid IP address {text!r}")
    numbered = [port for port in resource.ports if port.port is not None]
    ports = None
    if len(numbered) == len(resource.ports):  # a port without a number means every port
        ports = tuple(
            ServicePort(port.port, _protocol(port.protocol), port.name or None)
            for port in numbered
            if port.port is not None
        )
    record = BackendRecord(
        kind=ENDPOINT_SLICE,
        name=meta.name,
        namespace=meta.namespace or "default",
        service=service,
        ips=tuple(ips),
        ports=ports,
        source=document.location(),
    )
    return [record]


def read_endpoints(document: Document) -> list[BackendRecord]:
    """The Endpoints object of the Service of the same name."""
    resource = parse(cleaned(document), EndpointsResource)
    meta = resource.metadata
    subsets = resource.subsets
    ips = [a.ip for s in subsets for a in [*s.addresses, *s.not_ready_addresses]]
    ports = [
        ServicePort(p.port, _protocol(p.protocol), p.name or None) for s in subsets for p in s.ports
    ]
    record = BackendRecord(
        kind=ENDPOINTS,
        name=meta.name,
        namespace=meta.namespace or "default",
        service=meta.name,
        ips=tuple(_unique(ips)),
        ports=tuple(_unique(ports)),
        source=document.location(),
    )
    return [record]


def read_service_account(document: Document) -> list[ServiceAccount]:
    meta = parse(cleaned(document), ServiceAccountResource).metadata
    namespace = meta.namespace or "default"
    # Calico lets service account selectors name an account by this label.
    labels = {**meta.labels, "projectcalico.org/name": meta.name}
    return [ServiceAccount(meta.name, namespace, labels, document.location())]


# Resolution


def resolve_services(
    services: Sequence[ServiceRecord],
    backends: Sequence[BackendRecord],
    pods: Sequence[Endpoint],
) -> list[Service]:
    """One Service per name, from its slices, else its Endpoints object, else its pods."""
    backed: dict[tuple[str, str], list[BackendRecord]] = {}
    for backend in backends:
        backed.setdefault((backend.namespace, backend.service), []).append(backend)
    resolved = []
    for service in services:
        found = backed.pop((service.namespace, service.name), [])
        slices = [b for b in found if b.kind == ENDPOINT_SLICE]
        if slices or found:
            resolved.append(_from_backends(service.name, service.namespace, slices or found))
        else:
            resolved.append(_from_pods(service, pods))
    for (namespace, name), found in backed.items():
        slices = [b for b in found if b.kind == ENDPOINT_SLICE]
        resolved.append(_from_backends(name, namespace, slices or found))
    return resolved


def _from_backends(name: str, namespace: str, backends: Sequence[BackendRecord]) -> Service:
    ips = _unique([ip for backend in backends for ip in backend.ips])
    every_port = any(backend.ports is None for backend in backends)
    ports = [] if every_port else [p for b in backends for p in b.ports or ()]
    return Service(name, namespace, tuple(ips), tuple(_unique(ports)), backends[0].source)


def _from_pods(service: ServiceRecord, pods: Sequence[Endpoint]) -> Service:
    """The pods of the Service's namespace that its selector picks (none without a selector)."""
    selector = service.selector
    chosen = [
        pod
        for pod in pods
        if pod.kind in (EndpointKind.POD, EndpointKind.HOST)
        and pod.namespace == service.namespace
        and selector is not None
        and all(pod.labels.get(key) == value for key, value in selector.items())
    ]
    ports: list[ServicePort] = []
    for port in service.ports:
        if isinstance(port.target, int):
            ports.append(ServicePort(port.target, port.protocol, port.name))
            continue
        for pod in chosen:  # a named targetPort may be a different number on each pod
            number = pod.named_port(port.target, port.protocol)
            if number is not None:
                ports.append(ServicePort(number, port.protocol, port.name))
    ips = _unique([ip for pod in chosen for ip in pod.ips])
    return Service(
        service.name, service.namespace, tuple(ips), tuple(_unique(ports)), service.source
    )


T = TypeVar("T")


def _unique(items: Sequence[T]) -> list[T]:
    """`items` without repeats, in first-seen order."""
    return list(dict.fromkeys(items))


READERS: dict[tuple[str, str], Callable[[Document], Sequence[object]]] = {
    ("", "Service"): read_service,
    ("", "Endpoints"): read_endpoints,
    ("", "ServiceAccount"): read_service_account,
    ("discovery.k8s.io", "EndpointSlice"): read_endpoint_slice,
}

"""Calico `projectcalico.org/v3` inventory: NetworkSet, GlobalNetworkSet, HostEndpoint, Profile.

Network sets label address blocks so that rule selectors can name them. A host endpoint is a
node's interface under policy: its labels, its `expectedIPs` (the addresses flows are matched
to; `interfaceName` names the interface for display only and is not kept), its named ports and
the profiles applied after every tier. A profile's rules are read like a global policy's.
"""

from __future__ import annotations

import re

from pydantic import Field

from netwarden.dialects.calico_rules import (
    PORT_PROTOCOLS,
    RuleScope,
    RuleSpec,
    cleaned,
    net_at,
    notice,
    protocol_at,
    read_rules,
)
from netwarden.dialects.k8s_common import ObjectMeta, PortName, PortNumber
from netwarden.dialects.k8s_inventory import IP
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail, parse
from netwarden.model import (
    Direction,
    Endpoint,
    EndpointKind,
    NamedPort,
    NetworkSet,
    Profile,
)

# Calico sets this label itself on what lives in a namespace; a network set may not.
NAMESPACE_LABEL = "projectcalico.org/namespace"
_INTERFACE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")


class NetworkSetSpec(Schema):
    nets: list[str] = []
    allowed_egress_domains: list[str] = []  # Calico Enterprise


class NetworkSetResource(Schema):
    metadata: ObjectMeta
    spec: NetworkSetSpec = NetworkSetSpec()


def read_network_set(document: Document) -> list[object]:
    """A NetworkSet (namespaced, default `default`) or a GlobalNetworkSet (namespace None)."""
    document = cleaned(document)
    resource = parse(document, NetworkSetResource)
    meta, spec = resource.metadata, resource.spec
    if NAMESPACE_LABEL in meta.labels:
        fail(document, ("metadata", "labels", NAMESPACE_LABEL), "a reserved Calico label")
    namespaced = document.data["kind"] == "NetworkSet"
    nets = tuple(net_at(document, ("spec", "nets", i), t) for i, t in enumerate(spec.nets))
    parts: list[object] = [
        NetworkSet(
            name=meta.name,
            nets=nets,
            labels=dict(meta.labels),
            namespace=(meta.namespace or "default") if namespaced else None,
            source=document.location(),
        )
    ]
    if spec.allowed_egress_domains:
        where = document.location(("spec", "allowedEgressDomains"))
        parts.append(notice(where, "allowedEgressDomains are not evaluated (addresses only)"))
    return parts


class EndpointPortSpec(Schema):
    name: PortName
    port: PortNumber
    protocol: int | str


class HostEndpointSpec(Schema):
    node: str = Field(min_length=1)
    interface_name: str = ""
    expected_ips: list[IP] = Field(default=[], alias="expectedIPs")
    profiles: list[str] = []
    ports: list[EndpointPortSpec] = []


class HostEndpointResource(Schema):
    metadata: ObjectMeta
    spec: HostEndpointSpec


def read_host_endpoint(document: Document) -> list[object]:
    document = cleaned(document)
    resource = parse(document, HostEndpointResource)
    meta, spec = resource.metadata, resource.spec
    if not spec.interface_name and not spec.expected_ips:
        fail(document, ("spec",), "a HostEndpoint needs interfaceName or expectedIPs")
    interface = spec.interface_name
    if interface and interface != "*" and not _INTERFACE.match(interface):
        fail(document, ("spec", "interfaceName"), f"invalid interface name {interface!r}")
    ports = []
    for i, port in enumerate(spec.ports):
        path = ("spec", "ports", i, "protocol")
        protocol = protocol_at(document, path, port.protocol)
        if protocol not in PORT_PROTOCOLS:
            fail(document, path, "a named port's protocol must be TCP, UDP or SCTP")
        ports.append(NamedPort(port.name, port.port, protocol))
    endpoint = Endpoint(
        kind=EndpointKind.HOST_ENDPOINT,
        name=meta.name,
        labels=dict(meta.labels),
        ips=tuple(spec.expected_ips),
        ports=tuple(ports),
        node=spec.node,
        profiles=tuple(spec.profiles),
        source=document.location(),
    )
    parts: list[object] = [endpoint]
    if not spec.expected_ips:
        # Calico itself cannot resolve such an endpoint in other nodes' rules either.
        message = "host endpoint without expectedIPs: no flow can be attributed to it"
        parts.append(notice(document.location(("spec", "interfaceName")), message))
    return parts


class ProfileSpec(Schema):
    ingress: list[RuleSpec] = []
    egress: list[RuleSpec] = []
    labels_to_apply: dict[str, str] = {}


class ProfileResource(Schema):
    metadata: ObjectMeta
    spec: ProfileSpec = ProfileSpec()


def read_profile(document: Document) -> list[object]:
    """A profile: labels for its endpoints and rules scoped like a global policy's."""
    document = cleaned(document)
    resource = parse(document, ProfileResource)
    spec, scope = resource.spec, RuleScope()
    ingress, notes = read_rules(
        document, ("spec", "ingress"), spec.ingress, Direction.INGRESS, scope
    )
    egress, more = read_rules(document, ("spec", "egress"), spec.egress, Direction.EGRESS, scope)
    profile = Profile(
        name=resource.metadata.name,
        labels=dict(spec.labels_to_apply),
        ingress=ingress,
        egress=egress,
        source=document.location(),
    )
    return [profile, *notes, *more]


READERS = {
    ("projectcalico.org", "NetworkSet"): read_network_set,
    ("projectcalico.org", "GlobalNetworkSet"): read_network_set,
    ("projectcalico.org", "HostEndpoint"): read_host_endpoint,
    ("projectcalico.org", "Profile"): read_profile,
}

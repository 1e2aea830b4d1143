"""Things traffic flows between: namespaces, nodes and endpoints (pods, hosts, externals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from netwarden.model.location import Location

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    source: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Node:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ips: tuple[IPAddress, ...] = ()
    source: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class NamedPort:
    """A port an endpoint declares by name (a container port with a `name`)."""

    name: str
    port: int
    protocol: int


class EndpointKind(Enum):
    POD = "pod"  # a workload with its own network identity; policies select it
    HOST = "host"  # the node's own network (a hostNetwork pod, the node itself)
    HOST_ENDPOINT = "hostendpoint"  # a host interface under policy (Calico HostEndpoint)
    EXTERNAL = "external"  # an address outside the cluster


@dataclass(frozen=True)
class Endpoint:
    """One end of a flow.

    Pods are selected by policies through their labels and namespace. Host endpoints (a
    hostNetwork pod) share their node's addresses: pod and namespace selectors do not match
    them, node peers and CIDRs do. External endpoints are just addresses.
    """

    kind: EndpointKind
    name: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ips: tuple[IPAddress, ...] = ()
    ports: tuple[NamedPort, ...] = ()
    node: str | None = None
    workload: str | None = None  # owner, e.g. "Deployment/frontend"
    service_account: str | None = None
    profiles: tuple[str, ...] = ()  # host endpoints: the profiles applied after every tier
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """The name users write: `namespace/pod`, or the address of an external endpoint."""
        return f"{self.namespace}/{self.name}" if self.namespace is not None else self.name

    def named_port(self, name: str, protocol: int) -> int | None:
        """The number of the port declared as `name` for `protocol`, if any."""
        for declared in self.ports:
            if declared.name == name and declared.protocol == protocol:
                return declared.port
        return None


@dataclass(frozen=True)
class NetworkSet:
    """Labelled address blocks (Calico NetworkSet / GlobalNetworkSet): selectors in rules match
    an address through the labels of every set that holds it. `namespace` None is global."""

    name: str
    nets: tuple[IPNetwork, ...]
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    namespace: str | None = None
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    source: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ServicePort:
    """A port a Service's endpoints serve (the target port, as the packet arrives)."""

    port: int
    protocol: int
    name: str | None = None


@dataclass(frozen=True)
class Service:
    """A Service resolved to the addresses and ports of its endpoints (EndpointSlices or
    Endpoints, else the pods its selector picks)."""

    name: str
    namespace: str
    ips: tuple[IPAddress, ...] = ()
    ports: tuple[ServicePort, ...] = ()
    source: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

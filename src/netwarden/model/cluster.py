"""The whole picture the engine decides on: inventory, policies and tiers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import ip_address

from netwarden.model.endpoints import Endpoint, EndpointKind, IPAddress, Namespace, Node
from netwarden.model.policy import BUILTIN_TIERS, Policy, Tier


@dataclass(frozen=True)
class ClusterState:
    """Namespaces, nodes, endpoints, policies and tiers, as read from the inputs."""

    namespaces: tuple[Namespace, ...] = ()
    nodes: tuple[Node, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    policies: tuple[Policy, ...] = ()
    tiers: tuple[Tier, ...] = BUILTIN_TIERS

    @cached_property
    def namespace_labels(self) -> dict[str, dict[str, str]]:
        """Labels per namespace name; a namespace that pods use but no object declares gets
        the label Kubernetes always sets, `kubernetes.io/metadata.name`."""
        labels = {ns.name: ns.labels for ns in self.namespaces}
        for endpoint in self.endpoints:
            if endpoint.namespace is not None and endpoint.namespace not in labels:
                labels[endpoint.namespace] = {"kubernetes.io/metadata.name": endpoint.namespace}
        return labels

    @cached_property
    def endpoints_by_key(self) -> dict[str, Endpoint]:
        return {endpoint.key: endpoint for endpoint in self.endpoints}

    @cached_property
    def endpoints_by_ip(self) -> dict[IPAddress, Endpoint]:
        """The first endpoint with each address (hostNetwork pods share their node's)."""
        found: dict[IPAddress, Endpoint] = {}
        for endpoint in self.endpoints:
            for ip in endpoint.ips:
                found.setdefault(ip, endpoint)
        return found

    @cached_property
    def nodes_by_name(self) -> dict[str, Node]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def tiers_by_name(self) -> dict[str, Tier]:
        return {tier.name: tier for tier in self.tiers}

    def endpoint(self, name: str) -> Endpoint | None:
        """Look up `namespace/pod`, or an address (a known endpoint's, else a new external)."""
        if name in self.endpoints_by_key:
            return self.endpoints_by_key[name]
        try:
            ip = ip_address(name)
        except ValueError:
            return None
        return self.endpoints_by_ip.get(ip) or external_endpoint(ip)


def external_endpoint(ip: IPAddress) -> Endpoint:
    """An address outside the cluster's inventory."""
    return Endpoint(kind=EndpointKind.EXTERNAL, name=str(ip), ips=(ip,))

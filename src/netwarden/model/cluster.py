"""The whole picture the engine decides on: inventory, policies and tiers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import ip_address

from netwarden.model.endpoints import (
    Endpoint,
    EndpointKind,
    IPAddress,
    Namespace,
    NetworkSet,
    Node,
    Service,
    ServiceAccount,
)
from netwarden.model.policy import BUILTIN_TIERS, Policy, Profile, Tier


@dataclass(frozen=True)
class ClusterState:
    """Namespaces, nodes, endpoints, policies and tiers, as read from the inputs."""

    namespaces: tuple[Namespace, ...] = ()
    nodes: tuple[Node, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    policies: tuple[Policy, ...] = ()
    tiers: tuple[Tier, ...] = BUILTIN_TIERS
    network_sets: tuple[NetworkSet, ...] = ()
    service_accounts: tuple[ServiceAccount, ...] = ()
    services: tuple[Service, ...] = ()
    profiles: tuple[Profile, ...] = ()

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
    def enforced_policies(self) -> tuple[Policy, ...]:
        """The policies that decide verdicts: everything but staged policies."""
        return tuple(policy for policy in self.policies if policy.staged is None)

    @cached_property
    def has_staged(self) -> bool:
        return any(policy.staged is not None for policy in self.policies)

    @cached_property
    def service_account_labels(self) -> dict[tuple[str, str], dict[str, str]]:
        return {(sa.namespace, sa.name): sa.labels for sa in self.service_accounts}

    @cached_property
    def services_by_key(self) -> dict[tuple[str, str], Service]:
        return {(service.namespace, service.name): service for service in self.services}

    @cached_property
    def profiles_by_name(self) -> dict[str, Profile]:
        return {profile.name: profile for profile in self.profiles}

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

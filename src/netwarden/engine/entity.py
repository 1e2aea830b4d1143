"""Calico entity rules: does one end of a flow satisfy an `EntityMatch`?

An end is an endpoint seen at an address. Selectors look at every labelled thing the end "is":
the endpoint itself (a pod or host endpoint in scope) and each network set in scope that holds
the address. That is why `selector: "!has(a)"` never matches a plain external address (nothing
labelled is there) while `notSelector: "has(a)"` does (nothing there has `a`).
"""

from __future__ import annotations

from collections.abc import Iterator

from netwarden.engine.labels import endpoint_labels, in_namespace_scope
from netwarden.model import (
    ClusterState,
    Endpoint,
    EndpointKind,
    EntityMatch,
    IPAddress,
    IPNetwork,
)


def in_any(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def labelled_views(
    match: EntityMatch, endpoint: Endpoint, ip: IPAddress | None, cluster: ClusterState
) -> Iterator[dict[str, str]]:
    """Labels of each thing in the match's scope that this end is."""
    selectable = endpoint.kind in (EndpointKind.POD, EndpointKind.HOST_ENDPOINT)
    if selectable and in_namespace_scope(
        endpoint.namespace, match.namespace, match.namespaces, cluster
    ):
        yield endpoint_labels(endpoint, cluster)
    if ip is None:
        return
    for network_set in cluster.network_sets:
        if in_any(ip, network_set.nets) and in_namespace_scope(
            network_set.namespace, match.namespace, match.namespaces, cluster
        ):
            yield network_set.labels


def _service_accounts_match(match: EntityMatch, endpoint: Endpoint, cluster: ClusterState) -> bool:
    accounts = match.service_accounts
    if accounts is None:
        return True
    if endpoint.kind is not EndpointKind.POD or endpoint.namespace is None:
        return False
    if not in_namespace_scope(endpoint.namespace, match.namespace, match.namespaces, cluster):
        return False
    name = endpoint.service_account or "default"
    if accounts.names and name not in accounts.names:
        return False
    if accounts.selector is None:
        return True
    labels = cluster.service_account_labels.get((endpoint.namespace, name), {})
    return accounts.selector.matches(labels)


def entity_matches(
    match: EntityMatch,
    endpoint: Endpoint,
    ip: IPAddress | None,
    cluster: ClusterState,
    dst_port: tuple[int, int] | None = None,
) -> tuple[bool, str]:
    """(matched, why not). `dst_port` is (port, protocol) when this end is the destination,
    so a `services` match also checks the Service's ports."""
    if match.nets and (ip is None or not in_any(ip, match.nets)):
        return False, "address not in nets"
    if match.not_nets and ip is not None and in_any(ip, match.not_nets):
        return False, "address in notNets"
    # A namespaceSelector alone selects everything in those namespaces; a namespaced policy's
    # own namespace only narrows what selectors see, it selects nothing by itself.
    scoped = match.namespaces is not None
    if match.selector is not None or match.not_selector is not None or scoped:
        views = list(labelled_views(match, endpoint, ip, cluster))
        if match.selector is not None and not any(match.selector.matches(v) for v in views):
            return False, "selector does not match"
        if match.not_selector is not None and any(match.not_selector.matches(v) for v in views):
            return False, "notSelector matches"
        if scoped and match.selector is None and not views:
            return False, "not in the namespaces of this rule"
    if not _service_accounts_match(match, endpoint, cluster):
        return False, "service account does not match"
    if match.service is not None:
        service = cluster.services_by_key.get(match.service)
        if service is None or ip is None or ip not in service.ips:
            return False, f"not an endpoint of service {'/'.join(match.service)}"
        if (
            dst_port is not None
            and service.ports
            and not any((p.port, p.protocol) == dst_port for p in service.ports)
        ):
            return False, f"port not served by service {'/'.join(match.service)}"
    return True, ""

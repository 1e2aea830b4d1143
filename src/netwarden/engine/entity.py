"""Calico entity rules: does one end of a flow satisfy an `EntityMatch`?

An end is an endpoint seen at an address. Selectors look at every labelled thing the end "is":
the endpoint itself (a pod or host endpoint) and each network set that holds the address.
Calico (libcalico-go `updateprocessors/rules.go`, `getEndpointSelector`) turns an entity rule
into two selectors over those things, and so does this module:

- the positive one: `selector` AND the service account match (one selector over the same
  thing: a pod carries its account as `pcsa.<label>` and `projectcalico.org/serviceaccount`
  labels) AND, as soon as `selector`, `notSelector`, `serviceAccounts` or `namespaceSelector`
  is given, the namespace scope (`all()` when nothing else is). Some labelled thing must match
  it, so it never matches a plain external address;
- `notSelector`, unscoped: no labelled thing at the address, in any namespace, may match it.

So `selector: "!has(a)"` never matches a plain external address (nothing labelled is there),
`notSelector: "has(a)"` in a global policy does, and in a namespaced policy it matches only
things of the policy's namespace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

from netwarden.engine.labels import endpoint_labels, in_namespace_scope, network_set_labels
from netwarden.model import (
    ClusterState,
    Endpoint,
    EndpointKind,
    EntityMatch,
    IPAddress,
    IPNetwork,
    ServiceAccountMatch,
)


class LabelledView(NamedTuple):
    """One labelled thing an end of a flow is: the endpoint itself, or a network set holding
    its address. `pod` is the endpoint when it is a pod in a namespace, the only thing that
    runs as a service account."""

    labels: Mapping[str, str]
    namespace: str | None  # None: non-namespaced (host endpoint, global network set)
    pod: Endpoint | None


def in_any(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def labelled_views(
    endpoint: Endpoint, ip: IPAddress | None, cluster: ClusterState
) -> Iterator[LabelledView]:
    """Every labelled thing this end is, in any namespace."""
    if endpoint.kind in (EndpointKind.POD, EndpointKind.HOST_ENDPOINT):
        is_pod = endpoint.kind is EndpointKind.POD and endpoint.namespace is not None
        labels = endpoint_labels(endpoint, cluster)
        yield LabelledView(labels, endpoint.namespace, endpoint if is_pod else None)
    if ip is None:
        return
    for network_set in cluster.network_sets:
        if in_any(ip, network_set.nets):
            yield LabelledView(network_set_labels(network_set), network_set.namespace, None)


def given_accounts(match: EntityMatch) -> ServiceAccountMatch | None:
    """The service account match, None when it restricts nothing (Calico adds no selector for
    an empty one, so it does not scope the rule either)."""
    accounts = match.service_accounts
    if accounts is None or (not accounts.names and accounts.selector is None):
        return None
    return accounts


def is_scoped(match: EntityMatch) -> bool:
    """Whether Calico ANDs the namespace scope into the positive selector: a namespaceSelector
    always; a namespaced policy's own namespace once any selector field is given (a rule of
    only nets, notNets or services stays unscoped)."""
    if match.namespaces is not None:
        return True
    if match.namespace is None:
        return False
    given = (match.selector, match.not_selector, given_accounts(match))
    return any(value is not None for value in given)


def account_matches(
    accounts: ServiceAccountMatch, view: LabelledView, cluster: ClusterState
) -> bool:
    """The service account part of the positive selector, on one labelled thing."""
    pod = view.pod
    if pod is None or pod.namespace is None:
        # Calico matches accounts through labels only pods get (`pcsa.*`,
        # `projectcalico.org/serviceaccount`): names never match anything else, a selector
        # matches it as it matches no labels (`!has(tier)` does).
        return not accounts.names and (accounts.selector is None or accounts.selector.matches({}))
    name = pod.service_account or "default"
    if accounts.names and name not in accounts.names:
        return False
    if accounts.selector is None:
        return True
    return accounts.selector.matches(cluster.service_account_labels.get((pod.namespace, name), {}))


def _positive(
    match: EntityMatch, views: list[LabelledView], cluster: ClusterState
) -> tuple[bool, str]:
    """(matched, why not) for the positive selector: scope, selector and service account,
    all on one labelled thing."""
    candidates = views
    if is_scoped(match):
        candidates = [
            view
            for view in candidates
            if in_namespace_scope(view.namespace, match.namespace, match.namespaces, cluster)
        ]
        if not candidates:
            return False, "not in the namespaces of this rule"
    if match.selector is not None:
        selector = match.selector
        candidates = [view for view in candidates if selector.matches(view.labels)]
        if not candidates:
            return False, "selector does not match"
    accounts = given_accounts(match)
    if accounts is not None and not any(account_matches(accounts, v, cluster) for v in candidates):
        return False, "service account does not match"
    return True, ""


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
    positive = is_scoped(match) or match.selector is not None or given_accounts(match) is not None
    if positive or match.not_selector is not None:
        views = list(labelled_views(endpoint, ip, cluster))
        if positive:
            matched, why_not = _positive(match, views, cluster)
            if not matched:
                return False, why_not
        not_selector = match.not_selector
        if not_selector is not None and any(not_selector.matches(v.labels) for v in views):
            return False, "notSelector matches"
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

"""The labels a selector sees on an endpoint or a network set, and how a namespace selector's
`all()` and `global()` resolve in a scope.

Calico adds labels of its own to every workload endpoint (its namespace, orchestrator and
service account) so selectors can name them; Kubernetes selectors never mention these keys, so
adding them everywhere changes no Kubernetes verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from netwarden.model import (
    All,
    And,
    ClusterState,
    Endpoint,
    EndpointKind,
    Global,
    NetworkSet,
    Not,
    Nothing,
    Or,
    Selector,
)

NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"


def endpoint_labels(endpoint: Endpoint, cluster: ClusterState) -> dict[str, str]:
    """Labels selectors match on: a pod's own plus Calico's; a host endpoint's own plus those
    its profiles apply (`labelsToApply`), its own winning."""
    if endpoint.kind is EndpointKind.POD and endpoint.namespace is not None:
        implicit = {NAMESPACE_LABEL: endpoint.namespace, ORCHESTRATOR_LABEL: "k8s"}
        if endpoint.service_account:
            implicit[SERVICE_ACCOUNT_LABEL] = endpoint.service_account
        return {**implicit, **endpoint.labels}
    if endpoint.kind is EndpointKind.HOST_ENDPOINT and endpoint.profiles:
        applied: dict[str, str] = {}
        for name in endpoint.profiles:
            profile = cluster.profiles_by_name.get(name)
            if profile is not None:
                applied.update(profile.labels)
        return {**applied, **endpoint.labels}
    return endpoint.labels


@cache
def network_set_labels(network_set: NetworkSet) -> Mapping[str, str]:
    """Labels selectors match on a network set: its own, and on a namespaced one Calico's
    namespace label, which Calico sets over any written one (libcalico-go
    updateprocessors/networksetprocessor.go)."""
    if network_set.namespace is None:
        return network_set.labels
    return {**network_set.labels, NAMESPACE_LABEL: network_set.namespace}


@cache
def resolve_global(selector: Selector, non_namespaced: bool) -> Selector:
    """`selector` with `global()` replaced by what it means for one kind of thing: true for
    non-namespaced things (host endpoints, global network sets), false for namespaced ones.
    For a policy's own `namespaceSelector`; an entity rule's is `resolve_rule_scope`."""
    if isinstance(selector, Global):
        return All() if non_namespaced else Nothing()
    if isinstance(selector, Not):
        return Not(resolve_global(selector.term, non_namespaced))
    if isinstance(selector, And):
        return And(tuple(resolve_global(t, non_namespaced) for t in selector.terms))
    if isinstance(selector, Or):
        return Or(tuple(resolve_global(t, non_namespaced) for t in selector.terms))
    return selector


@cache
def resolve_rule_scope(selector: Selector, non_namespaced: bool) -> Selector:
    """An entity rule's `namespaceSelector` for one kind of thing, as Calico rewrites it
    (libcalico-go updateprocessors/rules.go): `all()` becomes `has(projectcalico.org/namespace)`
    and `global()` its negation. So for namespaced things `all()` holds and `global()` does not;
    for non-namespaced ones (host endpoints, global network sets) the other way round. Other
    terms look at namespace labels, which non-namespaced things do not have."""
    if isinstance(selector, Global):
        return All() if non_namespaced else Nothing()
    if isinstance(selector, All):
        return Nothing() if non_namespaced else selector
    if isinstance(selector, Not):
        return Not(resolve_rule_scope(selector.term, non_namespaced))
    if isinstance(selector, And):
        return And(tuple(resolve_rule_scope(t, non_namespaced) for t in selector.terms))
    if isinstance(selector, Or):
        return Or(tuple(resolve_rule_scope(t, non_namespaced) for t in selector.terms))
    return selector


def in_namespace_scope(
    namespace: str | None,
    scope_namespace: str | None,
    scope: Selector | None,
    cluster: ClusterState,
) -> bool:
    """Whether a thing in `namespace` (None: non-namespaced) is within an entity rule's scope:
    a fixed namespace, a namespace selector (`resolve_rule_scope`), or, with neither,
    everything."""
    if scope_namespace is not None:
        return namespace == scope_namespace
    if scope is None:
        return True
    if namespace is None:
        return resolve_rule_scope(scope, True).matches({})
    labels = cluster.namespace_labels.get(namespace, {})
    return resolve_rule_scope(scope, False).matches(labels)

"""The model back out as Calico: `projectcalico.org/v3` manifests for every policy.

A Kubernetes NetworkPolicy is converted exactly as Calico converts it (`calico_conversion`:
the namespaced `NetworkPolicy` `knp.default.<name>`, or the `StagedNetworkPolicy` of that name).
Calico policies, tiers other than the built-in ones, network sets, host endpoints and profiles
are written as themselves, their rules by `calico_rule_writer`. AdminNetworkPolicy,
BaselineAdminNetworkPolicy and ClusterNetworkPolicy stay what they are (Calico reads them
natively; `admin_netpol_writer` is shared with the Kubernetes target).

What Calico cannot hold (a node peer in a Calico rule, a selector Calico's syntax cannot
quote, ...) raises WriteError naming the resource and the construct: nothing is dropped.

    >>> from netwarden.dialects import load_text
    >>> cluster = load_text('''
    ... apiVersion: networking.k8s.io/v1
    ... kind: NetworkPolicy
    ... metadata: {name: web, namespace: shop}
    ... spec: {podSelector: {matchLabels: {app: web}}}
    ... ''').cluster
    >>> write_calico(cluster)[0]["spec"]["selector"]
    '(projectcalico.org/orchestrator == "k8s" && app == "web")'
"""

from __future__ import annotations

from netwarden.dialects.admin_netpol_writer import ADMIN_KINDS, write_admin_policy
from netwarden.dialects.calico import CALICO_NETWORK_POLICY, GLOBAL_NETWORK_POLICY
from netwarden.dialects.calico_conversion import convert_network_policy
from netwarden.dialects.calico_rule_writer import write_rules
from netwarden.dialects.calico_syntax import calico_resource, plain_selector, protocol_value
from netwarden.dialects.loader import DEFAULT_ALLOW
from netwarden.dialects.writer_common import (
    Inexpressible,
    Manifest,
    describe,
    number,
    part,
    writing,
)
from netwarden.engine.labels import resolve_rule_scope
from netwarden.model import (
    BUILTIN_TIERS,
    DEFAULT_TIER,
    Action,
    All,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    NetworkSet,
    Policy,
    Profile,
    StagedAction,
    Tier,
)


def write_calico(cluster: ClusterState) -> list[Manifest]:
    """Tiers (other than the built-in ones), network sets, host endpoints, profiles, then every
    policy, as Calico manifests. Kubernetes inventory (namespaces, pods, nodes) is not written:
    Calico reads it from the cluster. Raises WriteError for what Calico cannot express."""
    builtin = {tier.name: tier for tier in BUILTIN_TIERS}
    documents = [write_tier(tier) for tier in cluster.tiers if builtin.get(tier.name) != tier]
    documents += [write_network_set(network_set) for network_set in cluster.network_sets]
    documents += [
        write_host_endpoint(endpoint)
        for endpoint in cluster.endpoints
        if endpoint.kind is EndpointKind.HOST_ENDPOINT
    ]
    # Calico provides projectcalico-default-allow itself; the loader adds it when named.
    documents += [
        write_profile(profile) for profile in cluster.profiles if profile != DEFAULT_ALLOW
    ]
    documents += [write_calico_policy(policy) for policy in cluster.policies]
    return documents


def write_calico_policy(policy: Policy) -> Manifest:
    """One policy: Kubernetes NetworkPolicies converted, admin kinds as themselves."""
    if policy.kind == "NetworkPolicy":
        return convert_network_policy(policy)
    if policy.kind in ADMIN_KINDS:
        return write_admin_policy(policy)
    with writing(policy.source, describe(policy), "Calico"):
        if policy.kind not in (CALICO_NETWORK_POLICY, GLOBAL_NETWORK_POLICY):
            raise Inexpressible(f"{policy.kind} is not a kind Calico reads")
        return _calico_policy(policy)


# Calico policies


def _calico_policy(policy: Policy) -> Manifest:
    cluster_wide = policy.kind == GLOBAL_NETWORK_POLICY
    kind = ("Staged" if policy.staged else "") + (
        "GlobalNetworkPolicy" if cluster_wide else "NetworkPolicy"
    )
    namespace = None if cluster_wide else policy.namespace
    if not cluster_wide and namespace is None:
        raise Inexpressible("a namespaced Calico policy without a namespace")
    spec: Manifest = {}
    if policy.staged is not None:
        spec["stagedAction"] = policy.staged.value
    if policy.staged is not StagedAction.DELETE or policy.tier != DEFAULT_TIER.name:
        spec["tier"] = policy.tier
    if policy.staged is StagedAction.DELETE:
        return {**calico_resource(kind, policy.name, namespace), "spec": spec}
    if policy.order is not None:
        spec["order"] = number(policy.order)
    with part("selector"):
        spec.update(_subject(policy.subject, namespace, cluster_wide))
    types = [d.value.capitalize() for d in Direction if policy.rules(d) is not None]
    if not types:
        # Calico would default empty types to Ingress: a different policy.
        raise Inexpressible("a policy that applies in neither direction")
    spec["types"] = types
    for direction in Direction:
        rules = write_rules(policy.rules(direction) or (), direction, namespace)
        if rules:
            spec[direction.value] = rules
    return {**calico_resource(kind, policy.name, namespace), "spec": spec}


def _subject(subject: EndpointSelector, namespace: str | None, cluster_wide: bool) -> Manifest:
    if subject.namespace != namespace:
        raise Inexpressible("a subject whose scope is not the policy's")
    written: Manifest = {"selector": plain_selector(subject.pods)}
    # A global policy's namespaceSelector also decides whether host endpoints are selected
    # (the reader's `_subject`): an absent one keeps them, `all()` leaves them out.
    host_endpoints = cluster_wide
    if subject.host_endpoints != cluster_wide or not isinstance(subject.namespaces, All):
        if not cluster_wide:
            raise Inexpressible("a namespace selector in a namespaced policy's subject")
        written["namespaceSelector"] = plain_selector(subject.namespaces)
        host_endpoints = resolve_rule_scope(subject.namespaces, True).matches({})
    if subject.host_endpoints != host_endpoints:
        raise Inexpressible("host endpoints that no namespaceSelector selects alone")
    if subject.service_accounts is not None:
        written["serviceAccountSelector"] = plain_selector(subject.service_accounts)
    return written


# Tiers and inventory


def write_tier(tier: Tier) -> Manifest:
    with writing(tier.source, f"Tier {tier.name}", "Calico"):
        if tier.default_action not in (Action.DENY, Action.PASS):
            raise Inexpressible(f"default action {tier.default_action.value}")
        spec: Manifest = {}
        if tier.order != float("inf"):
            spec["order"] = number(tier.order)
        spec["defaultAction"] = tier.default_action.value
        return {**calico_resource("Tier", tier.name), "spec": spec}


def write_network_set(network_set: NetworkSet) -> Manifest:
    kind = "NetworkSet" if network_set.namespace else "GlobalNetworkSet"
    resource = calico_resource(
        kind, network_set.name, network_set.namespace, labels=dict(network_set.labels)
    )
    return {**resource, "spec": {"nets": [str(net) for net in network_set.nets]}}


def write_host_endpoint(endpoint: Endpoint) -> Manifest:
    with writing(endpoint.source, f"HostEndpoint {endpoint.name}", "Calico"):
        if endpoint.node is None:
            raise Inexpressible("no node")
        if not endpoint.ips:
            # The reader keeps no interfaceName: without addresses nothing says where it is.
            raise Inexpressible("no expectedIPs (the interface name is not kept)")
        spec: Manifest = {"node": endpoint.node, "expectedIPs": [str(ip) for ip in endpoint.ips]}
        if endpoint.profiles:
            spec["profiles"] = list(endpoint.profiles)
        if endpoint.ports:
            spec["ports"] = [
                {"name": port.name, "port": port.port, "protocol": protocol_value(port.protocol)}
                for port in endpoint.ports
            ]
        resource = calico_resource("HostEndpoint", endpoint.name, labels=dict(endpoint.labels))
        return {**resource, "spec": spec}


def write_profile(profile: Profile) -> Manifest:
    with writing(profile.source, f"Profile {profile.name}", "Calico"):
        spec: Manifest = {}
        if profile.labels:
            spec["labelsToApply"] = dict(profile.labels)
        for direction in Direction:
            rules = write_rules(profile.rules(direction), direction, None)
            if rules:
                spec[direction.value] = rules
        return {**calico_resource("Profile", profile.name), "spec": spec}

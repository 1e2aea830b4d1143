"""The model back out as Calico: `projectcalico.org/v3` manifests for every policy.

A Kubernetes NetworkPolicy is converted exactly as Calico converts it (libcalico-go
`K8sNetworkPolicyToCalico`): a namespaced `NetworkPolicy` named `knp.default.<name>`, tier
`default`, order 1000, selector `projectcalico.org/orchestrator == "k8s" && <podSelector>`, one
Allow rule per (protocol, peer) with protocols in name order and each protocol's ports merged
into ranges; a staged one becomes the `StagedNetworkPolicy` of that name. Calico policies,
tiers other than the built-in ones, network sets, host endpoints and profiles are written as
themselves. AdminNetworkPolicy, BaselineAdminNetworkPolicy and ClusterNetworkPolicy stay what
they are (Calico reads them natively; the writer is shared with the Kubernetes target).

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

from typing import Any, NamedTuple

from netwarden.dialects.calico import CALICO_NETWORK_POLICY, GLOBAL_NETWORK_POLICY
from netwarden.dialects.calico_rules import PORT_PROTOCOLS, PROTOCOL_NAMES, has_global
from netwarden.dialects.calico_selector import format_selector
from netwarden.dialects.k8s_writer import (
    ADMIN_KINDS,
    Inexpressible,
    Manifest,
    describe,
    number,
    part,
    port_span,
    write_admin_policy,
    write_network_policy,
    writing,
)
from netwarden.dialects.loader import DEFAULT_ALLOW
from netwarden.engine.labels import resolve_rule_scope
from netwarden.model import (
    BUILTIN_TIERS,
    DEFAULT_TIER,
    Action,
    All,
    And,
    ClusterState,
    Direction,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    EntityMatch,
    Global,
    Has,
    IcmpMatch,
    In,
    NetworkPeer,
    NetworkSet,
    Not,
    NotIn,
    Peer,
    Policy,
    PortMatch,
    Profile,
    Rule,
    Selector,
    StagedAction,
    Tier,
)

CALICO_API = "projectcalico.org/v3"
K8S_POLICY_PREFIX = "knp.default."  # Calico's name for a converted Kubernetes NetworkPolicy
ORCHESTRATOR = In("projectcalico.org/orchestrator", frozenset({"k8s"}))


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


def _resource(kind: str, name: str, namespace: str | None = None, **meta: Any) -> Manifest:
    metadata: Manifest = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata.update(meta)
    return {"apiVersion": CALICO_API, "kind": kind, "metadata": metadata}


def calico_selector(selector: Selector) -> str:
    """Calico's canonical text; Inexpressible for what its syntax cannot quote."""
    try:
        return format_selector(selector)
    except (TypeError, ValueError) as error:
        raise Inexpressible(str(error)) from None


# Kubernetes NetworkPolicy, converted as Calico converts it


def convert_network_policy(policy: Policy) -> Manifest:
    """A Kubernetes NetworkPolicy (staged or not) as the Calico policy Calico makes of it."""
    name = K8S_POLICY_PREFIX + policy.name
    if policy.staged is StagedAction.DELETE:
        # Only the name matters: the staged set removes the policy of that name.
        staged = _resource("StagedNetworkPolicy", name, policy.namespace)
        return {**staged, "spec": {"stagedAction": StagedAction.DELETE.value}}
    # First the Kubernetes object itself (which checks the policy is one), then Calico's
    # conversion of that object.
    converted = k8s_to_calico(write_network_policy(policy))
    if policy.staged is None:
        return converted
    return {
        **converted,
        "kind": "StagedNetworkPolicy",
        "spec": {"stagedAction": policy.staged.value, **converted["spec"]},
    }


def k8s_to_calico(network_policy: Manifest) -> Manifest:
    """Calico's `K8sNetworkPolicyToCalico` on a NetworkPolicy manifest (as `k8s_writer`
    writes it: protocols and policyTypes explicit)."""
    meta, spec = network_policy["metadata"], network_policy["spec"]
    rules: dict[str, list[Manifest]] = {}
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        rules[direction] = [
            converted
            for rule in spec.get(direction, [])
            for converted in _convert_rule(
                rule.get(peers_key, []), rule.get("ports", []), direction == "ingress"
            )
        ]
    types = [t for t in ("Ingress", "Egress") if t in spec.get("policyTypes", [])] or ["Ingress"]
    calico_spec: Manifest = {
        "tier": DEFAULT_TIER.name,
        "order": 1000,
        "selector": _k8s_selector(spec.get("podSelector"), pods=True),
        "types": types,
    }
    calico_spec.update({direction: found for direction, found in rules.items() if found})
    converted = _resource("NetworkPolicy", K8S_POLICY_PREFIX + meta["name"], meta["namespace"])
    return {**converted, "spec": calico_spec}


def _k8s_selector(selector: Manifest | None, pods: bool) -> str:
    """Calico's `k8sSelectorToCalico`: pod selectors gain the orchestrator clause; an absent
    namespace selector is "" (the policy's namespace), an empty one `all()`."""
    if selector is None:
        return calico_selector(ORCHESTRATOR) if pods else ""
    terms: list[Selector] = [
        In(key, frozenset({value}))
        for key, value in sorted(selector.get("matchLabels", {}).items())
    ]
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], frozenset(expression.get("values", []))
        terms.append(
            {
                "In": In(key, values),
                "NotIn": NotIn(key, values),
                "Exists": Has(key),
                "DoesNotExist": Not(Has(key)),
            }[expression["operator"]]
        )
    if pods:
        terms.insert(0, ORCHESTRATOR)
    if not terms:
        return "all()"
    return calico_selector(terms[0] if len(terms) == 1 else And(tuple(terms)))


class CalicoPort(NamedTuple):
    """A numorstring.Port: a range of numbers, or a name."""

    start: int = 0
    end: int = 0
    name: str = ""

    def value(self) -> int | str:
        if self.name:
            return self.name
        return self.start if self.start == self.end else f"{self.start}:{self.end}"


def _convert_rule(peers: list[Manifest], ports: list[Manifest], ingress: bool) -> list[Manifest]:
    """Calico's `k8sRuleToCalico`: ports grouped by protocol (no ports: one group without a
    protocol; a port without a number: every port of its protocol), one rule per protocol and
    peer, protocols in name order."""
    groups: dict[str, list[CalicoPort] | None] = {}
    for port in ports:
        protocol = port.get("protocol", "TCP")
        if "port" not in port:
            groups[protocol] = None
            continue
        value = port["port"]
        if isinstance(value, str):
            found = CalicoPort(name=value)
        else:
            found = CalicoPort(value, int(port.get("endPort") or value))
        if protocol not in groups:
            groups[protocol] = [found]
        elif groups[protocol]:  # a protocol already open to every port stays so
            groups[protocol] = [*(groups[protocol] or []), found]
    if not ports:
        groups = {"": None}
    rules = []
    every_peer: list[Manifest | None] = [None]
    for protocol in sorted(groups):
        merged = simplify_ports(groups[protocol] or [])
        for peer in peers or every_peer:
            entity = _k8s_peer(peer)
            rule: Manifest = {"action": "Allow"}
            if protocol:
                rule["protocol"] = protocol
            destination = {} if ingress else entity
            if merged:
                destination = {**destination, "ports": [p.value() for p in merged]}
            if ingress and entity:
                rule["source"] = entity
            if destination:
                rule["destination"] = destination
            rules.append(rule)
    return rules


def _k8s_peer(peer: Manifest | None) -> Manifest:
    """Calico's `k8sPeerToCalicoFields`: ipBlock -> nets/notNets, else selectors."""
    if peer is None:
        return {}
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        entity: Manifest = {"nets": [block["cidr"]]}
        if block.get("except"):
            entity["notNets"] = list(block["except"])
        return entity
    entity = {"selector": _k8s_selector(peer.get("podSelector"), pods=True)}
    namespaces = _k8s_selector(peer.get("namespaceSelector"), pods=False)
    if namespaces:
        entity["namespaceSelector"] = namespaces
    return entity


def simplify_ports(ports: list[CalicoPort]) -> list[CalicoPort]:
    """Calico's `SimplifyPorts`: named ports first as given, then the numbers merged into the
    fewest ranges; unchanged when there is at most one number to merge."""
    numbers = [(port.start, port.end) for port in ports if not port.name]
    if len(ports) <= 1 or sum(end - start + 1 for start, end in numbers) <= 1:
        return ports
    merged: list[tuple[int, int]] = []
    for start, end in sorted(numbers):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return [port for port in ports if port.name] + [CalicoPort(s, e) for s, e in merged]


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
        return {**_resource(kind, policy.name, namespace), "spec": spec}
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
    return {**_resource(kind, policy.name, namespace), "spec": spec}


def _subject(subject: EndpointSelector, namespace: str | None, cluster_wide: bool) -> Manifest:
    if subject.namespace != namespace:
        raise Inexpressible("a subject whose scope is not the policy's")
    written: Manifest = {"selector": _plain(subject.pods)}
    # A global policy's namespaceSelector also decides whether host endpoints are selected
    # (the reader's `_subject`): an absent one keeps them, `all()` leaves them out.
    host_endpoints = cluster_wide
    if subject.host_endpoints != cluster_wide or not isinstance(subject.namespaces, All):
        if not cluster_wide:
            raise Inexpressible("a namespace selector in a namespaced policy's subject")
        written["namespaceSelector"] = _plain(subject.namespaces)
        host_endpoints = resolve_rule_scope(subject.namespaces, True).matches({})
    if subject.host_endpoints != host_endpoints:
        raise Inexpressible("host endpoints that no namespaceSelector selects alone")
    if subject.service_accounts is not None:
        written["serviceAccountSelector"] = _plain(subject.service_accounts)
    return written


def _plain(selector: Selector) -> str:
    """A selector where `global()` has no meaning."""
    if has_global(selector):
        raise Inexpressible("global() outside an entity rule's namespaceSelector")
    return calico_selector(selector)


def write_rules(rules: tuple[Rule, ...], direction: Direction, scope: str | None) -> list[Manifest]:
    """Model rules as Calico rules; `scope` is a namespaced policy's namespace (None: global).
    A rule with several peers, or ports of several protocols, becomes one Calico rule per
    (protocol, peer), protocol-major as Calico converts: the first that matches decides, as
    the one rule did."""
    written = []
    for i, rule in enumerate(rules):
        with part(f"{direction.value} rule {i}"):
            for protocol, ports, not_ports in _port_groups(rule):
                for peer in rule.peers or (None,):
                    written.append(_rule(rule, direction, scope, peer, protocol, ports, not_ports))
    return written


def _protocol(number: int) -> int | str:
    return PROTOCOL_NAMES.get(number, number)


PortGroup = tuple[int | None, tuple[PortMatch, ...], tuple[PortMatch, ...]]


def _port_groups(rule: Rule) -> list[PortGroup]:
    """(protocol, ports, notPorts) for each Calico rule the model rule needs."""
    if rule.protocol is not None:
        for port in (*rule.ports, *rule.not_ports):
            if port.protocol != rule.protocol:
                raise Inexpressible(f"port {port} in a {_protocol(rule.protocol)} rule")
        return [(rule.protocol, rule.ports, rule.not_ports)]
    if rule.not_ports:
        raise Inexpressible("notPorts in a rule without a protocol")
    groups: dict[int, list[PortMatch]] = {}
    for port in rule.ports:
        if port.protocol is None:
            raise Inexpressible(f"port {port} without a protocol")
        groups.setdefault(port.protocol, []).append(port)
    if not groups:
        return [(None, (), ())]
    ordered = sorted(groups, key=lambda p: str(_protocol(p)))
    return [(protocol, tuple(groups[protocol]), ()) for protocol in ordered]


def _port_values(ports: tuple[PortMatch, ...], negated: bool) -> list[int | str]:
    """Calico port values; [] when one of them is every port of the protocol."""
    values: list[int | str] = []
    for port in ports:
        if port.name is not None:
            values.append(port.name)
            continue
        span = port_span(port)
        if span is None:
            if negated:
                raise Inexpressible("notPorts holding every port")
            return []
        values.append(span.start if span.start == span.end else f"{span.start}:{span.end}")
    return values


def _rule(
    rule: Rule,
    direction: Direction,
    scope: str | None,
    peer: Peer | None,
    protocol: int | None,
    ports: tuple[PortMatch, ...],
    not_ports: tuple[PortMatch, ...],
) -> Manifest:
    written: Manifest = {"action": rule.action.value}
    if protocol is not None:
        written["protocol"] = _protocol(protocol)
    if rule.not_protocol is not None:
        written["notProtocol"] = _protocol(rule.not_protocol)
    if (ports or not_ports) and protocol not in PORT_PROTOCOLS:
        raise Inexpressible("ports need protocol TCP, UDP or SCTP")
    for field, match in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if match is not None:
            written[field] = _icmp(match)
    if rule.ip_version is not None:
        written["ipVersion"] = rule.ip_version
    other = {} if peer is None else _entity(peer, scope)
    own = {} if rule.local is None else _entity(rule.local, scope)
    source, destination = (other, own) if direction is Direction.INGRESS else (own, other)
    if ports:
        destination = {**destination, "ports": _port_values(ports, negated=False)}
        if not destination["ports"]:
            del destination["ports"]
    if not_ports:
        destination = {**destination, "notPorts": _port_values(not_ports, negated=True)}
    if source:
        written["source"] = source
    if destination:
        written["destination"] = destination
    if rule.http is not None:
        written["http"] = _http(rule.http.methods, rule.http.paths)
    return written


def _icmp(match: IcmpMatch) -> Manifest:
    written: Manifest = {"type": match.type}
    if match.code is not None:
        written["code"] = match.code
    return written


def _http(methods: tuple[str, ...], paths: tuple[str, ...]) -> Manifest:
    written: Manifest = {}
    if methods:
        written["methods"] = list(methods)
    if paths:
        written["paths"] = [
            {"prefix": path.removeprefix("prefix:")}
            if path.startswith("prefix:")
            else {"exact": path}
            for path in paths
        ]
    return written


def _entity(peer: Peer, scope: str | None) -> Manifest:
    """One end of a Calico rule."""
    if isinstance(peer, EntityMatch):
        return _entity_match(peer, scope)
    if isinstance(peer, NetworkPeer):
        written: Manifest = {"nets": [str(peer.cidr)]}
        if peer.excepted:
            written["notNets"] = [str(block) for block in peer.excepted]
        return written
    if isinstance(peer, EndpointSelector):
        return _pod_entity(peer, scope)
    raise Inexpressible(f"a {type(peer).__name__} peer (Calico rules have no node selector)")


def _pod_entity(peer: EndpointSelector, scope: str | None) -> Manifest:
    """A Kubernetes-style pod peer: the orchestrator clause keeps the selector to pods."""
    if peer.host_endpoints or peer.service_accounts is not None:
        raise Inexpressible("a pod peer selecting host endpoints or service accounts")
    terms = peer.pods.terms if isinstance(peer.pods, And) else (peer.pods,)
    pods = [term for term in terms if not isinstance(term, All)]
    written: Manifest = {"selector": _plain(And((ORCHESTRATOR, *pods)) if pods else ORCHESTRATOR)}
    if peer.namespace is None:
        written["namespaceSelector"] = _plain(peer.namespaces)
    elif peer.namespace != scope or not isinstance(peer.namespaces, All):
        raise Inexpressible(f"pods of namespace {peer.namespace!r} from scope {scope!r}")
    return written


def _entity_match(match: EntityMatch, scope: str | None) -> Manifest:
    written: Manifest = {}
    if match.nets:
        written["nets"] = [str(net) for net in match.nets]
    if match.not_nets:
        written["notNets"] = [str(net) for net in match.not_nets]
    if match.selector is not None:
        written["selector"] = _plain(match.selector)
    if match.not_selector is not None:
        written["notSelector"] = _plain(match.not_selector)
    accounts = match.service_accounts
    scoped = match.selector is not None or (
        accounts is not None and bool(accounts.names or accounts.selector is not None)
    )
    if match.namespaces is not None:
        if has_global(match.namespaces) and not isinstance(match.namespaces, Global):
            raise Inexpressible("global() combined with other namespace selectors")
        written["namespaceSelector"] = calico_selector(match.namespaces)
    elif match.namespace != scope and (scoped or match.not_selector is not None):
        if match.namespace is not None:
            raise Inexpressible(f"selectors scoped to namespace {match.namespace!r}")
        # Unscoped, in a namespaced policy. Calico scopes every selector there: all() is
        # has(projectcalico.org/namespace), which leaves out host endpoints and global network
        # sets, and any scope demands a labelled endpoint or network set for a notSelector.
        if not scoped:
            raise Inexpressible("a notSelector over every namespace in a namespaced policy")
        raise Inexpressible(
            "selectors over every namespace and the non-namespaced things in a namespaced "
            "policy (namespaceSelector all() leaves out host endpoints and global network sets)"
        )
    if accounts is not None:
        written["serviceAccounts"] = {}
        if accounts.names:
            written["serviceAccounts"]["names"] = sorted(accounts.names)
        if accounts.selector is not None:
            written["serviceAccounts"]["selector"] = _plain(accounts.selector)
    if match.service is not None:
        service_namespace, name = match.service
        written["services"] = {"name": name, "namespace": service_namespace}
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
        return {**_resource("Tier", tier.name), "spec": spec}


def write_network_set(network_set: NetworkSet) -> Manifest:
    kind = "NetworkSet" if network_set.namespace else "GlobalNetworkSet"
    resource = _resource(
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
                {"name": port.name, "port": port.port, "protocol": _protocol(port.protocol)}
                for port in endpoint.ports
            ]
        resource = _resource("HostEndpoint", endpoint.name, labels=dict(endpoint.labels))
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
        return {**_resource("Profile", profile.name), "spec": spec}

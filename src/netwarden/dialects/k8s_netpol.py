"""Kubernetes `networking.k8s.io/v1` NetworkPolicy.

A NetworkPolicy becomes a policy of the `default` tier at order 1000 (where Calico puts it)
whose rules all Allow. Isolation and the union of allows then follow from the tier rules: a
selected pod is denied at the end of the tier unless some rule of some policy allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from netwarden.dialects.k8s_common import ObjectMeta, PortName, PortNumber, parse_cidr
from netwarden.dialects.k8s_labels import LabelSelector
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, parse
from netwarden.model import (
    DEFAULT_TIER,
    K8S_NETWORK_POLICY_ORDER,
    Action,
    EndpointSelector,
    NetworkPeer,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    parse_protocol,
)


class IPBlock(Schema):
    cidr: str
    except_: list[str] = Field(default=[], alias="except")

    @model_validator(mode="after")
    def _valid_blocks(self) -> IPBlock:
        cidr = parse_cidr(self.cidr)
        for text in self.except_:
            block = parse_cidr(text)
            if block.version != cidr.version or not block.subnet_of(cidr) or block == cidr:  # type: ignore[arg-type]
                raise ValueError(f"except {text!r} must be a strict subset of cidr {self.cidr!r}")
        return self

    def to_peer(self) -> NetworkPeer:
        return NetworkPeer(parse_cidr(self.cidr), tuple(parse_cidr(t) for t in self.except_))


class NetworkPolicyPeer(Schema):
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPolicyPeer:
        selectors = self.pod_selector is not None or self.namespace_selector is not None
        if self.ip_block is not None and selectors:
            raise ValueError("ipBlock cannot be combined with podSelector or namespaceSelector")
        if self.ip_block is None and not selectors:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self

    def to_peer(self, namespace: str) -> Peer:
        """podSelector alone stays in the policy's namespace; namespaceSelector widens it."""
        if self.ip_block is not None:
            return self.ip_block.to_peer()
        pods = (self.pod_selector or LabelSelector()).to_selector()
        if self.namespace_selector is None:
            return EndpointSelector(pods=pods, namespace=namespace)
        return EndpointSelector(pods=pods, namespaces=self.namespace_selector.to_selector())


class NetworkPolicyPort(Schema):
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: PortNumber | PortName | None = None
    end_port: PortNumber | None = None

    @model_validator(mode="after")
    def _valid_range(self) -> NetworkPolicyPort:
        if self.end_port is not None:
            if not isinstance(self.port, int):
                raise ValueError("endPort needs a numeric port")
            if self.end_port < self.port:
                raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self

    def to_match(self) -> PortMatch:
        protocol = parse_protocol(self.protocol)
        if isinstance(self.port, str):
            return PortMatch(protocol, name=self.port)
        if self.port is None:
            return PortMatch(protocol)
        return PortMatch(protocol, PortRange(self.port, self.end_port or self.port))


class IngressRule(Schema):
    from_: list[NetworkPolicyPeer] = Field(default=[], alias="from")
    ports: list[NetworkPolicyPort] = []


class EgressRule(Schema):
    to: list[NetworkPolicyPeer] = []
    ports: list[NetworkPolicyPort] = []


class NetworkPolicySpec(Schema):
    pod_selector: LabelSelector = LabelSelector()
    policy_types: list[Literal["Ingress", "Egress"]] | None = None
    ingress: list[IngressRule] = []
    egress: list[EgressRule] = []


class NetworkPolicy(Schema):
    metadata: ObjectMeta
    spec: NetworkPolicySpec = NetworkPolicySpec()


def _rule(
    document: Document,
    path: tuple[str | int, ...],
    peers: list[NetworkPolicyPeer],
    ports: list[NetworkPolicyPort],
    namespace: str,
) -> Rule:
    """Empty `from`/`to` means every peer, empty `ports` every port: both are `()` here."""
    return Rule(
        action=Action.ALLOW,
        peers=tuple(peer.to_peer(namespace) for peer in peers),
        ports=tuple(port.to_match() for port in ports),
        name=f"{path[1]}[{path[2]}]",
        source=document.location(path),
    )


def read_network_policy(document: Document) -> list[Policy]:
    return [network_policy(document)]


def network_policy(document: Document) -> Policy:
    """One NetworkPolicy; also the spec of a Calico StagedKubernetesNetworkPolicy, whose
    extra `stagedAction` the schema ignores."""
    policy = parse(document, NetworkPolicy)
    spec = policy.spec
    namespace = policy.metadata.namespace or "default"
    # The API server's defaulting: Ingress always, Egress when egress rules are present.
    types = spec.policy_types
    if not types:  # absent or empty: the API server defaults it
        types = ["Ingress", "Egress"] if spec.egress else ["Ingress"]
    ingress: tuple[Rule, ...] | None = None
    egress: tuple[Rule, ...] | None = None
    if "Ingress" in types:
        ingress = tuple(
            _rule(document, ("spec", "ingress", i), r.from_, r.ports, namespace)
            for i, r in enumerate(spec.ingress)
        )
    if "Egress" in types:
        egress = tuple(
            _rule(document, ("spec", "egress", i), r.to, r.ports, namespace)
            for i, r in enumerate(spec.egress)
        )
    return Policy(
        name=policy.metadata.name,
        kind="NetworkPolicy",
        tier=DEFAULT_TIER.name,
        subject=EndpointSelector(pods=spec.pod_selector.to_selector(), namespace=namespace),
        namespace=namespace,
        order=K8S_NETWORK_POLICY_ORDER,
        ingress=ingress,
        egress=egress,
        source=document.location(),
        calico_name=f"knp.default.{policy.metadata.name}",
    )


READERS = {("networking.k8s.io", "NetworkPolicy"): read_network_policy}

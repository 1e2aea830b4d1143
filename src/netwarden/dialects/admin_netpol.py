"""AdminNetworkPolicy and BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`) and
ClusterNetworkPolicy (`v1alpha2`), into the admin and baseline tiers.

Policies of a tier are ordered by priority (lower first); rules by position; the first rule
that matches decides, and Pass hands the flow to the next tier. Subjects and pod peers never
select hostNetwork pods (the API says so); `nodes` peers match node addresses instead.
ClusterNetworkPolicy `domainNames` peers cannot be decided from addresses: they match no flow
here, the fail-closed reading the API prescribes for a peer an implementation cannot match
(such rules may only Accept).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from netwarden.dialects.k8s_common import ObjectMeta, PortName, PortNumber, parse_cidr
from netwarden.dialects.k8s_labels import LabelSelector
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail, parse
from netwarden.model import (
    ADMIN_TIER,
    BASELINE_TIER,
    Action,
    EndpointSelector,
    NetworkPeer,
    NodePeer,
    Nothing,
    Peer,
    Policy,
    PortMatch,
    PortRange,
    Rule,
    parse_protocol,
)

ProtocolName = Literal["TCP", "UDP", "SCTP"]
ACTIONS = {"Allow": Action.ALLOW, "Accept": Action.ALLOW, "Deny": Action.DENY, "Pass": Action.PASS}


def _exactly_one(model: Schema, what: str) -> None:
    present = [name for name, value in model if value is not None]
    if len(present) != 1:
        fields = ", ".join(f.alias or n for n, f in type(model).model_fields.items())
        raise ValueError(f"{what} needs exactly one of {fields} (got {len(present)})")


class NamespacedPod(Schema):
    namespace_selector: LabelSelector = LabelSelector()
    pod_selector: LabelSelector


class Subject(Schema):
    namespaces: LabelSelector | None = None
    pods: NamespacedPod | None = None

    @model_validator(mode="after")
    def _one(self) -> Subject:
        _exactly_one(self, "subject")
        return self

    def to_selector(self) -> EndpointSelector:
        if self.pods is not None:
            return EndpointSelector(
                pods=self.pods.pod_selector.to_selector(),
                namespaces=self.pods.namespace_selector.to_selector(),
            )
        assert self.namespaces is not None
        return EndpointSelector(namespaces=self.namespaces.to_selector())


class AdminPeer(Schema):
    """An ingress or egress peer of either API version; direction checks are in the rules."""

    namespaces: LabelSelector | None = None
    pods: NamespacedPod | None = None
    nodes: LabelSelector | None = None
    networks: list[str] | None = Field(default=None, min_length=1)
    domain_names: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> AdminPeer:
        _exactly_one(self, "a peer")
        for text in self.networks or []:
            parse_cidr(text)
        return self

    def to_peers(self) -> list[Peer]:
        if self.nodes is not None:
            return [NodePeer(self.nodes.to_selector())]
        if self.networks is not None:
            return [NetworkPeer(parse_cidr(text)) for text in self.networks]
        if self.domain_names is not None:
            return [EndpointSelector(pods=Nothing(), namespaces=Nothing())]
        return [Subject(namespaces=self.namespaces, pods=self.pods).to_selector()]


# v1alpha1 ports: portNumber | portRange | namedPort


class PortNumberSpec(Schema):
    protocol: ProtocolName = "TCP"
    port: PortNumber


class PortRangeSpec(Schema):
    protocol: ProtocolName = "TCP"
    start: PortNumber
    end: PortNumber

    @model_validator(mode="after")
    def _ordered(self) -> PortRangeSpec:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is above end {self.end}")
        return self


class AdminPort(Schema):
    port_number: PortNumberSpec | None = None
    port_range: PortRangeSpec | None = None
    named_port: PortName | None = None

    @model_validator(mode="after")
    def _one(self) -> AdminPort:
        _exactly_one(self, "a port")
        return self

    def to_match(self) -> PortMatch:
        if self.port_number is not None:
            number = self.port_number.port
            return PortMatch(parse_protocol(self.port_number.protocol), PortRange(number, number))
        if self.port_range is not None:
            span = PortRange(self.port_range.start, self.port_range.end)
            return PortMatch(parse_protocol(self.port_range.protocol), span)
        # A named port matches whatever protocol the destination declares it with.
        return PortMatch(name=self.named_port)


# v1alpha2 protocols: tcp | udp | sctp (destinationPort number | range) | destinationNamedPort


class PortRangeV2(Schema):
    start: PortNumber
    end: PortNumber

    @model_validator(mode="after")
    def _ordered(self) -> PortRangeV2:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be below end {self.end}")
        return self


class DestinationPort(Schema):
    number: PortNumber | None = None
    range: PortRangeV2 | None = None

    @model_validator(mode="after")
    def _one(self) -> DestinationPort:
        _exactly_one(self, "destinationPort")
        return self


class ProtocolMatch(Schema):
    destination_port: DestinationPort | None = None


class ClusterProtocol(Schema):
    tcp: ProtocolMatch | None = None
    udp: ProtocolMatch | None = None
    sctp: ProtocolMatch | None = None
    destination_named_port: PortName | None = None

    @model_validator(mode="after")
    def _one(self) -> ClusterProtocol:
        _exactly_one(self, "a protocol")
        return self

    def to_match(self) -> PortMatch:
        if self.destination_named_port is not None:
            return PortMatch(name=self.destination_named_port)
        name, match = next((k, v) for k, v in self if v is not None)
        port = match.destination_port
        span = None
        if port is not None and port.number is not None:
            span = PortRange(port.number, port.number)
        elif port is not None and port.range is not None:
            span = PortRange(port.range.start, port.range.end)
        return PortMatch(parse_protocol(name), span)


class AdminRule(Schema):
    name: str = Field(default="", max_length=100)
    action: Literal["Allow", "Accept", "Deny", "Pass"]
    from_: list[AdminPeer] | None = Field(default=None, alias="from", min_length=1)
    to: list[AdminPeer] | None = Field(default=None, min_length=1)
    ports: list[AdminPort] | None = Field(default=None, min_length=1)
    protocols: list[ClusterProtocol] | None = Field(default=None, min_length=1)


class AdminSpec(Schema):
    priority: int | None = Field(default=None, ge=0, le=1000)
    tier: Literal["Admin", "Baseline"] | None = None
    subject: Subject
    ingress: list[AdminRule] = Field(default=[], max_length=100)
    egress: list[AdminRule] = Field(default=[], max_length=100)


class AdminNetworkPolicy(Schema):
    metadata: ObjectMeta
    spec: AdminSpec


# What each kind accepts: its actions and its ingress/egress peer kinds.
_INGRESS_PEERS = {"namespaces", "pods"}
_EGRESS_PEERS = {"namespaces", "pods", "nodes", "networks", "domainNames"}
_KIND_ACTIONS = {
    "AdminNetworkPolicy": {"Allow", "Deny", "Pass"},
    "BaselineAdminNetworkPolicy": {"Allow", "Deny"},
    "ClusterNetworkPolicy": {"Accept", "Deny", "Pass"},
}


def _check(document: Document, kind: str, spec: AdminSpec) -> None:
    """Rules the API server enforces with CEL and enums, per kind and direction."""
    cluster = kind == "ClusterNetworkPolicy"
    if kind == "AdminNetworkPolicy" and spec.priority is None:
        fail(document, ("spec", "priority"), "AdminNetworkPolicy needs a priority (0-1000)")
    if cluster and (spec.tier is None or spec.priority is None):
        fail(document, ("spec",), "ClusterNetworkPolicy needs tier (Admin | Baseline) and priority")
    raw: dict[str, Any] = document.data["spec"]
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        allowed = _INGRESS_PEERS if direction == "ingress" else _EGRESS_PEERS
        for i, rule in enumerate(getattr(spec, direction)):
            where: tuple[str | int, ...] = ("spec", direction, i)
            if rule.action not in _KIND_ACTIONS[kind]:
                names = " | ".join(sorted(_KIND_ACTIONS[kind]))
                fail(document, (*where, "action"), f"{kind} actions are {names}, not {rule.action}")
            peers = rule.from_ if direction == "ingress" else rule.to
            if peers is None:
                fail(
                    document, where, f"{direction} rule needs '{peers_key}' with at least one peer"
                )
            for j, peer in enumerate(raw[direction][i][peers_key]):
                for field in peer:
                    if field not in allowed:
                        fail(document, (*where, peers_key, j, field), f"not an {direction} peer")


def _check_port_field(document: Document, kind: str) -> None:
    """v1alpha1 rules take `ports`, v1alpha2 rules `protocols`: say so before the schema
    complains about the inside of the wrong one."""
    wrong, right = (
        ("ports", "protocols") if kind == "ClusterNetworkPolicy" else ("protocols", "ports")
    )
    spec = document.data.get("spec")
    for direction in ("ingress", "egress"):
        rules = spec.get(direction) if isinstance(spec, dict) else None
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict) and wrong in rule:
                where = ("spec", direction, i, wrong)
                fail(document, where, f"{kind} rules take '{right}', not '{wrong}'")


def read_admin_policy(document: Document) -> list[Policy]:
    kind = document.data["kind"]
    _check_port_field(document, kind)
    policy = parse(document, AdminNetworkPolicy)
    spec = policy.spec
    _check(document, kind, spec)
    baseline = kind == "BaselineAdminNetworkPolicy" or spec.tier == "Baseline"
    tier = BASELINE_TIER if baseline else ADMIN_TIER
    # The names Calico gives these policies (libcalico-go lib/names), as flow logs show them.
    if kind == "ClusterNetworkPolicy":
        prefix = "kcnp.kube-baseline." if baseline else "kcnp.kube-admin."
    else:
        prefix = "kbanp.baselineadminnetworkpolicy." if baseline else "kanp.adminnetworkpolicy."

    def rules(direction: str) -> tuple[Rule, ...]:
        made = []
        for i, rule in enumerate(getattr(spec, direction)):
            peers = rule.from_ if direction == "ingress" else rule.to
            ports = rule.ports or rule.protocols or []
            made.append(
                Rule(
                    action=ACTIONS[rule.action],
                    peers=tuple(p for peer in peers or [] for p in peer.to_peers()),
                    ports=tuple(port.to_match() for port in ports),
                    name=rule.name or f"{direction}[{i}]",
                    source=document.location(("spec", direction, i)),
                )
            )
        return tuple(made)

    # A policy with no rules in a direction does not affect that direction.
    return [
        Policy(
            name=policy.metadata.name,
            kind=kind,
            tier=tier.name,
            subject=spec.subject.to_selector(),
            order=float(spec.priority) if spec.priority is not None else 0.0,
            ingress=rules("ingress") or None,
            egress=rules("egress") or None,
            source=document.location(),
            calico_name=prefix + policy.metadata.name,
        )
    ]


READERS = {
    ("policy.networking.k8s.io", "AdminNetworkPolicy"): read_admin_policy,
    ("policy.networking.k8s.io", "BaselineAdminNetworkPolicy"): read_admin_policy,
    ("policy.networking.k8s.io", "ClusterNetworkPolicy"): read_admin_policy,
}

"""Calico rules (`projectcalico.org/v3` Rule and EntityRule) -> model rules.

Shared by policies, staged policies and profiles. An ingress rule's `source` is the peer and its
`destination` the subject's own end (`Rule.local`); an egress rule the other way round. Ports
are destination ports; source ports cannot be decided here (flows carry no source port), so they
are rejected rather than ignored. Checks follow Calico's validator (libcalico-go
lib/validator/v3 and the CRD's CEL rules): an input Calico would refuse is refused here, at the
line of the field at fault.

Selectors in rules are Calico selector expressions. In a namespaced policy, `selector` and
`serviceAccounts` look at the policy's own namespace unless the entity rule has a
`namespaceSelector` (which may be exactly `global()`: the non-namespaced things), while
`notSelector` looks everywhere, as libcalico-go converts them; in a global policy or a profile
they all look everywhere (the engine's `entity.py` has the whole rule).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_network
from typing import Any, Literal

from pydantic import Field, model_validator

from netwarden.dialects.calico_selector import parse_selector
from netwarden.dialects.k8s_common import _check_port_name
from netwarden.dialects.notice import Notice
from netwarden.dialects.source import Document, FieldPath
from netwarden.dialects.validation import Schema, fail
from netwarden.errors import SelectorError
from netwarden.model import (
    ICMP,
    ICMPV6,
    SCTP,
    TCP,
    UDP,
    Action,
    And,
    Direction,
    EntityMatch,
    Global,
    HttpMatch,
    IcmpMatch,
    IPNetwork,
    Location,
    Not,
    Or,
    PortMatch,
    PortRange,
    Rule,
    Selector,
    ServiceAccountMatch,
)

UDPLITE = 136
PROTOCOL_NAMES = {
    TCP: "TCP",
    UDP: "UDP",
    ICMP: "ICMP",
    ICMPV6: "ICMPv6",
    SCTP: "SCTP",
    UDPLITE: "UDPLite",
}
PROTOCOLS = {name.upper(): number for number, name in PROTOCOL_NAMES.items()}
#: Calico's `Protocol.SupportsPorts`: ports only with TCP, UDP and SCTP (not UDPLite).
PORT_PROTOCOLS = frozenset({TCP, UDP, SCTP})
ACTIONS = {"Allow": Action.ALLOW, "Deny": Action.DENY, "Log": Action.LOG, "Pass": Action.PASS}

_DIGITS = re.compile(r"^[0-9]+$")
_RANGE = re.compile(r"^([0-9]+):([0-9]+)$")
# Calico's numorstring named port syntax; the name must also be a valid Kubernetes port name.
_PORT_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")

# The API server reads an explicit null as an absent field; not inside string maps, where a
# label without a value is an error rather than silently dropped.
_STRING_MAPS = frozenset({"labels", "annotations", "labelsToApply", "matchLabels", "selector"})


def without_nulls(data: Any, key: object = None) -> Any:
    """`data` with null mapping values dropped (except inside label-like maps)."""
    if isinstance(data, dict) and key not in _STRING_MAPS:
        return {k: without_nulls(v, k) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [without_nulls(item) for item in data]
    return data


def cleaned(document: Document) -> Document:
    """The document with nulls dropped, for `parse` (locations still come from its YAML)."""
    return replace(document, data=without_nulls(document.data))


def notice(location: Location, message: str) -> Notice:
    return Notice(location, message)


# Schemas: shapes and ranges. Meaning and cross-field checks are in `read_rules`.


class IcmpSpec(Schema):
    type: int | None = Field(default=None, ge=0, le=254)
    code: int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="after")
    def _code_needs_type(self) -> IcmpSpec:
        if self.code is not None and self.type is None:
            raise ValueError("ICMP code specified without an ICMP type")
        return self

    def to_match(self) -> IcmpMatch | None:
        """No type means any ICMP message (an empty `icmp: {}` restricts nothing)."""
        return None if self.type is None else IcmpMatch(self.type, self.code)


class HttpPathSpec(Schema):
    exact: str | None = Field(default=None, max_length=1024)
    prefix: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _one_valid_path(self) -> HttpPathSpec:
        if (self.exact is None) == (self.prefix is None):
            raise ValueError("an HTTP path needs exactly one of 'exact' or 'prefix'")
        path = self.exact if self.exact is not None else self.prefix
        if not path or not path.startswith("/") or any(c in path for c in "? #"):
            raise ValueError(
                f"invalid HTTP path {path!r} (must start with '/', no '?', '#' or ' ')"
            )
        return self

    def text(self) -> str:
        """An exact path as written; a prefix as `prefix:<path>` (a path always starts with /)."""
        return self.exact if self.exact is not None else f"prefix:{self.prefix}"


class HttpSpec(Schema):
    methods: list[str] = Field(default=[], max_length=20)
    paths: list[HttpPathSpec] = Field(default=[], max_length=20)

    @model_validator(mode="after")
    def _unique_methods(self) -> HttpSpec:
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"duplicate HTTP methods in {self.methods}")
        return self


class ServiceAccountsSpec(Schema):
    names: list[str] = []
    selector: str = ""


class ServicesSpec(Schema):
    name: str = Field(min_length=1)
    namespace: str = ""


class EntityRuleSpec(Schema):
    nets: list[str] = Field(default=[], max_length=256)
    not_nets: list[str] = Field(default=[], max_length=256)
    selector: str = Field(default="", max_length=1024)
    not_selector: str = Field(default="", max_length=1024)
    namespace_selector: str = Field(default="", max_length=1024)
    ports: list[int | str] = Field(default=[], max_length=50)
    not_ports: list[int | str] = Field(default=[], max_length=50)
    service_accounts: ServiceAccountsSpec | None = None
    services: ServicesSpec | None = None


class RuleMetadata(Schema):
    # Calico's RuleMetadata has only annotations; a `name` is read when present.
    name: str = ""
    annotations: dict[str, str] = {}


class RuleSpec(Schema):
    action: Literal["Allow", "Deny", "Log", "Pass"]
    protocol: int | str | None = None
    not_protocol: int | str | None = None
    icmp: IcmpSpec | None = None
    not_icmp: IcmpSpec | None = Field(default=None, alias="notICMP")
    ip_version: Literal[4, 6] | None = None
    source: EntityRuleSpec = EntityRuleSpec()
    destination: EntityRuleSpec = EntityRuleSpec()
    http: HttpSpec | None = None
    metadata: RuleMetadata = RuleMetadata()


@dataclass(frozen=True)
class RuleScope:
    """Where a rule's selectors look by default: a namespaced policy's own namespace, or
    (None) everywhere, for a global policy or a profile."""

    namespace: str | None = None

    @property
    def cluster_wide(self) -> bool:
        return self.namespace is None


# Field readers: each converts one written value and fails at its path.


def selector_at(document: Document, path: FieldPath, text: str) -> Selector:
    """A Calico selector expression; a syntax error is located at the field, with its column."""
    try:
        return parse_selector(text)
    except SelectorError as error:
        fail(document, path, error.message)


def has_global(selector: Selector) -> bool:
    """Whether `global()` occurs anywhere in the selector."""
    if isinstance(selector, Global):
        return True
    if isinstance(selector, Not):
        return has_global(selector.term)
    if isinstance(selector, And | Or):
        return any(has_global(term) for term in selector.terms)
    return False


def plain_selector_at(document: Document, path: FieldPath, text: str) -> Selector:
    """A selector where `global()` has no meaning (anywhere but an entity namespaceSelector)."""
    selector = selector_at(document, path, text)
    if has_global(selector):
        fail(document, path, "global() can only be used in an entity rule's namespaceSelector")
    return selector


def net_at(document: Document, path: FieldPath, text: str) -> IPNetwork:
    """A CIDR, host bits allowed (`10.1.2.3/8` is 10.0.0.0/8); a bare address is /32 or /128."""
    try:
        return ip_network(text.strip(), strict=False)
    except ValueError:
        fail(document, path, f"invalid CIDR {text!r}")


def protocol_at(document: Document, path: FieldPath, value: int | str) -> int:
    """A protocol name (as Calico lists them, any case) or a number 1-255."""
    if isinstance(value, str) and not _DIGITS.match(value):
        number = PROTOCOLS.get(value.upper())
        if number is None:
            names = "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite"
            fail(document, path, f"unknown protocol {value!r} (expected {names} or 1-255)")
        return number
    number = int(value)
    if not 1 <= number <= 255:
        fail(document, path, f"protocol number {number} is out of range 1-255")
    return number


def _port_number(document: Document, path: FieldPath, number: int) -> int:
    if not 1 <= number <= 65535:
        fail(document, path, f"port {number} is out of range 1-65535")
    return number


def port_at(document: Document, path: FieldPath, value: int | str, protocol: int) -> PortMatch:
    """`80`, `"80"`, `"6040:6050"` or a named port, for the rule's protocol."""
    if isinstance(value, int) or _DIGITS.match(value):
        number = _port_number(document, path, int(value))
        return PortMatch(protocol, PortRange(number, number))
    span = _RANGE.match(value)
    if span is not None:
        start = _port_number(document, path, int(span.group(1)))
        end = _port_number(document, path, int(span.group(2)))
        if start > end:
            fail(document, path, f"port range {value!r} starts above its end")
        return PortMatch(protocol, PortRange(start, end))
    try:
        if not _PORT_NAME.match(value):
            raise ValueError(f"invalid port {value!r} (a number, 'start:end' or a port name)")
        return PortMatch(protocol, name=_check_port_name(value))
    except ValueError as error:
        fail(document, path, str(error))


# Rules


def read_rules(
    document: Document,
    path: FieldPath,
    specs: Sequence[RuleSpec],
    direction: Direction,
    scope: RuleScope,
) -> tuple[tuple[Rule, ...], list[Notice]]:
    """The rules written at `path` (e.g. `spec.ingress`), and the notices they raise."""
    rules: list[Rule] = []
    notices: list[Notice] = []
    for i, spec in enumerate(specs):
        rule = _read_rule(document, (*path, i), spec, direction, scope)
        if rule.http is not None:
            message = "http match is kept but not enforced at L3/L4"
            notices.append(notice(document.location((*path, i, "http")), message))
        rules.append(rule)
    return tuple(rules), notices


def _read_rule(
    document: Document, path: FieldPath, spec: RuleSpec, direction: Direction, scope: RuleScope
) -> Rule:
    protocol = _optional_protocol(document, (*path, "protocol"), spec.protocol)
    not_protocol = _optional_protocol(document, (*path, "notProtocol"), spec.not_protocol)
    _check_icmp(document, path, spec, protocol, not_protocol)
    _check_ports(document, path, spec, protocol)
    _check_services(document, path, spec, direction, scope)
    _check_http(document, path, spec, direction, protocol)
    source = _entity(document, (*path, "source"), spec.source, scope)
    destination = _entity(document, (*path, "destination"), spec.destination, scope)
    _check_net_versions(document, path, spec.ip_version, source, destination)
    peer, local = (source, destination) if direction is Direction.INGRESS else (destination, source)
    ports_path = (*path, "destination")
    return Rule(
        action=ACTIONS[spec.action],
        peers=() if peer is None else (peer,),
        ports=_ports(document, (*ports_path, "ports"), spec.destination.ports, protocol),
        name=spec.metadata.name,
        source=document.location(path),
        local=local,
        not_ports=_ports(document, (*ports_path, "notPorts"), spec.destination.not_ports, protocol),
        protocol=protocol,
        not_protocol=not_protocol,
        icmp=spec.icmp.to_match() if spec.icmp is not None else None,
        not_icmp=spec.not_icmp.to_match() if spec.not_icmp is not None else None,
        ip_version=spec.ip_version,
        http=_http(spec.http),
    )


def _optional_protocol(document: Document, path: FieldPath, value: int | str | None) -> int | None:
    return None if value is None else protocol_at(document, path, value)


def _check_icmp(
    document: Document,
    path: FieldPath,
    spec: RuleSpec,
    protocol: int | None,
    not_protocol: int | None,
) -> None:
    for field, match in (("icmp", spec.icmp), ("notICMP", spec.not_icmp)):
        if match is not None and protocol not in (ICMP, ICMPV6):
            fail(
                document, (*path, field), f"{field} needs the rule's protocol to be ICMP or ICMPv6"
            )
    for field, number in (("protocol", protocol), ("notProtocol", not_protocol)):
        if number == ICMP and spec.ip_version == 6:
            fail(document, (*path, "ipVersion"), f"{field} ICMP needs ipVersion 4")
        if number == ICMPV6 and spec.ip_version == 4:
            fail(document, (*path, "ipVersion"), f"{field} ICMPv6 needs ipVersion 6")


def _check_ports(document: Document, path: FieldPath, spec: RuleSpec, protocol: int | None) -> None:
    for field, values in (("ports", spec.source.ports), ("notPorts", spec.source.not_ports)):
        if values:
            # Calico matches the source port; a flow here has none, so fail closed.
            fail(document, (*path, "source", field), "source ports are not supported")
    written = (("ports", spec.destination.ports), ("notPorts", spec.destination.not_ports))
    for field, values in written:
        if not values:
            continue
        if protocol is None:
            fail(document, (*path, "destination", field), "rule with ports but no protocol")
        if protocol not in PORT_PROTOCOLS:
            name = PROTOCOL_NAMES.get(protocol, str(protocol))
            message = f"rule with ports needs protocol TCP, UDP or SCTP, not {name}"
            fail(document, (*path, "destination", field), message)


def _check_services(
    document: Document, path: FieldPath, spec: RuleSpec, direction: Direction, scope: RuleScope
) -> None:
    # A Service is the peer: an ingress rule's source or an egress rule's destination.
    misplaced = "destination" if direction is Direction.INGRESS else "source"
    if getattr(spec, misplaced).services is not None:
        where = f"an {direction.value} rule's {misplaced}"
        fail(document, (*path, misplaced, "services"), f"services are not allowed in {where}")
    for end in ("source", "destination"):
        entity: EntityRuleSpec = getattr(spec, end)
        if entity.services is None:
            continue
        others = {
            "nets": entity.nets,
            "notNets": entity.not_nets,
            "selector": entity.selector,
            "notSelector": entity.not_selector,
            "namespaceSelector": entity.namespace_selector,
            "serviceAccounts": entity.service_accounts,
        }
        for field, value in others.items():
            if value:
                fail(document, (*path, end, field), f"{field} cannot be combined with services")
        if end == "destination" and (entity.ports or entity.not_ports):
            fail(document, (*path, end, "ports"), "ports cannot be combined with services")
        if scope.cluster_wide and not entity.services.namespace:
            fail(document, (*path, end, "services"), "services in a global rule needs a namespace")


def _check_http(
    document: Document,
    path: FieldPath,
    spec: RuleSpec,
    direction: Direction,
    protocol: int | None,
) -> None:
    if spec.http is None:
        return
    if direction is Direction.EGRESS:
        fail(document, (*path, "http"), "http match is not allowed in egress rules")
    if spec.action != "Allow":
        fail(document, (*path, "http"), "http match is only valid on Allow rules")
    if protocol not in (None, TCP):
        fail(document, (*path, "protocol"), "a rule with an http match needs protocol TCP or none")


def _check_net_versions(
    document: Document,
    path: FieldPath,
    ip_version: int | None,
    source: EntityMatch | None,
    destination: EntityMatch | None,
) -> None:
    """One address family per rule, and the rule's ipVersion if it has one (Calico's rule)."""
    seen: set[int] = set()
    for end, match in (("source", source), ("destination", destination)):
        if match is None:
            continue
        for field, nets in (("nets", match.nets), ("notNets", match.not_nets)):
            versions = {net.version for net in nets}
            if ip_version is not None and versions - {ip_version}:
                fail(
                    document,
                    (*path, end, field),
                    f"CIDR version does not match ipVersion {ip_version}",
                )
            seen |= versions
            if len(seen) > 1:
                fail(document, (*path, end, field), "rule mixes IPv4 and IPv6 CIDRs")


def _ports(
    document: Document, path: FieldPath, values: list[int | str], protocol: int | None
) -> tuple[PortMatch, ...]:
    if not values:
        return ()
    assert protocol is not None  # _check_ports
    return tuple(port_at(document, (*path, i), value, protocol) for i, value in enumerate(values))


def _http(spec: HttpSpec | None) -> HttpMatch | None:
    if spec is None:
        return None
    return HttpMatch(tuple(spec.methods), tuple(path.text() for path in spec.paths))


def _entity(
    document: Document, path: FieldPath, spec: EntityRuleSpec, scope: RuleScope
) -> EntityMatch | None:
    """What an entity rule says about one end, or None when it says nothing (ports aside)."""
    nets = _nets(document, (*path, "nets"), spec.nets)
    not_nets = _nets(document, (*path, "notNets"), spec.not_nets)
    selector = _optional(document, (*path, "selector"), spec.selector)
    not_selector = _optional(document, (*path, "notSelector"), spec.not_selector)
    namespaces: Selector | None = None
    if spec.namespace_selector:
        namespaces = selector_at(document, (*path, "namespaceSelector"), spec.namespace_selector)
        if has_global(namespaces) and not isinstance(namespaces, Global):
            message = "global() cannot be combined with other selectors"
            fail(document, (*path, "namespaceSelector"), message)
    accounts = _service_accounts(document, (*path, "serviceAccounts"), spec.service_accounts)
    service = None
    if spec.services is not None:
        namespace = spec.services.namespace or scope.namespace
        assert namespace is not None  # _check_services
        service = (namespace, spec.services.name)
    given = (selector, not_selector, namespaces, accounts, service)
    if not nets and not not_nets and all(value is None for value in given):
        return None
    return EntityMatch(
        nets=nets,
        not_nets=not_nets,
        selector=selector,
        not_selector=not_selector,
        namespace=scope.namespace if namespaces is None else None,
        namespaces=namespaces,
        service_accounts=accounts,
        service=service,
    )


def _nets(document: Document, path: FieldPath, texts: list[str]) -> tuple[IPNetwork, ...]:
    return tuple(net_at(document, (*path, i), text) for i, text in enumerate(texts))


def _optional(document: Document, path: FieldPath, text: str) -> Selector | None:
    return plain_selector_at(document, path, text) if text else None


def _service_accounts(
    document: Document, path: FieldPath, spec: ServiceAccountsSpec | None
) -> ServiceAccountMatch | None:
    """Names and/or a selector over the accounts' labels; an empty match restricts nothing."""
    if spec is None or not (spec.names or spec.selector):
        return None
    selector = _optional(document, (*path, "selector"), spec.selector)
    return ServiceAccountMatch(frozenset(spec.names), selector)

"""netwarden's own `Requirement` resource (`netwarden.io/v1alpha1`): what must hold.

    apiVersion: netwarden.io/v1alpha1
    kind: Requirement
    metadata: {name: db-only-from-backend}
    spec:
      type: only                      # isolation | only | defaultDeny | egress | reachable
      controls: [PCI-DSS-4.0:1.3.1]
      from: {pods: app == "backend", namespaces: {matchLabels: {tenant: shop}}}
      to: {pods: app == "db"}
      ports: [{protocol: TCP, port: 5432}]

Endpoint sets pick pods with `pods` and `namespaces`, each a Calico selector string or a
Kubernetes label selector (matchLabels / matchExpressions); `networks` adds external address
blocks where a kind allows them. Unknown fields are errors, not ignored: a typo in a security
requirement must not silently widen or empty a set. `RequirementList` and multi-document files
work as for every other kind. The JSON Schema (`schemas/requirement.schema.json`) is generated
from these models by `json_schema()`; `UPDATE_GOLDEN=1 pytest tests/dialects/test_requirements.py`
rewrites the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

from netwarden.dialects.calico_selector import format_selector, parse_selector
from netwarden.dialects.k8s_common import ObjectMeta, PortNumber, parse_cidr
from netwarden.dialects.k8s_labels import LabelSelector
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, fail
from netwarden.errors import InputError, SelectorError
from netwarden.model import (
    All,
    Direction,
    EndpointSelector,
    IPNetwork,
    PortMatch,
    PortRange,
    Requirement,
    Selector,
    parse_protocol,
)
from netwarden.model.requirements import (
    Check,
    DefaultDeny,
    Egress,
    EndpointSet,
    ExternalDestination,
    Isolation,
    Only,
    Reachable,
)

GROUP = "netwarden.io"
API_VERSION = f"{GROUP}/v1alpha1"
SCHEMA_ID = "https://netwarden.io/schemas/requirement.schema.json"

#: `STANDARD:ID`, e.g. `PCI-DSS-4.0:1.3.1`, `NIST-800-53:SC-7(5)`, `CIS-K8s:5.3.2`.
CONTROL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._()/-]*$"


class Strict(Schema):
    """Requirement fields: like every schema, but an unknown field is an error."""

    model_config = ConfigDict(extra="forbid")


def _check_calico_selector(text: str) -> str:
    try:
        parse_selector(text)
    except SelectorError as error:
        raise ValueError(error.message) from None
    return text


def _check_cidr(text: str) -> str:
    parse_cidr(text)
    return text


CalicoSelector = Annotated[
    str,
    AfterValidator(_check_calico_selector),
    Field(description='A Calico selector expression, e.g. `app == "db" && !has(canary)`.'),
]
Cidr = Annotated[str, AfterValidator(_check_cidr), Field(description="An IPv4 or IPv6 CIDR.")]
ControlId = Annotated[
    str,
    Field(
        pattern=CONTROL_PATTERN,
        description="A compliance control, STANDARD:ID, e.g. PCI-DSS-4.0:1.3.1.",
    ),
]


class LabelSelectorSpec(LabelSelector):
    """A Kubernetes label selector; a stray key (`{app: web}`) is an error, not `{}`."""

    model_config = ConfigDict(extra="forbid", title="LabelSelector")


AnySelector = CalicoSelector | LabelSelectorSpec


class WorkloadSetSpec(Strict):
    """Pods picked by `pods` (all when absent) in namespaces picked by `namespaces` (all when
    absent); at least one of the two."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    pods: AnySelector | None = None
    namespaces: AnySelector | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> WorkloadSetSpec:
        if self.pods is None and self.namespaces is None:
            raise ValueError("an endpoint set needs pods or namespaces (all() for every pod)")
        return self


class EndpointSetSpec(Strict):
    """Pods picked by `pods` and `namespaces` (as for workloads), and the addresses outside
    the cluster inside `networks`; at least one of the three."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    pods: AnySelector | None = None
    namespaces: AnySelector | None = None
    networks: list[Cidr] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _not_empty(self) -> EndpointSetSpec:
        if self.pods is None and self.namespaces is None and self.networks is None:
            raise ValueError("an endpoint set needs pods, namespaces or networks")
        return self


class PortSpec(Strict):
    """A protocol and a port or range (`port`..`endPort`); no port means every port."""

    model_config = ConfigDict(json_schema_extra={"dependentRequired": {"endPort": ["port"]}})

    protocol: Literal["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"] = "TCP"
    port: PortNumber | None = None
    end_port: PortNumber | None = None

    @model_validator(mode="after")
    def _valid(self) -> PortSpec:
        if self.protocol.startswith("ICMP") and self.port is not None:
            raise ValueError(f"{self.protocol} has no ports")
        if self.end_port is not None:
            if self.port is None:
                raise ValueError("endPort needs a port")
            if self.end_port < self.port:
                raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self

    def to_match(self) -> PortMatch:
        span = None if self.port is None else PortRange(self.port, self.end_port or self.port)
        return PortMatch(parse_protocol(self.protocol), span)


class AllowedDestinationSpec(Strict):
    networks: list[Cidr] = Field(min_length=1)
    except_: list[Cidr] = Field(default=[], alias="except")
    ports: list[PortSpec] = []


class SpecBase(Strict):
    description: str = ""
    controls: list[ControlId] = []


class IsolationSpec(SpecBase):
    """No connection from `from` to `to`, on any protocol or port but the `except` ones."""

    type: Literal["isolation"]
    from_: EndpointSetSpec = Field(alias="from")
    to: EndpointSetSpec
    except_: list[PortSpec] = Field(default=[], alias="except")


class OnlySpec(SpecBase):
    """`to` is reachable only from `from`, on `ports` (any port when absent)."""

    type: Literal["only"]
    from_: EndpointSetSpec = Field(alias="from")
    to: WorkloadSetSpec
    ports: list[PortSpec] = []


class DefaultDenySpec(SpecBase):
    """Every workload picked is isolated in each direction listed."""

    type: Literal["defaultDeny"]
    workloads: WorkloadSetSpec
    directions: list[Literal["Ingress", "Egress"]] = Field(
        default=["Ingress", "Egress"], min_length=1
    )


class EgressSpec(SpecBase):
    """The workloads reach nothing outside the cluster but the `allowed` destinations."""

    type: Literal["egress"]
    workloads: WorkloadSetSpec
    allowed: list[AllowedDestinationSpec] = []


class ReachableSpec(SpecBase):
    """Every pod of `from` reaches every pod of `to` on every port listed."""

    type: Literal["reachable"]
    from_: WorkloadSetSpec = Field(alias="from")
    to: WorkloadSetSpec
    ports: list[PortSpec] = Field(min_length=1)


RequirementSpec = Annotated[
    IsolationSpec | OnlySpec | DefaultDenySpec | EgressSpec | ReachableSpec,
    Field(discriminator="type"),
]
TYPES = ("isolation", "only", "defaultDeny", "egress", "reachable")


class RequirementResource(Schema):
    """A security requirement, checked by `netwarden verify`."""

    model_config = ConfigDict(title="Requirement")

    api_version: Literal["netwarden.io/v1alpha1"]
    kind: Literal["Requirement"]
    metadata: ObjectMeta
    spec: RequirementSpec


# Steps pydantic adds to an error's path that are not fields: union members and tags.
_NOT_FIELDS = frozenset({"str", "int", "bool", "LabelSelectorSpec", "list[str]", *TYPES})


def _validate(document: Document) -> RequirementResource:
    try:
        return RequirementResource.model_validate(document.data)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        # A value error says why; of the rest, the deepest is the branch the input meant.
        first = next(
            (e for e in errors if e["type"] == "value_error"),
            max(errors, key=lambda e: len(e["loc"])),
        )
        path = [
            key
            for key in first["loc"]
            if isinstance(key, int) or not (key in _NOT_FIELDS or "[" in key or "-" in key)
        ]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] in ("union_tag_not_found", "union_tag_invalid"):
            path.append("type")
            message = f"type must be one of {', '.join(TYPES)}"
        fail(document, path, message)


def _selector(value: str | LabelSelectorSpec | None) -> Selector | None:
    if value is None:
        return None
    return parse_selector(value) if isinstance(value, str) else value.to_selector()


def _endpoint_set(spec: EndpointSetSpec | WorkloadSetSpec) -> EndpointSet:
    pods, namespaces = _selector(spec.pods), _selector(spec.namespaces)
    networks = _networks(getattr(spec, "networks", None) or ())
    given = {name: s for name, s in (("pods", pods), ("namespaces", namespaces)) if s is not None}
    parts = [f"{name}: {format_selector(selector)}" for name, selector in given.items()]
    pod_selector = EndpointSelector(pods or All(), namespaces or All()) if given else None
    if networks:
        parts.append(f"networks: {', '.join(str(net) for net in networks)}")
    return EndpointSet(pod_selector, networks, "; ".join(parts))


def _ports(specs: Iterable[PortSpec]) -> tuple[PortMatch, ...]:
    return tuple(spec.to_match() for spec in specs)


def _networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(parse_cidr(text) for text in texts)


def _check(spec: RequirementSpec) -> Check:
    match spec:
        case IsolationSpec():
            return Isolation(
                _endpoint_set(spec.from_), _endpoint_set(spec.to), _ports(spec.except_)
            )
        case OnlySpec():
            return Only(_endpoint_set(spec.from_), _endpoint_set(spec.to), _ports(spec.ports))
        case DefaultDenySpec():
            directions = frozenset(Direction(d.lower()) for d in spec.directions)
            return DefaultDeny(_endpoint_set(spec.workloads), directions)
        case EgressSpec():
            allowed = tuple(
                ExternalDestination(_networks(a.networks), _networks(a.except_), _ports(a.ports))
                for a in spec.allowed
            )
            return Egress(_endpoint_set(spec.workloads), allowed)
        case ReachableSpec():
            return Reachable(_endpoint_set(spec.from_), _endpoint_set(spec.to), _ports(spec.ports))


def read_requirement(document: Document) -> list[Requirement]:
    """One Requirement document into the model."""
    resource = _validate(document)
    if resource.metadata.namespace is not None:
        fail(document, ("metadata", "namespace"), "a Requirement is cluster-scoped: no namespace")
    spec = resource.spec
    return [
        Requirement(
            name=resource.metadata.name,
            check=_check(spec),
            description=spec.description,
            controls=tuple(spec.controls),
            source=document.location(),
        )
    ]


def is_requirement(document: Document) -> bool:
    data = document.data
    return (
        isinstance(data, dict)
        and data.get("kind") == "Requirement"
        and str(data.get("apiVersion", "")).rpartition("/")[0] == GROUP
    )


def read_requirements(documents: Sequence[Document]) -> list[Requirement]:
    """Every Requirement among `documents` (lists expanded), names unique."""
    found: dict[str, Requirement] = {}
    for document in expand_lists(documents):
        if not is_requirement(document):
            continue
        for requirement in read_requirement(document):
            first = found.get(requirement.name)
            if first is not None:
                message = (
                    f"duplicate Requirement {requirement.name} (first defined at {first.source})"
                )
                raise InputError(requirement.source, message)
            found[requirement.name] = requirement
    return list(found.values())


def expand_lists(documents: Iterable[Document]) -> Iterable[Document]:
    """The items of `kind: List` / `RequirementList` documents, and the others as they are.
    Malformed lists are the loader's to report; here they are passed over."""
    for document in documents:
        data = document.data
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind.endswith("List") and isinstance(data.get("items"), list):
            yield from expand_lists(document.child(i) for i in range(len(data["items"])))
        else:
            yield document


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the resource, as checked in at `schemas/requirement.schema.json`."""
    schema = RequirementResource.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


READERS = {(GROUP, "Requirement"): read_requirement}

"""Threat feeds as read from Calico `GlobalThreatFeed` and netwarden `ThreatFeed` resources.

A feed says where its indicators come from (an HTTP URL in some format, a TAXII collection, a
local file), what they are (addresses and prefixes, or domain names), how often to pull it,
and the labels of the network set it becomes. An HTTP header may take its value from a
Secret or ConfigMap key (`HeaderRef`), resolved at each pull against `KeyValues` read from
manifests or a mounted folder. Fetching and parsing live in `threatintel`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from netwarden.model.endpoints import IPNetwork
from netwarden.model.location import Location


class FeedContent(StrEnum):
    IP_SET = "IPSet"  # addresses and prefixes: blocked, and matched against flows
    DOMAIN_SET = "DomainNameSet"  # domain names: matched against DNS answers and queries


@dataclass(frozen=True)
class NewlineFormat:
    """One indicator per line; `#` starts a comment."""


@dataclass(frozen=True)
class JsonFormat:
    """A JSON document; `path` (JSONPath: `$.data[*].ip`) selects the indicators."""

    path: str


@dataclass(frozen=True)
class CsvFormat:
    """One record per line; the indicator is column `field_num` (0-based) or the column whose
    header is `field_name` (then `header` is implied)."""

    field_num: int | None = None
    field_name: str | None = None
    header: bool = False
    column_delimiter: str = ","
    comment_delimiter: str = "#"
    record_size: int | None = None  # every record has this many columns, unless disabled
    validate_record_size: bool = True


@dataclass(frozen=True)
class StixFormat:
    """A STIX 2.1 bundle; indicators with `ipv4-addr`, `ipv6-addr`, `domain-name` patterns."""


FeedFormat = NewlineFormat | JsonFormat | CsvFormat | StixFormat


class KeyKind(StrEnum):
    SECRET = "Secret"
    CONFIG_MAP = "ConfigMap"


@dataclass(frozen=True)
class HeaderRef:
    """Calico's header `valueFrom`: a key of a Secret or a ConfigMap, looked up at each pull
    (so a rotated secret is used at the next pull). `field_path` and `location` say where the
    reference was written, for the error when it cannot be found."""

    kind: KeyKind
    name: str
    key: str
    optional: bool = False  # missing: the header is not sent (noted), the pull goes on
    field_path: str = ""  # e.g. `spec.pull.http.headers[1].valueFrom.secretKeyRef`
    location: Location | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name} key {self.key}"


@dataclass(frozen=True)
class HttpHeader:
    """A header sent with every pull: a literal `value`, or one looked up from `value_from`.
    Values stay out of `repr` (a resolved one may be a secret)."""

    name: str
    value: str = field(default="", repr=False)
    value_from: HeaderRef | None = None
    sensitive: bool = False  # from a Secret: never sent to another host on a redirect


@dataclass(frozen=True)
class KeyValues:
    """The keys of one Secret or ConfigMap manifest (Secret values base64-decoded). Values
    never appear in `repr` and are never printed or stored by netwarden."""

    kind: KeyKind
    name: str
    namespace: str | None
    values: Mapping[str, bytes] = field(default_factory=dict, repr=False, hash=False)
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class HttpSource:
    url: str
    format: FeedFormat
    headers: tuple[HttpHeader, ...] = ()
    timeout_seconds: float = 30.0
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class TaxiiSource:
    """A TAXII 2.1 collection: `url` is the collection's URL (`.../collections/<id>/`)."""

    url: str
    username: str | None = None
    password: str | None = None
    page_size: int = 1000


@dataclass(frozen=True)
class FileSource:
    path: str
    format: FeedFormat


FeedSource = HttpSource | TaxiiSource | FileSource


@dataclass(frozen=True)
class FeedSafety:
    """What a feed may never block, and how much it may change before a person looks."""

    allowlist: tuple[IPNetwork, ...] = ()
    max_growth_factor: float = 10.0


@dataclass(frozen=True)
class ThreatFeed:
    name: str
    content: FeedContent
    source: FeedSource
    enabled: bool = True
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    period_seconds: float = 24 * 3600.0
    jitter_seconds: float = 0.0
    safety: FeedSafety = FeedSafety()
    kind: str = "GlobalThreatFeed"
    source_location: Location | None = field(default=None, compare=False)

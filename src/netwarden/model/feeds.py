"""Threat feeds as read from Calico `GlobalThreatFeed` and netwarden `ThreatFeed` resources.

A feed says where its indicators come from (an HTTP URL in some format, a TAXII collection, a
local file), what they are (addresses and prefixes, or domain names), how often to pull it,
and the labels of the network set it becomes. Fetching and parsing live in `threatintel`.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class HttpHeader:
    name: str
    value: str


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

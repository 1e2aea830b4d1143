"""Threat feed resources: Calico Enterprise `GlobalThreatFeed` (projectcalico.org/v3) as Calico
documents it, and netwarden's `ThreatFeed` (netwarden.io/v1alpha1), which adds STIX bundles,
TAXII 2.1 collections, local files, jitter, HTTP limits and safety settings.

    GlobalThreatFeed.spec: content (IPSet | DomainNameSet), mode (Enabled | Disabled),
      description, feedType, globalNetworkSet.labels, pull.period (Go duration, default 24h),
      pull.http.url, pull.http.headers[name, value | valueFrom], pull.http.format:
      newlineDelimited {} | json {path} | csv {fieldNum | fieldName, header, columnDelimiter,
      commentDelimiter, recordSize, disableRecordSizeValidation}

    ThreatFeed.spec: content, mode, description, globalNetworkSet.labels, period, jitter, and
      one source: http {url, headers, format (the above or stix {}), timeout, maxBytes} |
      taxii {url (the collection's), username, password, pageSize} | file {path, format};
      safety {allowlist [CIDR], maxGrowthFactor}

A GlobalThreatFeed without `pull` is pushed through Calico's API, which netwarden does not
serve: a notice, never silently dropped. A header `valueFrom` (`secretKeyRef` or
`configMapKeyRef`: name, key, optional) becomes a `HeaderRef` looked up at each pull (see
`threatintel.headers`); as Calico's validation demands, a GlobalThreatFeed may only name
Secrets and ConfigMaps called `globalthreatfeed-<feed name>-...`, so a feed cannot read any
other secret of the namespace. `read_feeds` picks the feeds out of documents for `feeds
sync`; the loader ignores feeds when it builds a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from netwarden.dialects.calico_rules import cleaned, net_at, notice
from netwarden.dialects.k8s_common import ObjectMeta
from netwarden.dialects.source import Document
from netwarden.dialects.validation import Schema, describe_path, fail, parse
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import (
    CsvFormat,
    FeedFormat,
    FeedSafety,
    FileSource,
    HeaderRef,
    HttpHeader,
    HttpSource,
    JsonFormat,
    KeyKind,
    NewlineFormat,
    StixFormat,
    TaxiiSource,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FEED_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def parse_duration(text: str) -> float:
    """A Go duration (`24h`, `1h30m`, `90s`, `500ms`) in seconds.

    >>> parse_duration("1h30m")
    5400.0
    """
    body = text.strip()
    if not body or _DURATION.sub("", body):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 24h, 1h30m, 90s)")
    return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION.findall(body))


class CsvSpec(Schema):
    field_num: int | None = Field(default=None, ge=0)
    field_name: str | None = Field(default=None, min_length=1)
    header: bool = False
    column_delimiter: str = Field(default=",", min_length=1, max_length=1)
    comment_delimiter: str = Field(default="#", max_length=1)
    record_size: int | None = Field(default=None, ge=1)
    disable_record_size_validation: bool = False

    @model_validator(mode="after")
    def _one_column(self) -> CsvSpec:
        if (self.field_num is None) == (self.field_name is None):
            raise ValueError("give exactly one of fieldNum and fieldName")
        return self


class JsonSpec(Schema):
    path: str = Field(min_length=1)


class FormatSpec(Schema):
    newline_delimited: dict[str, Any] | None = None
    json_format: JsonSpec | None = Field(default=None, alias="json")
    csv: CsvSpec | None = None
    stix: dict[str, Any] | None = None  # netwarden ThreatFeed only

    @model_validator(mode="after")
    def _at_most_one(self) -> FormatSpec:
        given = [self.newline_delimited, self.json_format, self.csv, self.stix]
        if sum(item is not None for item in given) > 1:
            raise ValueError("give one format: newlineDelimited, json, csv or stix")
        return self


#: Kubernetes object names (DNS subdomain) and Secret/ConfigMap keys: safe as path parts of
#: a mounted folder (no `/`, and `.` / `..` are refused on their own).
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_KEY = r"^[-._a-zA-Z0-9]+$"
#: A header name is an RFC 9110 token.
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
#: Calico's prefix for the Secrets and ConfigMaps a GlobalThreatFeed may read.
CALICO_REF_PREFIX = "globalthreatfeed-"


class KeyRefSpec(Schema):
    name: str = Field(pattern=OBJECT_NAME, max_length=253)
    key: str = Field(pattern=OBJECT_KEY, max_length=253)
    optional: bool = False

    @model_validator(mode="after")
    def _not_dots(self) -> KeyRefSpec:
        if self.key in (".", ".."):
            raise ValueError(f"invalid key {self.key!r}")
        return self


class ValueFromSpec(Schema):
    secret_key_ref: KeyRefSpec | None = None
    config_map_key_ref: KeyRefSpec | None = None

    @model_validator(mode="after")
    def _one_ref(self) -> ValueFromSpec:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("give exactly one of secretKeyRef and configMapKeyRef")
        return self


class HeaderSpec(Schema):
    name: str = Field(pattern=_HEADER_NAME)
    value: str | None = None
    value_from: ValueFromSpec | None = None

    @model_validator(mode="after")
    def _value_or_value_from(self) -> HeaderSpec:
        if self.value and self.value_from is not None:
            raise ValueError("value cannot be used when valueFrom is used")
        return self


class HttpSpec(Schema):
    url: str = Field(pattern=r"^https?://")
    headers: list[HeaderSpec] = []
    format: FormatSpec = FormatSpec()
    timeout: str = "30s"  # netwarden ThreatFeed only
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1)


class PullSpec(Schema):
    period: str = "24h"
    http: HttpSpec


class NetworkSetSpec(Schema):
    labels: dict[str, str] = {}


class GlobalThreatFeedSpec(Schema):
    content: Literal["IPSet", "DomainNameSet"] = "IPSet"
    mode: Literal["Enabled", "Disabled"] = "Enabled"
    description: str = Field(default="", max_length=256)
    feed_type: Literal["Builtin", "Custom"] = "Custom"
    global_network_set: NetworkSetSpec | None = None
    pull: PullSpec | None = None


class GlobalThreatFeedResource(Schema):
    metadata: ObjectMeta
    spec: GlobalThreatFeedSpec = GlobalThreatFeedSpec()


class TaxiiSpec(Schema):
    url: str = Field(pattern=r"^https?://")
    username: str | None = None
    password: str | None = None
    page_size: int = Field(default=1000, ge=1, le=100000)


class FileSpec(Schema):
    path: str = Field(min_length=1)
    format: FormatSpec = FormatSpec()


class SafetySpec(Schema):
    allowlist: list[str] = []
    max_growth_factor: float = Field(default=10.0, gt=1.0)


class ThreatFeedSpec(Schema):
    content: Literal["IPSet", "DomainNameSet"] = "IPSet"
    mode: Literal["Enabled", "Disabled"] = "Enabled"
    description: str = Field(default="", max_length=256)
    global_network_set: NetworkSetSpec | None = None
    period: str = "24h"
    jitter: str | None = None
    http: HttpSpec | None = None
    taxii: TaxiiSpec | None = None
    file: FileSpec | None = None
    safety: SafetySpec = SafetySpec()

    @model_validator(mode="after")
    def _one_source(self) -> ThreatFeedSpec:
        if sum(s is not None for s in (self.http, self.taxii, self.file)) != 1:
            raise ValueError("give exactly one source: http, taxii or file")
        return self


class ThreatFeedResource(Schema):
    metadata: ObjectMeta
    spec: ThreatFeedSpec


def _name(document: Document, meta: ObjectMeta) -> str:
    if not _FEED_NAME.match(meta.name) or len(meta.name) > 200:
        fail(document, ("metadata", "name"), f"invalid feed name {meta.name!r}")
    return meta.name


def _duration(document: Document, path: tuple[str | int, ...], text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        fail(document, path, str(error))
    if seconds <= 0:
        fail(document, path, f"duration {text!r} must be positive")
    return seconds


def _format(
    document: Document, path: tuple[str | int, ...], spec: FormatSpec, stix: bool
) -> FeedFormat:
    if spec.stix is not None:
        if not stix:
            fail(document, (*path, "stix"), "stix is a netwarden ThreatFeed format, not Calico's")
        return StixFormat()
    if spec.json_format is not None:
        return JsonFormat(spec.json_format.path)
    if spec.csv is not None:
        csv = spec.csv
        return CsvFormat(
            field_num=csv.field_num,
            field_name=csv.field_name,
            header=csv.header or csv.field_name is not None,
            column_delimiter=csv.column_delimiter,
            comment_delimiter=csv.comment_delimiter,
            record_size=csv.record_size,
            validate_record_size=not csv.disable_record_size_validation,
        )
    return NewlineFormat()


def _http(
    document: Document, path: tuple[str | int, ...], spec: HttpSpec, stix: bool, prefix: str = ""
) -> HttpSource:
    """`prefix`: the name a referenced Secret or ConfigMap must start with ("" for any)."""
    headers = []
    for index, header in enumerate(spec.headers):
        at = (*path, "headers", index)
        if header.value_from is None:
            value = header.value or ""
            if not _printable(value):
                # The value is not repeated: a literal header may still be a token.
                fail(document, (*at, "value"), "a header value must be printable ASCII")
            headers.append(HttpHeader(header.name, value))
            continue
        ref_spec = header.value_from.secret_key_ref or header.value_from.config_map_key_ref
        assert ref_spec is not None
        kind = KeyKind.SECRET if header.value_from.secret_key_ref else KeyKind.CONFIG_MAP
        field = "secretKeyRef" if kind is KeyKind.SECRET else "configMapKeyRef"
        ref_path = (*at, "valueFrom", field)
        if not ref_spec.name.startswith(prefix):
            fail(
                document,
                (*ref_path, "name"),
                f"{kind.value} name {ref_spec.name!r} must start with {prefix!r}, as Calico "
                "requires (a feed reads only the Secrets and ConfigMaps named for it)",
            )
        ref = HeaderRef(
            kind,
            ref_spec.name,
            ref_spec.key,
            ref_spec.optional,
            describe_path(ref_path),
            document.location(ref_path),
        )
        headers.append(HttpHeader(header.name, value_from=ref))
    return HttpSource(
        url=spec.url,
        format=_format(document, (*path, "format"), spec.format, stix),
        headers=tuple(headers),
        timeout_seconds=_duration(document, (*path, "timeout"), spec.timeout),
        max_bytes=spec.max_bytes,
    )


def _printable(value: str) -> bool:
    """RFC 9110 field-value characters netwarden sends: visible ASCII, space and tab."""
    return all(char == "\t" or " " <= char <= "~" for char in value)


def read_global_threat_feed(document: Document) -> list[object]:
    """A Calico GlobalThreatFeed -> a ThreatFeed (and notices for what cannot be pulled)."""
    document = cleaned(document)
    resource = parse(document, GlobalThreatFeedResource)
    meta, spec = resource.metadata, resource.spec
    name = _name(document, meta)
    if spec.pull is None:
        where = document.location(("spec",))
        return [notice(where, f"GlobalThreatFeed {name}: no pull: a pushed feed is not synced")]
    prefix = f"{CALICO_REF_PREFIX}{name}-"
    source = _http(document, ("spec", "pull", "http"), spec.pull.http, stix=False, prefix=prefix)
    period = _duration(document, ("spec", "pull", "period"), spec.pull.period)
    feed = ThreatFeed(
        name=name,
        content=FeedContent(spec.content),
        source=source,
        enabled=spec.mode == "Enabled",
        description=spec.description,
        labels=dict(spec.global_network_set.labels) if spec.global_network_set else {},
        period_seconds=period,
        jitter_seconds=period / 10,
        kind="GlobalThreatFeed",
        source_location=document.location(),
    )
    return [feed]


def read_threat_feed(document: Document) -> list[object]:
    """A netwarden ThreatFeed -> a ThreatFeed; a relative file path is relative to the
    manifest's folder."""
    document = cleaned(document)
    resource = parse(document, ThreatFeedResource)
    meta, spec = resource.metadata, resource.spec
    name = _name(document, meta)
    period = _duration(document, ("spec", "period"), spec.period)
    jitter = _duration(document, ("spec", "jitter"), spec.jitter) if spec.jitter else period / 10
    source: HttpSource | TaxiiSource | FileSource
    if spec.http is not None:
        source = _http(document, ("spec", "http"), spec.http, stix=True)
    elif spec.taxii is not None:
        taxii = spec.taxii
        source = TaxiiSource(taxii.url, taxii.username, taxii.password, taxii.page_size)
    else:
        assert spec.file is not None
        path = Path(spec.file.path)
        if not path.is_absolute() and document.path not in ("<stdin>", "<text>"):
            path = Path(document.path).parent / path
        feed_format = _format(document, ("spec", "file", "format"), spec.file.format, stix=True)
        source = FileSource(str(path), feed_format)
    allowlist = tuple(
        net_at(document, ("spec", "safety", "allowlist", i), text)
        for i, text in enumerate(spec.safety.allowlist)
    )
    feed = ThreatFeed(
        name=name,
        content=FeedContent(spec.content),
        source=source,
        enabled=spec.mode == "Enabled",
        description=spec.description,
        labels=dict(spec.global_network_set.labels) if spec.global_network_set else {},
        period_seconds=period,
        jitter_seconds=jitter,
        safety=FeedSafety(allowlist, spec.safety.max_growth_factor),
        kind="ThreatFeed",
        source_location=document.location(),
    )
    return [feed]


READERS = {
    ("projectcalico.org", "GlobalThreatFeed"): read_global_threat_feed,
    ("netwarden.io", "ThreatFeed"): read_threat_feed,
}


def read_feeds(documents: Sequence[Document]) -> tuple[list[ThreatFeed], list[object]]:
    """The feeds among `documents` (lists expanded) and the notices their reading raised;
    other kinds are ignored here (they belong to the cluster). Duplicate names are errors."""
    feeds: list[ThreatFeed] = []
    notices: list[object] = []
    seen: dict[str, ThreatFeed] = {}
    for document in expanded(documents):
        data = document.data
        key = (str(data.get("apiVersion", "")).rpartition("/")[0], str(data.get("kind", "")))
        reader = READERS.get(key)
        if reader is None:
            continue
        for part in reader(document):
            if isinstance(part, ThreatFeed):
                if part.name in seen:
                    first = seen[part.name].source_location
                    fail(
                        document,
                        ("metadata", "name"),
                        f"duplicate feed {part.name} (first defined at {first})",
                    )
                seen[part.name] = part
                feeds.append(part)
            else:
                notices.append(part)
    return feeds, notices


def expanded(documents: Sequence[Document]) -> list[Document]:
    """The documents with the items of every `kind: *List` in their place."""
    out: list[Document] = []
    for document in documents:
        data = document.data
        if not isinstance(data, dict):
            continue
        if str(data.get("kind", "")).endswith("List") and isinstance(data.get("items"), list):
            out.extend(expanded([document.child(i) for i in range(len(data["items"]))]))
        else:
            out.append(document)
    return out

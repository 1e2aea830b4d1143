"""Header values from Secrets and ConfigMaps, looked up at each pull.

Calico's intrusion-detection controller reads the Secrets and ConfigMaps a GlobalThreatFeed's
headers name (`valueFrom.secretKeyRef` / `configMapKeyRef`) from the namespace
`tigera-intrusion-detection`. netwarden has no API server to ask, so it looks in two places,
first match wins, key by key:

1. `--secrets-dir DIR`, laid out like a Kubernetes volume mount: `DIR/<name>/<key>` holds the
   value (mount the Secrets and ConfigMaps there; secrets need not live in git). Read again at
   every pull, so a rotated secret is used at the next one.
2. Secret and ConfigMap manifests among the `-f` inputs, in namespace
   `tigera-intrusion-detection` or with no namespace; others are not read (and said so when a
   lookup fails).

A missing name or key fails the feed's pull (its last good set stays) with the reference's
file:line and field, unless the reference is `optional: true`: then the header is not sent
and the pull goes on, with a note. Values are never printed, logged or stored; an error says
what is wrong with a value, never what it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from netwarden.model import ThreatFeed
from netwarden.model.feeds import HeaderRef, HttpHeader, HttpSource, KeyKind, KeyValues
from netwarden.threatintel.fetch import FetchError

#: Where Calico reads the Secrets and ConfigMaps of threat-feed headers.
SECRET_NAMESPACE = "tigera-intrusion-detection"


class HeaderError(FetchError):
    """A header's value could not be found or used; the pull does not happen."""


@dataclass(frozen=True)
class Resolved:
    """The source with every header resolved, and notes on optional headers left out."""

    source: HttpSource
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HeaderValues:
    """Where header values are looked up: a mounted folder, then manifests."""

    objects: Sequence[KeyValues] = ()
    directory: Path | None = None

    def lookup(self, ref: HeaderRef) -> bytes | None:
        """The value of `ref` (None: no such name or key in either place)."""
        if self.directory is not None:
            path = self.directory / ref.name / ref.key
            try:
                return path.read_bytes()
            except FileNotFoundError:
                pass
            except OSError as error:
                raise HeaderError(f"{_where(ref)}: cannot read {path}: {error.strerror}") from None
        for item in self._readable(ref):
            if ref.key in item.values:
                return item.values[ref.key]
        return None

    def _readable(self, ref: HeaderRef) -> list[KeyValues]:
        return [
            item
            for item in self.objects
            if item.kind is ref.kind
            and item.name == ref.name
            and item.namespace in (None, SECRET_NAMESPACE)
        ]

    def missing(self, ref: HeaderRef) -> str:
        """Why `ref` was not found, and where it was looked for."""
        found = self._readable(ref)
        what = (
            f"{ref.kind.value} {ref.name} has no key {ref.key}"
            if found
            else f"{ref.kind.value} {ref.name} not found"
        )
        places = [f"--secrets-dir {self.directory}"] if self.directory is not None else []
        places.append("the -f manifests")
        elsewhere = sorted(
            {
                item.namespace
                for item in self.objects
                if item.kind is ref.kind and item.name == ref.name and item.namespace
            }
            - {SECRET_NAMESPACE}
        )
        aside = (
            f"; a {ref.kind.value} of that name in namespace {', '.join(elsewhere)} is not "
            f"read: Calico reads {SECRET_NAMESPACE}"
            if elsewhere
            else ""
        )
        return f"{what} (looked in {' and '.join(places)}){aside}"


def resolve_headers(feed: ThreatFeed, source: HttpSource, values: HeaderValues) -> Resolved:
    """`source` with literal values for every `valueFrom` header; raises HeaderError when a
    required one is missing or unusable."""
    headers: list[HttpHeader] = []
    notes: list[str] = []
    for header in source.headers:
        ref = header.value_from
        if ref is None:
            headers.append(header)
            continue
        raw = values.lookup(ref)
        if raw is None:
            if ref.optional:
                notes.append(f"header {header.name} not sent: optional {values.missing(ref)}")
                continue
            raise HeaderError(f"{_where(ref, feed)}: {values.missing(ref)}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HeaderError(f"{_where(ref, feed)}: {ref} is not UTF-8 text") from None
        if not all(char == "\t" or " " <= char <= "~" for char in text):
            # Go's HTTP client refuses such a value too; a trailing newline is the usual
            # cause (`echo` into a file or into base64).
            raise HeaderError(
                f"{_where(ref, feed)}: {ref} holds a line break or another character a "
                "header cannot carry (a trailing newline?); the value is not shown"
            )
        sensitive = ref.kind is KeyKind.SECRET
        headers.append(HttpHeader(header.name, text, sensitive=sensitive))
    return Resolved(replace(source, headers=tuple(headers)), tuple(notes))


def _where(ref: HeaderRef, feed: ThreatFeed | None = None) -> str:
    """`feeds.yaml:14: GlobalThreatFeed remote: spec.pull.http.headers[0].valueFrom...`"""
    parts = [str(ref.location)] if ref.location else []
    if feed is not None:
        parts.append(f"{feed.kind} {feed.name}")
    parts.append(ref.field_path or str(ref))
    return ": ".join(parts)

"""One sync of one feed: resolve headers -> fetch -> parse -> withhold what is protected ->
aggregate -> hold or apply -> status. Used by `feeds sync` (once) and by the scheduler
(periodically).

Whatever goes wrong (a header's Secret missing, network, HTTP status, size cap, a body not in
the feed's format) becomes the feed's `last_error`; its last good set, network set and
validators stay as they were. A feed in mode Disabled is not pulled and leaves force: its set
is set aside (not blocked, not matched, no network set) until it is enabled again, when the
set aside comes back before the pull. `prune_feeds` forgets feeds no longer configured.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import FileSource, HttpSource, StixFormat, TaxiiSource
from netwarden.threatintel.aggregate import aggregate
from netwarden.threatintel.fetch import FetchError, Validators, decode, fetch_http, gunzip_capped
from netwarden.threatintel.headers import HeaderValues, resolve_headers
from netwarden.threatintel.parse import Candidates, FormatError, ParsedFeed, candidates, classify
from netwarden.threatintel.safety import ProtectedNet, Withheld, hold_reason, withhold
from netwarden.threatintel.state import FeedStatus, FeedStore
from netwarden.threatintel.stix import bundle_objects, indicator_candidates
from netwarden.threatintel.taxii import poll_collection

KEPT_WITHHELD = 50


@dataclass(frozen=True)
class SyncOptions:
    protected: Sequence[ProtectedNet] = ()
    accept: frozenset[str] = frozenset()  # feeds whose held version is accepted this time
    now: datetime | None = None
    # Where `valueFrom` headers are looked up.
    header_values: HeaderValues = field(default_factory=HeaderValues)


@dataclass(frozen=True)
class Fetch:
    """What a fetch found (None: not modified), the validators to keep, and notes."""

    found: Candidates | None
    validators: Validators
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A new version of a feed, ready to be compared with the set in force."""

    entries: list[str]
    parsed: ParsedFeed
    withheld: list[Withheld]


def sync_feeds(
    feeds: Sequence[ThreatFeed], store: FeedStore, options: SyncOptions | None = None
) -> list[FeedStatus]:
    return [sync_feed(feed, store, options or SyncOptions()) for feed in feeds]


def sync_feed(feed: ThreatFeed, store: FeedStore, options: SyncOptions) -> FeedStatus:
    now = (options.now or datetime.now(UTC)).isoformat(timespec="seconds")
    previous = store.status(feed.name) or FeedStatus(
        feed.name, feed.content.value, describe_source(feed)
    )
    status = previous.evolve(
        last_attempt=now,
        content=feed.content.value,
        source=describe_source(feed),
        disabled=not feed.enabled,
    )
    if not feed.enabled:
        store.set_aside(feed.name)
        disabled = status.evolve(notes=())
        store.save_status(disabled)
        return disabled
    restored = store.restore(feed.name)
    if restored is not None and feed.content is FeedContent.IP_SET:
        store.save_network_set(feed.name, feed.labels, restored)
    in_force = store.entries(feed.name)
    try:
        fetch = _fetch(feed, store, status, in_force is not None, options)
    except (FetchError, FormatError, OSError) as error:
        failed = status.evolve(
            last_error=str(error),
            consecutive_failures=previous.consecutive_failures + 1,
            notes=(),
        )
        store.save_status(failed)
        return failed
    found, validators = fetch.found, fetch.validators
    status = status.evolve(notes=fetch.notes)
    if found is None:  # 304: the set in force is current
        fresh = status.evolve(
            last_success=now, last_error=None, consecutive_failures=0, added=0, removed=0
        )
        store.save_status(fresh)
        return fresh
    candidate = _candidate(feed, found, options)
    status = status.evolve(
        bad_count=candidate.parsed.bad_count,
        bad=tuple(str(b) for b in candidate.parsed.bad),
        withheld_count=len(candidate.withheld),
        withheld=tuple(str(w) for w in candidate.withheld[:KEPT_WITHHELD]),
        etag=validators.etag,
        last_modified=validators.last_modified,
        consecutive_failures=0,
        last_error=None,
    )
    reason = None
    if feed.name not in options.accept:
        last = len(in_force) if in_force is not None else None
        reason = hold_reason(last, len(candidate.entries), feed.safety.max_growth_factor)
    if reason is not None:
        store.save_held(feed.name, candidate.entries)
        # Validators are dropped so the next sync downloads the held version again.
        held = status.evolve(held=reason, last_success=now, etag=None, last_modified=None)
        store.save_status(held)
        return held
    old = set(in_force or ())
    new = set(candidate.entries)
    store.save_entries(feed.name, candidate.entries)
    if feed.content is FeedContent.IP_SET:
        store.save_network_set(feed.name, feed.labels, candidate.entries)
    applied = status.evolve(
        held=None,
        last_success=now,
        entries=len(candidate.entries),
        values=candidate.parsed.values,
        added=len(new - old),
        removed=len(old - new),
    )
    store.save_status(applied)
    return applied


def prune_feeds(store: FeedStore, configured: Collection[str]) -> list[str]:
    """Remove from `store` every feed not in `configured` (state, set, network set), as Calico
    deletes the GlobalNetworkSet of a deleted GlobalThreatFeed; the names removed. The
    dataplane drops their sets at its next load from the store."""
    removed = [name for name in store.stored_names() if name not in configured]
    for name in removed:
        store.remove(name)
    return removed


def describe_source(feed: ThreatFeed) -> str:
    source = feed.source
    if isinstance(source, HttpSource | TaxiiSource):
        return source.url
    return f"file {source.path}"


def _fetch(
    feed: ThreatFeed,
    store: FeedStore,
    status: FeedStatus,
    have_set: bool,
    options: SyncOptions,
) -> Fetch:
    """The feed's values (None: not modified), the validators to keep, and notes."""
    source = feed.source
    notes: tuple[str, ...] = ()
    if isinstance(source, TaxiiSource):
        known, cursor = store.taxii(feed.name)
        polled = poll_collection(source, known, cursor)
        store.save_taxii(feed.name, polled.objects, polled.cursor)
        values = indicator_candidates(polled.objects.values(), feed.content, options.now)
        return Fetch(values, Validators())
    if isinstance(source, HttpSource):
        resolved = resolve_headers(feed, source, options.header_values)
        notes = resolved.notes
        validators = Validators(status.etag, status.last_modified) if have_set else None
        fetched = fetch_http(resolved.source, validators)
        if fetched.body is None:
            return Fetch(None, fetched.validators, notes)
        body, feed_format, found = fetched.body, source.format, fetched.validators
    else:
        body = _read_file(source)
        feed_format, found = source.format, Validators()
    text = decode(body)
    if isinstance(feed_format, StixFormat):
        values = indicator_candidates(bundle_objects(text), feed.content, options.now)
        return Fetch(values, found, notes)
    return Fetch(candidates(text, feed_format), found, notes)


def _read_file(source: FileSource) -> bytes:
    try:
        body = Path(source.path).read_bytes()
    except OSError as error:
        raise FetchError(f"cannot read {source.path}: {error.strerror}") from None
    return gunzip_capped(body, 1 << 31) if body.startswith(b"\x1f\x8b") else body


def _candidate(feed: ThreatFeed, found: Candidates, options: SyncOptions) -> Candidate:
    parsed = classify(found, feed.content)
    if feed.content is FeedContent.DOMAIN_SET:
        return Candidate(sorted(parsed.domains), parsed, [])
    protected = [*options.protected]
    protected += [ProtectedNet(n, "allowlist") for n in feed.safety.allowlist]
    entries: list[str] = []
    withheld: list[Withheld] = []
    for prefixes in (parsed.v4, parsed.v6):
        kept, dropped = withhold(prefixes, protected, found.unit)
        withheld += dropped
        entries += aggregate(kept).cidrs()
    return Candidate(entries, parsed, withheld)

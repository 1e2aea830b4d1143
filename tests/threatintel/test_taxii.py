"""TAXII 2.1 against a real medallion server: paging, indicators in force (valid_from,
valid_until, revoked), IPv4/IPv6/domain patterns, incremental `added_after` polling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stix2
from taxii2client.v21 import Collection

from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import TaxiiSource
from netwarden.threatintel.fetch import FetchError
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from netwarden.threatintel.taxii import poll_collection
from tests.threatintel.conftest import TAXII_USER, TaxiiServer

NOW = datetime.now(UTC)


def indicator(pattern: str, **extra: Any) -> stix2.Indicator:
    extra.setdefault("valid_from", NOW - timedelta(days=1))
    return stix2.Indicator(pattern=pattern, pattern_type="stix", **extra)


def publish(server: TaxiiServer, collection_index: int, *objects: Any) -> None:
    url = server.collection_url(collection_index)
    collection = Collection(url, user=TAXII_USER[0], password=TAXII_USER[1])
    try:
        envelope = {"objects": [json.loads(o.serialize()) for o in objects]}
        status = collection.add_objects(json.dumps(envelope))
        assert status.success_count == len(objects), status
    finally:
        collection.close()


def source(server: TaxiiServer, collection_index: int) -> TaxiiSource:
    url = server.collection_url(collection_index)
    return TaxiiSource(url, TAXII_USER[0], TAXII_USER[1], page_size=2)


def feed(server: TaxiiServer, collection_index: int) -> ThreatFeed:
    return ThreatFeed(
        "taxii-feed", FeedContent.IP_SET, source(server, collection_index), kind="ThreatFeed"
    )


@pytest.mark.slow
def test_indicators_in_force_are_read_page_by_page(
    taxii_server: TaxiiServer, tmp_path: Path
) -> None:
    publish(
        taxii_server,
        0,
        indicator("[ipv4-addr:value = '198.51.100.7']"),
        indicator("[ipv6-addr:value = '2001:db8:bad::1']"),
        indicator("[ipv4-addr:value ISSUBSET '203.0.113.0/24' OR ipv4-addr:value = '192.0.2.9']"),
        indicator("[domain-name:value = 'evil.example']"),
        indicator("[ipv4-addr:value = '198.51.100.66']", revoked=True),
        indicator(
            "[ipv4-addr:value = '198.51.100.77']",
            valid_from=NOW - timedelta(days=9),
            valid_until=NOW - timedelta(days=2),
        ),
        indicator("[ipv4-addr:value = '198.51.100.88']", valid_from=NOW + timedelta(days=3)),
        indicator("[ipv4-addr:value = '198.51.100.1' AND ipv4-addr:value = '198.51.100.2']"),
    )
    store = FeedStore(tmp_path)
    status = sync_feed(feed(taxii_server, 0), store, SyncOptions())
    assert status.last_error is None
    assert store.entries("taxii-feed") == [
        "192.0.2.9/32",
        "198.51.100.7/32",
        "203.0.113.0/24",
        "2001:db8:bad::1/128",
    ]
    # The AND pattern is reported (by indicator id), never half-read; the domain indicator is
    # not an IPSet entry and is reported too.
    assert status.bad_count == 2
    assert any("AND" in line for line in status.bad)
    assert any("evil.example" in line for line in status.bad)

    domains = sync_feed(
        ThreatFeed("taxii-domains", FeedContent.DOMAIN_SET, source(taxii_server, 0)),
        store,
        SyncOptions(),
    )
    assert domains.last_error is None
    assert store.entries("taxii-domains") == ["evil.example"]


@pytest.mark.slow
def test_polling_is_incremental_and_newer_versions_win(
    taxii_server: TaxiiServer, tmp_path: Path
) -> None:
    first = indicator("[ipv4-addr:value = '198.51.100.7']")
    second = indicator("[ipv4-addr:value = '198.51.100.8']")
    publish(taxii_server, 1, first, second)
    polled = poll_collection(source(taxii_server, 1))
    assert polled.new == 2 and polled.cursor is not None

    again = poll_collection(source(taxii_server, 1), polled.objects, polled.cursor)
    assert again.new == 0, "added_after must exclude what was already read"
    assert set(again.objects) == {first.id, second.id}

    publish(
        taxii_server,
        1,
        first.new_version(revoked=True),
        indicator("[ipv4-addr:value = '198.51.100.20']"),
    )
    later = poll_collection(source(taxii_server, 1), again.objects, again.cursor)
    assert later.new == 2
    assert later.objects[first.id]["revoked"] is True
    assert later.cursor is not None and later.cursor > polled.cursor

    store = FeedStore(tmp_path)
    status = sync_feed(feed(taxii_server, 1), store, SyncOptions())
    assert store.entries("taxii-feed") == ["198.51.100.8/32", "198.51.100.20/32"]
    publish(taxii_server, 1, second.new_version(revoked=True))
    status = sync_feed(feed(taxii_server, 1), store, SyncOptions())
    assert store.entries("taxii-feed") == ["198.51.100.20/32"]
    assert (status.added, status.removed) == (0, 1)


def test_unreachable_or_unauthorized_server_is_a_fetch_error(taxii_server: TaxiiServer) -> None:
    wrong = TaxiiSource(taxii_server.collection_url(2), TAXII_USER[0], "wrong password")
    with pytest.raises(FetchError, match="401"):
        poll_collection(wrong)

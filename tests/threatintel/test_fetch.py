"""HTTP download against a real local server: gzip both ways, ETag and Last-Modified (304),
the size cap with and without Content-Length, timeouts and error statuses."""

from __future__ import annotations

import gzip

import pytest

from netwarden.model.feeds import HttpHeader, HttpSource, NewlineFormat
from netwarden.threatintel.fetch import FetchError, Validators, fetch_http
from tests.threatintel.conftest import FeedServer

BODY = "198.51.100.7\n203.0.113.0/24\n"


def source(url: str, **options: object) -> HttpSource:
    return HttpSource(url, NewlineFormat(), **options)  # type: ignore[arg-type]


def test_plain_body_with_validators_then_not_modified(feed_server: FeedServer) -> None:
    url = feed_server.serve(
        "/plain", BODY, etag='"v1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT"
    )
    first = fetch_http(source(url))
    assert first.body == BODY.encode()
    assert first.validators == Validators('"v1"', "Wed, 01 Jan 2025 00:00:00 GMT")

    again = fetch_http(source(url), first.validators)
    assert again.body is None and again.status == 304
    sent = feed_server.statuses("/plain")[-1]
    assert sent["If-None-Match"] == '"v1"'
    assert sent["If-Modified-Since"] == "Wed, 01 Jan 2025 00:00:00 GMT"

    feed_server.routes["/plain"].etag = '"v2"'  # the feed changed
    changed = fetch_http(source(url), first.validators)
    assert changed.body == BODY.encode() and changed.validators.etag == '"v2"'


def test_last_modified_alone_gives_304(feed_server: FeedServer) -> None:
    stamp = "Thu, 02 Jan 2025 10:00:00 GMT"
    url = feed_server.serve("/lm", BODY, last_modified=stamp)
    first = fetch_http(source(url))
    assert fetch_http(source(url), first.validators).status == 304


def test_gzip_content_encoding_and_gzip_file(feed_server: FeedServer) -> None:
    encoded = feed_server.serve("/enc", BODY, content_encoding_gzip=True)
    assert fetch_http(source(encoded)).body == BODY.encode()
    assert "gzip" in feed_server.statuses("/enc")[0]["Accept-Encoding"]
    file_url = feed_server.serve("/feed.txt.gz", gzip.compress(BODY.encode()))
    assert fetch_http(source(file_url)).body == BODY.encode()


def test_headers_are_sent(feed_server: FeedServer) -> None:
    url = feed_server.serve("/auth", BODY)
    fetch_http(source(url, headers=(HttpHeader("X-Api-Key", "k3y"),)))
    assert feed_server.statuses("/auth")[0]["X-Api-Key"] == "k3y"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_size_cap_stops_the_download(feed_server: FeedServer, chunked: bool) -> None:
    url = feed_server.serve("/big", b"1.2.3.4\n" * 200_000, chunked=chunked)
    with pytest.raises(FetchError, match="cap of 100000"):
        fetch_http(source(url, max_bytes=100_000))
    assert fetch_http(source(url, max_bytes=2_000_000)).body is not None


def test_gzip_bomb_is_capped_after_decompression(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"0" * 5_000_000)  # ~5 kB that inflate to 5 MB
    url = feed_server.serve("/bomb", bomb, content_encoding_gzip=True)
    with pytest.raises(FetchError, match="size cap"):
        fetch_http(source(url, max_bytes=1_000_000))
    file_url = feed_server.serve("/bomb.gz", bomb)
    with pytest.raises(FetchError, match="decompressed"):
        fetch_http(source(file_url, max_bytes=1_000_000))


def test_timeout_and_error_status(feed_server: FeedServer) -> None:
    slow = feed_server.serve("/slow", BODY, delay=1.5)
    with pytest.raises(FetchError, match="timed out"):
        fetch_http(source(slow, timeout_seconds=0.3))
    broken = feed_server.serve("/broken", BODY, status=503)
    with pytest.raises(FetchError, match="HTTP 503"):
        fetch_http(source(broken))
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_http(source(feed_server.url("/missing")))


def test_connection_refused_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="ConnectError"):
        fetch_http(source("http://127.0.0.1:9/feed", timeout_seconds=2))

"""HTTP feed download with httpx: timeouts, conditional requests, a size cap, gzip.

A feed server is untrusted: the body is streamed and the download stops the moment it passes
`max_bytes` (counted after decompression, so a small gzip bomb cannot grow past the cap
either). `Content-Encoding: gzip` is undone by httpx; a body that is itself a gzip file
(`feed.txt.gz`) is recognised by its magic bytes and decompressed under the same cap. The
validators of the last good download (`ETag`, `Last-Modified`) are sent back as `If-None-Match`
/ `If-Modified-Since`; a `304 Not Modified` means the last good set is still current. Headers
whose values came from Secrets are not forwarded when a redirect leaves the feed's host.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from netwarden import __version__
from netwarden.model.feeds import HttpSource

_GZIP_MAGIC = b"\x1f\x8b"
#: The whole download may take this many times the per-read timeout: a server that trickles
#: a byte at a time never trips the per-read timeout alone.
DOWNLOAD_TIMEOUTS = 10


class FetchError(Exception):
    """The feed could not be downloaded; the message says why (kept as the feed's last error)."""


@dataclass(frozen=True)
class Validators:
    """What the server said identifies the body we hold."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    """`body` None: not modified since `validators` were given."""

    body: bytes | None
    validators: Validators
    status: int


def fetch_http(source: HttpSource, validators: Validators | None = None) -> Fetched:
    """GET the feed; raises FetchError for a network error, a non-2xx status or the size cap."""
    headers = {"User-Agent": f"netwarden/{__version__}", "Accept-Encoding": "gzip"}
    headers.update({header.name: header.value for header in source.headers})
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    timeout = httpx.Timeout(source.timeout_seconds)
    hooks = {"request": [_secrets_stay_home(source)]}
    try:
        with (
            httpx.Client(
                timeout=timeout, follow_redirects=True, max_redirects=5, event_hooks=hooks
            ) as client,
            client.stream("GET", source.url, headers=headers) as response,
        ):
            if response.status_code == 304:
                return Fetched(None, validators or Validators(), 304)
            if not 200 <= response.status_code < 300:
                raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}")
            deadline = time.monotonic() + source.timeout_seconds * DOWNLOAD_TIMEOUTS
            body = _read_capped(response, source.max_bytes, deadline)
            found = _validators(response.headers)
    except httpx.TimeoutException as error:
        message = f"timed out after {source.timeout_seconds:g} s ({type(error).__name__})"
        raise FetchError(message) from None
    except httpx.HTTPError as error:
        raise FetchError(f"{type(error).__name__}: {error}") from None
    if body.startswith(_GZIP_MAGIC):
        body = gunzip_capped(body, source.max_bytes)
    return Fetched(body, found, response.status_code)


def _secrets_stay_home(source: HttpSource) -> Callable[[httpx.Request], None]:
    """A request hook: headers from Secrets go to the feed's own host only. httpx drops
    `Authorization` on a redirect to another origin but forwards any other header (as Go's
    client does); an `APIKey` header must not follow a redirect to another host."""
    home = httpx.URL(source.url)
    sensitive = [header.name for header in source.headers if header.sensitive]

    def hook(request: httpx.Request) -> None:
        url = request.url
        same_host = url.host == home.host
        same_origin = same_host and url.scheme == home.scheme and url.port == home.port
        upgraded = same_host and home.scheme == "http" and url.scheme == "https"
        if not (same_origin or upgraded):
            for name in sensitive:
                request.headers.pop(name, None)

    return hook


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the feed is {int(declared)} bytes, over the cap of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"the feed passed the size cap of {max_bytes} bytes; download stopped")
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise FetchError("the download took too long (a server sending slowly); stopped")
    return b"".join(chunks)


def gunzip_capped(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body, stopping as soon as the output passes `max_bytes`."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise FetchError(f"invalid gzip body: {error}") from None
    if len(out) > max_bytes:
        raise FetchError(f"the feed passed the size cap of {max_bytes} bytes once decompressed")
    return out


def _validators(headers: Mapping[str, str]) -> Validators:
    return Validators(headers.get("ETag"), headers.get("Last-Modified"))


def decode(body: bytes) -> str:
    """Feeds are UTF-8 (a BOM is dropped); bytes that are not become U+FFFD and show up as
    bad entries rather than failing the whole feed."""
    return body.decode("utf-8-sig", errors="replace")

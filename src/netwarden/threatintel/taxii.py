"""TAXII 2.1 collections polled with `taxii2-client`, incrementally.

The first poll reads the whole collection, page by page (`as_pages`); each later poll asks only
for what was added after the last one (`added_after` = the `X-TAXII-Date-Added-Last` header of
the newest page seen, the server's own clock, so a skewed local clock loses nothing). The
objects kept from earlier polls are merged with the new ones by id, the newest version
winning: a revoked or re-dated indicator replaces the one it updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taxii2client.v21 import Collection, as_pages  # type: ignore[import-untyped]

from netwarden.model.feeds import TaxiiSource
from netwarden.threatintel.fetch import FetchError
from netwarden.threatintel.stix import latest_versions

_DATE_ADDED_LAST = "X-TAXII-Date-Added-Last"


@dataclass(frozen=True)
class Polled:
    objects: dict[str, Mapping[str, Any]]  # every object known, latest version, by id
    cursor: str | None  # `added_after` for the next poll
    new: int  # objects this poll returned


def poll_collection(
    source: TaxiiSource,
    known: Mapping[str, Mapping[str, Any]] | None = None,
    cursor: str | None = None,
    timeout_seconds: float = 30.0,
) -> Polled:
    """Everything added to the collection since `cursor` merged into `known`."""
    newest: list[str] = []

    def remember_date(response: Any, *args: Any, **kwargs: Any) -> Any:
        value = response.headers.get(_DATE_ADDED_LAST)
        if value:
            newest.append(value)
        return response

    collection = Collection(source.url, user=source.username, password=source.password)
    session = collection._conn.session  # the requests session taxii2-client owns
    session.hooks["response"].append(remember_date)
    _bound_timeout(session, timeout_seconds)
    filters = {"added_after": cursor} if cursor else {}
    fresh: list[Any] = []
    try:
        for page in as_pages(collection.get_objects, per_request=source.page_size, **filters):
            fresh.extend(page.get("objects", []))
    except Exception as error:  # requests, TAXII and JSON errors: this poll failed
        raise FetchError(f"TAXII {source.url}: {type(error).__name__}: {error}") from None
    finally:
        collection.close()
    merged = dict(known or {})
    merged.update(latest_versions([*merged.values(), *fresh]))
    next_cursor = max(newest) if newest else cursor
    return Polled(merged, next_cursor, len(fresh))


def _bound_timeout(session: Any, seconds: float) -> None:
    """requests has no session-wide timeout; wrap `request` so no poll can hang forever."""
    original = session.request

    def request(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", seconds)
        return original(method, url, **kwargs)

    session.request = request

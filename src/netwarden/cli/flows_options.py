"""What every `flows` command (and `preview` / `recommend`) reads from its options: the flow
store, a time window (`--since` / `--until`: ISO 8601 times or ages like `15m`, `7d`), sizes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from netwarden.errors import UsageError

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        "-s",
        metavar="STORE",
        help="Flow store: a DuckDB file, duckdb:PATH, chdb:DIR or clickhouse://host/db.",
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Records starting at or after: ISO time or an age (15m, 2h, 7d)."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Records starting before: ISO time or an age.")
]


def parse_age(text: str) -> timedelta | None:
    """`90s`, `15m`, `2h`, `7d`, `2w` as a duration; None if `text` is not an age."""
    age = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not age:
        return None
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age[2]]
    return timedelta(**{unit: int(age[1])})


def parse_time(
    text: str | None, option: str | None = None, now: datetime | None = None
) -> datetime | None:
    """An ISO 8601 time (UTC unless it says otherwise) or an age like `90s`, `15m`, `2h`, `7d`;
    errors name `option` when given."""
    if text is None:
        return None
    age = parse_age(text)
    if age is not None:
        return (now or datetime.now(UTC)) - age
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        named = f"{option} " if option else ""
        raise UsageError(
            f"{named}{text!r}: expected an ISO 8601 time or an age like 15m, 2h, 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_size(text: str) -> int:
    """`500MB`, `10GB`, `1TiB`, or plain bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", text.strip(), re.IGNORECASE)
    if not match:
        raise UsageError(f"{text!r}: expected a size like 500MB or 10GB")
    unit = (match[2] or "B").upper()
    powers = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    powers |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(float(match[1]) * powers[unit])

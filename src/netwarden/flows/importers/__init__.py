"""Importers: read a flow-log format into Arrow tables with `FLOW_SCHEMA`.

Each format is one module with a `read(path, ...) -> ImportResult` function; `IMPORTERS`
maps format names to them. Readers are vectorized (pyarrow.json / pyarrow.csv on whole files,
pyarrow.compute on columns): never one `json.loads` per record on the fast path.

Nothing is dropped silently: every input record is either in `ImportResult.table` or in
`ImportResult.rejected` with its line number and reason, and `records_in == stored + rejected`.

Adding a format: one module here with `read`, one row in `IMPORTERS`, its test file and
fixtures under tests/flows/fixtures/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netwarden.flows.importers.common import ImportResult, Rejection

__all__ = ["IMPORTERS", "ImportResult", "Rejection", "importer"]


@dataclass(frozen=True)
class Importer:
    """One format: its reader and what it is."""

    name: str
    read: Callable[..., ImportResult]
    description: str
    options: tuple[str, ...] = field(default=())


def _hubble(path: str, **options: Any) -> ImportResult:
    from netwarden.flows.importers import hubble

    return hubble.read(path)


def _calico(path: str, **options: Any) -> ImportResult:
    from netwarden.flows.importers import calico

    return calico.read(path)


def _calico_dns(path: str, **options: Any) -> ImportResult:
    from netwarden.flows.importers import calico_dns

    return calico_dns.read(path)


def _vpc(path: str, **options: Any) -> ImportResult:
    from netwarden.flows.importers import vpc

    return vpc.read(path, log_format=options.get("vpc_format"))


IMPORTERS: dict[str, Importer] = {
    "hubble": Importer("hubble", _hubble, "`hubble observe -o json` lines"),
    "calico": Importer("calico", _calico, "Calico flow logs, JSON lines"),
    "calico-dns": Importer(
        "calico-dns", _calico_dns, "Calico Enterprise DNS logs, JSON lines (DNS columns)"
    ),
    "vpc": Importer(
        "vpc",
        _vpc,
        "AWS VPC Flow Logs: text (default or custom format) or Parquet",
        ("vpc_format",),
    ),
}


def importer(name: str) -> Importer:
    """The importer for a format name (UsageError naming the known ones otherwise)."""
    from netwarden.errors import UsageError

    try:
        return IMPORTERS[name]
    except KeyError:
        known = ", ".join(sorted(IMPORTERS))
        raise UsageError(f"unknown flow format {name!r} (known: {known})") from None

"""Something read and kept that the user should know about."""

from __future__ import annotations

from dataclasses import dataclass

from netwarden.model import Location


@dataclass(frozen=True)
class Notice:
    """E.g. an L7 match that L3/L4 enforcement cannot honour. Readers may return these among
    their parts; the loader collects them and the CLI prints them as warnings."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"

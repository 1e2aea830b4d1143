"""Fixtures the analysis tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from netwarden.flows.store import FlowStore, open_store


@pytest.fixture(params=["duckdb", "chdb"])
def flow_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlowStore]:
    """An empty flow store, once per backend (DuckDB, and ClickHouse's SQL on chDB)."""
    url = f"duckdb:{tmp_path / 'flows.duckdb'}" if request.param == "duckdb" else f"chdb:{tmp_path}"
    opened = open_store(url)
    try:
        yield opened
    finally:
        opened.close()

"""Running the CLI in-process (Typer's CliRunner) against the shop example."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from netwarden.cli.main import app

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
SHOP_PROBES = SHOP / "probes.csv"

# Output as a pipe would get it: no terminal, so no colors; wide, so table cells do not wrap.
ENV: dict[str, str | None] = {
    "COLUMNS": "250",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
    "NO_COLOR": None,
}

Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    """`run("evaluate", "-f", ...)`: the command's Result, stdout and stderr apart."""

    def invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(app, [str(arg) for arg in args], env=ENV)

    return invoke


def assert_input_error(result: Result, *fragments: str) -> None:
    """Exit 2, one `netwarden: error:` line on stderr containing `fragments`, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("netwarden: error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""

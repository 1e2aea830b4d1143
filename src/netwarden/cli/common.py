"""What the commands share: the `-f` option, output formats, consoles and cluster loading."""

from __future__ import annotations

import difflib
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from netwarden.dialects import load_paths
from netwarden.errors import UsageError
from netwarden.model import ClusterState

FilesOption = Annotated[
    list[Path],
    typer.Option(
        "-f",
        "--file",
        metavar="PATH",
        help="Manifest file or directory (YAML/JSON; '-' reads stdin). Repeatable.",
        show_default=False,
    ),
]


class TableOrJson(StrEnum):
    TABLE = "table"
    JSON = "json"


class TextOrJson(StrEnum):
    TEXT = "text"
    JSON = "json"


#: Table width when stdout is a pipe or file and COLUMNS is unset: Rich's 80 columns would
#: wrap every cell of a wide table in a CI log or `| less`.
PIPE_WIDTH = 160


def stdout_console(soft_wrap: bool = False) -> Console:
    """Rich output for people; colors switch off by themselves when stdout is not a terminal.
    `soft_wrap` leaves long lines whole (the terminal wraps them), so they stay greppable."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=soft_wrap, width=PIPE_WIDTH if piped else None)


def stderr_console() -> Console:
    """Diagnostics: one line each, never wrapped, so `file:line:` stays greppable."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    stderr_console().print(Text.assemble(("netwarden: warning: ", "yellow"), message))


def report_error(message: str) -> None:
    stderr_console().print(Text.assemble(("netwarden: error: ", "bold red"), message))


def load_cluster(paths: list[Path]) -> ClusterState:
    """Read the `-f` inputs; every document skipped is reported on stderr, never dropped, and
    so is every notice (something kept that enforcement cannot honour)."""
    if not paths:
        raise UsageError("no inputs: give manifests with -f FILE or -f DIR")
    result = load_paths(paths)
    for skipped in result.skipped:
        warn(str(skipped))
    for notice in result.notices:
        warn(str(notice))
    return result.cluster


def unknown_endpoint_message(cluster: ClusterState, name: str) -> str:
    """Why `name` is not an endpoint, with the closest names the inventory has."""
    message = f"unknown endpoint {name!r}: no such pod in the inventory read with -f"
    close = difflib.get_close_matches(name, list(cluster.endpoints_by_key), n=3)
    if close:
        message += f" (did you mean {', '.join(close)}?)"
    return message

"""`netwarden connectivity`: every allowed connection, as txt, csv, json, md, dot or html."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from netwarden.analysis import compute_connectivity
from netwarden.analysis.render import RENDERERS
from netwarden.cli.common import FilesOption, load_cluster
from netwarden.errors import UsageError


class Format(StrEnum):
    TXT = "txt"
    CSV = "csv"
    JSON = "json"
    MD = "md"
    DOT = "dot"
    HTML = "html"


class Grouping(StrEnum):
    POD = "pod"
    WORKLOAD = "workload"


def connectivity(
    files: FilesOption,
    output_format: Annotated[Format, typer.Option("-o", "--format", help="Output format.")] = (
        Format.TXT
    ),
    by: Annotated[
        Grouping, typer.Option("--by", help="Name sources and destinations by pod or workload.")
    ] = Grouping.WORKLOAD,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Every allowed connection between workloads (or pods) and IP ranges."""
    cluster = load_cluster(files)
    cmap = compute_connectivity(cluster)
    render = RENDERERS[output_format.value]
    if output is None:
        render(cmap, by.value, sys.stdout)
        return
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            render(cmap, by.value, stream)
        partial.replace(output)  # nothing half-written is left under the asked name
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UsageError(f"{output}: cannot write: {error.strerror}") from None

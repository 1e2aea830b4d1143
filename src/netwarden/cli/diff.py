"""`netwarden diff`: the connections a change adds and removes (a pull request's semantic diff)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from netwarden.analysis.diff import compute_diff
from netwarden.analysis.diff_render import RENDERERS
from netwarden.analysis.diff_sources import git_files, load_sides, working_tree_files
from netwarden.cli.common import warn
from netwarden.dialects import LoadResult
from netwarden.errors import UsageError

#: Exit code of `--exit-code` when connections changed (as `git diff --exit-code`).
EXIT_CHANGED = 1


class DiffFormat(StrEnum):
    TXT = "txt"
    JSON = "json"
    MD = "md"
    CSV = "csv"


class Grouping(StrEnum):
    POD = "pod"
    WORKLOAD = "workload"


def diff_command(
    head: Annotated[
        list[Path],
        typer.Option(
            "--head",
            metavar="PATH",
            show_default=False,
            help="The changed manifests (file or directory). Repeatable.",
        ),
    ],
    base: Annotated[
        list[Path] | None,
        typer.Option(
            "--base",
            metavar="PATH",
            show_default=False,
            help="The manifests before the change. Repeatable.",
        ),
    ] = None,
    base_ref: Annotated[
        str | None,
        typer.Option(
            "--base-ref",
            metavar="GIT_REF",
            help="Take the base from git: the --head paths as they were at GIT_REF.",
        ),
    ] = None,
    by: Annotated[
        Grouping, typer.Option("--by", help="Name sources and destinations by pod or workload.")
    ] = Grouping.WORKLOAD,
    output_format: Annotated[
        DiffFormat, typer.Option("-o", "--format", help="Output format (md: a PR comment).")
    ] = DiffFormat.TXT,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write to FILE instead of stdout.")
    ] = None,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code", help="Exit 1 when connections were added or removed, 0 when not."
        ),
    ] = False,
) -> None:
    """The connections HEAD adds and removes compared with BASE, with the policy responsible.

    Both sides are decided over the union of their endpoints: an endpoint of one side only is
    listed as such, and its connections change only where the policies treat it differently.
    """
    if not head:
        raise UsageError("no head: give the changed manifests with --head PATH")
    if base and base_ref is not None:
        raise UsageError("give either --base PATH or --base-ref GIT_REF, not both")
    if not base and base_ref is None:
        raise UsageError("no base: give --base PATH or --base-ref GIT_REF")
    base_files = (
        git_files(head, base_ref) if base_ref is not None else working_tree_files(base or [])
    )
    head_files = working_tree_files(head)
    base_loaded, head_loaded = load_sides(base_files, head_files)
    _report_skipped(base_loaded, head_loaded)
    diff = compute_diff(base_loaded.cluster, head_loaded.cluster)
    render = RENDERERS[output_format.value]
    if output is None:
        render(diff, by.value, sys.stdout)
    else:
        partial = output.with_name(output.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8") as stream:
                render(diff, by.value, stream)
            partial.replace(output)  # nothing half-written is left under the asked name
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise UsageError(f"{output}: cannot write: {error.strerror}") from None
    if exit_code and diff.has_changes:
        raise typer.Exit(EXIT_CHANGED)


def _report_skipped(*results: LoadResult) -> None:
    """Every skipped document and notice of both sides, once each."""
    seen: set[str] = set()
    for result in results:
        for message in [*map(str, result.skipped), *map(str, result.notices)]:
            if message not in seen:
                seen.add(message)
                warn(message)

"""`netwarden verify`: check requirements against the policies, exit 1 when any fails.

Requirements come from `-r` files (Requirement resources only) and from any Requirement
resources among the `-f` inputs. Output: a table for people, or JSON, JUnit XML or SARIF for
CI (`--output FILE` writes it to a file, the table still summarises on stdout).
Exit codes: 0 every requirement holds, 1 some requirement fails, 2 bad input.
"""

from __future__ import annotations

import io
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from netwarden.analysis.connectivity import compute_connectivity
from netwarden.analysis.report_json import render_json
from netwarden.analysis.report_junit import render_junit
from netwarden.analysis.report_sarif import render_sarif
from netwarden.analysis.report_table import print_table
from netwarden.analysis.requirements import RequirementResult, check_requirements
from netwarden.cli.common import FilesOption, stdout_console, warn
from netwarden.dialects import load_documents
from netwarden.dialects.requirements import expand_lists, is_requirement, read_requirements
from netwarden.dialects.source import read_paths
from netwarden.dialects.validation import fail
from netwarden.errors import UsageError

#: Exit code when some requirement does not hold.
EXIT_FAILED = 1


class VerifyFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    SARIF = "sarif"


def verify(
    files: FilesOption,
    requirement_files: Annotated[
        list[Path] | None,
        typer.Option(
            "-r",
            "--requirements",
            metavar="PATH",
            help="File or directory of Requirement resources. Repeatable.",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        VerifyFormat, typer.Option("-o", "--output-format", help="Output format.")
    ] = VerifyFormat.TABLE,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", metavar="FILE", help="Write the report to FILE."),
    ] = None,
    staged: Annotated[
        bool,
        typer.Option(
            "--staged",
            help="Check the policies as the staged ones would make them (before enforcing).",
        ),
    ] = False,
) -> None:
    """Check security requirements (isolation, only, defaultDeny, egress, reachable) against
    the policies; each failure comes with a concrete counter-example flow."""
    started = time.perf_counter()
    if not files:
        raise UsageError("no inputs: give manifests with -f FILE or -f DIR")
    documents = read_paths(files)
    loaded = load_documents(documents)
    for skipped in loaded.skipped:
        warn(str(skipped))
    for notice in loaded.notices:
        warn(str(notice))
    requirement_documents = read_paths(requirement_files or [])
    for document in expand_lists(requirement_documents):
        if not is_requirement(document):
            fail(document, ("kind",), "-r takes Requirement resources only (give the rest with -f)")
    requirements = read_requirements([*documents, *requirement_documents])
    if not requirements:
        raise UsageError("no requirements: give Requirement resources with -r FILE or -r DIR")
    cluster = loaded.cluster
    results = check_requirements(cluster, requirements, compute_connectivity(cluster, staged))
    report = _render(results, output_format, time.perf_counter() - started)
    if output_file is None:
        if report is None:
            print_table(results, stdout_console())
        else:
            sys.stdout.write(report)
    else:
        if report is None:
            buffer = io.StringIO()
            print_table(results, Console(file=buffer, width=160, no_color=True, highlight=False))
            report = buffer.getvalue()
        try:
            output_file.write_text(report, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {output_file}: {error.strerror}") from None
        if output_format is not VerifyFormat.TABLE:
            print_table(results, stdout_console())
    if not all(result.holds for result in results):
        raise typer.Exit(EXIT_FAILED)


def _render(
    results: list[RequirementResult], output_format: VerifyFormat, seconds: float
) -> str | None:
    """The report as text; None for the table, which Rich prints itself."""
    match output_format:
        case VerifyFormat.JSON:
            return render_json(results)
        case VerifyFormat.JUNIT:
            return render_junit(results, seconds)
        case VerifyFormat.SARIF:
            return render_sarif(results)
    return None

"""`netwarden lint`: dead, shadowed, redundant, too broad or wrong policies and rules.

Output: a table for people, or JSON or SARIF for CI (`--output FILE` writes the report to a
file; the table still summarises on stdout). `--severity` hides findings below a level,
`--disable` turns checks off by id. Exit codes: 0 no finding at or above `--fail-on` (default
error), 1 some finding is, 2 bad input.
"""

from __future__ import annotations

import io
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from netwarden.analysis.lint import lint_cluster, parse_check_ids, select_findings
from netwarden.analysis.lint_catalogue import Finding, Severity
from netwarden.analysis.lint_report import print_table, render_json
from netwarden.analysis.lint_sarif import render_sarif
from netwarden.cli.common import FilesOption, load_cluster, stdout_console
from netwarden.errors import UsageError

#: Exit code when a finding at or above --fail-on exists.
EXIT_FINDINGS = 1


class LintFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class FailLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    NEVER = "never"


def lint(
    files: FilesOption,
    output_format: Annotated[
        LintFormat, typer.Option("-o", "--output-format", help="Output format.")
    ] = LintFormat.TABLE,
    severity: Annotated[
        Level, typer.Option("--severity", help="Show findings at or above this level.")
    ] = Level.INFO,
    disable: Annotated[
        str,
        typer.Option(
            "--disable",
            metavar="IDS",
            help="Checks to turn off, e.g. NW101,NW401.",
            show_default=False,
        ),
    ] = "",
    fail_on: Annotated[
        FailLevel,
        typer.Option("--fail-on", help="Exit 1 when a finding at or above this level is shown."),
    ] = FailLevel.ERROR,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", metavar="FILE", help="Write the report to FILE."),
    ] = None,
) -> None:
    """Lint policies: workloads no policy isolates, policies and peers that match nothing,
    shadowed and redundant rules and policies (proved: removing them changes no verdict),
    overly broad rules, undeclared named ports, Pass rules with nothing below, tier problems
    and staged policies that would change verdicts. Checks are listed in docs/lint.md."""
    disabled = parse_check_ids(disable)
    cluster = load_cluster(files)
    findings = select_findings(lint_cluster(cluster), Severity(severity.value), disabled)
    report = _render(findings, output_format)
    if output_file is None:
        if report is None:
            print_table(findings, stdout_console(soft_wrap=True))
        else:
            sys.stdout.write(report)
    else:
        if report is None:
            buffer = io.StringIO()
            print_table(findings, Console(file=buffer, width=160, no_color=True, highlight=False))
            report = buffer.getvalue()
        try:
            output_file.write_text(report, encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot write {output_file}: {error.strerror}") from None
        if output_format is not LintFormat.TABLE:
            print_table(findings, stdout_console(soft_wrap=True))
    if fail_on is not FailLevel.NEVER:
        threshold = Severity(fail_on.value).rank
        if any(f.severity.rank >= threshold for f in findings):
            raise typer.Exit(EXIT_FINDINGS)


def _render(findings: list[Finding], output_format: LintFormat) -> str | None:
    """The report as text; None for the table, which Rich prints itself."""
    match output_format:
        case LintFormat.JSON:
            return render_json(findings)
        case LintFormat.SARIF:
            return render_sarif(findings)
    return None

"""`netwarden verify` for people: a Rich table, one row per requirement, and a summary."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netwarden.analysis.requirements import RequirementResult, describe, responsible


def print_table(results: Sequence[RequirementResult], console: Console) -> None:
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    table.add_column("requirement", overflow="fold", ratio=2)
    table.add_column("type", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("details", overflow="fold", ratio=5)
    for result in results:
        requirement = result.requirement
        name = Text(requirement.name, style="bold")
        if requirement.source is not None:
            name.append(f"\n{requirement.source}", style="dim")
        for control in requirement.controls:
            name.append(f"\n{control}", style="cyan")
        table.add_row(
            name,
            requirement.kind.value,
            Text("HOLDS", style="bold green") if result.holds else Text("FAILS", style="bold red"),
            _details(result),
        )
    console.print(table)
    failed = sum(1 for result in results if not result.holds)
    summary = f"{len(results) - failed} of {len(results)} requirements hold"
    console.print(summary + (f", {failed} failed" if failed else ""))


def _details(result: RequirementResult) -> Text:
    text = Text(result.message)
    example = result.counterexample
    if example is not None:
        text.append("\ncounter-example: ", style="bold")
        text.append(describe(example))
        for decision in (example.verdict.egress, example.verdict.ingress):
            for blame in responsible(decision):
                where = f" ({blame.location})" if blame.location else ""
                text.append(f"\n  {blame.text}{where}", style="dim")
    for note in result.notes:
        text.append(f"\nnote: {note}", style="yellow")
    return text

"""The `netwarden` command: the Typer app, its commands, and the error contract.

Every `NetwardenError` becomes `netwarden: error: <message>` on stderr (the message starts with
`file:line:` when the input has a place) and exit code 2; usage errors exit 2 as well. Anything
else is a bug and may show a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from netwarden import __version__
from netwarden.cli import evaluate, explain
from netwarden.cli.apply import apply_command
from netwarden.cli.common import report_error
from netwarden.cli.compile import compile_command
from netwarden.cli.feeds import feeds_app, threat_app
from netwarden.cli.lab import lab_app
from netwarden.cli.selector import selector
from netwarden.errors import NetwardenError

#: Exit code for bad input and wrong usage (the code Click uses for usage errors).
EXIT_INPUT = 2


class _CommandGroup(TyperGroup):
    """Turns NetwardenError raised by any command into the diagnostic and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NetwardenError as error:
            report_error(str(error))
            raise typer.Exit(EXIT_INPUT) from None


app = typer.Typer(
    cls=_CommandGroup,
    name="netwarden",
    help="Network security as code: read policies, decide flows, explain verdicts.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

app.command()(evaluate.evaluate)
app.command()(explain.explain)
app.command()(selector)
app.command(name="compile")(compile_command)
app.command(name="apply")(apply_command)
app.add_typer(lab_app, name="lab")
app.add_typer(feeds_app, name="feeds")
app.add_typer(threat_app, name="threat")


@app.command()
def version() -> None:
    """Print the netwarden version."""
    typer.echo(f"netwarden {__version__}")


def run() -> None:
    """The console script."""
    try:
        app(prog_name="netwarden")
    except NetwardenError as error:  # raised outside a command, e.g. while parsing
        report_error(str(error))
        sys.exit(EXIT_INPUT)
    except BrokenPipeError:
        # The reader went away (`netwarden evaluate ... | head`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)

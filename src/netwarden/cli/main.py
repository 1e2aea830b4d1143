"""The `netwarden` command: the Typer app, its commands, and the error contract.

Every `NetwardenError` becomes `netwarden: error: <message>` on stderr (the message starts with
`file:line:` when the input has a place) and exit code 2; usage errors exit 2 as well. Anything
else is a bug and may show a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from netwarden import __version__
from netwarden.cli.common import report_error
from netwarden.errors import NetwardenError

#: Exit code for bad input and wrong usage (the code Click uses for usage errors).
EXIT_INPUT = 2

#: Every command: name -> (module, attribute), a command function or a Typer sub-app, in the
#: order `--help` lists them. A module is imported only when its command runs (or `--help`
#: lists it): `netwarden evaluate` does not pay for DuckDB, stix2 or the lab.
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("netwarden.cli.evaluate", "evaluate"),
    "explain": ("netwarden.cli.explain", "explain"),
    "selector": ("netwarden.cli.selector", "selector"),
    "connectivity": ("netwarden.cli.connectivity", "connectivity"),
    "verify": ("netwarden.cli.verify", "verify"),
    "lint": ("netwarden.cli.lint", "lint"),
    "diff": ("netwarden.cli.diff", "diff_command"),
    "compile": ("netwarden.cli.compile", "compile_command"),
    "apply": ("netwarden.cli.apply", "apply_command"),
    "lab": ("netwarden.cli.lab", "lab_app"),
    "feeds": ("netwarden.cli.feeds", "feeds_app"),
    "threat": ("netwarden.cli.feeds", "threat_app"),
    "flows": ("netwarden.cli.flows", "flows_app"),
    "collect": ("netwarden.cli.collect", "collect_command"),
    "preview": ("netwarden.cli.preview", "preview_command"),
    "recommend": ("netwarden.cli.recommend", "recommend_command"),
}


def load_command(name: str) -> Any:
    """The Click command for one entry of `COMMANDS`, importing its module now."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        command: Any = typer.main.get_group(target)
    else:
        holder = typer.Typer()
        holder.command(name=name)(target)
        command = typer.main.get_group(holder).commands[name]
    command.name = name
    return command


class _CommandGroup(TyperGroup):
    """Loads commands lazily from `COMMANDS` and turns NetwardenError raised by any of them
    into the diagnostic and exit code 2."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name in COMMANDS:
            return load_command(name)
        return super().get_command(ctx, name)

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


@app.callback()
def main() -> None:
    """Network security as code: read policies, decide flows, explain verdicts."""
    # A callback makes the app a group even though only `version` is registered eagerly.


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

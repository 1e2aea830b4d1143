"""`netwarden selector EXPR --labels JSON`: does a selector match a label set?"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netwarden.cli.common import report_error
from netwarden.dialects.calico_selector import selector_from_any
from netwarden.errors import InputError, NetwardenError
from netwarden.model.selector import Labels

#: Exit code for an invalid selector or label set (main.EXIT_INPUT; not imported from there so
#: this command stands alone in tests).
EXIT_INPUT = 2


def selector(
    expression: Annotated[
        str,
        typer.Argument(
            metavar="EXPR",
            help="A Calico selector (app == 'web' && !has(canary)) or a Kubernetes label "
            "selector as YAML/JSON ({matchLabels: {app: web}}).",
            show_default=False,
        ),
    ],
    labels: Annotated[
        str,
        typer.Option(
            "--labels",
            metavar="JSON",
            help='The label set, a JSON object of strings: {"app": "web"}.',
            show_default=False,
        ),
    ],
) -> None:
    """Print `true` if the selector matches the labels, `false` if not (exit 0 for both)."""
    try:
        parsed = selector_from_any(expression)
        label_set = read_labels(labels)
    except NetwardenError as error:
        # Handled here rather than left to main's handler, so the command behaves the same
        # in any Typer app that registers it.
        report_error(str(error))
        raise typer.Exit(EXIT_INPUT) from None
    typer.echo("true" if parsed.matches(label_set) else "false")


def read_labels(text: str) -> Labels:
    """A label set from JSON: an object whose values are all strings."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            None, f"invalid JSON: {error.msg} at column {error.colno}", "--labels"
        ) from None
    if not isinstance(data, dict):
        raise InputError(None, "expected a JSON object of label names to values", "--labels")
    for key, value in data.items():
        if not isinstance(value, str):
            raise InputError(None, f"label {key!r} has a non-string value {value!r}", "--labels")
    return data

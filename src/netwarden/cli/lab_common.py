"""What the `lab` commands share: the `--name` option, a lab's state (it must be up) and
its recorded inputs loaded again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from netwarden.cli.common import warn
from netwarden.dataplane.lab_enforce import source_documents
from netwarden.dataplane.lab_naming import check_lab_name
from netwarden.dataplane.lab_state import LabState, SourceText, load_state
from netwarden.dialects import LoadResult, load_documents
from netwarden.errors import LabError

NameOption = Annotated[
    str,
    typer.Option("--name", help="Lab name: 1-12 lower-case letters and digits."),
]


def up_state(name: str) -> LabState:
    """The lab's state; a lab that is not up is an error."""
    state = load_state(check_lab_name(name))
    if state.status != "up":
        raise LabError(f"lab {name} is not up (status {state.status}): `lab down` it and retry")
    return state


def load_inputs(sources: Sequence[SourceText]) -> LoadResult:
    """The inputs again, with their warnings."""
    result = load_documents(source_documents(sources))
    for skipped in result.skipped:
        warn(str(skipped))
    for notice in result.notices:
        warn(str(notice))
    return result

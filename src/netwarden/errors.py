"""One exception hierarchy for everything netwarden reports to users.

    NetwardenError
     ├── InputError            bad input: carries file, line and the field at fault
     │    └── SelectorError    an invalid selector expression (with its column)
     ├── UsageError            a command used wrongly (bad flag combination, unknown name)
     ├── WriteError            a policy a writer's target cannot express (names the construct)
     ├── CompileError          policies a dataplane cannot enforce exactly (fail closed)
     ├── ApplyError            a ruleset was not loaded; the previous one is still in place
     └── LabError              the lab cannot be planned, built, probed or torn down

The CLI turns any of these into a `file:line: message` diagnostic and exit code 2; anything else
is a bug and may show a traceback.
"""

from __future__ import annotations

from netwarden.model.location import Location


class NetwardenError(Exception):
    """Base class: an error meant for the user, never a traceback."""


class InputError(NetwardenError):
    """Malformed input, located at a file and line, optionally naming the field at fault."""

    def __init__(self, location: Location | None, message: str, field: str = "") -> None:
        self.location = location
        self.message = message
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"


class SelectorError(InputError):
    """An invalid selector expression; `column` is 1-based within the expression."""

    def __init__(
        self, expression: str, column: int, message: str, location: Location | None = None
    ) -> None:
        self.expression = expression
        self.column = column
        super().__init__(location, f"{message} at column {column} in selector {expression!r}")


class UsageError(NetwardenError):
    """A command was used wrongly: an unknown endpoint name, a malformed probe, bad flags."""


class WriteError(NetwardenError):
    """A writer's target cannot express something the model holds: the writer stops rather
    than drop it (fail closed). Names the resource, where it was read, and the construct."""

    def __init__(self, location: Location | None, resource: str, message: str) -> None:
        self.location = location
        self.resource = resource
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.resource}: {self.message}"


class CompileError(NetwardenError):
    """Policies that a dataplane cannot enforce exactly: compiling stops (fail closed)."""


class ApplyError(NetwardenError):
    """A ruleset was not loaded; the previous one is still in place."""


class LabError(NetwardenError):
    """The lab cannot be planned, built, probed or torn down."""

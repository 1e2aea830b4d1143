"""The command line: a thin shell over the public API (Typer for arguments, Rich for output).

Each command is one module with one function (`evaluate.py`, `explain.py`, ...) that reads its
inputs through `netwarden.dialects`, asks `netwarden.engine`, and prints. Commands hold no
semantics of their own. `main.py` registers them and turns every `NetwardenError` into a
`netwarden: error: file:line: message` line on stderr with exit code 2 (usage errors exit 2 too).

To add a command: write `cli/<name>.py` with a function whose parameters are annotated with
`typer.Option` / `typer.Argument` (reuse the options in `common.py`), add one line
`app.command()(<name>.<function>)` in `main.py`, and test it in `tests/cli/test_<name>.py`.
Data output (`-o json`) is plain JSON on stdout, never Rich; messages go to stderr.
"""

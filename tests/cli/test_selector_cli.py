"""`netwarden selector EXPR --labels JSON`, run through a Typer app of its own."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from netwarden.cli.selector import selector

app = typer.Typer()
app.command()(selector)
# A second command makes Typer keep the `selector` subcommand name, as in the real app.
app.command("noop")(lambda: None)

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["selector", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("expression", "labels", "output"),
    [
        ("app == 'web' && !has(canary)", '{"app": "web"}', "true"),
        ("app == 'web' && !has(canary)", '{"app": "web", "canary": ""}', "false"),
        ("tier != 'db'", "{}", "true"),  # != is true on a missing label
        ("tier not in {'db'}", "{}", "true"),
        ("", '{"a": "b"}', "true"),  # the empty selector is all()
        ("version starts with 'v1.'", '{"version": "v1.2"}', "true"),
        ("{matchLabels: {app: web}}", '{"app": "web"}', "true"),
        (
            '{"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}',
            '{"app": "web"}',
            "false",
        ),
    ],
)
def test_prints_true_or_false_and_exits_0(expression: str, labels: str, output: str) -> None:
    code, stdout, _ = run(expression, "--labels", labels)
    assert code == 0
    assert stdout == output + "\n"


@pytest.mark.parametrize(
    ("expression", "labels", "message"),
    [
        ("app == web", "{}", "at column 8"),
        ("(app == 'web'", "{}", "at column 14"),
        ("{app: web}", "{}", "not a label selector field: app"),
        ("app == 'web'", "{not json", "--labels: invalid JSON"),
        ("app == 'web'", '["app"]', "--labels: expected a JSON object"),
        ("app == 'web'", '{"replicas": 3}', "non-string value"),
    ],
)
def test_invalid_input_exits_2_without_traceback(
    expression: str, labels: str, message: str
) -> None:
    code, stdout, stderr = run(expression, "--labels", labels)
    assert code == 2
    assert stdout == ""
    assert stderr.startswith("netwarden: error: ")
    assert message in stderr
    assert "Traceback" not in stderr


def test_labels_option_is_required() -> None:
    code, _, stderr = run("has(a)")
    assert code == 2
    assert "--labels" in stderr

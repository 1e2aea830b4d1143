"""Bad input never shows a traceback: `netwarden: error: file:line: ...` and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import SHOP, SHOP_PROBES, Run, assert_input_error

PROBE = ("--probe", "shop/frontend-0", "shop/db-0", "5432/TCP")

BAD_YAML = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {tenant: shop
"""

BAD_CIDR = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend
  namespace: shop
spec:
  podSelector: {}
  ingress:
    - from:
        - ipBlock:
            cidr: 10.0.0.0/33
"""


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("bad.yaml", BAD_YAML, 6, "invalid YAML"),
        ("cidr.yaml", BAD_CIDR, 11, "spec.ingress[0].from[0].ipBlock: invalid CIDR '10.0.0.0/33'"),
    ],
)
def test_bad_manifest(
    tmp_path: Path, run: Run, name: str, text: str, line: int, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    commands = [
        ["evaluate", "-f", SHOP, "-f", path, *PROBE],
        ["explain", "-f", SHOP, "-f", path, *PROBE[1:]],
    ]
    for command in commands:
        assert_input_error(run(*command), f"netwarden: error: {path}:{line}: ", message)


def test_missing_input_file(tmp_path: Path, run: Run) -> None:
    missing = tmp_path / "nope.yaml"
    assert_input_error(run("evaluate", "-f", missing, *PROBE), f"{missing}: no such file")


def test_unknown_endpoint_in_probe(run: Run) -> None:
    result = run("evaluate", "-f", SHOP, "--probe", "shop/frontend-0", "shop/fronted-1", "443")
    assert_input_error(result, "unknown endpoint 'shop/fronted-1'", "did you mean shop/frontend-1")
    result = run("explain", "-f", SHOP, "shop/nothing-0", "shop/db-0", "5432/TCP")
    assert_input_error(result, "unknown endpoint 'shop/nothing-0'")


def test_unknown_endpoint_in_probes_file_names_its_line(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "probes.csv"
    path.write_text(
        "src,dst,port,protocol\n"
        "shop/frontend-0,shop/backend-0,8080,TCP\n"
        "# the next one is wrong\n"
        "shop/frontend-0,shop/backnd-0,8080,TCP\n"
    )
    result = run("evaluate", "-f", SHOP, "--probes", path)
    assert_input_error(result, f"netwarden: error: {path}:4: dst: unknown endpoint 'shop/backnd-0'")


def test_bad_probes_row_names_its_line_and_column(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "probes.csv"
    path.write_text(SHOP_PROBES.read_text() + "shop/frontend-0,shop/db-0,65536,TCP\n")
    line = len(SHOP_PROBES.read_text().splitlines()) + 1
    result = run("evaluate", "-f", SHOP, "--probes", path, "-o", "json")
    assert_input_error(result, f"netwarden: error: {path}:{line}: port: invalid port '65536'")


@pytest.mark.parametrize(
    "args",
    [
        ("evaluate", "-f", SHOP, *PROBE[:3], "5432/XTP"),
        ("explain", "-f", SHOP, "shop/frontend-0", "shop/db-0", "TCP"),
        ("explain", "-f", SHOP, "frontend", "shop/db-0", "80"),
    ],
)
def test_bad_probe_arguments(run: Run, args: tuple[str | Path, ...]) -> None:
    assert_input_error(run(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("evaluate", "-f", SHOP, *PROBE, "-o", "yaml"),
        ("explain", "-f", SHOP, *PROBE[1:], "-o", "table"),
        ("evaluate", *PROBE),  # no -f
        ("explain", "-f", SHOP, "shop/frontend-0"),  # missing arguments
        ("evaluate", "-f", SHOP, "--probe", "shop/frontend-0", "shop/db-0"),  # 2 of 3 values
        ("evalute",),
    ],
)
def test_usage_errors_exit_2(run: Run, args: tuple[str | Path, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""

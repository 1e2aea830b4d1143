"""The shop example does what examples/README.md says, through the installed `netwarden`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from netwarden.dialects import load_paths
from tests.cli.conftest import REPO, SHOP, SHOP_PROBES, Run

README = REPO / "examples" / "README.md"
ROW = re.compile(
    r"^\| (\d+) \| `([^`]+)` \| `([^`]+)` \| (\S+) \| (ALLOWED|DENIED) \| `([^`]+)` \| .* \|$"
)


def documented() -> list[tuple[str, str, str, bool, str]]:
    """(src, dst, port/proto, allowed, decided by) of each row of the README's table."""
    rows = []
    for line in README.read_text().splitlines():
        match = ROW.match(line)
        if match:
            _, src, dst, port, verdict, decided_by = match.groups()
            rows.append((src, dst, port, verdict == "ALLOWED", decided_by))
    return rows


def netwarden(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The console script installed beside this Python, as a user runs it (stdout a pipe)."""
    script = Path(sys.executable).with_name("netwarden")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [str(script), *map(str, args)], capture_output=True, text=True, env=env, check=False
    )


def test_readme_table_is_the_probes_file() -> None:
    rows = documented()
    assert len(rows) == 24
    probes = [line for line in SHOP_PROBES.read_text().splitlines()[1:] if line[:1] not in "#"]
    for (src, dst, port, _, _), probe in zip(rows, probes, strict=True):
        probe_src, probe_dst, number, protocol = probe.split(",")
        shown = protocol.upper() if number == "0" else f"{number}/{protocol.upper()}"
        assert (src, dst, port) == (probe_src, probe_dst, shown)


def test_verdicts_are_the_documented_ones() -> None:
    result = netwarden("evaluate", "-f", SHOP, "--probes", SHOP_PROBES, "-o", "json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the example has nothing netwarden skips
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    wrong = []
    for (src, dst, port, allowed, decided_by), row in zip(documented(), rows, strict=True):
        deciding = [row[d]["decided_by"] for d in ("egress", "ingress")]
        if not row["allowed"]:  # the label must be that of a direction that denies
            deciding = [
                row[d]["decided_by"] for d in ("egress", "ingress") if not row[d]["allowed"]
            ]
        if row["allowed"] != allowed or decided_by not in deciding:
            wrong.append(f"{src} -> {dst} {port}: {row}")
    assert not wrong, "\n".join(wrong)


def test_explain_agrees_with_evaluate(run: Run) -> None:
    """`explain` (the reference engine) and `evaluate` (the vectorized one) on every probe."""
    rows = json.loads(run("evaluate", "-f", SHOP, "--probes", SHOP_PROBES, "-o", "json").stdout)
    for row in rows:
        port = row["protocol"] if row["port"] == 0 else f"{row['port']}/{row['protocol']}"
        result = run("explain", "-f", SHOP, row["src"], row["dst"], port, "-o", "json")
        explained = json.loads(result.stdout)
        assert explained["allowed"] == row["allowed"]
        for direction in ("egress", "ingress"):
            assert explained[direction]["allowed"] == row[direction]["allowed"]
            assert explained[direction]["decided_by"] == row[direction]["decided_by"]


def test_console_script_table_and_errors(tmp_path: Path) -> None:
    result = netwarden("evaluate", "-f", SHOP, "--probes", SHOP_PROBES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("11 allowed, 13 denied")
    assert "\x1b[" not in result.stdout  # piped: Rich turns colors off
    explained = netwarden("explain", "-f", SHOP, "shop/frontend-0", "shop/db-0", "5432/TCP")
    assert explained.stdout.startswith("DENIED  shop/frontend-0 -> shop/db-0 5432/TCP\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: [\n")
    result = netwarden("evaluate", "-f", bad, "--probe", "a/b", "c/d", "80")
    assert result.returncode == 2
    assert result.stderr.startswith(f"netwarden: error: {bad}:")
    assert "Traceback" not in result.stderr
    assert netwarden("version").stdout.startswith("netwarden ")


def test_pods_are_the_pods_of_the_workloads() -> None:
    """pods.yaml names, labels and ports agree with what workloads.yaml stands in for."""
    manifests = [p for p in SHOP.rglob("*.yaml") if p.name != "pods.yaml"]
    stand_ins = {e.key: e for e in load_paths(manifests).cluster.endpoints}
    running = {e.key: e for e in load_paths([SHOP]).cluster.endpoints}
    assert sorted(stand_ins) == sorted(running)
    for key, pod in running.items():
        assert pod.ips, f"{key} has no address"
        assert pod.labels == stand_ins[key].labels, key
        assert set(pod.ports) == set(stand_ins[key].ports), key
        assert not stand_ins[key].ips

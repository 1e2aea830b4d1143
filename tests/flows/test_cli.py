"""`netwarden flows ...` end to end: a real DuckDB file, the fixtures, the error contract."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from netwarden.cli.main import app
from netwarden.flows.store import open_store
from tests.flows.conftest import FIXTURES

ENV = {"COLUMNS": "250", "FORCE_COLOR": None, "NO_COLOR": "1"}
INVENTORY = """
apiVersion: v1
kind: Pod
metadata: {name: app-0, namespace: shop, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIP: 10.0.1.15, podIPs: [{ip: 10.0.1.15}]}
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV)


@pytest.fixture
def store(tmp_path: Path) -> str:
    path = str(tmp_path / "flows.duckdb")
    result = run(
        "flows", "import", "--store", path, "--format", "calico", str(FIXTURES / "calico-flows.log")
    )
    assert result.exit_code == 0, result.output
    return path


def test_import_prints_counts_and_rejected_positions(store: str) -> None:
    result = run(
        "flows",
        "import",
        "--store",
        store,
        "--format",
        "calico",
        str(FIXTURES / "calico-flows.log"),
    )
    assert result.exit_code == 0
    assert "│ 10 │ 6      │ 4        │" in result.stdout
    assert "calico-flows.log:7: rejected: not a valid record" in result.stderr
    assert "calico-flows.log:11: rejected: dest_port: out of range" in result.stderr
    assert open_store(store).count() == 12


def test_import_vpc_with_inventory_enriches(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    path = str(tmp_path / "vpc.duckdb")
    result = run(
        "flows",
        "import",
        "-s",
        path,
        "--format",
        "vpc",
        "-f",
        str(inventory),
        str(FIXTURES / "vpc-default-v2.log"),
        str(FIXTURES / "vpc-custom-v5.log"),
    )
    assert result.exit_code == 0, result.output
    assert "│ total" in result.stdout
    result = run("flows", "query", "-s", path, 'source_namespace = "shop"', "-o", "json")
    records = json.loads(result.stdout)
    assert len(records) == 4 and {r["source_name"] for r in records} == {"app-0"}


def test_query_formats(store: str, tmp_path: Path) -> None:
    result = run("flows", "query", "-s", store, 'action = "deny"', "-o", "json")
    assert result.exit_code == 0, result.output
    denied = json.loads(result.stdout)
    assert [r["dest_port"] for r in denied] == [8443, 5432]
    assert denied[0]["start_time"] == "2025-11-27T09:41:00Z"
    csv = run(
        "flows", "query", "-s", store, "dest_port IN (53, 443)", "-o", "csv"
    ).stdout.splitlines()
    assert len(csv) == 3 and csv[0].startswith('"start_time","end_time"')
    grouped = json.loads(
        run(
            "flows", "query", "-s", store, "--group-by", "dest_namespace,action", "-o", "json"
        ).stdout
    )
    assert {(g["dest_namespace"], g["action"]): g["records"] for g in grouped}[
        ("shop", "allow")
    ] == 2
    out = tmp_path / "q.parquet"
    assert run("flows", "query", "-s", store, "-o", "parquet", "--out", str(out)).exit_code == 0
    assert pq.read_table(out).num_rows == 6
    table = run(
        "flows",
        "query",
        "-s",
        store,
        "--since",
        "2025-11-27T09:41:00Z",
        "--until",
        "2025-11-27T09:42:00Z",
    )
    assert "│ pci" in table.stdout and "3 rows" in table.stdout


def test_timeline_and_top(store: str) -> None:
    result = run("flows", "timeline", "-s", store, "shop/web-7d9f8b6c5d-x2x9q", "-o", "json")
    assert result.exit_code == 0, result.output
    times = [r["start_time"] for r in json.loads(result.stdout)]
    assert len(times) == 3 and times == sorted(times)
    top = json.loads(
        run("flows", "top", "-s", store, "--denied", "--by", "dest", "-o", "json").stdout
    )
    assert [(t["dest_namespace"], t["num_flows"]) for t in top] == [("pci", 4), ("shop", 1)]
    talkers = run("flows", "top", "-s", store, "--by", "source", "--order", "bytes_in", "-n", "1")
    assert "shop" in talkers.stdout and "1 rows" in talkers.stdout


def test_export_import_parquet_and_retention(store: str, tmp_path: Path) -> None:
    out = tmp_path / "deny.parquet"
    assert (
        "exported 2 records"
        in run("flows", "export", "-s", store, str(out), "action = deny").stdout
    )
    other = str(tmp_path / "other.duckdb")
    assert "imported 2 records" in run("flows", "import-parquet", "-s", other, str(out)).stdout
    result = run("flows", "retention", "-s", store, "--max-age", "1d")
    assert "deleted 6 records; 0 remain" in result.stdout  # the fixture is a year old


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["query", "-s", "{store}", 'dest_namspace = "pci"'],
            "unknown column 'dest_namspace' at column 1",
        ),
        (
            ["query", "-s", "{store}", "action = deny; DROP TABLE flows"],
            "unexpected character ';' at column 14",
        ),
        (["query", "-s", "{store}", "--since", "last tuesday"], "expected an ISO 8601 time"),
        (["query", "-s", "{store}", "-o", "parquet"], "--out PATH"),
        (["timeline", "-s", "{store}", "web"], "expected NAMESPACE/POD"),
        (
            ["import", "-s", "{store}", "--format", "netflow", "x.log"],
            "unknown flow format 'netflow'",
        ),
        (
            ["import", "-s", "{store}", "--format", "vpc", "/nonexistent.log"],
            "/nonexistent.log: no such file",
        ),
        (
            ["import", "-s", "{store}", "--format", "vpc", "--vpc-format", "${bogus}", "x"],
            "no such file",
        ),
        (["retention", "-s", "{store}"], "give --max-age"),
        (["retention", "-s", "{store}", "--max-size", "lots"], "expected a size"),
        (["query", "-s", "mysql://db"], "unknown scheme 'mysql'"),
    ],
)
def test_bad_input_is_a_diagnostic_and_exit_2(store: str, args: list[str], message: str) -> None:
    result = run("flows", *[a.replace("{store}", store) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_bad_file_among_good_ones_stores_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "atomic.duckdb")
    result = run(
        "flows",
        "import",
        "-s",
        path,
        "--format",
        "calico",
        str(FIXTURES / "calico-flows.log"),
        str(tmp_path / "missing.log"),
    )
    assert result.exit_code == 2
    assert open_store(path).count() == 0


def test_snapshots_give_identity_valid_at_each_record_time(tmp_path: Path) -> None:
    before = tmp_path / "before.yaml"
    before.write_text(INVENTORY)
    after = tmp_path / "after.yaml"
    after.write_text(INVENTORY.replace("app-0", "app-9").replace("shop", "jobs"))
    path = str(tmp_path / "snap.duckdb")
    result = run("flows", "import", "-s", path, "--format", "vpc",
                 "--snapshot", f"2025-11-27T09:00:00Z={before}",
                 "--snapshot", f"2025-11-27T09:40:15Z={after}",
                 str(FIXTURES / "vpc-default-v2.log"))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(
        run("flows", "query", "-s", path, 'source_ip = "10.0.1.15"', "-o", "json").stdout
    )
    assert [(r["start_time"], r["source_name"]) for r in rows] == [
        ("2025-11-27T09:40:00Z", "app-0"),
        ("2025-11-27T09:40:20Z", "app-9"),
    ]
    log = str(FIXTURES / "vpc-default-v2.log")
    bad = run("flows", "import", "-s", path, "--format", "vpc", "--snapshot", "yesterday", log)
    assert bad.exit_code == 2 and "expected TIME=PATH" in bad.stderr

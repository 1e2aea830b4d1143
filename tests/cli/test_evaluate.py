"""`netwarden evaluate`: the JSON contract scripts depend on, the table, `--probe`, warnings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netwarden.dialects.probes import read_probes
from tests.cli.conftest import SHOP, SHOP_PROBES, Run, assert_input_error

KEYS = ["src", "dst", "port", "protocol", "allowed", "egress", "ingress"]
PROBE_JSON = ("--probe", "shop/frontend-0", "shop/db-0", "5432/TCP", "-o", "json")


def evaluate_json(run: Run, *args: str | Path) -> list[dict[str, Any]]:
    result = run("evaluate", "-f", SHOP, *args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    return data


def test_json_is_one_array_in_input_order_with_the_contract_keys(run: Run) -> None:
    rows = evaluate_json(run, "--probes", SHOP_PROBES)
    probes = read_probes(SHOP_PROBES)
    assert len(rows) == len(probes) == 24
    for row, probe in zip(rows, probes, strict=True):
        assert list(row) == KEYS
        assert (row["src"], row["dst"], row["port"]) == (probe.src, probe.dst, probe.port)
        assert isinstance(row["port"], int)
        assert row["protocol"] in ("TCP", "UDP", "ICMP")
        assert isinstance(row["allowed"], bool)
        for direction in ("egress", "ingress"):
            assert list(row[direction]) == ["allowed", "decided_by"]
            assert isinstance(row[direction]["allowed"], bool)
            assert isinstance(row[direction]["decided_by"], str)
        assert row["allowed"] == (row["egress"]["allowed"] and row["ingress"]["allowed"])


def test_json_values(run: Run) -> None:
    rows = evaluate_json(run, "--probes", SHOP_PROBES)
    assert rows[0] == {
        "src": "203.0.113.7",
        "dst": "shop/frontend-0",
        "port": 443,
        "protocol": "TCP",
        "allowed": True,
        "egress": {"allowed": True, "decided_by": "not-a-subject"},
        "ingress": {"allowed": True, "decided_by": "default/shop/frontend[ingress[0]]"},
    }
    # Names are echoed as written: an address stays an address even when it is a pod's.
    by_address = next(row for row in rows if row["src"] == "10.244.2.20")
    assert by_address["dst"] == "10.244.2.30"
    assert by_address["ingress"]["decided_by"] == "default/shop/db[ingress[0]]"
    icmp = next(row for row in rows if row["protocol"] == "ICMP")
    assert icmp["port"] == 0 and icmp["allowed"] is False


def test_json_one_probe(run: Run) -> None:
    (row,) = evaluate_json(run, "--probe", "shop/backend-0", "shop/db-0", "5432/TCP")
    assert row["allowed"] is True
    assert row["egress"] == {"allowed": True, "decided_by": "default/shop/backend[egress[0]]"}
    assert row["ingress"] == {"allowed": True, "decided_by": "default/shop/db[ingress[0]]"}


def test_json_protocol_without_a_name_is_its_number(run: Run) -> None:
    (row,) = evaluate_json(run, "--probe", "tenant-b/web-0", "192.0.2.1", "0/47")
    assert (row["port"], row["protocol"], row["allowed"]) == (0, "47", True)
    (row,) = evaluate_json(run, "--probe", "shop/frontend-0", "2001:db8::1", "ICMPv6")
    assert (row["port"], row["protocol"], row["allowed"]) == (0, "ICMPv6", False)


def test_json_of_no_probes_is_an_empty_array(tmp_path: Path, run: Run) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("src,dst,port,protocol\n")
    assert evaluate_json(run, "--probes", empty) == []


def test_json_many_probes_keep_their_order(tmp_path: Path, run: Run) -> None:
    """More rows than one write chunk, with verdicts that alternate."""
    path = tmp_path / "many.csv"
    lines = ["src,dst,port,protocol"]
    for i in range(70_000):
        lines.append(f"shop/backend-{i % 2},shop/db-0,{5432 if i % 3 else 5433},TCP")
    path.write_text("\n".join(lines) + "\n")
    rows = evaluate_json(run, "--probes", path)
    assert len(rows) == 70_000
    for i in (0, 1, 2, 3, 65_535, 65_536, 69_999):
        assert rows[i]["src"] == f"shop/backend-{i % 2}"
        assert rows[i]["port"] == (5432 if i % 3 else 5433)
        assert rows[i]["allowed"] is bool(i % 3)


def test_table_is_the_default(run: Run) -> None:
    result = run("evaluate", "-f", SHOP, "--probes", SHOP_PROBES)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for header in ("src", "dst", "port/proto", "verdict", "egress by", "ingress by"):
        assert header in out
    lines = out.splitlines()
    row = next(line for line in lines if "tenant-b/web-0" in line and "169.254.169.254" in line)
    assert "80/TCP" in row and "DENIED" in row
    assert "adminnetworkpolicy/platform-guardrails[deny-cloud-metadata]" in row
    row = next(line for line in lines if line.startswith("shop/backend-0") and "ICMP" in line)
    assert "DENIED" in row
    assert lines[-1] == "11 allowed, 13 denied"
    assert "\x1b[" not in out  # not a terminal: no colors


def test_table_one_probe(run: Run) -> None:
    result = run("evaluate", "-f", SHOP, "--probe", "shop/frontend-0", "shop/backend-1", "8080")
    assert result.exit_code == 0, result.stderr
    assert "ALLOWED" in result.stdout
    assert "default/shop/frontend[egress[0]]" in result.stdout
    assert result.stdout.splitlines()[-1] == "1 allowed, 0 denied"


def test_repeated_file_options_and_directories(run: Run) -> None:
    files = ("-f", SHOP / "namespaces.yaml", "-f", SHOP / "pods.yaml", "-f", SHOP / "policies")
    result = run("evaluate", *files, *PROBE_JSON)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["allowed"] is False


def test_skipped_kinds_are_warned_about(tmp_path: Path, run: Run) -> None:
    extra = tmp_path / "service.yaml"
    extra.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frontend, namespace: shop}\n"
        "---\n"
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: shop}\n"
    )
    result = run("evaluate", "-f", SHOP, "-f", extra, *PROBE_JSON)
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["allowed"] is False  # stdout stays pure JSON
    assert result.stderr.splitlines() == [
        f"netwarden: warning: {extra}:1: skipped ConfigMap (v1): not a kind netwarden reads",
        f"netwarden: warning: {extra}:5: skipped Ingress (networking.k8s.io/v1): "
        "not a kind netwarden reads",
    ]


def test_probes_or_probe_but_not_both(run: Run) -> None:
    assert_input_error(run("evaluate", "-f", SHOP), "give either --probes")
    result = run(
        "evaluate",
        "-f",
        SHOP,
        "--probes",
        SHOP_PROBES,
        "--probe",
        "a/b-0",
        "c/d-0",
        "80",
    )
    assert_input_error(result, "give either --probes")

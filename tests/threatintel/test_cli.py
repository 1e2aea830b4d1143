"""`netwarden feeds sync|status|run|apply` and `netwarden threat check`, in-process, against
the example and a real HTTP feed server; bad input exits 2 with a located message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from netwarden.cli.main import app
from tests.cli.conftest import ENV, assert_input_error
from tests.threatintel.conftest import FeedServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "feeds"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=ENV)


def test_example_sync_status_and_check(tmp_path: Path) -> None:
    state = tmp_path / "state"
    synced = run("feeds", "sync", "-f", EXAMPLE, "--state-dir", state)
    assert synced.exit_code == 0, synced.stderr
    assert "demo-blocklist" in synced.stdout and "disabled" in synced.stdout
    assert "line 10: 'not-an-address'" in synced.stderr
    assert "line 8: 127.0.0.1/32 not blocked: overlaps loopback" in synced.stderr

    status = run("feeds", "status", "--state-dir", state, "-o", "json")
    by_name = {s["name"]: s for s in json.loads(status.stdout)}
    assert by_name["demo-blocklist"]["entries"] == 3
    assert by_name["demo-blocklist"]["withheld_count"] == 2
    assert by_name["vendor-feed"]["disabled"] is True

    checked = run(
        "threat",
        "check",
        "198.51.100.200",
        "203.0.113.5",
        "2001:db8:bad::9",
        "--state-dir",
        state,
        "-o",
        "json",
    )
    assert json.loads(checked.stdout) == {
        "198.51.100.200": ["demo-blocklist"],
        "203.0.113.5": [],
        "2001:db8:bad::9": ["demo-blocklist"],
    }
    table = run("threat", "check", "192.0.2.66", "example.org", "--state-dir", state)
    assert (
        table.exit_code == 0 and "demo-blocklist" in table.stdout and "not listed" in table.stdout
    )


def test_bad_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: netwarden.io/v1alpha1\nkind: ThreatFeed\nmetadata: {name: x}\nspec:\n  period: 3d\n  file: {path: a}\n"
    )
    assert_input_error(
        run("feeds", "sync", "-f", bad, "--state-dir", tmp_path), "bad.yaml:5:", "spec.period"
    )
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    assert_input_error(run("feeds", "sync", "-f", empty), "no GlobalThreatFeed or ThreatFeed")
    assert_input_error(
        run("feeds", "sync", "-f", EXAMPLE, "--protect", "10.0.0.0/99", "--state-dir", tmp_path),
        "--protect",
    )
    assert_input_error(
        run("threat", "check", "no such thing!", "--state-dir", tmp_path), "neither an IP"
    )


def feed_yaml(url: str, period: str = "24h") -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: GlobalThreatFeed
metadata: {{name: remote}}
spec:
  globalNetworkSet: {{labels: {{level: high}}}}
  pull:
    period: {period}
    http:
      url: {url}
"""


def test_failed_feed_exits_1_and_keeps_its_set(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.7\n")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feed_yaml(url))
    assert run("feeds", "sync", "-f", feeds, "--state-dir", tmp_path).exit_code == 0
    feed_server.routes["/list.txt"].status = 502
    failed = run("feeds", "sync", "-f", feeds, "--state-dir", tmp_path)
    assert failed.exit_code == 1 and "HTTP 502" in failed.stdout
    checked = run("threat", "check", "198.51.100.7", "--state-dir", tmp_path, "-o", "json")
    assert json.loads(checked.stdout) == {"198.51.100.7": ["remote"]}


def test_cluster_addresses_are_protected(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/list.txt", "10.244.1.5\n198.51.100.7\n")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feed_yaml(url))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop}\nstatus: {podIP: 10.244.1.5}\n"
    )
    result = run("feeds", "sync", "-f", feeds, "--cluster", cluster, "--state-dir", tmp_path)
    assert result.exit_code == 0
    assert "line 1: 10.244.1.5/32 not blocked: overlaps shop/web-0" in result.stderr


@pytest.mark.slow
def test_run_loop_with_short_period(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.7\n", etag='"a"')
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feed_yaml(url, period="200ms"))
    result = run("feeds", "run", "-f", feeds, "--state-dir", tmp_path, "--max-syncs", "3")
    assert result.exit_code == 0, result.stderr
    seen = feed_server.statuses("/list.txt")
    assert len(seen) == 3
    assert "If-None-Match" not in seen[0] and seen[1]["If-None-Match"] == '"a"'

"""Feeds removed from the configuration or disabled stop being in force: the state forgets
them (or sets their set aside), their network sets go, and what the dataplane would load,
`threat check` and the feed index no longer list them; `--no-prune` keeps them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner, Result

from netwarden.cli.feeds import ip_feed_sets
from netwarden.cli.main import app
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import FileSource, NewlineFormat
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, prune_feeds, sync_feed
from tests.cli.conftest import ENV


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=ENV)


def file_feed(tmp_path: Path, name: str, body: str, enabled: bool = True) -> ThreatFeed:
    path = tmp_path / f"{name}.txt"
    path.write_text(body)
    source = FileSource(str(path), NewlineFormat())
    return ThreatFeed(name, FeedContent.IP_SET, source, enabled=enabled, labels={"t": name})


def test_prune_removes_state_and_network_set(tmp_path: Path) -> None:
    store = FeedStore(tmp_path / "state")
    kept = file_feed(tmp_path, "kept", "198.51.100.7\n")
    gone = file_feed(tmp_path, "gone", "203.0.113.9\n")
    for feed in (kept, gone):
        assert sync_feed(feed, store, SyncOptions()).last_error is None
    orphan = store.network_set_dir / "threatfeed.orphan.yaml"  # a set without a feed folder
    orphan.write_text("apiVersion: projectcalico.org/v3\n")

    assert prune_feeds(store, {"kept"}) == ["gone", "orphan"]
    assert store.names() == ["kept"] and store.entries("gone") is None
    assert not (store.root / "feeds" / "gone").exists() and not orphan.exists()
    assert sorted(p.name for p in store.network_set_dir.iterdir()) == ["threatfeed.kept.yaml"]
    assert [f.name for f in ip_feed_sets(store)] == ["kept"]
    assert FeedIndex.from_store(store).check("203.0.113.9") == ()
    assert prune_feeds(store, {"kept"}) == []  # nothing left to remove


def test_disabled_feed_leaves_force_and_comes_back(tmp_path: Path) -> None:
    store = FeedStore(tmp_path / "state")
    feed = file_feed(tmp_path, "vendor", "198.51.100.0/24\n")
    other = file_feed(tmp_path, "other", "192.0.2.1\n")
    sync_feed(feed, store, SyncOptions())
    sync_feed(other, store, SyncOptions())
    network_set = store.network_set_path("vendor")
    assert network_set.is_file()

    disabled = replace(feed, enabled=False)
    status = sync_feed(disabled, store, SyncOptions())
    assert status.disabled and status.entries == 1  # the count of the set kept aside
    assert store.entries("vendor") is None and not network_set.exists()
    assert (store.feed_dir("vendor") / "disabled.txt").read_text() == "198.51.100.0/24\n"
    assert [f.name for f in ip_feed_sets(store)] == ["other"]  # the dataplane drops it
    assert FeedIndex.from_store(store).check("198.51.100.9") == ()  # not matched either

    # Enabled again while its source is unreadable: the set aside is back in force at once
    # (the last good set), and the failure is the feed's last error.
    Path(feed.source.path).unlink()  # type: ignore[union-attr]
    back = sync_feed(feed, store, SyncOptions())
    assert not back.disabled and back.last_error is not None and "cannot read" in back.last_error
    assert store.entries("vendor") == ["198.51.100.0/24"] and network_set.is_file()
    assert FeedIndex.from_store(store).check("198.51.100.9") == ("vendor",)


FEED = """apiVersion: netwarden.io/v1alpha1
kind: ThreatFeed
metadata: {{name: {name}}}
spec:
  mode: {mode}
  file: {{path: {name}.txt}}
"""


def write_config(folder: Path, **modes: str) -> Path:
    """One manifest holding a ThreatFeed per keyword (name=mode)."""
    folder.mkdir(exist_ok=True)
    for name in modes:
        (folder / f"{name}.txt").write_text(f"198.51.100.{len(name)}\n")
    config = folder / "feeds.yaml"
    config.write_text("---\n".join(FEED.format(name=n, mode=m) for n, m in modes.items()))
    return config


def test_cli_sync_prunes_unless_told_not_to(tmp_path: Path) -> None:
    state = tmp_path / "state"
    both = write_config(tmp_path / "both", alpha="Enabled", beta="Enabled")
    assert run("feeds", "sync", "-f", both, "--state-dir", state).exit_code == 0
    only_alpha = write_config(tmp_path / "one", alpha="Enabled")

    kept = run("feeds", "sync", "-f", only_alpha, "--state-dir", state, "--no-prune")
    assert kept.exit_code == 0 and "removed:" not in kept.stdout
    assert FeedStore(state).names() == ["alpha", "beta"]

    pruned = run("feeds", "sync", "-f", only_alpha, "--state-dir", state)
    assert pruned.exit_code == 0, pruned.stdout + pruned.stderr
    assert "removed: feed beta (no longer configured)" in pruned.stdout
    assert FeedStore(state).names() == ["alpha"]
    checked = run("threat", "check", "198.51.100.4", "--state-dir", state, "-o", "json")
    assert json.loads(checked.stdout) == {"198.51.100.4": []}  # beta's address

    # `feeds run` prunes and sets disabled feeds aside before its first pull.
    assert run("feeds", "sync", "-f", both, "--state-dir", state).exit_code == 0
    alpha_off = write_config(tmp_path / "off", alpha="Disabled")
    ran = run("feeds", "run", "-f", alpha_off, "--state-dir", state, "--max-syncs", "1")
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "removed: feed beta (no longer configured)" in ran.stdout
    store = FeedStore(state)
    assert store.names() == ["alpha"] and store.entries("alpha") is None
    status = store.status("alpha")
    assert status is not None and status.disabled

    # A configuration without any feed is an error, and prunes nothing.
    empty = tmp_path / "empty.yaml"
    empty.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
    assert run("feeds", "sync", "-f", empty, "--state-dir", state).exit_code == 2
    assert FeedStore(state).names() == ["alpha"]

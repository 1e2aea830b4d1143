"""The threat table's pure parts (no root): how entries split into hash and interval sets, the
script's shape, the update script, and the snapshot file."""

from __future__ import annotations

from pathlib import Path

from netwarden.dataplane.threat_block import (
    FeedSets,
    ThreatBlocker,
    render_table,
    render_update,
)


def test_entries_split_into_hash_and_interval_sets() -> None:
    sets = FeedSets.from_entries(
        "f",
        [
            "192.0.2.1/32",
            "192.0.2.4/30",
            "198.51.100.0/28",
            "2001:db8::1",
            "2001:db8::/127",
            "2001:db8:1::/48",
        ],
    )
    assert sets.addr4 == ("192.0.2.1", "192.0.2.4", "192.0.2.5", "192.0.2.6", "192.0.2.7")
    assert sets.nets4 == ("198.51.100.0/28",)
    assert sets.addr6 == ("2001:db8::1", "2001:db8::", "2001:db8::1")
    assert sets.nets6 == ("2001:db8:1::/48",)


def test_update_touches_only_what_changed_and_renames_the_marker() -> None:
    old = [FeedSets("f", ("192.0.2.1", "192.0.2.2"), ("10.0.0.0/8",))]
    new = [FeedSets("f", ("192.0.2.2", "192.0.2.3"), ("10.0.0.0/8",))]
    update = render_update(old, new, "t2")
    assert update is not None and update.changed == 2
    assert update.script.splitlines() == [
        "delete set inet netwarden_threat loaded",
        'add set inet netwarden_threat loaded { type ipv4_addr; comment "t2"; }',
        "delete element inet netwarden_threat f0_addr4 { 192.0.2.1 }",
        "add element inet netwarden_threat f0_addr4 { 192.0.2.3 }",
    ]
    assert render_update(old, [FeedSets("g")], "t3") is None  # other feeds: whole table
    script = render_table(new, "t1")
    assert script.startswith(
        "add table inet netwarden_threat\ndelete table inet netwarden_threat\n"
    )
    assert 'comment "t1"' in script
    assert script.count("drop comment") == 16  # 4 sets x (forward both ways, input, output)


def test_snapshot_round_trip(tmp_path: Path) -> None:
    blocker = ThreatBlocker(None, tmp_path / "snapshot")
    feeds = [
        FeedSets.from_entries("a.b", ["::1", "::/64", "10.0.0.0/8", "1.2.3.4"]),
        FeedSets("empty"),
    ]
    blocker._save("token", feeds)
    assert blocker._snapshot() == ("token", feeds)
    (tmp_path / "snapshot").write_text("token\n@a.b\n=addr4\n1.2.3.4")  # cut short
    assert blocker._snapshot() is None

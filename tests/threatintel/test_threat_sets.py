"""The threat table's pure parts (no root): how entries split into hash and interval sets, the
script's shape (named counters per feed and direction), the update script (elements only, or
feeds coming and going without touching the others' sets), and the snapshot file."""

from __future__ import annotations

from pathlib import Path

from netwarden.dataplane.threat_block import (
    FeedSets,
    Loaded,
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
    assert update.changed == 2 and (update.added, update.removed) == ((), ())
    assert update.script.splitlines() == [
        "delete set inet netwarden_threat loaded",
        'add set inet netwarden_threat loaded { type ipv4_addr; comment "t2"; }',
        "delete element inet netwarden_threat f0_addr4 { 192.0.2.1 }",
        "add element inet netwarden_threat f0_addr4 { 192.0.2.3 }",
    ]
    script = render_table(new, "t1")
    assert script.startswith(
        "add table inet netwarden_threat\ndelete table inet netwarden_threat\n"
    )
    assert 'comment "t1"' in script
    assert script.count("drop comment") == 16  # 4 sets x (forward both ways, input, output)
    assert '\tcounter c0_from { comment "threatfeed/f from"; }' in script
    assert script.count('counter name "c0_to"') == 8  # forward and output, 4 sets each


def test_feeds_that_come_and_go_change_rules_not_the_others_sets() -> None:
    kept = FeedSets("kept", ("192.0.2.1",))
    old = [FeedSets("gone", ("198.51.100.1",), ("203.0.113.0/24",)), kept]
    new = [kept, FeedSets("new", ("198.51.100.9",))]
    update = render_update(old, new, "t3", {"gone": 0, "kept": 1})
    assert (update.added, update.removed) == (("new",), ("gone",))
    assert update.slots == {"kept": 1, "new": 2}  # kept keeps its sets; a fresh slot for new
    assert update.changed == 3  # one element in, two out with the sets
    lines = update.script.splitlines()
    table = "inet netwarden_threat"
    assert f'add counter {table} c2_from {{ comment "threatfeed/new from"; }}' in lines
    assert (
        f'add set {table} f2_nets4 {{ type ipv4_addr; flags interval; comment "threatfeed/new"; }}'
        in lines
    )
    assert f"add element {table} f2_addr4 {{ 198.51.100.9 }}" in lines
    # No element of the kept feed is touched, and its sets are never deleted.
    assert not [line for line in lines if "f1_" in line and "rule" not in line]
    # The rules are written again after the new sets exist, and the gone feed's sets and
    # counters are deleted last, once no rule refers to them.
    flush = lines.index(f"flush chain {table} forward")
    assert (
        lines.index(f'add set {table} f2_addr4 {{ type ipv4_addr; comment "threatfeed/new"; }}')
        < flush
    )
    assert lines.index(f"delete set {table} f0_nets4") > lines.index(f"flush chain {table} output")
    assert lines[-1] == f"delete counter {table} c0_to"
    rules = [line for line in lines if line.startswith(f"add rule {table} forward")]
    assert len(rules) == 16 and all("@f1_" in r or "@f2_" in r for r in rules)
    assert not any("@f0_" in line for line in lines if "rule" in line)


def test_snapshot_round_trip(tmp_path: Path) -> None:
    blocker = ThreatBlocker(None, tmp_path / "snapshot")
    feeds = [
        FeedSets.from_entries("a.b", ["::1", "::/64", "10.0.0.0/8", "1.2.3.4"]),
        FeedSets("empty"),
    ]
    loaded = Loaded("token", feeds, {"a.b": 3, "empty": 7})
    blocker._save(loaded)
    assert blocker._snapshot() == loaded
    (tmp_path / "snapshot").write_text("token\n@3 a.b\n=addr4\n1.2.3.4")  # cut short
    assert blocker._snapshot() is None
    (tmp_path / "snapshot").write_text("token\n@a.b\n=addr4\n1.2.3.4\n")  # no slots
    assert blocker._snapshot() is None

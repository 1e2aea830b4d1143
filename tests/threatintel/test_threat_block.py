"""The threat table in real nftables (root): the script checks with `nft -c`, loads, updates
by difference with no gap, keeps the last good table on error, adds and drops whole feeds in
one transaction, counts per feed over netlink; and in a real lab, traffic from a pod to an
address in a feed is dropped after sync and allowed again once it leaves the feed, once its
feed leaves the configuration, or once its feed is disabled."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from netwarden.cli.feeds import apply_dataplane
from netwarden.cli.main import app
from netwarden.dataplane.apply import check_ruleset
from netwarden.dataplane.lab import apply_lab, destroy_lab
from netwarden.dataplane.lab_plan import ExternalSpec, ServedPort, plan_lab
from netwarden.dataplane.lab_probe import ProbeResult, run_probes
from netwarden.dataplane.netns import entered
from netwarden.dataplane.threat_block import TABLE, FeedSets, ThreatBlocker, render_table
from netwarden.dialects import load_text
from netwarden.engine.batch import Probe
from netwarden.errors import ApplyError
from netwarden.model import TCP, FeedContent, ThreatFeed
from netwarden.model.feeds import HttpSource, NewlineFormat
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.cli.conftest import ENV
from tests.dataplane.conftest import TEST_PREFIX
from tests.threatintel.conftest import FeedServer


def run_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=ENV)


pytestmark = pytest.mark.root


@pytest.fixture
def scratch_netns() -> Iterator[str]:
    name = f"nwtf{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft(netns: str, *arguments: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def elements(netns: str, set_name: str) -> str:
    return nft(netns, "list", "set", "inet", TABLE, set_name)


FEEDS = [
    FeedSets.from_entries("blocklist", ["198.51.100.7/32", "203.0.113.0/24", "2001:db8::1/128"]),
    FeedSets.from_entries("tor.exits", ["192.0.2.9/32", "2001:db8:1::/48"]),
]


def test_table_layout_and_check(scratch_netns: str) -> None:
    script = render_table(FEEDS)
    check_ruleset(scratch_netns, script)
    assert "type filter hook forward priority filter - 10; policy accept;" in script
    assert (
        'ip saddr @f0_addr4 counter name "c0_from" log prefix "threatfeed/blocklist " group 1 drop'
        in script
    )
    assert 'ip6 daddr @f1_nets6 counter name "c1_to" log prefix "threatfeed/tor.exits "' in script
    assert FEEDS[0].addr4 == ("198.51.100.7",) and FEEDS[0].nets4 == ("203.0.113.0/24",)


def test_load_update_by_difference_and_failed_update(scratch_netns: str, tmp_path: Path) -> None:
    blocker = ThreatBlocker(scratch_netns, tmp_path / "snapshot.json")
    first = blocker.apply(FEEDS)
    assert first.full and first.elements == 5
    assert "198.51.100.7" in elements(scratch_netns, "f0_addr4")
    assert "2001:db8:1::/48" in elements(scratch_netns, "f1_nets6")

    changed = [
        FeedSets.from_entries(
            "blocklist", ["198.51.100.8/32", "203.0.113.0/24", "2001:db8::1/128"]
        ),
        FEEDS[1],
    ]
    update = blocker.apply(changed)
    assert not update.full and update.changed == 2
    listed = elements(scratch_netns, "f0_addr4")
    assert "198.51.100.8" in listed and "198.51.100.7" not in listed

    broken = [FeedSets("blocklist", addr4=("198.51.100.8", "999.0.0.1")), FEEDS[1]]
    with pytest.raises(ApplyError, match="previous ruleset is still in place"):
        blocker.apply(broken)
    assert "198.51.100.8" in elements(scratch_netns, "f0_addr4")
    again = blocker.apply(changed)  # the snapshot was dropped: the whole table is reloaded
    assert again.full

    other = ThreatBlocker(scratch_netns, tmp_path / "other.json")  # another process loads
    assert other.apply(FEEDS).full
    assert blocker.apply(changed).full, "the table is not the snapshot's: reload it whole"
    assert not blocker.apply(FEEDS).full

    # A whole-table load with a bad element fails as one transaction: the old table stays.
    fresh = ThreatBlocker(scratch_netns, tmp_path / "fresh.json")
    with pytest.raises(ApplyError, match=r"999\.0\.0\.1"):
        fresh.apply([FeedSets("blocklist", addr4=("198.51.100.99", "999.0.0.1")), FEEDS[1]])
    assert "198.51.100.99" not in elements(scratch_netns, "f0_addr4")
    assert "198.51.100.7" in elements(scratch_netns, "f0_addr4")

    # A feed goes away: its sets and counters go in one transaction, the other's stay.
    fewer = blocker.apply([FEEDS[1]])
    assert not fewer.full and fewer.removed == ("blocklist",) and fewer.changed == 3
    listed = nft(scratch_netns, "-t", "list", "table", "inet", TABLE)
    assert "f0_addr4" not in listed and "c0_from" not in listed
    assert "192.0.2.9" in elements(scratch_netns, "f1_addr4")
    back = blocker.apply(FEEDS)  # and comes back in a fresh slot
    assert not back.full and back.added == ("blocklist",)
    assert "198.51.100.8" not in elements(scratch_netns, "f2_addr4")
    assert "198.51.100.7" in elements(scratch_netns, "f2_addr4")
    blocker.remove()
    assert not blocker.exists()


def test_counters_by_feed_and_direction_survive_another_feed_leaving(
    scratch_netns: str, tmp_path: Path
) -> None:
    """Datagrams to listed addresses leave the namespace through the output hook: they are
    dropped and counted per feed; removing one feed keeps the other's counts."""
    subprocess.run(["ip", "-n", scratch_netns, "link", "set", "lo", "up"], check=True)
    for net in ("192.0.2.0/24", "198.51.100.0/24"):
        subprocess.run(["ip", "-n", scratch_netns, "route", "add", net, "dev", "lo"], check=True)
    blocker = ThreatBlocker(scratch_netns, tmp_path / "snapshot")
    assert blocker.counters() == {}  # no table yet
    blocker.apply(FEEDS)

    def send(address: str, count: int) -> None:
        """UDP datagrams of 12 bytes (40 bytes of IPv4), sent from inside the namespace."""
        with entered(scratch_netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            for _ in range(count):
                with pytest.raises(PermissionError):  # the output hook dropped it
                    sock.sendto(b"threat-probe", (address, 9))

    send("192.0.2.9", 3)  # tor.exits
    send("198.51.100.7", 2)  # blocklist
    counts = blocker.counters()
    assert counts[("tor.exits", "to")][0] == 3 and counts[("blocklist", "to")][0] == 2
    assert counts[("tor.exits", "from")] == (0, 0)
    assert counts[("tor.exits", "to")][1] == 3 * 40  # 20 IPv4 + 8 UDP + 12 bytes

    blocker.apply([FEEDS[1]])
    after = blocker.counters()
    assert ("blocklist", "to") not in after
    assert after[("tor.exits", "to")] == counts[("tor.exits", "to")]


LAB_CLUSTER = """
apiVersion: v1
kind: Node
metadata: {name: worker-1}
status: {addresses: [{type: InternalIP, address: 172.31.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop}
spec: {nodeName: worker-1, containers: [{name: web, ports: [{containerPort: 80}]}]}
status: {podIP: 10.244.0.5}
"""
BAD = IPv4Address("203.0.113.7")
GOOD = IPv4Address("203.0.113.80")


@pytest.mark.slow
def test_lab_pod_to_feed_address_dropped_then_allowed(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    cluster = load_text(LAB_CLUSTER).cluster
    port = ServedPort(443, TCP)
    plan = plan_lab(
        cluster,
        "tfeed",
        externals=[ExternalSpec(BAD, (port,)), ExternalSpec(GOOD, (port,))],
        prefix=TEST_PREFIX,
    )
    node_netns = next(node.netns for node in plan.nodes if node.name == "worker-1")
    store = FeedStore(tmp_path / "state")
    url = feed_server.serve("/list.txt", f"{BAD}\n198.51.100.0/24\n")
    feed = ThreatFeed("blocklist", FeedContent.IP_SET, HttpSource(url, NewlineFormat()))
    probes = [Probe("shop/web-0", str(BAD), 443, TCP), Probe("shop/web-0", str(GOOD), 443, TCP)]
    labs = tmp_path / "labs"
    destroy_lab(plan.name, TEST_PREFIX, labs)
    try:
        apply_lab(plan, labs)
        before = run_probes(plan, probes, timeout=2)
        assert [o.result for o in before] == [ProbeResult.CONNECTED, ProbeResult.CONNECTED]

        sync_feed(feed, store, SyncOptions())
        apply_dataplane(store, node_netns)
        blocked = run_probes(plan, probes, timeout=1)
        assert [o.result for o in blocked] == [ProbeResult.TIMEOUT, ProbeResult.CONNECTED]
        counters = ThreatBlocker(node_netns, tmp_path / "unused.json").counters()
        assert counters[("blocklist", "to")][0] >= 1

        feed_server.serve("/list.txt", "198.51.100.0/24\n")  # the entry left the feed
        status = sync_feed(feed, store, SyncOptions())
        assert (status.added, status.removed) == (0, 1)
        apply_dataplane(store, node_netns)
        after = run_probes(plan, probes, timeout=2)
        assert [o.result for o in after] == [ProbeResult.CONNECTED, ProbeResult.CONNECTED]
    finally:
        destroy_lab(plan.name, TEST_PREFIX, labs)


def calico_feed(name: str, url: str, mode: str = "Enabled") -> str:
    return (
        f"apiVersion: projectcalico.org/v3\nkind: GlobalThreatFeed\nmetadata: {{name: {name}}}\n"
        f"spec:\n  mode: {mode}\n  pull:\n    http: {{url: '{url}'}}\n"
    )


@pytest.mark.slow
def test_lab_removed_and_disabled_feeds_stop_blocking(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    other = IPv4Address("198.51.100.20")
    port = ServedPort(443, TCP)
    plan = plan_lab(
        load_text(LAB_CLUSTER).cluster,
        "tprune",
        externals=[ExternalSpec(BAD, (port,)), ExternalSpec(other, (port,))],
        prefix=TEST_PREFIX,
    )
    node_netns = next(node.netns for node in plan.nodes if node.name == "worker-1")
    blocklist = feed_server.serve("/blocklist.txt", f"{BAD}\n")
    tor_exits = feed_server.serve("/tor.txt", f"{other}\n192.0.2.0/24\n")
    both, one, disabled = (tmp_path / f"{n}.yaml" for n in ("both", "one", "disabled"))
    both.write_text(
        calico_feed("blocklist", blocklist) + "---\n" + calico_feed("tor-exits", tor_exits)
    )
    one.write_text(calico_feed("blocklist", blocklist))
    disabled.write_text(calico_feed("blocklist", blocklist, mode="Disabled"))
    dataplane = ["--state-dir", tmp_path / "state", "--netns", node_netns]
    probes = [Probe("shop/web-0", str(BAD), 443, TCP), Probe("shop/web-0", str(other), 443, TCP)]
    labs = tmp_path / "labs"
    destroy_lab(plan.name, TEST_PREFIX, labs)
    try:
        apply_lab(plan, labs)
        synced = run_cli("feeds", "sync", "-f", both, "--apply", *dataplane)
        assert synced.exit_code == 0, synced.stdout + synced.stderr
        blocked = run_probes(plan, probes, timeout=1)
        assert [o.result for o in blocked] == [ProbeResult.TIMEOUT, ProbeResult.TIMEOUT]
        blocker = ThreatBlocker(node_netns, tmp_path / "unused.json")
        before = blocker.counters()[("blocklist", "to")]
        assert before[0] >= 1

        # tor-exits leaves the configuration: its address is reachable again, blocklist's
        # address stays blocked (its sets and counters untouched by the transaction).
        pruned = run_cli("feeds", "sync", "-f", one, "--apply", *dataplane)
        assert pruned.exit_code == 0, pruned.stdout + pruned.stderr
        assert "removed: feed tor-exits (no longer configured)" in pruned.stdout
        assert "removed the sets of tor-exits" in pruned.stdout
        after = run_probes(plan, probes, timeout=2)
        assert [o.result for o in after] == [ProbeResult.TIMEOUT, ProbeResult.CONNECTED]
        counts = blocker.counters()
        assert counts[("blocklist", "to")][0] > before[0]  # kept counting across the change
        assert ("tor-exits", "to") not in counts

        # blocklist set to mode Disabled: nothing pulled, nothing blocked any more.
        pulls = len(feed_server.statuses("/blocklist.txt"))
        applied = run_cli("feeds", "apply", "-f", disabled, *dataplane)
        assert applied.exit_code == 0, applied.stdout + applied.stderr
        assert "removed the sets of blocklist" in applied.stdout
        assert len(feed_server.statuses("/blocklist.txt")) == pulls
        free = run_probes(plan, probes, timeout=2)
        assert [o.result for o in free] == [ProbeResult.CONNECTED, ProbeResult.CONNECTED]
    finally:
        destroy_lab(plan.name, TEST_PREFIX, labs)


def test_cli_run_with_apply_then_remove(
    feed_server: FeedServer, scratch_netns: str, tmp_path: Path
) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.7\n192.0.2.0/24\n")
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        "apiVersion: projectcalico.org/v3\nkind: GlobalThreatFeed\nmetadata: {name: remote}\n"
        f"spec:\n  pull:\n    period: 100ms\n    http: {{url: '{url}'}}\n"
    )
    state = tmp_path / "state"
    args = ["--state-dir", state, "--netns", scratch_netns]
    ran = run_cli("feeds", "run", "-f", feeds, "--apply", "--max-syncs", "2", *args)
    assert ran.exit_code == 0, ran.stderr
    assert "198.51.100.7" in elements(scratch_netns, "f0_addr4")
    assert "192.0.2.0/24" in elements(scratch_netns, "f0_nets4")
    removed = run_cli("feeds", "apply", "--remove", *args)
    assert removed.exit_code == 0, removed.stderr
    assert f"table inet {TABLE}" not in nft(scratch_netns, "list", "tables")

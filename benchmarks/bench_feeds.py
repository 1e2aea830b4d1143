"""Threat feeds at scale: parse + aggregate, dataplane load and update, bulk matching.

    sudo .venv/bin/python benchmarks/bench_feeds.py              # 1,000,000 entries, 10M flows
    sudo .venv/bin/python benchmarks/bench_feeds.py --runs 5
    sudo .venv/bin/python benchmarks/bench_feeds.py --quick      # smoke run, a few seconds

A seeded feed of `--entries` lines (`generate_feed`): single IPv4 addresses over the unicast
space, some in runs of neighbours, 10% repeats, 2% prefixes /20-/30 (half containing a listed
address), 2% IPv6. Figures are medians of `--runs`; each names the
peer it is compared with, measured in the same run:

- parse + aggregate (targets < 5 s for 1M): the `feeds sync` path (`parse_body`, the safety
  check against loopback / link-local, `aggregate`); peer `ipaddress.collapse_addresses`
  over `ip_network` objects (the standard library doing the same job).
- dataplane load (targets < 10 s and < 1 GB): the aggregated set into `table inet
  netwarden_threat` of a scratch network namespace (`ThreatBlocker.apply`: `nft -c`, then
  `nft -f`); nft's peak RSS measured with `wait4` on a separate `nft -f` of the same script
  (timed too: nft alone, without the check).
- incremental update: 100 addresses leave and 100 come (`ThreatBlocker.apply` by
  difference); peer: a full reload of the same table.
- counters: `ThreatBlocker.counters()` on the loaded table (named counters per feed and
  direction, read over netlink); peer: the old way, `nft list chain` of the three base
  chains (what `counters()` ran before), which makes nft 1.0.6 fetch every set element.
  The peer runs once: at a million elements it takes tens of seconds.
- matching (target > 10 M lookups/s): `FeedIndex.lookup` over `--flows` random IPv4
  addresses as uint32 (10% of them listed); peer: a Python `set` of the listed single
  addresses and an `in` loop (which cannot even see prefixes), rate measured on 1,000,000
  addresses. Then the text path, timed on its own: `address_columns` turning an Arrow string
  column of up to 2,000,000 dotted quads into uint32 keys; peer: `socket.inet_pton` row by
  row over Python strings (what it did before), also with the column's `to_pylist` added,
  since flow columns arrive from the store as Arrow.

Wall times are printed with the CPU seconds behind them: on a shared machine the first also
counts waiting for a core. The namespace is `nwbf<pid>` and is removed on exit, whatever
happens. Without root the dataplane part is skipped (and said so).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netwarden.dataplane.threat_block import (
    TABLE,
    Applied,
    FeedSets,
    ThreatBlocker,
    render_table,
)
from netwarden.model import FeedContent
from netwarden.model.feeds import NewlineFormat
from netwarden.threatintel.aggregate import aggregate
from netwarden.threatintel.check import FeedIndex
from netwarden.threatintel.match import address_columns
from netwarden.threatintel.parse import parse_body
from netwarden.threatintel.safety import protected_nets, withhold

T = TypeVar("T")
NETNS = f"nwbf{os.getpid() % 100000}"


#: CPU seconds (this process and its children) of the last `timed` call's median run: on a
#: shared machine wall time also counts waiting for a core, CPU time does not.
LAST_CPU = 0.0


def timed(runs: int, work: Callable[[], T]) -> tuple[float, T]:
    """Median wall seconds of `runs` calls (CPU seconds of that run in LAST_CPU)."""
    global LAST_CPU
    samples: list[tuple[float, float]] = []
    result: T | None = None
    for _ in range(runs):
        cpu = _cpu()
        started = time.perf_counter()
        result = work()
        samples.append((time.perf_counter() - started, _cpu() - cpu))
    assert result is not None
    samples.sort()
    wall, LAST_CPU = samples[len(samples) // 2]
    return wall, result


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def generate_feed(entries: int, seed: int) -> str:
    """The seeded feed body (one entry per line), shaped like a real block list: mostly
    single addresses spread over the unicast space, some in runs of neighbours, 10% repeats,
    2% prefixes (/20 to /30, half of them around a listed address, so they contain it) and
    2% IPv6."""
    rng = random.Random(seed)
    lines: list[str] = []
    last = 0x0B000000
    for _ in range(entries):
        pick = rng.random()
        if pick < 0.10 and lines:
            lines.append(lines[rng.randrange(len(lines))])
            continue
        if pick < 0.12:
            anchor = last if rng.random() < 0.5 else _unicast(rng)
            lines.append(f"{ipaddress.IPv4Address(anchor)}/{rng.choice([20, 24, 24, 28, 29, 30])}")
            continue
        if pick < 0.14:
            value = (0x20010DB8 << 96) | rng.getrandbits(48) << 64 | rng.getrandbits(16)
            lines.append(str(ipaddress.IPv6Address(value)))
            continue
        last = last + 1 if pick < 0.30 else _unicast(rng)  # a run of neighbours, or anywhere
        lines.append(str(ipaddress.IPv4Address(last & 0xFFFFFFFF)))
    return "\n".join(lines) + "\n"


def _unicast(rng: random.Random) -> int:
    """A random address outside loopback, link-local and multicast: the safety check would
    withhold those, and the peer (which has no such check) must find the same set."""
    while True:
        value = rng.randrange(0x01000000, 0xE0000000)
        if value >> 24 != 127 and value >> 16 != 0xA9FE:
            return value


def sync_path(body: str) -> list[str]:
    """What `feeds sync` does with a body: parse, withhold protected entries, aggregate."""
    parsed = parse_body(body, NewlineFormat(), FeedContent.IP_SET)
    protected = protected_nets()
    entries: list[str] = []
    for prefixes in (parsed.v4, parsed.v6):
        kept, _ = withhold(prefixes, protected)
        entries += aggregate(kept).cidrs()
    return entries


def collapse_peer(body: str) -> int:
    networks = [ipaddress.ip_network(line, strict=False) for line in body.split()]
    v4 = ipaddress.collapse_addresses(n for n in networks if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in networks if n.version == 6)
    return len(list(v4)) + len(list(v6))


@contextmanager
def scratch_netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], check=False)


#: Run by a fresh small interpreter: a child forked from this (large) process would report
#: this process's memory as its own peak, since the kernel's maximum RSS survives `exec`.
_MEASURE = """
import os, subprocess, sys
process = subprocess.Popen(["ip", "netns", "exec", sys.argv[1], "nft", "-f", sys.argv[2]])
_, status, usage = os.wait4(process.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def nft_peak_rss(netns: str, script: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `nft -f` of `script` in `netns` (wait4 rusage)."""
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as handle:
        handle.write(script)
    try:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, netns, handle.name],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
        code, kilobytes = (int(x) for x in done.stdout.split())
        if code != 0:
            raise RuntimeError("nft failed to load the benchmark table")
        return seconds, kilobytes / 1024
    finally:
        Path(handle.name).unlink()


def dataplane(entries: list[str], runs: int, rng: random.Random) -> None:
    feeds = [FeedSets.from_entries("bench", entries)]
    singles = len(feeds[0].addr4) + len(feeds[0].addr6)
    print(
        f"  sets: {singles:,} single addresses (hash), "
        f"{len(feeds[0].nets4) + len(feeds[0].nets6):,} prefixes (interval)"
    )
    with scratch_netns() as netns, tempfile.TemporaryDirectory() as folder:
        seconds, rss = nft_peak_rss(netns, render_table(feeds))
        print(
            f"  nft -f of the whole table: {seconds:.2f} s, nft peak RSS {rss:.0f} MB "
            f"(target < 1024 MB)"
        )
        snapshot = Path(folder) / "snapshot.json"

        def full_load() -> Applied:
            snapshot.unlink(missing_ok=True)
            return ThreatBlocker(netns, snapshot).apply(feeds)

        load, _ = timed(runs, full_load)
        load_cpu = LAST_CPU
        print(
            f"  load (nft -c + nft -f, whole table): {load:.2f} s ({load_cpu:.2f} s CPU) "
            "(target < 10 s)"
        )

        blocker = ThreatBlocker(netns, snapshot)
        # The versions are made beforehand: the figure is the blocker's work alone.
        versions = []
        current = list(feeds[0].addr4)
        for _ in range(runs):
            gone = set(rng.sample(current, 100))
            came = {str(ipaddress.IPv4Address(_unicast(rng))) for _ in range(100)}
            current = [a for a in current if a not in gone] + sorted(came - set(current))
            versions.append(
                FeedSets("bench", tuple(current), feeds[0].nets4, feeds[0].addr6, feeds[0].nets6)
            )

        def update() -> Applied:
            applied = blocker.apply([versions.pop(0)])
            assert not applied.full
            return applied

        incremental, _ = timed(runs, update)
        update_cpu = LAST_CPU
        reload_seconds, _ = timed(runs, full_load)
        print(
            f"  update, 100 out + 100 in: {incremental * 1000:.0f} ms "
            f"({update_cpu * 1000:.0f} ms CPU); peer full reload "
            f"{reload_seconds:.2f} s; ratio {reload_seconds / incremental:.0f}x"
        )
        counters(netns, snapshot, runs)


def counters(netns: str, snapshot: Path, runs: int) -> None:
    """`counters()` now against the old way (listing the base chains), same table."""
    blocker = ThreatBlocker(netns, snapshot)
    seconds, found = timed(max(runs, 5), blocker.counters)
    assert ("bench", "to") in found, found

    def list_chains() -> int:
        listed = 0
        for hook in ("forward", "input", "output"):
            done = subprocess.run(
                ["ip", "netns", "exec", netns, "nft", "list", "chain", "inet", TABLE, hook],
                capture_output=True,
                text=True,
                check=True,
            )
            listed += done.stdout.count("counter")
        return listed

    peer_seconds, listed = timed(1, list_chains)
    peer_cpu = LAST_CPU
    assert listed > 0
    print(
        f"  counters(): {seconds * 1000:.1f} ms (netlink, {len(found)} named counters); "
        f"peer the old way, nft list chain x3: {peer_seconds:.1f} s ({peer_cpu:.1f} s CPU); "
        f"ratio {peer_seconds / seconds:,.0f}x"
    )


def matching(entries: list[str], flows: int, rng_seed: int) -> None:
    index = FeedIndex.from_sets({"bench": entries})
    rng = np.random.default_rng(rng_seed)
    listed = [int(ipaddress.IPv4Address(e.split("/")[0])) for e in entries if ":" not in e]
    addresses = rng.integers(0, 2**32, flows, dtype=np.uint64).astype(np.uint32)
    hits = rng.random(flows) < 0.10
    addresses[hits] = np.array(listed, dtype=np.uint32)[
        rng.integers(0, len(listed), int(hits.sum()))
    ]
    seconds, masks = timed(3, lambda: index.lookup(addresses))
    rate = flows / seconds
    cpu_rate = flows / LAST_CPU
    singles = {int(ipaddress.IPv4Address(e.split("/")[0])) for e in entries if e.endswith("/32")}
    sample = addresses[: min(flows, 1_000_000)].tolist()
    peer_seconds, _ = timed(1, lambda: sum(1 for a in sample if a in singles))
    peer_rate = len(sample) / peer_seconds
    peer_cpu_rate = len(sample) / LAST_CPU
    print(
        f"  FeedIndex.lookup: {flows:,} addresses in {seconds:.2f} s = {rate / 1e6:.1f} M/s "
        f"({cpu_rate / 1e6:.1f} M/s of CPU) (target > 10 M/s), "
        f"{int((masks != 0).sum()):,} listed"
    )
    print(
        f"  peer Python set + in loop: {peer_rate / 1e6:.1f} M/s ({peer_cpu_rate / 1e6:.1f} M/s "
        f"of CPU; exact addresses only); ratio {rate / peer_rate:.1f}x "
        f"({cpu_rate / peer_cpu_rate:.1f}x of CPU)"
    )
    texts = _dotted_quads(addresses[: min(flows, 2_000_000)])
    parse_seconds, parsed = timed(3, lambda: address_columns(texts))
    parse_cpu = LAST_CPU
    assert np.array_equal(parsed.keys4, addresses[: len(texts)])
    pylist_seconds, strings = timed(1, texts.to_pylist)
    pylist_cpu = LAST_CPU
    pton = socket.inet_pton
    pton_seconds, _ = timed(
        1, lambda: [int.from_bytes(pton(socket.AF_INET, text), "big") for text in strings]
    )
    pton_cpu = LAST_CPU
    count = len(texts)
    print(
        f"  address_columns (Arrow text -> uint32): {count:,} addresses = "
        f"{count / parse_seconds / 1e6:.1f} M/s ({count / parse_cpu / 1e6:.1f} M/s of CPU); "
        f"peer inet_pton loop over Python strings {count / pton_seconds / 1e6:.1f} M/s "
        f"({count / pton_cpu / 1e6:.1f} M/s of CPU), with the column's to_pylist first "
        f"{count / (pton_seconds + pylist_seconds) / 1e6:.1f} M/s "
        f"({count / (pton_cpu + pylist_cpu) / 1e6:.1f} M/s of CPU); ratio "
        f"{(pton_seconds + pylist_seconds) / parse_seconds:.1f}x "
        f"({(pton_cpu + pylist_cpu) / parse_cpu:.1f}x of CPU)"
    )


def _dotted_quads(addresses: np.ndarray) -> pa.Array:
    """uint32 addresses as an Arrow string column, built by Arrow (no Python string each)."""
    octets = [
        pc.cast(pa.array((addresses >> np.uint32(shift)) & np.uint32(255)), pa.string())
        for shift in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*octets, ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20,000 entries, 200,000 flows")
    args = parser.parse_args(argv)
    # `kill` must still remove the scratch namespace: SIGTERM unwinds like an exception.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        return run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.entries, args.flows, args.runs = 20_000, 200_000, 1
    rng = random.Random(args.seed)
    body = generate_feed(args.entries, args.seed)
    print(f"feed: {args.entries:,} lines, {len(body) / 1e6:.1f} MB")

    seconds, entries = timed(args.runs, lambda: sync_path(body))
    cpu = LAST_CPU
    peer_seconds, peer_count = timed(1, lambda: collapse_peer(body))
    peer_cpu = LAST_CPU
    assert peer_count == len(entries), (peer_count, len(entries))
    print(
        f"parse + aggregate: {seconds:.2f} s ({cpu:.2f} s CPU) -> {len(entries):,} CIDRs "
        "(target < 5 s); "
        f"peer ipaddress.collapse_addresses {peer_seconds:.2f} s ({peer_cpu:.2f} s CPU); "
        f"ratio {peer_seconds / seconds:.1f}x ({peer_cpu / cpu:.1f}x of CPU)"
    )

    print("dataplane:")
    if os.geteuid() != 0:
        print("  skipped: needs root (network namespaces)")
    else:
        dataplane(entries, args.runs, rng)
    print("matching:")
    matching(entries, args.flows, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

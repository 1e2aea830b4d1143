"""Threat feeds in the dataplane: `table inet netwarden_threat`, ahead of every policy.

Base chains on the forward, input and output hooks at priority `filter - 10`, before
netwarden's policy chains (`filter`, `filter + 10`): a packet from or to a listed address is
dropped before any allow can accept it, whatever the tiers say, established or not. Every
rule counts into a named counter per feed and direction (`c<N>_from`, `c<N>_to`, commented
`threatfeed/<name> from|to`), logs to NFLOG group 1 with the prefix `threatfeed/<name> `
(what the flow collector reads), and has a comment naming feed and direction.

Per feed and family two named sets, because nftables costs differ by set kind (measured with
nft 1.0.6): single addresses go into a hash set (`f<N>_addr4`; a million load in about 2 s,
a change costs milliseconds, packets pay a hash lookup), prefixes into an interval set
(`f<N>_nets4`; every change rebuilds the interval tree, so it stays small: feeds are
aggregated to the minimal CIDR set first, and blocks of up to 8 addresses go into the hash
set address by address). `<N>` is the feed's slot: fixed while the feed stays, never reused
by another feed within the table's life.

Changes are transactions (`nft -f`, checked with `nft -c` first; a whole-table load checks
the table without its elements, since the transaction itself rejects a bad one): the first
load replaces the whole table; later loads only delete the elements that left and add the
ones that came, so the sets are never empty in between and a million-address feed updates
in milliseconds of nft time. When feeds come or go (a feed removed from the configuration or
disabled), the same kind of transaction adds the new feeds' sets and counters, flushes the
three base chains and adds their rules again for the feeds now loaded, and deletes the sets
and counters of the feeds gone: the remaining feeds' sets and counters are untouched and,
the transaction being atomic, never stop blocking. The applied sets are remembered in a
snapshot file beside the state, tied to the table by a token (`ThreatBlocker`); when the
table is missing or not the snapshot's, the whole table is loaded again.

Counters are read from the kernel over netlink (`nft_counters`): nft 1.0.6 fetches every set
element before it lists anything, even one counter (tens of seconds at a million).
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from netwarden.dataplane.apply import (
    NFT_SECONDS,
    apply_ruleset,
    check_ruleset,
    explain_error,
    require_nft,
)
from netwarden.dataplane.nft_counters import read_counters
from netwarden.dataplane.nftables import LOG_GROUP
from netwarden.errors import ApplyError

TABLE = "netwarden_threat"
#: An empty set whose comment names the last load (see `ThreatBlocker`).
MARKER = "loaded"
#: Before netwarden's policy chains (priority filter and filter + 10).
PRIORITY = "filter - 10"
#: Blocks of up to 2**this many addresses go into the hash set, address by address.
EXPAND_HOST_BITS = 3
_KINDS = ("addr4", "nets4", "addr6", "nets6")
_DIRECTIONS = ("from", "to")
_HOOKS = (("forward", ("saddr", "daddr")), ("input", ("saddr",)), ("output", ("daddr",)))
#: Elements per `add element` statement: keeps lines short, same transaction.
CHUNK = 20000
_SAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
_COUNTER_COMMENT = re.compile(r"threatfeed/(\S+) (from|to)")


@dataclass(frozen=True)
class FeedSets:
    """One feed's entries split by set kind and family."""

    name: str
    addr4: tuple[str, ...] = ()
    nets4: tuple[str, ...] = ()
    addr6: tuple[str, ...] = ()
    nets6: tuple[str, ...] = ()

    @classmethod
    def from_entries(cls, name: str, entries: Iterable[str]) -> FeedSets:
        """CIDR texts: `/32` and `/128` (or bare addresses) are single addresses, and so are
        the addresses of blocks of at most `2**EXPAND_HOST_BITS` (a /30 is four elements
        of the hash set rather than one range in the interval set, which costs far more)."""
        parts: dict[str, list[str]] = {"addr4": [], "nets4": [], "addr6": [], "nets6": []}
        for entry in entries:
            address, _, length_text = entry.partition("/")
            v6 = ":" in address
            bits = 128 if v6 else 32
            host = bits - int(length_text) if length_text else 0
            family = "6" if v6 else "4"
            if host == 0:
                parts["addr" + family].append(address)
            elif host <= EXPAND_HOST_BITS:
                first = int(ip_address(address))
                parts["addr" + family] += [str(ip_address(first + i)) for i in range(1 << host)]
            else:
                parts["nets" + family].append(entry)
        return cls(name, *(tuple(parts[k]) for k in ("addr4", "nets4", "addr6", "nets6")))

    def sets(self) -> dict[str, tuple[str, ...]]:
        """Set kind (`_KINDS`) -> elements."""
        return {"addr4": self.addr4, "nets4": self.nets4, "addr6": self.addr6, "nets6": self.nets6}


def _label(name: str) -> str:
    return _SAFE.sub("_", name)[:100]


def default_slots(feeds: Sequence[FeedSets]) -> dict[str, int]:
    return {feed.name: index for index, feed in enumerate(feeds)}


def _set_spec(kind: str, label: str) -> str:
    family = "ipv4_addr" if kind.endswith("4") else "ipv6_addr"
    flags = " flags interval;" if kind.startswith("nets") else ""
    return f'type {family};{flags} comment "threatfeed/{label}";'


def _counter_spec(label: str, direction: str) -> str:
    return f'comment "threatfeed/{label} {direction}";'


def _rules(feeds: Sequence[FeedSets], slots: Mapping[str, int]) -> dict[str, list[str]]:
    """Base chain -> its rules, in feed order."""
    rules: dict[str, list[str]] = {}
    for hook, fields in _HOOKS:
        rules[hook] = []
        for feed in feeds:
            slot, label = slots[feed.name], _label(feed.name)
            for kind in _KINDS:
                match = "ip" if kind.endswith("4") else "ip6"
                for address_field in fields:
                    direction = "from" if address_field == "saddr" else "to"
                    counter = f"c{slot}_{direction}"
                    rules[hook].append(
                        f'{match} {address_field} @f{slot}_{kind} counter name "{counter}" '
                        f'log prefix "threatfeed/{label} " group {LOG_GROUP} drop '
                        f'comment "threatfeed/{label} {direction}"'
                    )
    return rules


def render_table(
    feeds: Sequence[FeedSets], token: str = "", slots: Mapping[str, int] | None = None
) -> str:
    """The whole table, replacing any previous one in the same transaction; `token` names
    this load in the marker set (see `ThreatBlocker`); `slots` numbers the feeds' sets and
    counters (default: their positions)."""
    slots = slots if slots is not None else default_slots(feeds)
    lines = [f"add table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    lines.append(f'\tset {MARKER} {{\n\t\ttype ipv4_addr\n\t\tcomment "{token}"\n\t}}')
    for feed in feeds:
        slot, label = slots[feed.name], _label(feed.name)
        for direction in _DIRECTIONS:
            lines.append(f"\tcounter c{slot}_{direction} {{ {_counter_spec(label, direction)} }}")
        for kind in _KINDS:
            lines.append(f"\tset f{slot}_{kind} {{ {_set_spec(kind, label)} }}")
    rules = _rules(feeds, slots)
    for hook, _ in _HOOKS:
        lines.append(f"\tchain {hook} {{")
        lines.append(f"\t\ttype filter hook {hook} priority {PRIORITY}; policy accept;")
        lines += [f"\t\t{rule}" for rule in rules[hook]]
        lines.append("\t}")
    lines.append("}")
    for feed in feeds:
        for kind, elements in feed.sets().items():
            lines += _elements("add", f"f{slots[feed.name]}_{kind}", elements)
    return "\n".join(lines) + "\n"


def _elements(verb: str, set_name: str, elements: Sequence[str]) -> list[str]:
    return [
        f"{verb} element inet {TABLE} {set_name} {{ {', '.join(elements[i : i + CHUNK])} }}"
        for i in range(0, len(elements), CHUNK)
    ]


@dataclass(frozen=True)
class Update:
    script: str
    changed: int  # elements deleted or added
    slots: dict[str, int] = field(default_factory=dict)  # the feeds' slots after it
    added: tuple[str, ...] = ()  # feeds whose sets came
    removed: tuple[str, ...] = ()  # feeds whose sets went


def render_update(
    old: Sequence[FeedSets],
    new: Sequence[FeedSets],
    token: str = "",
    slots: Mapping[str, int] | None = None,
) -> Update:
    """One transaction from the table holding `old` (numbered by `slots`, default their
    positions) to one holding `new`: the elements that changed, the marker renamed to
    `token`, and when feeds came or went, their sets and counters added or deleted and the
    base chains' rules written again (deletions last, once no rule refers to them)."""
    slots = dict(slots if slots is not None else default_slots(old))
    lines = [
        f"delete set inet {TABLE} {MARKER}",
        f'add set inet {TABLE} {MARKER} {{ type ipv4_addr; comment "{token}"; }}',
    ]
    before = {feed.name: feed for feed in old}
    after = {feed.name for feed in new}
    added = tuple(feed.name for feed in new if feed.name not in before)
    removed = tuple(feed.name for feed in old if feed.name not in after)
    next_slot = max(slots.values(), default=-1) + 1
    changed = 0
    for feed in new:
        if feed.name in before:
            changed += _changed_elements(lines, before[feed.name], feed, slots[feed.name])
            continue
        slot = slots[feed.name] = next_slot
        next_slot += 1
        label = _label(feed.name)
        for direction in _DIRECTIONS:
            spec = _counter_spec(label, direction)
            lines.append(f"add counter inet {TABLE} c{slot}_{direction} {{ {spec} }}")
        for kind, elements in feed.sets().items():
            lines.append(f"add set inet {TABLE} f{slot}_{kind} {{ {_set_spec(kind, label)} }}")
            lines += _elements("add", f"f{slot}_{kind}", elements)
            changed += len(elements)
    if added or removed or [f.name for f in old] != [f.name for f in new]:
        rules = _rules(new, slots)
        for hook, _ in _HOOKS:
            lines.append(f"flush chain inet {TABLE} {hook}")
            lines += [f"add rule inet {TABLE} {hook} {rule}" for rule in rules[hook]]
        for name in removed:
            slot = slots.pop(name)
            lines += [f"delete set inet {TABLE} f{slot}_{kind}" for kind in _KINDS]
            lines += [f"delete counter inet {TABLE} c{slot}_{d}" for d in _DIRECTIONS]
            changed += sum(len(s) for s in before[name].sets().values())
    return Update("\n".join(lines) + "\n", changed, slots, added, removed)


def _changed_elements(lines: list[str], before: FeedSets, after: FeedSets, slot: int) -> int:
    changed = 0
    for kind, elements in after.sets().items():
        had = before.sets()[kind]
        if had == elements:
            continue
        had_set, new_set = set(had), set(elements)
        gone = sorted(had_set - new_set)
        came = sorted(new_set - had_set)
        # Deletions first: an interval set refuses a new range that overlaps an old one.
        lines += _elements("delete", f"f{slot}_{kind}", gone)
        lines += _elements("add", f"f{slot}_{kind}", came)
        changed += len(gone) + len(came)
    return changed


@dataclass(frozen=True)
class Applied:
    full: bool  # the whole table was loaded (else only what changed)
    elements: int  # elements in the table now
    changed: int  # elements added or deleted by this load
    added: tuple[str, ...] = ()  # feeds whose sets came (known only against a snapshot)
    removed: tuple[str, ...] = ()  # feeds whose sets went


@dataclass(frozen=True)
class Loaded:
    """What a load put in the table: its token, the feeds, and each feed's slot."""

    token: str
    feeds: list[FeedSets]
    slots: dict[str, int]


class ThreatBlocker:
    """The threat table of one network namespace (None: the current one).

    What the table holds is kept in the `snapshot` file with a random token, and the same
    token is the comment of the table's empty `loaded` set. Only when the two agree is the
    next load a difference; any doubt (no table, another load in between, a failed load)
    means the whole table is loaded again. The token is read with `nft list set`, which in
    nft 1.0.6 costs milliseconds, where listing the table, its chains or its counters
    fetches every element (seconds for a million)."""

    def __init__(self, netns: str | None, snapshot: Path) -> None:
        self.netns = netns
        self.snapshot = snapshot
        # What this object loaded last: a long-running process skips reading the snapshot.
        self._loaded: Loaded | None = None

    def apply(self, feeds: Sequence[FeedSets]) -> Applied:
        """Load `feeds` as one transaction; on error the previous table stays (ApplyError)."""
        known = self._loaded or self._snapshot()
        base = known if known is not None and known.token == self.token() else None
        token = uuid.uuid4().hex
        elements = sum(len(s) for f in feeds for s in f.sets().values())
        # The snapshot goes first: if the load fails it no longer matches, and the next
        # apply loads the whole table rather than a difference against a wrong base.
        self.snapshot.unlink(missing_ok=True)
        self._loaded = None
        if base is None:
            slots = default_slots(feeds)
            self._load_whole(feeds, token)
            applied = Applied(True, elements, elements)
        else:
            update = render_update(base.feeds, feeds, token, base.slots)
            apply_ruleset(self.netns, update.script)
            slots = update.slots
            applied = Applied(False, elements, update.changed, update.added, update.removed)
        loaded = Loaded(token, list(feeds), slots)
        self._save(loaded)
        self._loaded = loaded
        return applied

    def token(self) -> str | None:
        """The token of the table in the kernel, or None when there is no table."""
        done = self._nft("list", "set", "inet", TABLE, MARKER)
        found = re.search(r'comment "([^"]*)"', done.stdout)
        return found.group(1) if done.returncode == 0 and found else None

    def exists(self) -> bool:
        return self.token() is not None

    def remove(self) -> None:
        apply_ruleset(self.netns, f"add table inet {TABLE}\ndelete table inet {TABLE}\n")
        self.snapshot.unlink(missing_ok=True)
        self._loaded = None

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(feed label, "from" | "to") -> (packets, bytes), summed over hooks and sets: the
        table's named counters, read over netlink in milliseconds whatever the sets hold
        (empty when there is no table)."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for counter in read_counters(self.netns, TABLE):
            found = _COUNTER_COMMENT.fullmatch(counter.comment)
            if found is None:
                continue
            key = (found.group(1), found.group(2))
            packets, size = totals.get(key, (0, 0))
            totals[key] = (packets + counter.packets, size + counter.bytes)
        return totals

    def _load_whole(self, feeds: Sequence[FeedSets], token: str) -> None:
        """`nft -c` of the table without its elements, then `nft -f` of all of it.

        Checking the elements too would parse a million of them twice for nothing: the load
        is one transaction, so a bad element fails it whole and the old table stays."""
        empty = [FeedSets(feed.name) for feed in feeds]
        check_ruleset(self.netns, render_table(empty, token))
        script = render_table(feeds, token)
        done = self._nft("-f", "-", script=script)
        if done.returncode != 0:
            raise ApplyError(
                f"nft failed to load the threat table{' in ' + self.netns if self.netns else ''}"
                " (the previous ruleset is still in place): " + explain_error(done.stderr, script)
            )

    def _nft(self, *arguments: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
        nft = [require_nft(), *arguments]
        command = ["ip", "netns", "exec", self.netns, *nft] if self.netns else nft
        try:
            return subprocess.run(
                command, input=script, capture_output=True, text=True, timeout=NFT_SECONDS
            )
        except subprocess.TimeoutExpired:
            message = f"`nft {' '.join(arguments)}` did not finish in {NFT_SECONDS:g} s"
            raise ApplyError(message) from None

    def _snapshot(self) -> Loaded | None:
        """The snapshot file: the token, then per feed an `@<slot> <name>` line and per set
        an `=kind` line, each followed by its elements, one a line (plain lines read and
        write fast at a million; no address starts with `@` or `=`, while `::1` starts with
        `:`). A file of another layout is not trusted: the whole table is loaded again."""
        try:
            lines = self.snapshot.read_text(encoding="utf-8").split("\n")
        except OSError:
            return None
        if not lines or lines[-1] != "" or "@" in lines[0]:
            return None  # empty or cut short: not a snapshot to trust
        feeds: list[FeedSets] = []
        slots: dict[str, int] = {}
        parts: dict[str, list[str]] = {}
        current: list[str] = []
        name = None
        for line in [*lines[1:-1], "@"]:
            if line.startswith("@"):
                if name is not None:
                    feeds.append(FeedSets(name, *(tuple(parts.get(k, ())) for k in _KINDS)))
                if line == "@":
                    break
                slot, _, name = line[1:].partition(" ")
                if not slot.isdigit() or not name:
                    return None
                slots[name], parts = int(slot), {}
            elif line.startswith("="):
                current = parts.setdefault(line[1:], [])
            else:
                current.append(line)
        return Loaded(lines[0], feeds, slots)

    def _save(self, loaded: Loaded) -> None:
        chunks = [loaded.token]
        for feed in loaded.feeds:
            chunks.append(f"@{loaded.slots[feed.name]} {feed.name}")
            for kind, elements in feed.sets().items():
                chunks.append(f"={kind}")
                chunks.extend(elements)
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.snapshot.with_suffix(".tmp")
        temporary.write_text("\n".join(chunks) + "\n", encoding="utf-8")
        temporary.replace(self.snapshot)

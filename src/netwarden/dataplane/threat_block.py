"""Threat feeds in the dataplane: `table inet netwarden_threat`, ahead of every policy.

Base chains on the forward, input and output hooks at priority `filter - 10`, before
netwarden's policy chains (`filter`, `filter + 10`): a packet from or to a listed address is
dropped before any allow can accept it, whatever the tiers say, established or not. Every
rule has a counter, logs to NFLOG group 1 with the prefix `threatfeed/<name> ` (what the flow
collector reads), and a comment naming feed and direction.

Per feed and family two named sets, because nftables costs differ by set kind (measured with
nft 1.0.6): single addresses go into a hash set (`f<N>_addr4`; a million load in about 2 s,
a change costs milliseconds, packets pay a hash lookup), prefixes into an interval set
(`f<N>_nets4`; every change rebuilds the interval tree, so it stays small: feeds are
aggregated to the minimal CIDR set first, and blocks of up to 8 addresses go into the hash
set address by address).

Changes are transactions (`nft -f`, checked with `nft -c` first; a whole-table load checks
the table without its elements, since the transaction itself rejects a bad one): the first
load replaces the whole table; later loads with the same feeds only delete the elements that
left and add the ones that came, so the sets are never empty in between and a
million-address feed updates in milliseconds of nft time. The applied sets are remembered in
a snapshot file beside the state, tied to the table by a token (`ThreatBlocker`); when the
table is missing or not the snapshot's, the whole table is loaded again.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from netwarden.dataplane.apply import (
    NFT_SECONDS,
    apply_ruleset,
    check_ruleset,
    explain_error,
    require_nft,
)
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
#: Elements per `add element` statement: keeps lines short, same transaction.
CHUNK = 20000
_SAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
_COUNTER = re.compile(r"counter packets (\d+) bytes (\d+).*comment \"threatfeed/(\S+) (\w+)\"")


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


def render_table(feeds: Sequence[FeedSets], token: str = "") -> str:
    """The whole table, replacing any previous one in the same transaction; `token` names
    this load in the marker set (see `ThreatBlocker`)."""
    lines = [f"add table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    lines.append(f'\tset {MARKER} {{\n\t\ttype ipv4_addr\n\t\tcomment "{token}"\n\t}}')
    for index, feed in enumerate(feeds):
        for kind in ("addr4", "nets4", "addr6", "nets6"):
            family = "ipv4_addr" if kind.endswith("4") else "ipv6_addr"
            flags = "\t\tflags interval\n" if kind.startswith("nets") else ""
            lines.append(
                f"\tset f{index}_{kind} {{\n\t\ttype {family}\n{flags}"
                f'\t\tcomment "threatfeed/{_label(feed.name)}"\n\t}}'
            )
    hooks = (("forward", ("saddr", "daddr")), ("input", ("saddr",)), ("output", ("daddr",)))
    for hook, fields in hooks:
        lines.append(f"\tchain {hook} {{")
        lines.append(f"\t\ttype filter hook {hook} priority {PRIORITY}; policy accept;")
        for index, feed in enumerate(feeds):
            label = _label(feed.name)
            for kind in ("addr4", "nets4", "addr6", "nets6"):
                match = "ip" if kind.endswith("4") else "ip6"
                for field in fields:
                    direction = "from" if field == "saddr" else "to"
                    lines.append(
                        f"\t\t{match} {field} @f{index}_{kind} counter "
                        f'log prefix "threatfeed/{label} " group {LOG_GROUP} drop '
                        f'comment "threatfeed/{label} {direction}"'
                    )
        lines.append("\t}")
    lines.append("}")
    for index, feed in enumerate(feeds):
        for kind, elements in feed.sets().items():
            lines += _elements("add", f"f{index}_{kind}", elements)
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


def render_update(
    old: Sequence[FeedSets], new: Sequence[FeedSets], token: str = ""
) -> Update | None:
    """Only the elements that changed (and the marker renamed to `token`), or None when the
    feeds themselves changed (then the whole table is loaded)."""
    if [f.name for f in old] != [f.name for f in new]:
        return None
    lines = [
        f"delete set inet {TABLE} {MARKER}",
        f'add set inet {TABLE} {MARKER} {{ type ipv4_addr; comment "{token}"; }}',
    ]
    changed = 0
    for index, (before, after) in enumerate(zip(old, new, strict=True)):
        for kind, elements in after.sets().items():
            had = before.sets()[kind]
            if had == elements:
                continue
            had_set, new_set = set(had), set(elements)
            gone = sorted(had_set - new_set)
            came = sorted(new_set - had_set)
            # Deletions first: an interval set refuses a new range that overlaps an old one.
            lines += _elements("delete", f"f{index}_{kind}", gone)
            lines += _elements("add", f"f{index}_{kind}", came)
            changed += len(gone) + len(came)
    return Update("\n".join(lines) + "\n", changed)


@dataclass(frozen=True)
class Applied:
    full: bool  # the whole table was loaded (else only the changed elements)
    elements: int  # elements in the table now
    changed: int  # elements added or deleted by this load


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
        self._loaded: tuple[str, list[FeedSets]] | None = None

    def apply(self, feeds: Sequence[FeedSets]) -> Applied:
        """Load `feeds` as one transaction; on error the previous table stays (ApplyError)."""
        known = self._loaded or self._snapshot()
        old = known[1] if known is not None and known[0] == self.token() else None
        token = uuid.uuid4().hex
        update = render_update(old, feeds, token) if old is not None else None
        elements = sum(len(s) for f in feeds for s in f.sets().values())
        # The snapshot goes first: if the load fails it no longer matches, and the next
        # apply loads the whole table rather than a difference against a wrong base.
        self.snapshot.unlink(missing_ok=True)
        self._loaded = None
        if update is None:
            self._load_whole(feeds, token)
            applied = Applied(True, elements, elements)
        else:
            apply_ruleset(self.netns, update.script)
            applied = Applied(False, elements, update.changed)
        self._save(token, feeds)
        self._loaded = (token, list(feeds))
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
        """(feed label, "from" | "to") -> (packets, bytes), summed over hooks and sets.
        Listing chains makes nft 1.0.6 fetch every set element: seconds for a million."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for hook in ("forward", "input", "output"):
            done = self._nft("list", "chain", "inet", TABLE, hook)
            for found in _COUNTER.finditer(done.stdout):
                key = (found.group(3), found.group(4))
                packets, size = totals.get(key, (0, 0))
                totals[key] = (packets + int(found.group(1)), size + int(found.group(2)))
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

    def _snapshot(self) -> tuple[str, list[FeedSets]] | None:
        """The snapshot file: the token, then per feed an `@name` line and per set an `=kind`
        line, each followed by its elements, one a line (plain lines read and write fast at a
        million; no address starts with `@` or `=`, while `::1` starts with `:`)."""
        try:
            lines = self.snapshot.read_text(encoding="utf-8").split("\n")
        except OSError:
            return None
        if not lines or lines[-1] != "" or "@" in lines[0]:
            return None  # empty or cut short: not a snapshot to trust
        feeds: list[FeedSets] = []
        parts: dict[str, list[str]] = {}
        current: list[str] = []
        name = None
        for line in [*lines[1:-1], "@"]:
            if line.startswith("@"):
                if name is not None:
                    feeds.append(FeedSets(name, *(tuple(parts.get(k, ())) for k in _KINDS)))
                name, parts = line[1:], {}
            elif line.startswith("="):
                current = parts.setdefault(line[1:], [])
            else:
                current.append(line)
        return lines[0], feeds

    def _save(self, token: str, feeds: Sequence[FeedSets]) -> None:
        chunks = [token]
        for feed in feeds:
            chunks.append(f"@{feed.name}")
            for kind, elements in feed.sets().items():
                chunks.append(f"={kind}")
                chunks.extend(elements)
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.snapshot.with_suffix(".tmp")
        temporary.write_text("\n".join(chunks) + "\n", encoding="utf-8")
        temporary.replace(self.snapshot)

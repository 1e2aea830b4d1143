"""What the collector reads on one node: ulogd2 for the flow logs, conntrack for the counters.

netwarden's ruleset, compiled with `flow_logs=True`, logs the first packet of every new
connection to NFLOG (one group per direction) at each rule that passed or decided it, with the
hit as prefix. Two real components read the kernel, inside the node's network namespace:

- `ulogd` (Debian's ulogd2) with a generated configuration: one NFLOG -> BASE -> IP2STR ->
  GPRINT stack per direction, one `key=value,...` line per logged packet, in a private folder;
- `conntrack -E -e DESTROY -o extended,timestamp`: each connection as it ends, with its packet
  and byte counters per direction (`nf_conntrack_acct=1`, set here in the namespace), and
  `conntrack -L -o extended` when collection stops, for connections still open.

`NodeSources` starts both, and on `stop` returns what they wrote as `PacketLog`s and
`ConnectionCounters`. Lines that do not parse are counted, never silently dropped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from netwarden.dataplane.netns import write_sysctl
from netwarden.dataplane.nftables import FLOW_LOG_GROUPS
from netwarden.errors import NetwardenError
from netwarden.model import Direction

ULOGD_PLUGINS = Path("/usr/lib/x86_64-linux-gnu/ulogd")
#: How long ulogd may take to bind its NFLOG groups, and the processes to exit.
START_SECONDS = 10.0
STOP_SECONDS = 10.0
#: Kernel switches the collector needs in the node's namespace: byte and packet counters on
#: every connection, and its start and stop time.
SYSCTLS = (("net.netfilter.nf_conntrack_acct", "1"), ("net.netfilter.nf_conntrack_timestamp", "1"))

_GPRINT_KEY = re.compile(r"(?:^|,)([a-z0-9_.]+)=")
_PROTOCOL_FIELDS = {6: "tcp", 17: "udp", 132: "sctp"}

#: The temporary folder each node's ulogd runs in (with its configuration) starts so: a
#: collection taking over from a dead one recognises the dead one's readers by it.
READER_FOLDER_PREFIX = "netwarden-collect-"


class CollectError(NetwardenError):
    """The collector cannot start or read its sources (what is missing, and where)."""


@dataclass(frozen=True)
class PacketLog:
    """One logged packet: the first of a connection, at one rule that passed or decided it."""

    direction: Direction
    time: float  # Unix seconds
    hit: str  # `<tier>|<policy>|<action>|<rule>`
    protocol: int
    src: str
    dst: str
    sport: int | None
    dport: int | None
    length: int  # bytes of the packet (IP header and payload)


@dataclass(frozen=True)
class ConnectionCounters:
    """A connection as conntrack counted it: the original direction's tuple and both
    directions' packets and bytes. `ended` is when it was destroyed, None if still open."""

    protocol: int
    src: str
    dst: str
    sport: int | None
    dport: int | None
    packets_orig: int
    bytes_orig: int
    packets_reply: int
    bytes_reply: int
    seen: float  # the event's time, or when the table was read
    ended: bool


@dataclass
class SourceOutput:
    """What one node's sources wrote, and how many lines could not be read."""

    packets: list[PacketLog] = field(default_factory=list)
    connections: list[ConnectionCounters] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def parse_gprint(line: str, direction: Direction) -> PacketLog | None:
    """One ulogd GPRINT line (`key=value,...`) as a PacketLog; None when it is not a flow log
    packet with addresses (ulogd also reports what it cannot decode)."""
    starts = [(m.group(1), m.start(1), m.end()) for m in _GPRINT_KEY.finditer(line.rstrip("\n"))]
    values: dict[str, str] = {}
    for i, (key, _, value_start) in enumerate(starts):
        end = starts[i + 1][1] - 1 if i + 1 < len(starts) else len(line.rstrip("\n"))
        values.setdefault(key, line[value_start:end])
    try:
        protocol = int(values["ip.protocol"])
        src, dst = values["ip.saddr.str"], values["ip.daddr.str"]
        moment = int(values["oob.time.sec"]) + int(values.get("oob.time.usec", "0")) / 1e6
        hit = values["oob.prefix"].strip()
        length = int(values.get("raw.pktlen", "0"))
    except (KeyError, ValueError):
        return None
    name = _PROTOCOL_FIELDS.get(protocol)
    sport = int(values[f"{name}.sport"]) if name and f"{name}.sport" in values else None
    dport = int(values[f"{name}.dport"]) if name and f"{name}.dport" in values else None
    return PacketLog(direction, moment, hit, protocol, src, dst, sport, dport, length)


def parse_conntrack(line: str, now: float) -> ConnectionCounters | None:
    """A `conntrack -o extended` line, with or without the `[time]\\t[DESTROY]` of `-E`."""
    text = line.strip()
    if not text or text.startswith("conntrack v"):
        return None
    moment, ended = now, False
    if text.startswith("["):
        stamp, _, text = text.partition("]")
        moment = float(stamp.lstrip("["))
        text = text.strip()
        if text.startswith("[DESTROY]"):
            ended = True
            text = text.removeprefix("[DESTROY]").strip()
    tokens = text.split()
    # ipv4 2 tcp 6 <timeout> [STATE] src=... : the protocol number is the fourth token.
    protocol = int(tokens[3])
    orig: dict[str, str] = {}
    reply: dict[str, str] = {}
    for token in tokens[4:]:
        key, equals, value = token.partition("=")
        if not equals:
            continue
        side = reply if key == "src" and "src" in orig else (reply if reply else orig)
        side.setdefault(key, value)
    return ConnectionCounters(
        protocol,
        orig["src"],
        orig["dst"],
        int(orig["sport"]) if "sport" in orig else None,
        int(orig["dport"]) if "dport" in orig else None,
        int(orig.get("packets", "0")),
        int(orig.get("bytes", "0")),
        int(reply.get("packets", "0")),
        int(reply.get("bytes", "0")),
        moment,
        ended,
    )


def ulogd_config(folder: Path) -> str:
    """One NFLOG stack per direction, each printing to its own file, flushed per line."""
    lines = ["[global]", f'logfile="{folder / "ulogd.log"}"', "loglevel=3"]
    for plugin in (
        "ulogd_inppkt_NFLOG",
        "ulogd_raw2packet_BASE",
        "ulogd_filter_IP2STR",
        "ulogd_output_GPRINT",
    ):
        lines.append(f'plugin="{ULOGD_PLUGINS / plugin}.so"')
    sections = []
    for direction, group in FLOW_LOG_GROUPS.items():
        d = direction.value
        lines.append(f"stack={d}_log:NFLOG,{d}_base:BASE,{d}_ip2str:IP2STR,{d}_print:GPRINT")
        # The kernel sends NFLOG messages in batches, after a threshold or a timeout (1 s by
        # default): one message per batch makes a packet logged just before `stop` readable.
        sections += [f"[{d}_log]", f"group={group}", "netlink_qthreshold=1"]
        sections += [f"[{d}_print]", f'file="{folder / f"{d}.log"}"', "sync=1"]
    return "\n".join(lines + sections) + "\n"


def _netns_command(netns: str | None, *command: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *command] if netns else list(command)


class NodeSources:
    """ulogd and the conntrack event listener for one namespace (None: this one)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.folder = Path(tempfile.mkdtemp(prefix=READER_FOLDER_PREFIX))
        self._ulogd: subprocess.Popen[bytes] | None = None
        self._events: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for tool in ("ulogd", "conntrack"):
            if shutil.which(tool) is None:
                raise CollectError(f"the collector needs `{tool}` (Debian: ulogd2, conntrack)")
        if not (ULOGD_PLUGINS / "ulogd_inppkt_NFLOG.so").exists():
            raise CollectError(f"ulogd's NFLOG plugin is not in {ULOGD_PLUGINS}")
        if self.netns is not None:
            for key, value in SYSCTLS:
                write_sysctl(self.netns, key, value)
        else:
            for key, value in SYSCTLS:
                Path("/proc/sys", *key.split(".")).write_text(value)
        config = self.folder / "ulogd.conf"
        config.write_text(ulogd_config(self.folder))
        with open(self.folder / "conntrack.log", "wb") as events:
            self._events = subprocess.Popen(
                _netns_command(
                    self.netns, "conntrack", "-E", "-e", "DESTROY", "-o", "extended,timestamp"
                ),
                stdout=events,
                stderr=subprocess.STDOUT,
            )
        with open(self.folder / "ulogd.out", "wb") as out:
            self._ulogd = subprocess.Popen(
                _netns_command(self.netns, "ulogd", "-c", str(config)),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """ulogd says so in its log once both NFLOG groups are bound."""
        log = self.folder / "ulogd.log"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self._ulogd is not None
            if self._ulogd.poll() is not None:
                break
            if log.exists() and "entering main loop" in log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        said = (self.folder / "ulogd.out").read_text(errors="replace").strip()
        if log.exists():
            said += "\n" + log.read_text(errors="replace").strip()
        self.close()
        where = f" in {self.netns}" if self.netns else ""
        raise CollectError(f"ulogd did not start{where}: {said[-400:] or 'no output'}")

    def stop(self) -> SourceOutput:
        """Read the connections still open, stop both processes, parse what they wrote."""
        now = time.time()
        table = subprocess.run(
            _netns_command(self.netns, "conntrack", "-L", "-o", "extended"),
            capture_output=True,
            text=True,
            timeout=STOP_SECONDS,
        )
        time.sleep(0.2)  # NFLOG and conntrack events already sent reach their readers
        self._terminate()
        output = SourceOutput()
        for direction in FLOW_LOG_GROUPS:
            path = self.folder / f"{direction.value}.log"
            for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
                packet = parse_gprint(line, direction)
                if packet is None:
                    output.unreadable.append(f"{path.name}: {line[:120]}")
                else:
                    output.packets.append(packet)
        events = (self.folder / "conntrack.log").read_text(errors="replace").splitlines()
        for source, lines in (("events", events), ("table", table.stdout.splitlines())):
            for line in lines:
                try:
                    counters = parse_conntrack(line, now)
                except (IndexError, KeyError, ValueError):
                    output.unreadable.append(f"conntrack {source}: {line[:120]}")
                    continue
                if counters is not None:
                    output.connections.append(counters)
        self.close()
        return output

    def _terminate(self) -> None:
        for process in (self._ulogd, self._events):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (self._ulogd, self._events):
            if process is not None:
                try:
                    process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def close(self) -> None:
        """Stop the processes (if running) and remove the private folder."""
        self._terminate()
        shutil.rmtree(self.folder, ignore_errors=True)

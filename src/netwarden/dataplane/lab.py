"""Build, record and tear down a lab: the plan of `lab_plan.py` made real with iproute2.

`apply_lab` writes the lab's state file first, then creates the namespaces (`ip netns add`),
sets their sysctls, configures each namespace with one `ip -n NS -batch -` (links from the
router side, then addresses, neighbours and routes), and starts one `lab_server` per namespace
that serves ports. Any failure tears down what was made, so nothing is left half-applied.
`destroy_lab` removes a lab from its state file *and* from what the system shows (namespaces
and server processes carrying the lab's prefix), so it also cleans up after a crash.

Why `ip` and not pyroute2: iproute2 is already a system dependency (nftables tests need it),
one `ip -batch` per namespace keeps a lab of 100 pods to ~100 short processes, the plan renders
to the exact commands a person would type (`lab up --dry-run`, golden-testable without root),
and no untyped dependency enters the mypy --strict code base. Sysctls and sockets use setns(2)
per thread (`netns.py`), which no library is needed for either.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from netwarden.dataplane.lab_lock import lab_lock, lock_path
from netwarden.dataplane.lab_naming import DEFAULT_PREFIX, lab_prefix
from netwarden.dataplane.lab_state import (
    AppliedRuleset,
    LabState,
    ServerProcess,
    SourceText,
    Teardown,
    save_state,
    state_dir,
    state_path,
)
from netwarden.dataplane.lab_topology import ROUTER_MAC, LabPlan, LabRoute, LabServer, Role
from netwarden.dataplane.netns import NETNS_DIR, write_sysctl
from netwarden.errors import LabError
from netwarden.model import TCP, UDP

#: Environment override of the first part of every name.
PREFIX_ENV = "NETWARDEN_LAB_PREFIX"
#: Bounds on waiting for the system.
SERVER_START_SECONDS = 15.0
KILL_WAIT_SECONDS = 5.0
IP_COMMAND_SECONDS = 30.0
SERVER_MODULE = "netwarden.dataplane.lab_server"


def name_prefix() -> str:
    return os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX


def require_root() -> None:
    """The lab creates network namespaces: root (CAP_SYS_ADMIN and CAP_NET_ADMIN) only."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root: it creates network namespaces (run it as root)")
    if shutil.which("ip") is None:
        raise LabError("the lab needs the `ip` command: install iproute2 (make system-deps)")


# --- rendering: the plan as iproute2 batches (pure) -------------------------------------------

_ORDER = {Role.FABRIC: 0, Role.NODE: 1, Role.POD: 2, Role.EXTERNAL: 2}


def ip_batches(plan: LabPlan) -> list[tuple[str, list[str]]]:
    """(namespace, `ip -batch` lines) in the order they must run: the fabric creates the node
    and external links, each node its pod links, and each end configures its own side."""
    batches = []
    for namespace in sorted(plan.namespaces, key=lambda n: _ORDER[n.role]):
        name = namespace.name
        lines = ["link set lo up"]
        for link in plan.links:
            if link.router_netns == name:
                lines.append(
                    f"link add {link.router_ifname} address {ROUTER_MAC} type veth "
                    f"peer name {link.leaf_ifname} address {link.leaf_mac} netns {link.leaf_netns}"
                )
                lines.append(f"link set {link.router_ifname} up")
            elif link.leaf_netns == name:
                lines.append(f"link set {link.leaf_ifname} up")
        lines += [
            f"address add {a.ip}/32 dev {a.ifname}" for a in plan.addresses if a.netns == name
        ]
        lines += [
            f"neighbor replace {n.ip} lladdr {n.mac} dev {n.ifname} nud permanent"
            for n in plan.neighbors
            if n.netns == name
        ]
        routes = [r for r in plan.routes if r.netns == name]
        lines += [_route(r) for r in sorted(routes, key=lambda r: r.via is not None)]
        batches.append((name, lines))
    return batches


def _route(route: LabRoute) -> str:
    destination = "default" if route.destination is None else str(route.destination)
    line = f"route add {destination}"
    if route.via is not None:
        line += f" via {route.via} dev {route.ifname} onlink"
    else:
        line += f" dev {route.ifname} scope link"
    if route.src is not None:
        line += f" src {route.src}"
    return line


def sysctls(plan: LabPlan) -> list[tuple[str, str, str]]:
    """(namespace, key, value): routers forward; nobody rate-limits ICMP errors, so that a
    burst of UDP probes to closed ports is answered `refused`, not `timeout`."""
    found = []
    for namespace in plan.namespaces:
        if namespace.forwarding:
            found.append((namespace.name, "net.ipv4.ip_forward", "1"))
        found.append((namespace.name, "net.ipv4.icmp_ratemask", "0"))
    return found


def server_command(server: LabServer) -> list[str]:
    command = [sys.executable, "-m", SERVER_MODULE, "--netns", server.netns]
    for ip in server.ips:
        command += ["--ip", str(ip)]
    for flag, protocol in (("--tcp", TCP), ("--udp", UDP)):
        ports = [str(p.port) for p in server.ports if p.protocol == protocol]
        if ports:
            command += [flag, ",".join(ports)]
    return command


# --- up -------------------------------------------------------------------------------------


def apply_lab(
    plan: LabPlan,
    directory: Path | None = None,
    *,
    sources: Sequence[SourceText] = (),
    enforce: Callable[[], Sequence[AppliedRuleset]] | None = None,
) -> LabState:
    """Create the lab and start its servers; on any failure remove everything made so far.

    `enforce`, when given, loads the rulesets into the node namespaces right after they are
    created and before any link exists, so no pod is ever reachable without its policy."""
    require_root()
    started = time.monotonic()
    with lab_lock(state_path(plan.name, directory)):  # two `lab up` of one name: one wins
        if state_path(plan.name, directory).exists() or lab_namespaces(plan.prefix):
            raise LabError(
                f"lab {plan.name!r} already exists: `netwarden lab down --name {plan.name}`"
            )
        state = LabState(plan, "creating", (), time.time(), 0.0, tuple(sources))
        save_state(state, directory)  # first: a crash from here on leaves a trace for `down`
        try:
            for namespace in plan.namespaces:
                _ip(["netns", "add", namespace.name])
            for netns, key, value in sysctls(plan):
                write_sysctl(netns, key, value)
            if enforce is not None:
                state = replace(state, rulesets=tuple(enforce()))
            for netns, lines in ip_batches(plan):
                _ip(["-n", netns, "-batch", "-"], "\n".join(lines) + "\n")
            servers = start_servers(plan.servers)
        except BaseException:  # KeyboardInterrupt too: never leave a half-built lab behind
            destroy_lab(plan.name, _base(plan), directory)
            raise
        state = replace(state, status="up", servers=servers, seconds=time.monotonic() - started)
        save_state(state, directory)
        return state


def _base(plan: LabPlan) -> str:
    return plan.prefix.removesuffix(f"-{plan.name}-")


def ip_command(arguments: list[str], stdin: str | None = None) -> None:
    """Run `ip ARGUMENTS` (a batch on stdin); `LabError` with the failing line on error."""
    _ip(arguments, stdin)


def kill_processes(pids: list[int]) -> int:
    """SIGKILL each pid and wait (bounded) until all are gone; the number that were alive."""
    return _kill(pids)


def _ip(arguments: list[str], stdin: str | None = None) -> None:
    command = ["ip", *arguments]
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=IP_COMMAND_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise LabError(
            f"`{' '.join(command)}` did not finish in {IP_COMMAND_SECONDS:g} s"
        ) from None
    if done.returncode != 0:
        where = ""
        found = re.search(r"Command failed -:(\d+)", done.stderr)
        if found and stdin is not None:
            where = f" at `{stdin.splitlines()[int(found.group(1)) - 1]}`"
        raise LabError(f"`{' '.join(command)}` failed{where}: {done.stderr.strip()}")


def start_servers(servers: Iterable[LabServer]) -> tuple[ServerProcess, ...]:
    """Start every server at once, then wait (bounded) for each `ready <pid>` line."""
    launched = [
        (
            server,
            subprocess.Popen(
                server_command(server),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for server in servers
    ]
    deadline = time.monotonic() + SERVER_START_SECONDS
    ready: list[ServerProcess] = []
    problems: list[str] = []
    for server, process in launched:
        assert process.stdout is not None and process.stderr is not None
        line = ""
        if select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            line = process.stdout.readline()
        if line.startswith("ready "):
            ready.append(ServerProcess(server.netns, int(line.split()[1])))
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not line.startswith("ready "):
            problems.append(process.stderr.read().strip() or f"{server.netns}: server not ready")
        process.stdout.close()
        process.stderr.close()
    if problems:
        _kill([p.pid for p in ready])
        raise LabError("lab servers failed: " + "; ".join(problems))
    return tuple(ready)


# --- down -----------------------------------------------------------------------------------


def lab_namespaces(prefix: str) -> list[str]:
    """Named network namespaces whose names start with `prefix`."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(NETNS_DIR) if name.startswith(prefix))


def lab_processes(prefix: str) -> list[int]:
    """Live lab servers serving a namespace whose name starts with `prefix`."""
    needle = f"{SERVER_MODULE}\0".encode()
    netns = f"--netns\0{prefix}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if needle in command and netns in command and _alive(int(entry)):
            found.append(int(entry))
    return found


def destroy_lab(name: str, prefix: str = DEFAULT_PREFIX, directory: Path | None = None) -> Teardown:
    """Remove lab `name`: its servers, its namespaces (with their links), its state file. Works
    from the state file and from what the system shows, so also after a crash; idempotent."""
    require_root()
    path = state_path(name, directory)
    with lab_lock(path):  # not while another command is changing the lab
        return _destroy_lab(name, lab_prefix(name, prefix), path)


def _destroy_lab(name: str, start: str, path: Path) -> Teardown:
    """Must be called with the lab's lock held."""
    namespaces = set(lab_namespaces(start))
    pids = set(lab_processes(start))  # recorded or not: a crash may have left some unrecorded
    for namespace in namespaces:  # anything else running inside the lab goes with it
        pids |= set(netns_pids(namespace))
    killed = _kill(sorted(pids))
    for namespace in sorted(namespaces):
        _ip(["netns", "delete", namespace])
    removed = path.exists()
    path.unlink(missing_ok=True)
    path.with_suffix(".tmp").unlink(missing_ok=True)
    lock_path(path).unlink(missing_ok=True)  # held: a waiter sees it went (`lab_lock`)
    return Teardown(name, len(namespaces), killed, removed)


def destroy_all(prefix: str = DEFAULT_PREFIX, directory: Path | None = None) -> list[Teardown]:
    """Remove every lab: those with a state file and any namespace or server left by a crash."""
    require_root()
    folder = directory or state_dir()
    names = {path.stem for path in folder.glob("*.json")} if folder.is_dir() else set()
    pattern = re.compile(rf"{re.escape(prefix)}-([a-z0-9]{{1,12}})-")
    for namespace in lab_namespaces(f"{prefix}-"):
        found = pattern.match(namespace)
        if found:
            names.add(found.group(1))
    for pid in lab_processes(f"{prefix}-"):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        found = pattern.search(command)
        if found:
            names.add(found.group(1))
    return [destroy_lab(name, prefix, folder) for name in sorted(names)]


def netns_pids(namespace: str) -> list[int]:
    """The processes running in a network namespace."""
    done = subprocess.run(
        ["ip", "netns", "pids", namespace],
        capture_output=True,
        text=True,
        timeout=IP_COMMAND_SECONDS,
    )
    return [int(pid) for pid in done.stdout.split() if pid.isdigit()]


def _kill(pids: list[int]) -> int:
    """SIGKILL each pid and wait (bounded) until all are gone; the number that were alive."""
    alive = [pid for pid in pids if _alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while any(_alive(pid) for pid in alive):
        if time.monotonic() > deadline:
            left = [pid for pid in alive if _alive(pid)]
            raise LabError(f"processes {left} did not end within {KILL_WAIT_SECONDS:g} s")
        time.sleep(0.01)
    return len(alive)


def _alive(pid: int) -> bool:
    """Running, not a zombie (a zombie child of ours is reaped here)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


__all__ = [
    "apply_lab",
    "destroy_all",
    "destroy_lab",
    "ip_batches",
    "kill_processes",
    "lab_namespaces",
    "lab_processes",
    "name_prefix",
    "netns_pids",
    "require_root",
]

"""Load an nft script as one transaction, in a network namespace or on the host.

`apply_ruleset` checks the script (`nft -c -f -`), then loads it (`nft -f -`), inside the
namespace with `ip netns exec NS`. nftables applies a file as one transaction: if any line
fails, nothing changes and the previous ruleset stays in place, so a failed apply is reported
(`ApplyError`, with nft's message and the offending script line) and leaves the last good state.

`load_script` loads a small transaction (incremental element updates) in-process through
libnftables, the library behind `nft`, when it is installed: no process to start, so one
update costs well under a millisecond plus the kernel's work.

`flush_conntrack` empties a namespace's connection tracking table (one ctnetlink request), so
that connections opened under an older ruleset do not ride `ct state established` past a new
one. The lab uses it after a policy change; a real node keeps its connections.
"""

from __future__ import annotations

import ctypes
import functools
import re
import shutil
import socket
import struct
import subprocess
from contextlib import nullcontext

from netwarden.dataplane.netns import NETNS_DIR, entered
from netwarden.errors import ApplyError

NFT_SECONDS = 60.0
# netlink / nfnetlink constants (linux/netlink.h, linux/netfilter/nfnetlink*.h)
_NETLINK_NETFILTER = 12
_CTNETLINK_DELETE = (1 << 8) | 2  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE
_NLM_F_REQUEST_ACK = 0x1 | 0x4
_NLMSG_ERROR = 2


def require_nft() -> str:
    found = shutil.which("nft")
    if found is None:
        raise ApplyError("the `nft` command is missing: install nftables (make system-deps)")
    return found


def _command(netns: str | None, *arguments: str) -> list[str]:
    nft = [require_nft(), *arguments]
    if not netns:
        return nft
    # `nsenter --net` only joins the network namespace; `ip netns exec` also makes a mount
    # namespace and remounts /sys, which costs more than the element update it runs.
    nsenter = shutil.which("nsenter")
    if nsenter is not None:
        return [nsenter, f"--net={NETNS_DIR / netns}", *nft]
    return ["ip", "netns", "exec", netns, *nft]


def check_ruleset(netns: str | None, script: str) -> None:
    """`nft -c -f -`: parse and validate against the kernel without changing anything."""
    _run(netns, script, "-c")


def apply_ruleset(netns: str | None, script: str) -> None:
    """Check, then load `script` atomically in `netns` (None: the current namespace)."""
    check_ruleset(netns, script)
    _run(netns, script)


def load_script(netns: str | None, script: str) -> None:
    """Load a small transaction (element updates) without the separate check: nft's own
    atomicity is the check. In-process through libnftables (the library `nft` is built on)
    when it is there: starting a process costs 10-30 ms, the transaction itself under one."""
    library = _libnftables()
    if library is None:
        _run(netns, script)
        return
    with entered(netns) if netns else nullcontext():
        # A fresh context each time: its netlink socket belongs to this namespace, and no
        # cache from an earlier call can be stale (~0.3 ms).
        context = library.nft_ctx_new(0)
        if not context:
            raise ApplyError("libnftables could not make a context")
        try:
            library.nft_ctx_buffer_output(context)
            library.nft_ctx_buffer_error(context)
            failed = library.nft_run_cmd_from_buffer(context, script.encode())
            message = (library.nft_ctx_get_error_buffer(context) or b"").decode(errors="replace")
        finally:
            library.nft_ctx_free(context)
    if failed:
        where = f" in {netns}" if netns else ""
        lines = [line for line in message.splitlines() if line.strip()]
        detail = f"{lines[0]}: `{lines[1].strip()}`" if len(lines) > 1 else message.strip()
        raise ApplyError(
            f"nft failed to load the ruleset{where} (the previous ruleset is still in place): "
            + (detail or "no message")
        )


@functools.cache
def _libnftables() -> ctypes.CDLL | None:
    """libnftables.so.1 with the prototypes used here, or None (then `nft` runs instead)."""
    try:
        library = ctypes.CDLL("libnftables.so.1", use_errno=True)
    except OSError:
        return None
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    library.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return library


def _run(netns: str | None, script: str, *flags: str) -> None:
    command = _command(netns, *flags, "-f", "-")
    where = f" in {netns}" if netns else ""
    try:
        done = subprocess.run(
            command, input=script, capture_output=True, text=True, timeout=NFT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise ApplyError(f"nft did not finish in {NFT_SECONDS:g} s{where}") from None
    if done.returncode != 0:
        action = "rejected" if flags else "failed to load"
        raise ApplyError(
            f"nft {action} the ruleset{where} (the previous ruleset is still in place): "
            + explain_error(done.stderr, script)
        )


def explain_error(stderr: str, script: str) -> str:
    """nft's first error, with the script line it points at (nft reads `/dev/stdin`)."""
    lines = script.splitlines()
    for line in stderr.splitlines():
        found = re.match(r"/dev/stdin:(\d+):[\d-]+: (Error: .*)", line)
        if found:
            number = int(found.group(1))
            text = lines[number - 1].strip() if 0 < number <= len(lines) else ""
            return f"line {number}: {found.group(2)}: `{text}`"
    return stderr.strip() or "no message"


def list_table(netns: str | None, table: str = "netwarden") -> str:
    """`nft list table inet TABLE` (with counters), or '' when there is none."""
    done = subprocess.run(
        _command(netns, "list", "table", "inet", table),
        capture_output=True,
        text=True,
        timeout=NFT_SECONDS,
    )
    return done.stdout if done.returncode == 0 else ""


def flush_conntrack(netns: str | None) -> None:
    """Delete every connection tracking entry of `netns` (what `conntrack -F` does)."""
    with entered(netns) if netns else nullcontext():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    with sock:
        sock.settimeout(NFT_SECONDS)
        # nlmsghdr (length, type, flags, seq, pid) + nfgenmsg (AF_UNSPEC: every family)
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
        header = struct.pack("=IHHII", 16 + len(body), _CTNETLINK_DELETE, _NLM_F_REQUEST_ACK, 1, 0)
        sock.sendto(header + body, (0, 0))
        reply = sock.recv(4096)
    kind = struct.unpack_from("=H", reply, 4)[0]
    error = struct.unpack_from("=i", reply, 16)[0] if kind == _NLMSG_ERROR else 0
    # ENOENT: the table was empty, or conntrack is not in use in this namespace.
    if error not in (0, -2):
        raise ApplyError(
            f"flushing connection tracking{' in ' + netns if netns else ''} failed: errno {-error}"
        )

"""Probes in a lab: real connections from the source's namespace, many at once.

Each probe opens its socket inside the source namespace (`netns.entered`, one thread at a time)
bound to the source's address, then:

- TCP: connect with a timeout. Handshake done: `connected`; a reset (nothing listens, or a
  `reject with tcp reset`): `refused`; no answer: `timeout`.
- UDP: send a datagram (once more at half the timeout) and wait for the server's reply. A reply:
  `connected`; an ICMP port unreachable (reported by the kernel on a connected UDP socket):
  `refused`; nothing: `timeout`.

Any other ICMP error (host/net unreachable, administratively prohibited) counts as `refused`:
the network answered no. A local EPERM is `dropped`: the sender's own node dropped the packet
in its output hook (nftables), as a silent drop on the way is `timeout`. SCTP and
portless protocols are not probed (`skipped`). Probes run on a bounded thread pool and each one
ends within its timeout, so a run takes at most about `len(probes) * timeout / workers`.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, ip_address

from netwarden.dataplane.lab_topology import LAB_PROTOCOLS, LabEndpoint, LabPlan
from netwarden.dataplane.netns import entered
from netwarden.engine.batch import Probe
from netwarden.errors import LabError
from netwarden.model import SCTP, TCP, protocol_name

DEFAULT_TIMEOUT = 1.0
DEFAULT_WORKERS = 32
MAX_WORKERS = 256
PAYLOAD = b"netwarden-probe"

#: Errors that mean "the network said no" (an ICMP error or a local filter), not a lab bug.
_REFUSING = {
    errno.EHOSTUNREACH: "ICMP host unreachable",  # also "communication administratively prohibited"
    errno.ENETUNREACH: "ICMP network unreachable",
    errno.EACCES: "ICMP net/host prohibited",
    errno.EPROTO: "protocol error",
}


class ProbeResult(StrEnum):
    CONNECTED = "connected"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    DROPPED = "dropped"  # the sender's own node dropped it (EPERM from a local filter)
    SKIPPED = "skipped"  # not probed: SCTP, ICMP


@dataclass(frozen=True)
class ProbeOutcome:
    probe: Probe
    result: ProbeResult
    detail: str  # what was seen: "handshake", "reply", "refused", "no answer", ...
    seconds: float


@dataclass(frozen=True)
class ProbeTarget:
    """A probe resolved to namespaces and addresses."""

    netns: str
    src: IPv4Address
    dst: IPv4Address


def resolve(plan: LabPlan, probes: Sequence[Probe]) -> list[ProbeTarget | None]:
    """Each probe's source namespace and addresses (None for a protocol that is not probed).
    Names the lab does not have raise one LabError naming them all."""
    targets: list[ProbeTarget | None] = []
    unknown: list[str] = []
    known: dict[str, LabEndpoint | None] = {}
    for probe in probes:
        for name in (probe.src, probe.dst):
            if name not in known:
                known[name] = plan.endpoint(name)
        src, dst = known[probe.src], known[probe.dst]
        for name, found in ((probe.src, src), (probe.dst, dst)):
            if found is None and name not in unknown:
                unknown.append(name)
        if src is None or dst is None or probe.protocol not in LAB_PROTOCOLS:
            targets.append(None)
            continue
        targets.append(
            ProbeTarget(src.netns, _address(probe.src, src.ips), _address(probe.dst, dst.ips))
        )
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise LabError(
            f"not in lab {plan.name!r}: {shown} (addresses outside the inventory need "
            "`lab up --external IP`)"
        )
    return targets


def _address(name: str, ips: Sequence[IPv4Address]) -> IPv4Address:
    """The address written in the probe, else the endpoint's first."""
    try:
        written = ip_address(name)
    except ValueError:
        return ips[0]
    return written if isinstance(written, IPv4Address) and written in ips else ips[0]


def run_probes(
    plan: LabPlan,
    probes: Sequence[Probe],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int = DEFAULT_WORKERS,
    on_done: Callable[[], None] | None = None,
) -> list[ProbeOutcome]:
    """Run every probe, `workers` at a time; outcomes in input order. `on_done` is called
    (from the calling thread) after each probe, for a progress bar."""
    if not 0 < timeout <= 30:
        raise LabError(f"invalid probe timeout {timeout}: expected more than 0 and at most 30 s")
    targets = resolve(plan, probes)
    outcomes: list[ProbeOutcome | None] = [None] * len(probes)
    workers = max(1, min(workers, MAX_WORKERS, len(probes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-probe") as pool:
        futures = {
            pool.submit(probe_one, probe, target, timeout): index
            for index, (probe, target) in enumerate(zip(probes, targets, strict=True))
        }
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
            if on_done is not None:
                on_done()
    return [outcome for outcome in outcomes if outcome is not None]


def probe_one(probe: Probe, target: ProbeTarget | None, timeout: float) -> ProbeOutcome:
    started = time.monotonic()
    if target is None:
        why = "not probed: " + ("no SCTP sockets" if probe.protocol == SCTP else "not TCP/UDP")
        return ProbeOutcome(probe, ProbeResult.SKIPPED, why, 0.0)
    if probe.protocol == TCP:
        result, detail = _tcp(target, probe.port, timeout)
    else:
        result, detail = _udp(target, probe.port, timeout)
    return ProbeOutcome(probe, result, detail, time.monotonic() - started)


def _socket(target: ProbeTarget, kind: int) -> socket.socket:
    with entered(target.netns):
        sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((str(target.src), 0))
    except OSError as error:
        sock.close()
        raise LabError(f"cannot bind {target.src} in {target.netns}: {error.strerror}") from None
    return sock


def _tcp(target: ProbeTarget, port: int, timeout: float) -> tuple[ProbeResult, str]:
    sock = _socket(target, socket.SOCK_STREAM)
    # Close with a reset: no TIME_WAIT left behind, and the server's backlog empties at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.settimeout(timeout)
    try:
        sock.connect((str(target.dst), port))
    except TimeoutError:
        return ProbeResult.TIMEOUT, "no answer"
    except OSError as error:
        return _refused(error, "reset (RST)")
    finally:
        sock.close()
    return ProbeResult.CONNECTED, "handshake"


def _udp(target: ProbeTarget, port: int, timeout: float) -> tuple[ProbeResult, str]:
    sock = _socket(target, socket.SOCK_DGRAM)
    start = time.monotonic()
    deadline, resend_at = start + timeout, start + timeout / 2
    try:
        sock.connect((str(target.dst), port))
        sock.send(PAYLOAD)
        while (now := time.monotonic()) < deadline:
            sock.settimeout((resend_at if resend_at > now else deadline) - now)
            try:
                sock.recv(2048)
            except TimeoutError:
                if resend_at <= time.monotonic() < deadline:
                    sock.send(PAYLOAD)  # one more: a datagram may be lost
                    resend_at = deadline
                continue
            return ProbeResult.CONNECTED, "reply"
    except OSError as error:
        return _refused(error, "ICMP port unreachable")
    finally:
        sock.close()
    return ProbeResult.TIMEOUT, "no reply"


def _refused(error: OSError, refused: str) -> tuple[ProbeResult, str]:
    if error.errno == errno.ECONNREFUSED:
        return ProbeResult.REFUSED, refused
    if error.errno == errno.EPERM:
        return ProbeResult.DROPPED, "dropped by a local filter"
    if error.errno in _REFUSING:
        return ProbeResult.REFUSED, _REFUSING[error.errno]
    raise LabError(f"probe failed: {error}") from None


def matrix_probes(plan: LabPlan) -> list[Probe]:
    """Every endpoint to every other endpoint (not itself) on every port the other serves."""
    return [
        Probe(src.key, dst.key, port.port, port.protocol)
        for src in plan.endpoints
        for dst in plan.endpoints
        if dst.key != src.key
        for port in dst.served
    ]


def describe(probe: Probe) -> str:
    return f"{probe.src} -> {probe.dst} {probe.port}/{protocol_name(probe.protocol)}"

"""Network namespaces by name, entered one thread at a time.

`setns(2)` with CLONE_NEWNET moves only the calling thread, so a thread can step into a lab's
namespace, open a socket there and step back: the socket keeps the namespace it was created in
for its whole life. That is how probes and servers reach every namespace without a process
per namespace (probes) or without `ip netns exec` (servers). Python 3.11 has no `os.setns`,
so this calls libc through ctypes.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Where `ip netns add` mounts named namespaces.
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> Path:
    return NETNS_DIR / name


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace that `fd` refers to."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def enter(name: str) -> None:
    """Move the calling thread into namespace `name` for good (a single-threaded server)."""
    with open(netns_path(name), "rb") as there:
        setns(there.fileno())


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block with the calling thread inside namespace `name`, then step back.

    >>> with entered("nw-demo-pod-x.a"):  # doctest: +SKIP
    ...     sock = socket.socket()  # lives in nw-demo-pod-x.a from now on
    """
    with open("/proc/thread-self/ns/net", "rb") as here, open(netns_path(name), "rb") as there:
        setns(there.fileno())
        try:
            yield
        finally:
            setns(here.fileno())


def write_sysctl(name: str, key: str, value: str) -> None:
    """Set `net.*` sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) inside namespace `name`.
    /proc/sys/net resolves to the namespace of the thread that opens it."""
    path = Path("/proc/sys", *key.split("."))
    with entered(name), open(path, "w", encoding="ascii") as handle:
        handle.write(value)

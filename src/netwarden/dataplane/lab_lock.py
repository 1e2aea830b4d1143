"""One writer at a time per lab, and which process a lab's long-running work belongs to.

Every command that reads a lab's state file, changes the lab and writes the state back (`lab
up`, `lab apply`, `lab pod`, `lab down`, the start and end of a collection) does so holding
`lab_lock`: an exclusive `flock(2)` on `<name>.lock` next to `<name>.json`. Without it two
such commands interleave and the later save drops the earlier one's change (a `lab pod
label` racing a collection's start would drop its `flow_logs` flag, and the collection would
go blind). Readers (`probe`, `status`) take no lock: a state file is only ever replaced
atomically, so they see one whole state.

The kernel releases a flock when the last descriptor of its open file closes, so a holder
that dies (even by SIGKILL) frees the lab: no stale locks, no pid files to clean up. The lock
is re-entrant within a thread (a command that holds it may call code that takes it again,
`apply_lab` -> `destroy_lab` on failure); another thread of the same process waits like
another process does, because each `lab_lock` opens its own file description.

`ProcessIdentity` names a process so that a recycled pid is not mistaken for it: the pid and
its start time (clock ticks after boot, `/proc/<pid>/stat` field 22). A collection records
its own in the lab state, so that a second one is refused while the first runs and a dead
one's leftovers are taken over.

    with lab_lock(state_path("shop")):
        state = load_state("shop")
        ...                                   # change the lab
        save_state(replace(state, ...))
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from netwarden.errors import LabError

#: How long a command waits for another one to finish changing the lab (seconds).
LOCK_SECONDS_ENV = "NETWARDEN_LAB_LOCK_SECONDS"
DEFAULT_LOCK_SECONDS = 60.0
_POLL_SECONDS = 0.02

_held = threading.local()  # `paths`: the lock files this thread holds


def lock_path(state_file: Path) -> Path:
    """The lock file guarding a lab's state file: `<name>.lock` next to `<name>.json`."""
    return state_file.with_suffix(".lock")


def lock_seconds() -> float:
    """How long to wait for a lab's lock: `NETWARDEN_LAB_LOCK_SECONDS`, or 60 s."""
    text = os.environ.get(LOCK_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise LabError(f"{LOCK_SECONDS_ENV}={text!r}: expected a number of seconds >= 0")
    return seconds


@contextmanager
def lab_lock(state_file: Path, timeout: float | None = None) -> Iterator[Path]:
    """Hold the lab's exclusive lock for the block (waiting up to `timeout` seconds, default
    `lock_seconds()`); `LabError` if another command keeps it longer. Yields the lock file."""
    path = lock_path(state_file)
    key = os.path.abspath(path)
    held: set[str] = _held.__dict__.setdefault("paths", set())
    if key in held:  # this thread holds it already: the outer block releases it
        yield path
        return
    descriptor = _acquire(path, lock_seconds() if timeout is None else timeout)
    held.add(key)
    try:
        yield path
    finally:
        held.discard(key)
        os.close(descriptor)  # releases the flock


def _acquire(path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise LabError(f"{path}: cannot open the lab's lock file: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(_busy(path, timeout)) from None
            time.sleep(min(_POLL_SECONDS, left))
            continue
        # `destroy_lab` removes the lock file while holding it: a lock won on the removed
        # file excludes nobody who opens the path afresh, so try again on the new file.
        if _same_file(descriptor, path):
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())  # for the busy message only
            return descriptor
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _busy(path: Path, timeout: float) -> str:
    holder = ""
    with contextlib.suppress(OSError, ValueError):
        holder = f", held by pid {int(path.read_text().strip())}"
    return (
        f"lab {path.stem} is busy: another netwarden command is changing it (lock file "
        f"{path}{holder}); waited {timeout:g} s"
    )


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as `/proc` shows it: its pid and when it started (clock ticks after boot),
    so that another process given the same pid later is not taken for it."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """Process `pid` as it runs now; None when none runs (a zombie has ended)."""
        started = _start_ticks(pid)
        return None if started is None else cls(pid, started)

    @classmethod
    def current(cls) -> ProcessIdentity:
        found = cls.of(os.getpid())
        if found is None:  # pragma: no cover - /proc always shows the caller
            raise LabError("cannot read /proc/self/stat: the lab needs /proc mounted")
        return found

    @property
    def running(self) -> bool:
        return _start_ticks(self.pid) == self.started


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # field 3, the state: exited, only its parent has to reap it
        return None
    return int(fields[19])  # field 22


__all__ = [
    "DEFAULT_LOCK_SECONDS",
    "LOCK_SECONDS_ENV",
    "ProcessIdentity",
    "lab_lock",
    "lock_path",
    "lock_seconds",
]

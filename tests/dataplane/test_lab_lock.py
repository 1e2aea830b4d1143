"""The lab's lock (one writer at a time per lab) and the record of the collecting process,
with real processes contending for a real flock. The race it prevents in a running lab is
tested in tests/flows/test_collect_lock.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.main import app
from netwarden.dataplane.lab_lock import (
    DEFAULT_LOCK_SECONDS,
    LOCK_SECONDS_ENV,
    ProcessIdentity,
    lab_lock,
    lock_path,
    lock_seconds,
)
from netwarden.dataplane.lab_state import LabState, load_state, save_state, state_path
from netwarden.errors import LabError
from netwarden.flows.collect_lab import claim_collection
from tests.dataplane.test_lab_plan import small_plan

HOLD = """
import sys
from pathlib import Path
from netwarden.dataplane.lab_lock import lab_lock
with lab_lock(Path(sys.argv[1]), timeout=30):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes this process's stdin
print("released", flush=True)
"""

#: Each worker appends `count` changes to the lab state, loading and saving it each time.
APPEND = """
import contextlib, sys, time
from dataclasses import replace
from pathlib import Path
from netwarden.dataplane.lab_state import PodChange, load_state, save_state
from netwarden.dataplane.lab_lock import lab_lock
folder, worker, count, locked = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
while not (folder / "go").exists():
    time.sleep(0.001)
for index in range(count):
    guard = lab_lock(folder / "demo.json") if locked == "1" else contextlib.nullcontext()
    with guard:
        state = load_state("demo", folder)
        time.sleep(0.005)  # the window a lost update needs, as compiling a ruleset opens
        change = PodChange("label", f"w{worker}/p{index}")
        save_state(replace(state, changes=(*state.changes, change)), folder)
"""


@contextmanager
def holder(state_file: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lab's lock until its stdin is closed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def test_a_second_process_waits_for_the_lock_and_proceeds_when_it_is_released(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "demo.json"
    with holder(state_file) as first:
        released = threading.Timer(0.5, lambda: first.stdin.close() if first.stdin else None)
        started = time.monotonic()
        released.start()
        with lab_lock(state_file, timeout=10):
            waited = time.monotonic() - started
            assert first.stdout is not None
            assert first.stdout.readline() == "released\n"  # it let go before we got in
        released.join()
    assert 0.4 < waited < 5, waited


def test_a_busy_lab_fails_after_the_timeout_naming_the_lock_and_its_holder(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "demo.json"
    with holder(state_file) as first:
        started = time.monotonic()
        expected = (
            r"lab demo is busy: another netwarden command is changing it \(lock file "
            rf".*/demo\.lock, held by pid {first.pid}\); waited 0\.3 s"
        )
        with pytest.raises(LabError, match=expected), lab_lock(state_file, timeout=0.3):
            pytest.fail("got a lock another process holds")
        assert 0.3 <= time.monotonic() - started < 3


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    state_file = tmp_path / "demo.json"
    with holder(state_file) as first:
        with pytest.raises(LabError, match="busy"), lab_lock(state_file, timeout=0.05):
            pass
        os.kill(first.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops its flock
        first.wait()
        started = time.monotonic()
        with lab_lock(state_file, timeout=5):
            assert time.monotonic() - started < 1


def _append_concurrently(folder: Path, workers: int, count: int, locked: bool) -> list[int]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", APPEND, str(folder), str(w), str(count), "1" if locked else ""],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    try:
        for process in processes:  # all imported: they start together
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        (folder / "go").touch()
        return [process.wait(timeout=60) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.communicate()


def _empty_state(folder: Path) -> None:
    save_state(LabState(small_plan("demo"), "up", (), 1.0, 0.5), folder)
    (folder / "go").unlink(missing_ok=True)


def test_concurrent_read_modify_writes_under_the_lock_lose_nothing(tmp_path: Path) -> None:
    workers, count = 6, 5
    _empty_state(tmp_path)
    assert _append_concurrently(tmp_path, workers, count, locked=True) == [0] * workers
    keys = [c.key for c in load_state("demo", tmp_path).changes]
    assert sorted(keys) == sorted(f"w{w}/p{i}" for w in range(workers) for i in range(count))
    for w in range(workers):  # each worker's changes in the order it made them
        mine = [k for k in keys if k.startswith(f"w{w}/")]
        assert mine == [f"w{w}/p{i}" for i in range(count)]

    # The same workers without the lock lose changes (or trip over each other's temporary
    # file): what the locked run above shows is the lock's doing.
    _empty_state(tmp_path)
    codes = _append_concurrently(tmp_path, workers, count, locked=False)
    try:
        kept = len(load_state("demo", tmp_path).changes)
    except LabError:  # a torn write
        kept = 0
    assert kept < workers * count or any(codes), (kept, codes)


def test_the_lock_is_reentrant_in_a_thread_and_excludes_other_threads(tmp_path: Path) -> None:
    state_file = tmp_path / "demo.json"
    failures: list[str] = []

    def other_thread() -> None:
        try:
            with lab_lock(state_file, timeout=0.1):
                failures.append("another thread got the lock")
        except LabError as error:
            failures.append(str(error))

    with lab_lock(state_file, timeout=1):
        with lab_lock(state_file, timeout=0.1):  # `apply_lab` -> `destroy_lab`: no deadlock
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(failures) == 1 and "is busy" in failures[0], failures
        with lab_lock(state_file, timeout=0.1):  # still ours after the inner block
            pass
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert failures[1:] == ["another thread got the lock"]


def test_a_lock_file_removed_by_its_holder_still_excludes(tmp_path: Path) -> None:
    """`destroy_lab` removes the lock file while holding it; whoever gets the lab next holds
    the lock on the file at the path, which shuts out everyone else."""
    state_file = tmp_path / "demo.json"
    got: list[float] = []
    waiting = threading.Event()
    release = threading.Event()

    def waiter() -> None:
        waiting.set()
        with lab_lock(state_file, timeout=5):
            got.append(time.monotonic())
            release.wait(5)

    with lab_lock(state_file, timeout=1):
        thread = threading.Thread(target=waiter)
        thread.start()
        waiting.wait()
        time.sleep(0.1)
        lock_path(state_file).unlink()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert got and lock_path(state_file).exists()
        outcome = attempt(state_file)
        assert "is busy" in outcome, outcome
    finally:
        release.set()
        thread.join()


def attempt(state_file: Path) -> str:
    """What another process gets when it tries the lock for 0.2 s."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from netwarden.dataplane.lab_lock import lab_lock\n"
            "try:\n"
            "    with lab_lock(Path(sys.argv[1]), timeout=0.2): print('got it')\n"
            "except Exception as error: print(error)\n",
            str(state_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


def test_the_wait_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCK_SECONDS_ENV, raising=False)
    assert lock_seconds() == DEFAULT_LOCK_SECONDS
    monkeypatch.setenv(LOCK_SECONDS_ENV, "2.5")
    assert lock_seconds() == 2.5
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv(LOCK_SECONDS_ENV, bad)
        with pytest.raises(LabError, match=rf"{LOCK_SECONDS_ENV}='{bad}': expected a number"):
            lock_seconds()


def test_a_lock_file_that_cannot_be_made_is_a_lab_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with (
        pytest.raises(LabError, match=r"demo\.lock: cannot open the lab's lock file"),
        lab_lock(blocker / "demo.json", timeout=0.1),
    ):
        pass


# --- the collecting process -------------------------------------------------------------------


def test_a_state_file_from_before_the_collector_field_still_loads(tmp_path: Path) -> None:
    save_state(LabState(small_plan("demo"), "up", (), 1.0, 0.5, flow_logs=True), tmp_path)
    path = state_path("demo", tmp_path)
    data = json.loads(path.read_text())
    del data["collector"]
    path.write_text(json.dumps(data))
    state = load_state("demo", tmp_path)
    assert state.flow_logs and state.collector is None


def test_a_process_identity_survives_the_state_file_and_tells_a_recycled_pid(
    tmp_path: Path,
) -> None:
    me = ProcessIdentity.current()
    assert me.pid == os.getpid() and me.running
    save_state(LabState(small_plan("demo"), "up", (), 1.0, 0.5, collector=me), tmp_path)
    assert load_state("demo", tmp_path).collector == me
    assert not replace(me, started=me.started + 1).running  # same pid, another process


def _ended_process() -> tuple[ProcessIdentity, subprocess.Popen[bytes]]:
    """A process recorded while it ran, then killed and left a zombie (not reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = ProcessIdentity.of(process.pid)
    assert identity is not None and identity.running
    process.kill()
    deadline = time.monotonic() + 5
    while ProcessIdentity.of(process.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    return identity, process


def test_a_running_collector_refuses_a_second_collection() -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = ProcessIdentity.of(other.pid)
        assert identity is not None
        state = LabState(small_plan("demo"), "up", (), 1.0, 0.5, flow_logs=True)
        with pytest.raises(
            LabError,
            match=rf"lab demo is already collecting \(netwarden process {other.pid}\): one "
            "collection per lab",
        ):
            claim_collection(replace(state, collector=identity))
    finally:
        other.kill()
        other.wait()


def test_a_dead_collectors_flag_is_taken_over() -> None:
    identity, process = _ended_process()
    try:
        assert ProcessIdentity.of(process.pid) is None  # a zombie has ended
        state = LabState(small_plan("demo"), "up", (), 1.0, 0.5, flow_logs=True)
        assert claim_collection(replace(state, collector=identity)) == identity
        # An older netwarden recorded no process: its flag is taken over too.
        assert claim_collection(state) == ProcessIdentity(0, 0)
        assert claim_collection(replace(state, flow_logs=False)) is None
    finally:
        process.wait()


@pytest.mark.root
def test_a_lab_command_on_a_busy_lab_exits_2_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETWARDEN_LAB_DIR", str(tmp_path))
    monkeypatch.setenv(LOCK_SECONDS_ENV, "0.2")
    save_state(LabState(small_plan("demo"), "up", (), 1.0, 0.5), tmp_path)
    before = state_path("demo", tmp_path).read_bytes()
    with holder(state_path("demo", tmp_path)):
        for command in (
            ["lab", "pod", "label", "x/a", "k=v", "--name", "demo"],
            ["lab", "pod", "del", "x/a", "--name", "demo"],
            ["lab", "apply", "-f", str(tmp_path / "missing.yaml"), "--name", "demo"],
        ):
            if command[1] == "apply":
                (tmp_path / "missing.yaml").write_text("")
            result = CliRunner().invoke(app, command)
            assert result.exit_code == 2, result.output
            assert "lab demo is busy: another netwarden command is changing it" in result.output
            assert "Traceback" not in result.output
    assert state_path("demo", tmp_path).read_bytes() == before

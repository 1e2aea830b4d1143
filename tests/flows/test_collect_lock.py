"""A collection and the `lab` commands that change the lab at the same time (root; CI runs
them): every one of them is a read-modify-write of the lab state, made under the lab's lock.

- `lab pod label` commands (real CLI processes) racing a collection's start: none of them
  drops the `flow_logs` flag (the rulesets they load keep logging) and none of their changes
  is lost; a second collection is refused while the first runs; the flag goes when it stops.
- A collector killed with SIGKILL leaves the flag and its flow log readers behind: the next
  collection takes both over and collects.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwarden.dataplane.apply import list_table
from netwarden.dataplane.lab_lock import ProcessIdentity
from netwarden.dataplane.lab_state import LabState, load_state
from netwarden.flows.collect_lab import lab_flow_logs
from netwarden.model import TCP
from tests.flows.lab_inputs import allow_ingress_yaml, lab_up, namespace_yaml, node_yaml, pod_yaml
from tests.flows.lab_traffic import Conversation, addresses, run

pytestmark = pytest.mark.root

PREFIX = "nwhlk"  # this module's labs: nwhlk-race-*
LAB = "race"
NETWARDEN = str(Path(sys.executable).parent / "netwarden")
LABELLERS = 6

INPUTS = (
    namespace_yaml("shop")
    + node_yaml("n1")
    + node_yaml("n2")
    + pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + pod_yaml("api-0", "app: api", "n2", "10.7.2.10")
    + allow_ingress_yaml("api", "web", 8080)
)
TO_API = Conversation("shop/web-0", "shop/api-0", 8080, TCP, 1000, 100, True)


@pytest.fixture
def race_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with lab_up(LAB, INPUTS, PREFIX, tmp_path, monkeypatch) as state:  # for CLI processes too
        yield state


def _logging(state: LabState) -> list[bool]:
    """Per node: does the ruleset loaded in it now log (was it compiled with flow logs)?"""
    return ["log prefix" in list_table(node.netns) for node in state.plan.nodes]


def _readers(state: LabState) -> list[int]:
    """ulogd processes in the lab's nodes."""
    found = []
    for node in state.plan.nodes:
        pids = subprocess.run(
            ["ip", "netns", "pids", node.netns], capture_output=True, text=True, check=True
        ).stdout.split()
        for pid in pids:
            try:
                program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if program.endswith(b"ulogd"):
                found.append(int(pid))
    return found


@pytest.mark.slow
def test_pod_changes_racing_a_collection_keep_its_flow_logs(race_lab: Path) -> None:
    labellers = [
        subprocess.Popen(
            [NETWARDEN, "lab", "pod", "label", "shop/web-0", f"k{i}=v", "--name", LAB],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(LABELLERS)
    ]
    try:
        # Start collecting once the first change is saved: the others are running, most of
        # them waiting for the lab, when the collection turns flow logs on.
        deadline = time.monotonic() + 60
        while not load_state(LAB, race_lab).changes:
            assert time.monotonic() < deadline, [p.poll() for p in labellers]
            time.sleep(0.005)
        with lab_flow_logs(LAB, race_lab) as collector:
            outputs = [p.communicate(timeout=120) for p in labellers]
            for process, (out, err) in zip(labellers, outputs, strict=True):
                assert process.returncode == 0, out + err
            # Which racers ran before the collection is up to the scheduler; one run after it
            # must say so (and keep the flag, as the racers did).
            late = subprocess.run(
                [NETWARDEN, "lab", "pod", "label", "shop/web-0", "late=v", "--name", LAB],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert late.returncode == 0 and "a collection is running" in late.stdout, late
            state = load_state(LAB, race_lab)
            assert state.flow_logs and state.collector == ProcessIdentity.current()
            assert _logging(state) == [True, True]
            assert sorted(c.labels for c in state.changes) == [
                ((f"k{i}", "v"),) for i in range(LABELLERS)
            ] + [(("late", "v"),)]
            client = run(TO_API, *addresses(state.plan))

            second = subprocess.run(
                [*_collect(race_lab / "second.duckdb"), "--duration", "1"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 2, second.stdout + second.stderr
            assert (
                f"lab {LAB} is already collecting (netwarden process {os.getpid()})"
                in second.stderr
            ), second.stderr
            assert load_state(LAB, race_lab) == state  # refused before it changed anything
            assert _logging(state) == [True, True]
            result = collector.stop()
    finally:
        for process in labellers:
            process.kill()
            process.communicate()
    after = load_state(LAB, race_lab)
    assert not after.flow_logs and after.collector is None and _logging(after) == [False, False]
    assert {(r["source_ip"], r["source_port"]) for r in result.table.to_pylist()} >= {client}


def _collect(store: Path) -> list[str]:
    return [NETWARDEN, "collect", "--lab", LAB, "--flows", str(store)]


def _wait_for(process: subprocess.Popen[str], text: str, seconds: float) -> str:
    """stderr of `process` until a line with `text` (within `seconds`)."""
    assert process.stderr is not None
    said = ""
    deadline = time.monotonic() + seconds
    while text not in said:
        left = deadline - time.monotonic()
        assert left > 0 and process.poll() is None, said
        if select.select([process.stderr], [], [], left)[0]:
            said += process.stderr.readline()
    return said


@pytest.mark.slow
def test_a_killed_collectors_flow_logs_are_taken_over(race_lab: Path) -> None:
    killed = subprocess.Popen(
        [*_collect(race_lab / "killed.duckdb"), "--duration", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(killed, "collecting for", 60)
        os.kill(killed.pid, signal.SIGKILL)  # no cleanup: flag, rulesets and readers stay
        killed.wait()
    finally:
        killed.kill()
        killed.communicate()
    left = load_state(LAB, race_lab)
    assert left.flow_logs and left.collector is not None and left.collector.pid == killed.pid
    assert not left.collector.running and _logging(left) == [True, True]
    orphans = _readers(left)
    assert len(orphans) == 2, orphans  # one ulogd per node, holding the NFLOG groups

    notices: list[str] = []
    with lab_flow_logs(LAB, race_lab, notify=notices.append) as collector:
        assert notices == [
            f"lab {LAB}: taking over flow logs from a collection that ended without turning"
            f" them off (process {killed.pid}; 4 flow log readers stopped)"
        ]
        taken = load_state(LAB, race_lab)
        assert taken.collector == ProcessIdentity.current() and taken.flow_logs
        assert not set(orphans) & set(_readers(taken))
        client = run(TO_API, *addresses(taken.plan))
        result = collector.stop()
    records = [r for r in result.table.to_pylist() if (r["source_ip"], r["source_port"]) == client]
    assert {r["reporter"] for r in records} == {"src", "dst"}, records
    after = load_state(LAB, race_lab)
    assert not after.flow_logs and after.collector is None and _logging(after) == [False, False]

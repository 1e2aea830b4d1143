"""Shared by the dataplane tests: root tests fail (never skip) where they cannot run, and every
lab a test makes uses this run's own name prefix and state folder, so other labs are safe."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run_prefix() -> str:
    """`nwt` and two letters from the pid: `lab down --all` in a test removes this run's labs
    only, never a developer's `nw-` lab nor those of another test run on the same machine."""
    pid = os.getpid()
    return "nwt" + chr(ord("a") + pid % 26) + chr(ord("a") + pid // 26 % 26)


TEST_PREFIX = _run_prefix()


@pytest.fixture(autouse=True)
def _root_or_fail(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("root") is None:
        return
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces): run the suite as root, as CI does")
    if shutil.which("ip") is None:
        pytest.fail("this test needs the `ip` command: install iproute2 (make system-deps)")


@pytest.fixture
def lab_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state folder and the test prefix, for the CLI and the library alike."""
    state = tmp_path / "labs"
    monkeypatch.setenv("NETWARDEN_LAB_DIR", str(state))
    monkeypatch.setenv("NETWARDEN_LAB_PREFIX", TEST_PREFIX)
    yield state

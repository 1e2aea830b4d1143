"""The lab for real: namespaces, veths, servers and probes (root; CI runs these as root).

One small lab (2 nodes, 3 pods, 1 hostNetwork pod, 1 external) is built per module and torn
down in a finalizer; tests that build or crash their own lab clean up the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netwarden.cli.lab import lab_app
from netwarden.dataplane.lab import (
    apply_lab,
    destroy_all,
    destroy_lab,
    lab_namespaces,
    lab_processes,
)
from netwarden.dataplane.lab_plan import LabPlan
from netwarden.dataplane.lab_probe import ProbeOutcome, ProbeResult, matrix_probes, run_probes
from netwarden.dataplane.lab_state import LabState, list_states
from netwarden.engine.batch import Probe
from netwarden.errors import LabError
from netwarden.model import TCP, UDP
from tests.dataplane.conftest import TEST_PREFIX
from tests.dataplane.test_lab_plan import SMALL, small_plan

pytestmark = pytest.mark.root

CONNECTED, REFUSED, TIMEOUT = ProbeResult.CONNECTED, ProbeResult.REFUSED, ProbeResult.TIMEOUT


@dataclass(frozen=True)
class Lab:
    state: LabState
    directory: Path

    @property
    def plan(self) -> LabPlan:
        return self.state.plan


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("labs")
    plan = small_plan("small", prefix=TEST_PREFIX)
    destroy_lab(plan.name, TEST_PREFIX, directory)  # a crashed earlier run may have left it
    try:
        yield Lab(apply_lab(plan, directory), directory)
    finally:
        destroy_lab(plan.name, TEST_PREFIX, directory)


def probe(
    lab: Lab, src: str, dst: str, port: int, protocol: int, timeout: float = 1.0
) -> ProbeOutcome:
    return run_probes(lab.plan, [Probe(src, dst, port, protocol)], timeout=timeout)[0]


def results(lab: Lab, probes: list[Probe], timeout: float = 1.0) -> list[ProbeResult]:
    return [o.result for o in run_probes(lab.plan, probes, timeout=timeout)]


def leftovers(lab_prefix: str) -> list[str]:
    """Namespaces, processes and root-namespace links that carry the prefix."""
    found = [f"netns {name}" for name in lab_namespaces(lab_prefix)]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if lab_prefix.encode() in command:
                found.append(f"pid {entry}: {command.decode(errors='replace')}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {m}" for m in re.findall(rf"^\d+: ({TEST_PREFIX}[0-9a-f]+)", links, re.M)]
    return found


def cli_env(directory: Path) -> dict[str, str]:
    return {"NETWARDEN_LAB_DIR": str(directory), "NETWARDEN_LAB_PREFIX": TEST_PREFIX}


# --- connectivity ---------------------------------------------------------------------------


def test_the_lab_is_up_with_a_server_per_serving_namespace(lab: Lab) -> None:
    assert lab.state.status == "up"
    assert len(lab.state.servers) == len(lab.plan.servers) == 5
    assert set(lab_namespaces(lab.plan.prefix)) == {ns.name for ns in lab.plan.namespaces}
    assert {s.pid for s in lab.state.servers} == set(lab_processes(lab.plan.prefix))


def test_tcp_and_udp_connect_where_a_server_listens_and_are_refused_where_not(lab: Lab) -> None:
    probes = [
        Probe("shop/db-0", "shop/web-0", 80, TCP),
        Probe("shop/db-0", "shop/web-0", 81, TCP),
        Probe("shop/db-0", "shop/web-0", 53, UDP),
        Probe("shop/db-0", "shop/web-0", 54, UDP),
    ]
    assert results(lab, probes) == [CONNECTED, REFUSED, CONNECTED, REFUSED]


def test_pods_on_different_nodes_reach_each_other(lab: Lab) -> None:
    web, api = lab.plan.endpoint("shop/web-0"), lab.plan.endpoint("shop/api-0")
    assert web is not None and api is not None and web.node != api.node
    probes = [
        Probe("shop/web-0", "shop/api-0", 8080, TCP),
        Probe("shop/web-0", "shop/api-0", 8125, UDP),
        Probe("shop/api-0", "shop/web-0", 80, TCP),
        Probe("shop/api-0", "shop/web-0", 53, UDP),
        Probe("shop/api-0", str(web.ips[0]), 9090, TCP),
    ]
    assert results(lab, probes) == [CONNECTED] * 5


def test_host_network_pod_and_node_addresses(lab: Lab) -> None:
    probes = [
        Probe("shop/api-0", "monitoring/agent-0", 9100, TCP),  # another node's host network
        Probe("shop/web-0", "monitoring/agent-0", 9101, UDP),  # its own node's
        Probe("monitoring/agent-0", "shop/api-0", 8080, TCP),
        Probe("monitoring/agent-0", "shop/web-0", 53, UDP),
        Probe("shop/web-0", "172.20.0.3", 22, TCP),  # node-b itself: nothing listens
    ]
    assert results(lab, probes) == [CONNECTED, CONNECTED, CONNECTED, CONNECTED, REFUSED]


def test_external_endpoint_is_reached_through_the_fabric_both_ways(lab: Lab) -> None:
    probes = [
        Probe("shop/api-0", "203.0.113.7", 443, TCP),
        Probe("shop/web-0", "203.0.113.7", 53, UDP),
        Probe("monitoring/agent-0", "203.0.113.7", 80, TCP),
        Probe("203.0.113.7", "shop/db-0", 5432, TCP),
        Probe("203.0.113.7", "10.244.1.10", 5353, UDP),
    ]
    assert results(lab, probes) == [CONNECTED, CONNECTED, REFUSED, CONNECTED, CONNECTED]


def test_the_full_matrix_connects_on_every_served_port(lab: Lab) -> None:
    probes = matrix_probes(lab.plan)
    started = time.monotonic()
    outcomes = run_probes(lab.plan, probes)
    seconds = time.monotonic() - started
    wrong = [(o.probe, o.result, o.detail) for o in outcomes if o.result is not CONNECTED]
    assert not wrong
    print(f"{len(probes)} probes in {seconds:.3f} s ({len(probes) / seconds:.0f}/s)")


def test_silent_drop_is_timeout_and_icmp_prohibited_is_refused(lab: Lab) -> None:
    api = lab.plan.endpoint("shop/api-0")
    assert api is not None
    node = next(n for n in lab.plan.nodes if n.name == api.node)
    original = next(
        r
        for r in lab.plan.routes
        if r.netns == node.netns and str(r.destination) == f"{api.ips[0]}/32"
    )
    ip = ["ip", "-n", node.netns, "route", "replace"]
    probes = [
        Probe("shop/web-0", "shop/api-0", 8080, TCP),
        Probe("shop/web-0", "shop/api-0", 8125, UDP),
    ]
    try:
        subprocess.run([*ip, "blackhole", f"{api.ips[0]}/32"], check=True)
        outcomes = run_probes(lab.plan, probes, timeout=0.3)
        assert [o.result for o in outcomes] == [TIMEOUT, TIMEOUT]
        assert all(0.25 < o.seconds < 3.0 for o in outcomes)  # bounded, with room for a busy CI
        subprocess.run([*ip, "prohibit", f"{api.ips[0]}/32"], check=True)
        outcomes = run_probes(lab.plan, probes, timeout=0.3)
        assert [(o.result, o.detail) for o in outcomes] == [(REFUSED, "ICMP host unreachable")] * 2
    finally:
        subprocess.run(
            [
                *ip,
                f"{api.ips[0]}/32",
                "dev",
                original.ifname,
                "scope",
                "link",
                "src",
                str(original.src),
            ],
            check=True,
        )
    assert results(lab, probes) == [CONNECTED, CONNECTED]


# --- the command line -----------------------------------------------------------------------


def test_probe_command_prints_one_json_array_in_input_order(lab: Lab, tmp_path: Path) -> None:
    csv = tmp_path / "probes.csv"
    csv.write_text(
        "src,dst,port,protocol\n"
        "shop/web-0,shop/api-0,8080,TCP\n"
        "shop/web-0,shop/api-0,8081,TCP\n"
        "# a comment\n"
        "203.0.113.7,monitoring/agent-0,9101,udp\n"
        "shop/web-0,shop/api-0,9000,SCTP\n"
    )
    args = ["probe", "--name", "small", "--probes", str(csv), "-o", "json"]
    result = CliRunner().invoke(lab_app, args, env=cli_env(lab.directory))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    keys = ("src", "dst", "port", "protocol", "result")
    assert all(tuple(row) == keys for row in rows)
    assert [tuple(row.values()) for row in rows] == [
        ("shop/web-0", "shop/api-0", 8080, "TCP", "connected"),
        ("shop/web-0", "shop/api-0", 8081, "TCP", "refused"),
        ("203.0.113.7", "monitoring/agent-0", 9101, "UDP", "connected"),
        ("shop/web-0", "shop/api-0", 9000, "SCTP", "skipped"),
    ]


def test_probe_command_names_the_line_of_an_endpoint_the_lab_lacks(
    lab: Lab, tmp_path: Path
) -> None:
    csv = tmp_path / "probes.csv"
    csv.write_text(
        "src,dst,port,protocol\nshop/web-0,shop/api-0,80,TCP\nshop/web-0,8.8.8.8,53,UDP\n"
    )
    args = ["probe", "--name", "small", "--probes", str(csv)]
    result = CliRunner().invoke(lab_app, args, env=cli_env(lab.directory))
    assert result.exit_code != 0
    assert re.search(r"probes\.csv:3: dst: '8\.8\.8\.8' is not in lab small", str(result.exception))


def test_up_then_down_leaves_nothing_behind(lab_env: Path) -> None:
    runner = CliRunner()
    started = time.monotonic()
    result = runner.invoke(lab_app, ["up", "-f", str(SMALL), "--name", "updown"])
    up_seconds = time.monotonic() - started
    try:
        assert result.exit_code == 0, result.output
        assert "lab updown up in" in result.stdout
        assert len(lab_namespaces(f"{TEST_PREFIX}-updown-")) == 6
        assert (lab_env / "updown.json").exists()
        status = runner.invoke(lab_app, ["status"])
        assert re.search(r"updown\s+│\s+up\s+│\s+2\s+│\s+4\s+│\s+6/6\s+│\s+4/4", status.stdout)
    finally:
        started = time.monotonic()
        down = runner.invoke(lab_app, ["down", "--name", "updown"])
        down_seconds = time.monotonic() - started
    assert down.exit_code == 0, down.output
    assert "lab updown down: 6 namespaces, 4 servers removed" in down.stdout
    assert leftovers(f"{TEST_PREFIX}-updown-") == []
    assert not (lab_env / "updown.json").exists()
    again = runner.invoke(lab_app, ["down", "--name", "updown"])
    assert again.exit_code == 0 and "no lab named updown" in again.stdout
    print(f"lab up {up_seconds:.2f} s, down {down_seconds:.2f} s")


def test_down_all_cleans_up_after_a_crash(lab_env: Path) -> None:
    """`lab up` killed mid-way (its whole process group, as Ctrl-C or a crash would): the state
    file and whatever was made stay behind until `lab down --all`."""
    command = [sys.executable, "-c", "from netwarden.cli.lab import lab_app; lab_app()"]
    process = subprocess.Popen(
        [*command, "up", "-f", str(SMALL), "--name", "crash"],
        env={**os.environ, **cli_env(lab_env)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not lab_namespaces(f"{TEST_PREFIX}-crash-") and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    try:
        assert (lab_env / "crash.json").exists()
        assert lab_namespaces(f"{TEST_PREFIX}-crash-")
        result = CliRunner().invoke(lab_app, ["down", "--all"])
        assert result.exit_code == 0, result.output
        assert "lab crash down:" in result.stdout
    finally:
        destroy_all(TEST_PREFIX, lab_env)
    assert leftovers(f"{TEST_PREFIX}-crash-") == []
    assert list_states(lab_env) == []


def test_a_failed_up_leaves_nothing_half_applied(lab_env: Path) -> None:
    plan = small_plan("broken", prefix=TEST_PREFIX)
    unbindable = replace(plan.servers[-1], ips=(IPv4Address("192.0.2.99"),))  # not in its netns
    broken = replace(plan, servers=(*plan.servers[:-1], unbindable))
    with pytest.raises(LabError, match=r"lab servers failed: .*Cannot assign requested address"):
        apply_lab(broken, lab_env)
    assert leftovers(plan.prefix) == []
    assert list_states(lab_env) == []


def test_down_all_also_stops_servers_left_without_state(lab_env: Path) -> None:
    plan = small_plan("orphan", prefix=TEST_PREFIX)
    try:
        apply_lab(plan, lab_env)
        (lab_env / "orphan.json").unlink()  # as if the state file were lost
        teardowns = destroy_all(TEST_PREFIX, lab_env)
        assert [(t.name, t.namespaces, t.processes, t.state_file) for t in teardowns] == [
            ("orphan", 7, 5, False)
        ]
    finally:
        destroy_lab("orphan", TEST_PREFIX, lab_env)
    assert leftovers(plan.prefix) == []

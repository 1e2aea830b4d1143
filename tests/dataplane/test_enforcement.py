"""Enforcement proven with packets (root; CI runs it): every table-driven semantics case is run
in a lab whose nodes load the case's policies compiled to nftables, every TCP and UDP row is
probed with a real connection, and each probe must show the engine's verdict: allowed ⇔
connected, denied ⇔ no answer (or dropped by the sender's own node).

Cases with the same inventory share one lab (split over a few identical labs that run at
once); between cases the lab takes the next case's rulesets with `enforce_lab`, exactly as
`netwarden lab apply` does, so replacing a live ruleset is exercised 150 times. SCTP rows are
compiled and loaded but not probed (this kernel has no SCTP sockets), and so are the ICMP rows.
Calico host endpoint cases are probed too: the node namespace holds the host endpoint's
addresses and serves the probed ports, so a probe to a node address crosses the node's
compiled host endpoint chains (failsafe ports, tiers, profiles, default deny).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest
import yaml

from netwarden.dataplane.lab import apply_lab, destroy_lab
from netwarden.dataplane.lab_enforce import (
    agrees,
    compile_lab,
    enforce_lab,
    engine_verdicts,
    lab_view,
)
from netwarden.dataplane.lab_manifests import served_ports
from netwarden.dataplane.lab_plan import LAB_PROTOCOLS, ExternalSpec, LabPlan, ServedPort, plan_lab
from netwarden.dataplane.lab_probe import ProbeOutcome, run_probes
from netwarden.dataplane.nftables import calico_interfaces, compile_ruleset
from netwarden.dialects import load_documents
from netwarden.dialects.source import Document, read_text
from netwarden.engine.batch import Probe
from netwarden.model import ClusterState, EndpointKind, parse_protocol
from tests.dataplane.conftest import TEST_PREFIX
from tests.dataplane.test_lab_e2e import lab_manifests
from tests.semantics.cases import Case, Expectation, all_cases

pytestmark = pytest.mark.root

#: Cases not probed, with the reason (none: every case is probed).
NOT_PROBED: dict[str, str] = {}
#: The cases whose nodes have Calico host endpoints: probed like the others.
HOST_ENDPOINT_CASES = (
    "global-policy-namespace-selector-host-endpoints",
    "host-endpoints-and-profiles",
)
CASES_PER_LAB = 24  # a group of cases with one inventory is split over identical labs
ALLOWED_TIMEOUT = 3.0  # a connection the engine allows answers in milliseconds
DENIED_TIMEOUT = 0.5  # how long a probe the engine denies waits for an answer


@dataclass(frozen=True)
class Loaded:
    case: Case
    documents: list[Document]
    cluster: ClusterState


@dataclass(frozen=True)
class Row:
    case: str
    expectation: Expectation
    allowed: bool
    outcome: ProbeOutcome
    match: bool | None


def load(case: Case) -> Loaded:
    documents = read_text(yaml.safe_dump_all(lab_manifests(case)), str(case.path))
    result = load_documents(documents)
    assert not result.skipped, result.skipped
    return Loaded(case, documents, result.cluster)


def inventory(cluster: ClusterState) -> tuple[object, ...]:
    """What a lab is built from: endpoints with their addresses and nodes, and the nodes."""
    endpoints = sorted((e.key, e.kind.value, e.ips, e.node) for e in cluster.endpoints)
    return (tuple(endpoints), tuple((n.name, n.ips) for n in cluster.nodes))


def probe_of(expectation: Expectation) -> Probe:
    protocol = parse_protocol(expectation.protocol)
    assert protocol is not None
    return Probe(expectation.src, expectation.dst, expectation.port, protocol)


def plan_for(group: list[Loaded], name: str) -> LabPlan:
    """One lab for every case of the group: the ports each case serves or probes, and the
    external addresses its rows name."""
    cluster = group[0].cluster
    served: dict[str, set[ServedPort]] = defaultdict(set)
    externals: dict[IPv4Address, set[ServedPort]] = defaultdict(set)
    for loaded in group:
        for key, ports in served_ports(loaded.documents, loaded.cluster).items():
            served[key].update(ports)
        for expectation in loaded.case.expectations():
            probe = probe_of(expectation)
            port = {ServedPort(probe.port, probe.protocol)} & {
                ServedPort(probe.port, p) for p in LAB_PROTOCOLS
            }
            for end, target in ((probe.src, False), (probe.dst, True)):
                endpoint = cluster.endpoint(end)
                assert endpoint is not None, end
                if endpoint.key in cluster.endpoints_by_key:
                    if target:
                        served[endpoint.key].update(port)
                    continue
                address = ip_address(end)
                assert isinstance(address, IPv4Address)
                if not any(address in node.ips for node in cluster.nodes):
                    externals[address].update(port if target else set())
    return plan_lab(
        cluster,
        name,
        served={key: tuple(sorted(ports)) for key, ports in served.items()},
        externals=[ExternalSpec(ip, tuple(sorted(p)) or None) for ip, p in externals.items()],
        prefix=TEST_PREFIX,
    )


def run_lab(plan: LabPlan, group: list[Loaded], directory: Path) -> list[Row]:
    """Build the lab enforcing the first case (the `lab up --enforce` path), then for each
    case load its rulesets (the `lab apply` path) and probe its rows."""
    destroy_lab(plan.name, TEST_PREFIX, directory)
    rows: list[Row] = []
    try:
        first = compile_lab(group[0].cluster, plan)
        apply_lab(plan, directory, enforce=lambda: enforce_lab(first, flush=False))
        for index, loaded in enumerate(group):
            if index:
                enforce_lab(compile_lab(loaded.cluster, plan))
            expectations = [
                e for e in loaded.case.expectations() if probe_of(e).protocol in LAB_PROTOCOLS
            ]
            probes = [probe_of(e) for e in expectations]
            verdicts = engine_verdicts(lab_view(loaded.cluster, plan), probes)
            outcomes: dict[int, ProbeOutcome] = {}
            for allowed, timeout in ((True, ALLOWED_TIMEOUT), (False, DENIED_TIMEOUT)):
                chosen = [i for i, verdict in enumerate(verdicts) if verdict is allowed]
                found = run_probes(plan, [probes[i] for i in chosen], timeout=timeout, workers=64)
                outcomes.update(zip(chosen, found, strict=True))
            rows += [
                Row(
                    loaded.case.name,
                    expectation,
                    verdicts[i],
                    outcomes[i],
                    agrees(outcomes[i], verdicts[i]),
                )
                for i, expectation in enumerate(expectations)
            ]
    finally:
        destroy_lab(plan.name, TEST_PREFIX, directory)
    return rows


@pytest.fixture(scope="module")
def loaded_cases() -> list[Loaded]:
    return [load(case) for case in all_cases()]


@pytest.fixture(scope="module")
def labs(loaded_cases: list[Loaded]) -> Iterator[list[tuple[LabPlan, list[Loaded]]]]:
    groups: dict[tuple[object, ...], list[Loaded]] = defaultdict(list)
    for loaded in loaded_cases:
        if loaded.case.name not in NOT_PROBED:
            groups[inventory(loaded.cluster)].append(loaded)
    chunks = [
        group[start : start + CASES_PER_LAB]
        for group in groups.values()
        for start in range(0, len(group), CASES_PER_LAB)
    ]
    yield [(plan_for(chunk, f"enf{i}"), chunk) for i, chunk in enumerate(chunks)]


def test_every_probe_shows_the_engine_verdict(
    labs: list[tuple[LabPlan, list[Loaded]]], loaded_cases: list[Loaded], tmp_path: Path
) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(labs), thread_name_prefix="lab") as pool:
        futures = [pool.submit(run_lab, plan, group, tmp_path) for plan, group in labs]
        rows = [row for future in futures for row in future.result()]
    seconds = time.monotonic() - started
    probed = [row for row in rows if row.match is not None]
    wrong = [
        f"{row.case}: {row.expectation}: engine {'allows' if row.allowed else 'denies'}, "
        f"probe {row.outcome.result.value} ({row.outcome.detail})"
        for row in probed
        if not row.match
    ]
    assert not wrong, f"{len(wrong)} of {len(probed)} probes disagree:\n" + "\n".join(wrong)
    # The engine agrees with the cases themselves (tests/semantics proves it too).
    assert all(row.allowed == row.expectation.allowed for row in rows)
    # Nothing was left out: every TCP/UDP row of every case but the listed ones was probed.
    cases = [loaded for _, group in labs for loaded in group]
    wanted = sum(
        1
        for loaded in cases
        for expectation in loaded.case.expectations()
        if probe_of(expectation).protocol in LAB_PROTOCOLS
    )
    assert len(probed) == wanted and len(cases) == len(loaded_cases) - len(NOT_PROBED)
    assert wanted > 4000 and sum(1 for row in probed if not row.allowed) > 600
    # Host endpoints included: every row of their cases probed, both verdicts seen.
    for name in HOST_ENDPOINT_CASES:
        verdicts = {row.allowed for row in probed if row.case == name}
        assert verdicts == {True, False}, name
    print(
        f"\nenforcement: {len(cases)} cases in {len(labs)} labs, {len(probed)} probes "
        f"({sum(1 for r in probed if not r.allowed)} denied), 0 mismatches, {seconds:.1f} s"
    )


@pytest.mark.parametrize("name", HOST_ENDPOINT_CASES)
def test_host_endpoint_cases_compile_their_host_chains(
    name: str, loaded_cases: list[Loaded]
) -> None:
    """Each node of a host endpoint case dispatches its host endpoint's address (the lab run
    above proves the verdicts with packets)."""
    (loaded,) = [loaded for loaded in loaded_cases if loaded.case.name == name]
    cluster = loaded.cluster
    assert NOT_PROBED == {}
    for node in cluster.nodes:
        ruleset = compile_ruleset(cluster, node.name, calico_interfaces(cluster, node.name))
        (host,) = [
            e
            for e in cluster.endpoints
            if e.kind is EndpointKind.HOST_ENDPOINT and e.node == node.name
        ]
        (address,) = host.ips
        maps = {c.name: c.elements for c in ruleset.contents}
        for direction in ("ingress", "egress"):
            (entry,) = maps[f"host4_{direction}_dispatch"]
            assert entry.startswith(f"{address} : jump host_{direction}_c_")

"""End to end: semantics cases built as labs, with no policy enforced (root).

Before any enforcement backend exists, this proves the lab itself: every probe to a served
TCP/UDP port connects, every probe to a port nothing serves is refused, so that a later
`denied` can only come from the ruleset under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netwarden.dataplane.lab import apply_lab, destroy_lab
from netwarden.dataplane.lab_manifests import LAB_PORTS_ANNOTATION, served_ports
from netwarden.dataplane.lab_plan import LabPlan, ServedPort, plan_lab
from netwarden.dataplane.lab_probe import ProbeResult, matrix_probes, run_probes
from netwarden.dialects import load_documents
from netwarden.dialects.source import read_text
from netwarden.engine.batch import Probe
from netwarden.model import SCTP, parse_protocol
from tests.dataplane.conftest import TEST_PREFIX
from tests.semantics.cases import CONFORMANCE, K8S_E2E, Case

pytestmark = pytest.mark.root

CASES = [
    # two nodes, hostNetwork pods at the node IPs, undeclared TCP/UDP/SCTP ports
    CONFORMANCE / "anp-egress-node-peers-01.yaml",
    # no nodes (the lab makes two), named TCP/UDP/SCTP ports on 9 pods
    K8S_E2E / "ingress-one-named-port.yaml",
]


def lab_manifests(case: Case) -> list[dict[str, Any]]:
    """The case's manifests, with the ports pods serve undeclared listed in the lab annotation
    (`Case.manifests` leaves them out: they are not container ports)."""
    undeclared = {
        (pod["namespace"], pod["name"]): [
            f"{port['port']}/{port['protocol']}"
            for port in pod.get("ports", [])
            if not port.get("declared", True)
        ]
        for pod in case.data["pods"]
    }
    documents = case.manifests()
    for document in documents:
        meta = document["metadata"]
        extra = (
            undeclared.get((meta.get("namespace"), meta["name"]))
            if document["kind"] == "Pod"
            else None
        )
        if extra:
            meta["annotations"] = {LAB_PORTS_ANNOTATION: ",".join(extra)}
    return documents


def case_plan(case: Case, name: str) -> LabPlan:
    documents = read_text(yaml.safe_dump_all(lab_manifests(case)), str(case.path))
    cluster = load_documents(documents).cluster
    return plan_lab(cluster, name, served=served_ports(documents, cluster), prefix=TEST_PREFIX)


@pytest.fixture(params=CASES, ids=lambda path: path.stem)
def case_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Case, LabPlan]]:
    path: Path = request.param
    case = Case(path, yaml.safe_load(path.read_text()))
    plan = case_plan(case, f"e2e{CASES.index(path)}")
    destroy_lab(plan.name, TEST_PREFIX, tmp_path)
    try:
        apply_lab(plan, tmp_path)
        yield case, plan
    finally:
        destroy_lab(plan.name, TEST_PREFIX, tmp_path)


def test_every_served_port_connects_and_nothing_else_does(case_lab: tuple[Case, LabPlan]) -> None:
    case, plan = case_lab
    # The lab serves exactly the case's TCP/UDP ports, declared or not.
    for pod in case.data["pods"]:
        wanted = {
            ServedPort(port["port"], parse_protocol(port["protocol"]) or 0)
            for port in pod.get("ports", [])
            if port["protocol"] != "SCTP"
        }
        endpoint = plan.endpoint(f"{pod['namespace']}/{pod['name']}")
        assert endpoint is not None and set(endpoint.served) == wanted, pod["name"]
    assert len({e.node for e in plan.endpoints}) == 2
    # The full matrix: every endpoint to every other on every served port.
    matrix = matrix_probes(plan)
    outcomes = run_probes(plan, matrix)
    wrong = [
        (o.probe, o.result.value, o.detail)
        for o in outcomes
        if o.result is not ProbeResult.CONNECTED
    ]
    assert not wrong, wrong[:10]
    assert len(outcomes) > 200
    # The case's own expectations: as probed with no policy, served ports connect.
    rows = [
        Probe(e.src, e.dst, e.port, parse_protocol(e.protocol) or 0) for e in case.expectations()
    ]
    results = run_probes(plan, rows)
    for outcome in results:
        probe = outcome.probe
        dst = plan.endpoint(probe.dst)
        assert dst is not None
        if probe.protocol == SCTP:
            expected = ProbeResult.SKIPPED
        elif ServedPort(probe.port, probe.protocol) in dst.served:
            expected = ProbeResult.CONNECTED
        else:
            expected = ProbeResult.REFUSED
        assert outcome.result is expected, (probe, outcome.detail)

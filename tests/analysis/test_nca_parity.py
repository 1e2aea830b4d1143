"""Peer parity: netwarden's connectivity map equals IBM NCA's (network-config-analyzer 2.1.0)
on inputs both read, and every difference docs/nca-parity.md documents is reproduced here.

NCA runs from `.venv-peer` (`make .venv-peer`; `NETWARDEN_NCA` overrides the path). netwarden's
side is `netwarden connectivity --by pod -o csv` (the CLI), or the engines asked pair by pair
(`benchmarks/connectivity_oracle.py`): the reference engine flow by flow, or the vectorized
one in a batch. Maps are compared as exact sets of (src, dst, protocol, port) flows.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest
import yaml

from benchmarks import connectivity_oracle as oracle
from benchmarks import connectivity_sets as sets
from benchmarks import peer_nca
from netwarden.dialects import load_paths
from tests.semantics.cases import K8S_E2E, Case

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
FIXTURES = Path(__file__).parent / "fixtures" / "nca"


def e2e_case(name: str) -> Case:
    """One case of the Kubernetes e2e corpus (its folder has no shared inventory)."""
    path = K8S_E2E / f"{name}.yaml"
    loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return Case(path, yaml.load(path.read_text(), Loader=loader))


@pytest.fixture(scope="module", autouse=True)
def nca_installed() -> None:
    binary = peer_nca.nca_binary()
    assert binary.exists(), f"{binary}: NCA is missing; `make .venv-peer` installs it"


def parity(paths: list[Path], tmp_path: Path, netwarden: str) -> peer_nca.Parity:
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    found = peer_nca.nca_parity(paths, workdir, netwarden, timeout=120)
    assert found.report.pods > 0
    return found


def from_address(
    found: sets.ConnectivityMap, address: str, dst: str, port: int, protocol: str
) -> bool:
    """Whether the map lets `address` (inside one of its IP ranges) reach `dst`."""
    number = int(ip_address(address))
    return any(
        found.allows(src, dst, port, protocol)
        for src in {key[0] for key in (*found.ports, *found.protocols)}
        if isinstance(src, sets.IPRange) and src.first <= number <= src.last
    )


def case_file(case: Case, tmp_path: Path) -> Path:
    path = tmp_path / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump_all(case.manifests(), sort_keys=False))
    return path


# NCA's output and netwarden's CSV, read (no NCA run needed).


def test_nca_lines_read_as_flow_sets() -> None:
    text = "\n".join(
        [
            "global: cluster has 3 unique endpoints, 1 namespaces",
            "0.0.0.0-9.255.255.255 => n/a : All connections",
            "n/a => n/b : {protocols:TCP, UDP,dst_ports:53,8000-8080}",
            "n/b => n/a : {protocols:SCTP},{protocols:TCP,dst_ports:443}",
            "n/b => n/c : All but {protocols:TCP,dst_ports:1-79,81-65535}",
            "n/c => 10.1.2.3 : {protocols:ICMP}",
        ]
    )
    found, pods = peer_nca.read_nca_txt(text)
    assert pods == {"n/a", "n/b", "n/c"}
    outside = sets.IPRange(0, (10 << 24) - 1)
    assert found.ports[(outside, "n/a", sets.TCP)] == sets.PORT_SPACE
    assert found.protocols[(outside, "n/a")] == sets.NON_PORTED
    assert found.ports[("n/a", "n/b", sets.UDP)] == ((53, 53), (8000, 8080))
    assert ("n/a", "n/b", sets.SCTP) not in found.ports
    assert found.ports[("n/b", "n/a", sets.SCTP)] == sets.PORT_SPACE
    assert found.ports[("n/b", "n/a", sets.TCP)] == ((443, 443),)
    # everything but TCP other than 80 is TCP 80 plus every other protocol in full
    assert found.ports[("n/b", "n/c", sets.TCP)] == ((80, 80),)
    assert found.ports[("n/b", "n/c", sets.UDP)] == sets.PORT_SPACE
    assert found.protocols[("n/b", "n/c")] == sets.NON_PORTED
    assert found.protocols[("n/c", sets.IPRange(0x0A010203, 0x0A010203))] == ((1, 1),)


def test_nca_dimensions_outside_kubernetes_are_refused() -> None:
    with pytest.raises(ValueError, match="icmp_type"):
        peer_nca.read_nca_txt("n/a => n/b : {protocols:ICMP,icmp_type:8}")


def test_connectivity_csv_reads_the_contract() -> None:
    text = "\n".join(
        [
            "src,dst,protocol,ports",
            "n/a,n/b,*,",
            'n/b,n/a,TCP,"53,8000-8080"',
            "n/b,n/a,ICMP,",
            "n/a,0.0.0.0-9.255.255.255,UDP,53",
            "n/a,::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,*,",
        ]
    )
    found = sets.read_connectivity_csv(text)
    assert found.allows("n/a", "n/b", 9999, "SCTP") and found.allows("n/a", "n/b", 0, "GRE")
    assert found.ports[("n/b", "n/a", sets.TCP)] == ((53, 53), (8000, 8080))
    assert found.protocols[("n/b", "n/a")] == ((1, 1),)
    assert not found.allows("n/b", "n/a", 8081, "TCP")
    assert found.ports[("n/a", sets.IPRange(0, (10 << 24) - 1), sets.UDP)] == ((53, 53),)
    assert len(found.ports) == 5  # the IPv6 row is left out
    with pytest.raises(ValueError, match="header"):
        sets.read_connectivity_csv("source,destination\n")


def test_maps_that_cut_addresses_differently_compare_equal() -> None:
    whole, halves = sets.ConnectivityMap(), sets.ConnectivityMap()
    whole.allow("n/a", sets.IPRange(0, 255), ((6, 6),), ((80, 80),))
    halves.allow("n/a", sets.IPRange(0, 127), ((6, 6),), ((80, 80),))
    halves.allow("n/a", sets.IPRange(128, 255), ((6, 6),), ((80, 80),))
    assert sets.compare(whole, halves, "whole", "halves").equal
    halves.allow("n/a", sets.IPRange(128, 255), ((6, 6),), ((443, 443),))
    report = sets.compare(whole, halves, "whole", "halves")
    assert not report.only_left
    assert [str(d) for d in report.only_right] == ["n/a -> 0.0.0.128-0.0.0.255 TCP 443"]


def test_nca_keeps_two_pods_per_workload_and_names_replicas_from_one() -> None:
    owner = [{"kind": "ReplicaSet", "name": "web-5d8f9c7b6d", "controller": True}]
    pods = [
        {
            "kind": "Pod",
            "metadata": {
                "name": f"web-{i}",
                "namespace": "n",
                "labels": {"app": "web"},
                "ownerReferences": owner,
            },
        }
        for i in range(4)
    ]
    lone = {"kind": "Pod", "metadata": {"name": "lone", "namespace": "n", "labels": {}}}
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "n"},
        "spec": {"replicas": 5, "template": {"metadata": {"labels": {"app": "api"}}}},
    }
    names = peer_nca.nca_pod_names([*pods, lone, deployment])
    assert names == {
        "n/web-0": "n/web-0",
        "n/web-1": "n/web-1",
        "n/lone": "n/lone",
        "n/api-1": "n/api-0",
        "n/api-2": "n/api-1",
    }


# NCA and netwarden on the same inputs.


@pytest.mark.slow
@pytest.mark.parametrize("netwarden", ["cli", "reference"])
def test_shop_network_policies_match_nca(tmp_path: Path, netwarden: str) -> None:
    found = parity([SHOP], tmp_path, netwarden)
    assert found.report.equal, found.report.render()
    assert found.report.pods == 10
    left_out = "\n".join(found.prepared.left_out)
    for admin in ("platform-guardrails", "shop-isolation", "BaselineAdminNetworkPolicy default"):
        assert admin in left_out
    # the frontend is reachable from a public address on 443 only, in both maps
    for side in (found.nca_map, found.netwarden_map):
        assert from_address(side, "8.8.8.8", "shop/frontend-1", 443, "TCP")
        assert not from_address(side, "8.8.8.8", "shop/frontend-1", 9090, "TCP")
        assert not from_address(side, "10.1.2.3", "shop/frontend-1", 443, "TCP")
    assert found.nca_map.allows("shop/frontend-0", "shop/backend-1", 8080, "TCP")
    assert not found.nca_map.allows("shop/frontend-0", "shop/db-0", 5432, "TCP")


@pytest.mark.slow
def test_shop_workloads_expanded_match_nca(tmp_path: Path) -> None:
    """Without pods.yaml both expand the workloads; NCA names replicas from 1."""
    paths = [SHOP / "namespaces.yaml", SHOP / "workloads.yaml", SHOP / "policies"]
    found = parity(paths, tmp_path, "reference")
    assert found.report.equal, found.report.render()
    assert found.report.pods == 10
    assert found.netwarden_map.allows("shop/backend-1", "shop/db-0", 5432, "TCP")


@pytest.mark.slow
def test_nca_kube_dns_stand_in_is_left_out(tmp_path: Path) -> None:
    """Without the DNS pods, NCA adds `kube-dns-livesim` for the shop's allow-dns policy; the
    comparison is on the other pods, and equal."""
    prepared = peer_nca.prepare_inputs([SHOP], tmp_path)
    docs = [
        d
        for d in prepared.documents
        if not (d["kind"] == "Pod" and d["metadata"]["name"].startswith("coredns"))
    ]
    cluster = tmp_path / "no-dns.yaml"
    cluster.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    found = parity([cluster], tmp_path, "reference")
    assert found.livesim
    assert found.report.equal, found.report.render()
    assert found.report.pods == 8
    assert peer_nca.LIVESIM_DNS not in found.nca_map.pods()


@pytest.mark.slow
@pytest.mark.parametrize("netwarden", ["cli", "reference"])
def test_kubernetes_corner_cases_match_nca(tmp_path: Path, netwarden: str) -> None:
    found = parity([FIXTURES / "edge-cases.yaml"], tmp_path, netwarden)
    assert found.report.equal, found.report.render()
    assert found.report.pods == 8
    assert not found.prepared.left_out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pods", "policies", "seed", "netwarden"),
    [(60, 14, 1, "cli"), (120, 30, 2, "vectorized"), (30, 10, 3, "reference")],
)
def test_generated_clusters_match_nca(
    tmp_path: Path, pods: int, policies: int, seed: int, netwarden: str
) -> None:
    cluster = tmp_path / "generated.yaml"
    cluster.write_text(peer_nca.parity_cluster(pods, policies, seed))
    found = parity([cluster], tmp_path, netwarden)
    assert found.report.equal, found.report.render()
    assert found.report.pods == pods
    assert found.report.common_flows > 0


@pytest.mark.slow
def test_generated_deployment_pods_compare_on_the_two_nca_keeps(tmp_path: Path) -> None:
    """Pods owned by a ReplicaSet: NCA keeps two per (workload, labels); the comparison is
    on those."""
    docs = list(yaml.safe_load_all(peer_nca.parity_cluster(80, 20, 4)))
    for doc in docs:
        if doc["kind"] == "Pod":
            app = doc["metadata"]["labels"]["app"]
            owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d4b9c8f5"}
            doc["metadata"]["ownerReferences"] = [owner]
    cluster = tmp_path / "owned.yaml"
    cluster.write_text(yaml.safe_dump_all(docs))
    found = parity([cluster], tmp_path, "cli")
    assert found.report.equal, found.report.render()
    assert 20 < found.report.pods < 80


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "podselector-and-nsselector",
        "ingress-from-ns-on-named-port",
        "egress-one-named-port",
        "sctp-policy-based-on-ports",
    ],
)
def test_upstream_e2e_cases_match_nca_and_upstream(tmp_path: Path, name: str) -> None:
    case = e2e_case(name)
    found = parity([case_file(case, tmp_path)], tmp_path, "reference")
    assert found.report.equal, found.report.render()
    for expected in case.expectations():
        flow = (expected.src, expected.dst, expected.port, expected.protocol)
        assert found.nca_map.allows(*flow) is expected.allowed, expected


# The differences docs/nca-parity.md documents, each reproduced.


@pytest.mark.slow
@pytest.mark.parametrize("name", ["egress-cidr-except", "egress-to-cidr"])
def test_nca_does_not_match_pod_addresses_with_ip_blocks(tmp_path: Path, name: str) -> None:
    """Upstream e2e allows pod x/a to reach pods through an ipBlock holding their addresses;
    netwarden agrees with every upstream verdict, NCA misses exactly those flows."""
    case = e2e_case(name)
    found = parity([case_file(case, tmp_path)], tmp_path, "reference")
    allowed_by_cidr = {
        (e.src, e.dst)
        for e in case.expectations()
        if e.allowed and e.src == "x/a" and not found.nca_map.allows(e.src, e.dst, 80, "TCP")
    }
    assert allowed_by_cidr, "the case probes pods reached through an ipBlock"
    for expected in case.expectations():
        flow = (expected.src, expected.dst, expected.port, expected.protocol)
        assert found.netwarden_map.allows(*flow) is expected.allowed, expected
    assert not found.report.only_left  # NCA allows nothing netwarden does not
    assert {(d.src, d.dst) for d in found.report.only_right} == allowed_by_cidr


@pytest.mark.slow
def test_nca_isolates_egress_for_an_empty_egress_list(tmp_path: Path) -> None:
    found = parity([FIXTURES / "empty-egress-list.yaml"], tmp_path, "reference")
    assert not found.report.only_left
    assert found.report.only_right
    assert {d.src for d in found.report.only_right} == {"n/a"}  # a's egress, nothing else
    assert found.netwarden_map.allows("n/a", "n/b", 80, "TCP")
    assert not found.nca_map.allows("n/a", "n/b", 80, "TCP")


@pytest.mark.slow
def test_nca_rejects_policy_types_written_egress_first(tmp_path: Path) -> None:
    case = e2e_case("ingress-and-egress-together")
    with pytest.raises(RuntimeError, match="policyTypes has invalid value"):
        parity([case_file(case, tmp_path)], tmp_path, "reference")
    ours = oracle.reference_connectivity(load_paths([case_file(case, tmp_path)]).cluster)
    for expected in case.expectations():
        flow = (expected.src, expected.dst, expected.port, expected.protocol)
        assert ours.allows(*flow) is expected.allowed, expected


@pytest.mark.slow
def test_nca_rejects_ingress_rules_a_policy_does_not_apply(tmp_path: Path) -> None:
    fixture = FIXTURES / "ingress-rules-outside-policy-types.yaml"
    with pytest.raises(RuntimeError, match='no "Ingress" in its policyTypes'):
        parity([fixture], tmp_path, "reference")
    ours = oracle.reference_connectivity(load_paths([fixture]).cluster)
    assert ours.allows("n/a", "n/b", 80, "TCP")  # egress to any pod in n
    assert ours.allows("n/b", "n/a", 80, "TCP")  # a is not isolated for ingress
    assert not ours.allows("n/a", sets.IPRange(0x08080808, 0x08080808), 80, "TCP")


@pytest.mark.slow
def test_nca_ignores_admin_network_policies(tmp_path: Path) -> None:
    """Given the shop's AdminNetworkPolicies too, NCA answers exactly as without them (it has
    no reader for them), which is why the harness leaves them out of both sides."""
    prepared = peer_nca.prepare_inputs([SHOP], tmp_path)
    with_admin = tmp_path / "with-admin.yaml"
    admin = [
        d
        for name in ("admin.yaml", "baseline.yaml")
        for d in yaml.safe_load_all((SHOP / "policies" / name).read_text())
    ]
    with_admin.write_text(yaml.safe_dump_all([*prepared.documents, *admin], sort_keys=False))
    plain = peer_nca.run_nca(prepared.path, 120).output
    admin_too = peer_nca.run_nca(with_admin, 120).output
    assert plain is not None and admin_too is not None
    assert peer_nca.read_nca_txt(admin_too)[0] == peer_nca.read_nca_txt(plain)[0]
    # while they do change the answer: the baseline cuts tenant-b off from other namespaces
    without = oracle.reference_connectivity(load_paths([prepared.path]).cluster)
    with_them = oracle.reference_connectivity(load_paths([with_admin]).cluster)
    assert without.allows("monitoring/prometheus-0", "tenant-b/web-0", 8080, "TCP")
    assert not with_them.allows("monitoring/prometheus-0", "tenant-b/web-0", 8080, "TCP")

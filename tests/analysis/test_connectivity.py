"""The connectivity map: port sets, atoms, groups, example flows, the CSV contract on the shop
example (rows checked by hand against examples/shop/policies), and the CLI."""

from __future__ import annotations

import csv
import io
import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netwarden.analysis import PortSet, compute_connectivity
from netwarden.analysis.atoms import ip_atoms, port_atoms
from netwarden.analysis.render import RENDERERS
from netwarden.cli.main import app
from netwarden.dialects import load_paths
from netwarden.engine import PolicyEngine
from netwarden.model import (
    DEFAULT_TIER,
    ICMP,
    SCTP,
    TCP,
    UDP,
    Action,
    All,
    ClusterState,
    Endpoint,
    EndpointKind,
    EndpointSelector,
    In,
    NamedPort,
    Namespace,
    NetworkPeer,
    Node,
    Policy,
    PortMatch,
    PortRange,
    Rule,
)

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
ENV: dict[str, str | None] = {"COLUMNS": "250", "NO_COLOR": None, "FORCE_COLOR": None}


@pytest.fixture(scope="module")
def shop() -> ClusterState:
    return load_paths([SHOP]).cluster


def csv_rows(cluster: ClusterState, by: str = "pod") -> list[list[str]]:
    out = io.StringIO()
    RENDERERS["csv"](compute_connectivity(cluster), by, out)  # type: ignore[arg-type]
    return list(csv.reader(io.StringIO(out.getvalue())))


# --- PortSet --------------------------------------------------------------------------------


def test_port_set_is_canonical_and_prints_like_the_contract() -> None:
    ports = PortSet.build(
        {TCP: [PortRange(8000, 8080), PortRange(80, 80), PortRange(53, 53)]}, False
    )
    assert ports == PortSet.build(
        {TCP: [PortRange(53, 53), PortRange(80, 80), PortRange(8000, 8080)]}, False
    )
    assert list(ports.rows()) == [("TCP", "53,80,8000-8080")]
    adjacent = PortSet.build({UDP: [PortRange(1, 10), PortRange(11, 20)]}, False)
    assert adjacent.ports(UDP) == (PortRange(1, 20),)
    assert list(PortSet.everything().rows()) == [("*", "")]
    assert list(PortSet.nothing().rows()) == []
    icmp = PortSet.build({ICMP: None}, False)
    assert list(icmp.rows()) == [("ICMP", "")]
    # Listing every protocol as fully open is the same set as "everything".
    assert PortSet.build({TCP: None, UDP: None}, True) == PortSet.everything()


def test_port_set_open_on_everything_but_one_port_lists_each_protocol() -> None:
    closed_ssh = PortSet.build({TCP: [PortRange(1, 21), PortRange(23, 65535)]}, True)
    assert str(closed_ssh) == "All but TCP 22"
    rows = list(closed_ssh.rows())
    assert rows[:2] == [("0", ""), ("ICMP", "")]
    assert ("TCP", "1-21,23-65535") in rows and ("UDP", "1-65535") in rows
    assert len(rows) == 256  # every protocol number, each open one written out


# --- atoms ----------------------------------------------------------------------------------


def _pod(name: str, ip: str, labels: dict[str, str], *ports: NamedPort, ns: str = "a") -> Endpoint:
    return Endpoint(EndpointKind.POD, name, ns, labels, (ip_address(ip),), ports)


def _policy(name: str, subject: dict[str, str], **directions: tuple[Rule, ...]) -> Policy:
    selector = EndpointSelector(
        In(*next(iter(subject.items()))[:1], frozenset(subject.values())) if subject else All(),
        namespace="a",
    )
    return Policy(name, "NetworkPolicy", DEFAULT_TIER.name, selector, "a", 1000.0, **directions)


def test_port_atoms_cut_at_ranges_named_ports_and_keep_an_other_protocol() -> None:
    web = _pod("web-0", "10.0.0.1", {"app": "web"}, NamedPort("http", 8080, TCP))
    rule = Rule(
        Action.ALLOW, ports=(PortMatch(TCP, PortRange(80, 90)), PortMatch(UDP, PortRange(53, 53)))
    )
    cluster = ClusterState(
        namespaces=(Namespace("a"),),
        endpoints=(web,),
        policies=(_policy("p", {"app": "web"}, ingress=(rule,)),),
    )
    atoms = port_atoms(cluster)
    tcp = [
        (int(s), int(e))
        for p, s, e in zip(atoms.protocol, atoms.start, atoms.end, strict=True)
        if p == TCP
    ]
    assert tcp == [(1, 79), (80, 90), (91, 8079), (8080, 8080), (8081, 65535)]
    udp = [
        (int(s), int(e))
        for p, s, e in zip(atoms.protocol, atoms.start, atoms.end, strict=True)
        if p == UDP
    ]
    assert udp == [(1, 52), (53, 53), (54, 65535)]
    assert {ICMP, SCTP} <= set(atoms.protocol.tolist())
    assert int(atoms.protocol[atoms.other]) not in (ICMP, TCP, UDP, SCTP, 58)


def test_ip_atoms_cut_at_cidrs_and_except_and_skip_addresses_endpoints_hold() -> None:
    peer = NetworkPeer(ip_network("10.0.0.0/8"), (ip_network("10.1.0.0/16"),))
    node = Node("n1", {}, (ip_address("192.168.0.7"),))
    host = Endpoint(
        EndpointKind.HOST, "agent", "kube-system", {}, (ip_address("192.168.0.7"),), node="n1"
    )
    cluster = ClusterState(
        nodes=(node,),
        endpoints=(_pod("web-0", "10.0.0.1", {"app": "web"}), host),
        policies=(_policy("p", {}, egress=(Rule(Action.ALLOW, (peer,)),)),),
    )
    v4 = [str(atom.range) for atom in ip_atoms(cluster, (4,))]
    assert v4 == [
        "0.0.0.0-9.255.255.255",
        "10.0.0.0-10.0.255.255",
        "10.1.0.0-10.1.255.255",
        "10.2.0.0-10.255.255.255",
        "11.0.0.0-192.168.0.6",
        # 192.168.0.7 is the node's address, held by the hostNetwork pod: no atom
        "192.168.0.8-255.255.255.255",
    ]
    first = ip_atoms(cluster, (4,))[1]
    assert first.representative == ip_address("10.0.0.0")


# --- the map on the shop example --------------------------------------------------------------


def test_csv_contract_on_the_shop_example(shop: ClusterState) -> None:
    rows = csv_rows(shop)
    assert rows[0] == ["src", "dst", "protocol", "ports"]
    body = rows[1:]
    assert all(r[0] != r[1] for r in body)  # no pod to itself
    assert len({tuple(r[:3]) for r in body}) == len(body)  # one row per (src, dst, protocol)
    # Hand-checked against examples/shop/policies: the shop is default-deny both ways.
    expected = {
        # frontend: DNS, the backend's http-api (8080), HTTPS in from ingress and internet
        ("shop/frontend-0", "kube-system/coredns-0", "TCP", "53"),
        ("shop/frontend-0", "kube-system/coredns-0", "UDP", "53"),
        ("shop/frontend-0", "shop/backend-1", "TCP", "8080"),
        ("ingress-nginx/controller-0", "shop/frontend-1", "TCP", "443"),
        ("0.0.0.0-9.255.255.255", "shop/frontend-0", "TCP", "443"),
        ("11.0.0.0-172.15.255.255", "shop/frontend-0", "TCP", "443"),
        ("192.169.0.0-255.255.255.255", "shop/frontend-1", "TCP", "443"),
        # backend: the database and the payment provider; metrics scraped by prometheus
        ("shop/backend-0", "shop/db-0", "TCP", "5432"),
        ("shop/backend-1", "198.51.100.0-198.51.100.255", "TCP", "443"),
        ("monitoring/prometheus-0", "shop/backend-0", "TCP", "9090"),
        # tenant-b has no policy of its own: open, but the cloud metadata address is denied
        ("tenant-b/web-0", "0.0.0.0-169.254.169.253", "*", ""),
        ("tenant-b/web-0", "169.254.169.255-255.255.255.255", "*", ""),
        ("kube-system/coredns-0", "kube-system/coredns-1", "*", ""),
    }
    assert expected <= {tuple(r) for r in body}
    shop_rows = {tuple(r) for r in body if r[0].startswith("shop/") or r[1].startswith("shop/")}
    assert ("shop/frontend-0", "shop/db-0", "TCP", "5432") not in shop_rows
    assert not any(
        r[0] == "tenant-b/web-0" and r[1] == "169.254.169.254-169.254.169.254" for r in body
    )
    # Into the shop: exactly these sources, ports and destinations (everything else denied).
    into_shop = {(r[0], r[1], r[2], r[3]) for r in body if r[1].startswith("shop/")}
    assert into_shop == {
        *(("ingress-nginx/controller-0", f"shop/frontend-{i}", "TCP", "443") for i in (0, 1)),
        *(
            ("monitoring/prometheus-0", f"shop/{w}", "TCP", "9090")
            for w in ("frontend-0", "frontend-1", "backend-0", "backend-1")
        ),
        *(
            (f"shop/frontend-{i}", f"shop/backend-{j}", "TCP", "8080")
            for i in (0, 1)
            for j in (0, 1)
        ),
        *((f"shop/backend-{i}", "shop/db-0", "TCP", "5432") for i in (0, 1)),
        *(
            (r, f"shop/frontend-{i}", "TCP", "443")
            for i in (0, 1)
            for r in (
                "0.0.0.0-9.255.255.255",
                "11.0.0.0-172.15.255.255",
                "172.32.0.0-192.167.255.255",
                "192.169.0.0-255.255.255.255",
            )
        ),
    }


def test_every_listed_connection_is_what_the_engine_decides(shop: ClusterState) -> None:
    """Each connection's ports are exactly the atoms whose flows the engine allows, for its
    first and last members (the rest of a group is treated alike)."""
    cmap = compute_connectivity(shop)
    engine = PolicyEngine(shop)
    every_atom = set(range(len(cmap.atoms)))
    for connection in cmap.connections("workload"):
        allowed = set(cmap.atoms.atoms_of(connection.ports).tolist())
        assert allowed
        for src in {connection.src.members[0], connection.src.members[-1]}:
            for dst in {connection.dst.members[0], connection.dst.members[-1]}:
                if src == dst:
                    continue
                for atom in every_atom:
                    flow = cmap.flow(src, dst, atom)
                    assert engine.decide(flow).allowed == (atom in allowed), flow


def test_workload_groups_and_aggregated_rules(shop: ClusterState) -> None:
    cmap = compute_connectivity(shop)
    names = {g.name for g in cmap.groups("workload") if not g.is_external}
    assert {"shop/frontend", "shop/backend", "shop/db", "kube-system/coredns"} <= names
    out = io.StringIO()
    RENDERERS["txt"](cmap, "workload", out)
    text = out.getvalue()
    assert (
        "src_ns: [shop] src_pods: [app=backend] dst_ns: [shop] dst_pods: [app=db] conn: TCP 5432"
        in text
    )
    assert (
        "src_ns: [shop] src_pods: [app=frontend] dst_ns: [shop] dst_pods: [app=backend] conn: TCP 8080"
        in text
    )
    assert (
        "src_ns: [shop] src_pods: [*] dst_ns: [kube-system] dst_pods: [*] conn: TCP 53; UDP 53"
        in text
    )


def test_a_workload_whose_pods_differ_is_split_and_named_exactly() -> None:
    pods = (
        _pod("web-0", "10.0.0.1", {"app": "web", "canary": "yes"}),
        _pod("web-1", "10.0.0.2", {"app": "web"}),
        _pod("db-0", "10.0.0.3", {"app": "db"}),
    )
    only_canary = Rule(Action.ALLOW, (EndpointSelector(In("canary", frozenset({"yes"}))),))
    cluster = ClusterState(
        namespaces=(Namespace("a"),),
        endpoints=pods,
        policies=(_policy("db", {"app": "db"}, ingress=(only_canary,)),),
    )
    cmap = compute_connectivity(cluster, families=(4,))
    to_db = [c for c in cmap.connections("workload") if c.dst.name == "a/db"]
    assert [c.src.name for c in to_db] == ["a/web[web-0]"]
    db, web0, web1 = (cmap.index(n) for n in ("a/db-0", "a/web-0", "a/web-1"))
    allowed = cmap.example(web0, db)
    assert allowed is not None and PolicyEngine(cluster).decide(allowed).allowed
    denied = cmap.example(web1, db, allowed=False)
    assert denied is not None and not PolicyEngine(cluster).decide(denied).allowed
    assert cmap.example(web1, db) is None
    assert cmap.ports(web0, db).is_all
    only_web0 = np.zeros(cmap.size, dtype=np.bool_)
    only_web0[web0] = True
    assert {c.dst.name for c in cmap.allowed(only_web0, ~only_web0)} >= {"a/db-0", "a/web-1"}


# --- formats and the CLI ----------------------------------------------------------------------


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_cli_writes_every_format(fmt: str, tmp_path: Path) -> None:
    target = tmp_path / f"map.{fmt}"
    code, _, err = run("connectivity", "-f", SHOP, "-o", fmt, "--output", target)
    assert code == 0, err
    text = target.read_text()
    assert "shop" in text and "db" in text
    if fmt == "json":
        document = json.loads(text)
        assert {"src": "shop/backend", "dst": "shop/db"}.items() <= next(
            c for c in document["connections"] if c["dst"] == "shop/db"
        ).items()
        assert document["connections"][0]["rows"]


def test_cli_by_pod_csv_on_stdout() -> None:
    code, out, _ = run("connectivity", "-f", SHOP, "--by", "pod", "-o", "csv")
    assert code == 0
    assert out.splitlines()[0] == "src,dst,protocol,ports"
    assert "shop/backend-0,shop/db-0,TCP,5432" in out.splitlines()


def test_cli_bad_input_is_a_located_error_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\n"
        "spec:\n  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 99999}\n"
    )
    target = tmp_path / "out.csv"
    code, out, err = run("connectivity", "-f", bad, "-o", "csv", "--output", target)
    assert code == 2
    assert f"{bad}:" in err and "Traceback" not in err + out
    assert not target.exists()
    code, _, err = run("connectivity", "-f", tmp_path / "missing")
    assert code == 2 and "error" in err

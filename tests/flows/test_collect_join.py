"""The collector's parsing and join, on lines as ulogd2 (GPRINT) and conntrack print them
(captured from a lab run); the real processes are proven in test_collect.py (root)."""

from __future__ import annotations

from netwarden.dataplane.nftables import FLOW_LOG_GROUPS
from netwarden.dialects import load_text
from netwarden.flows.collect import flow_records
from netwarden.flows.collect_sources import (
    SourceOutput,
    parse_conntrack,
    parse_gprint,
    ulogd_config,
)
from netwarden.model import Direction
from tests.flows.lab_inputs import node_yaml, pod_yaml

INVENTORY = (
    node_yaml("n1", "172.30.0.1")
    + pod_yaml("web-0", "app: web", "n1", "10.7.1.10")
    + pod_yaml("api-0", "app: api", "n1", "10.7.2.10")
)

SYN = (
    "raw.pktlen=60,raw.pktcount=1,oob.prefix={prefix} ,oob.time.sec=1795773324,"
    "oob.time.usec={usec},oob.mark=0,oob.ifindex_in=2,oob.ifindex_out=3,oob.hook=2,"
    "oob.family=2,oob.protocol=2048,ip.saddr=10.7.1.10,ip.daddr=10.7.2.10,ip.protocol=6,"
    "ip.totlen=60,tcp.sport={sport},tcp.dport={dport},tcp.syn=1,oob.protocol=2048,"
    "ip.saddr.str=10.7.1.10,ip.daddr.str={dst}"
)
MLD = (
    "raw.pktlen=76,raw.pktcount=1,oob.prefix=default|shop/knp.default.api|deny|-1 ,"
    "oob.time.sec=1795773325,oob.time.usec=93313,oob.hook=3,oob.family=10,ip.protocol=58,"
    "icmpv6.type=143,ip.saddr.str=::,ip.daddr.str=ff02::16"
)
DESTROY = (
    "[1795773326.5]\t[DESTROY] ipv4     2 tcp      6 118 TIME_WAIT src=10.7.1.10 "
    "dst=10.7.2.10 sport=40000 dport=8080 packets=30 bytes=401204 src=10.7.2.10 "
    "dst=10.7.1.10 sport=8080 dport=40000 packets=20 bytes=101048 [ASSURED] delta-time=2"
)
OPEN = (
    "ipv4     2 tcp      6 431999 ESTABLISHED src=10.7.1.10 dst=10.7.2.10 sport=40000 "
    "dport=8080 packets=10 bytes=9999 src=10.7.2.10 dst=10.7.1.10 sport=8080 dport=40000 "
    "packets=5 bytes=500 [ASSURED] mark=0 use=1"
)


def _syn(prefix: str, sport: int, dport: int, usec: int = 0, dst: str = "10.7.2.10") -> str:
    return SYN.format(prefix=prefix, sport=sport, dport=dport, usec=usec, dst=dst)


def test_parsers_read_what_ulogd_and_conntrack_print() -> None:
    packet = parse_gprint(
        _syn("default|shop/knp.default.api|allow|0", 40000, 8080, 5), Direction.INGRESS
    )
    assert packet is not None
    assert (packet.hit, packet.protocol, packet.src, packet.dst) == (
        "default|shop/knp.default.api|allow|0",
        6,
        "10.7.1.10",
        "10.7.2.10",
    )
    assert (packet.sport, packet.dport, packet.length) == (40000, 8080, 60)
    assert packet.time == 1795773324.000005
    assert parse_gprint("raw.pktlen=12,oob.prefix=x", Direction.EGRESS) is None
    ended = parse_conntrack(DESTROY, now=0)
    assert ended is not None and ended.ended and ended.seen == 1795773326.5
    assert (ended.bytes_orig, ended.packets_orig, ended.bytes_reply, ended.packets_reply) == (
        401204,
        30,
        101048,
        20,
    )
    still_open = parse_conntrack(OPEN, now=7.0)
    assert still_open is not None and not still_open.ended and still_open.seen == 7.0
    assert parse_conntrack("conntrack v1.4.7 (conntrack-tools): 2 flow events", 0) is None
    config = ulogd_config(__import__("pathlib").Path("/tmp/x"))
    for direction, group in FLOW_LOG_GROUPS.items():
        assert f"group={group}" in config and f'file="/tmp/x/{direction.value}.log"' in config


def test_join_makes_one_record_per_connection_and_reporter() -> None:
    cluster = load_text(INVENTORY).cluster
    egress_hits = [
        "adminnetworkpolicy|kanp.adminnetworkpolicy.guard|pass|0",
        "__PROFILE__|__PROFILE__|allow|0",
    ]
    lines_egress = [_syn(hit, 40000, 8080, i) for i, hit in enumerate(egress_hits)]
    # A denied connection: the SYN and its retransmission, both logged, no conntrack entry.
    denied = "default|shop/knp.default.api|deny|-1"
    lines_ingress = [
        _syn("default|shop/knp.default.api|allow|0", 40000, 8080, 10),
        _syn(denied, 41000, 9999, 20),
        _syn(denied, 41000, 9999, 1_000_020),
        MLD,
    ]
    output = SourceOutput()
    for direction, lines in ((Direction.EGRESS, lines_egress), (Direction.INGRESS, lines_ingress)):
        for line in lines:
            packet = parse_gprint(line, direction)
            assert packet is not None
            output.packets.append(packet)
    for line in (DESTROY, OPEN, OPEN.replace("sport=40000", "sport=45000")):
        counters = parse_conntrack(line, now=1795773330.0)
        assert counters is not None
        output.connections.append(counters)
    result = flow_records(cluster, {"n1": output})
    assert result.packets == 6 and result.ignored_packets == 1
    assert result.connections == 3 and result.unmatched_connections == 1  # sport 45000
    records = sorted(result.table.to_pylist(), key=lambda r: (r["source_port"], r["reporter"]))
    assert [(r["source_port"], r["reporter"], r["action"]) for r in records] == [
        (40000, "dst", "allow"),
        (40000, "src", "allow"),
        (41000, "dst", "deny"),
    ]
    accepted_dst, accepted_src, dropped = records
    assert accepted_src["policies_enforced"] == [
        "0|adminnetworkpolicy|kanp.adminnetworkpolicy.guard|pass|0",
        "1|__PROFILE__|__PROFILE__.kns.shop|allow|0",
    ]
    # The DESTROY event's final counters win over the open entry read at the end.
    assert (accepted_src["bytes_out"], accepted_src["bytes_in"]) == (401204, 101048)
    assert (accepted_dst["bytes_in"], accepted_dst["bytes_out"]) == (401204, 101048)
    assert accepted_src["num_flows_completed"] == 1
    assert (accepted_src["source_name"], accepted_src["dest_name"]) == ("web-0", "api-0")
    assert accepted_src["source_labels"] == ["app=web"] and accepted_src["host"] == "n1"
    assert dropped["policies_enforced"] == [f"0|{denied}"]
    assert (dropped["packets_in"], dropped["bytes_in"], dropped["bytes_out"]) == (2, 120, 0)
    assert dropped["dest_name"] == "api-0" and dropped["dest_port"] == 9999


def test_ends_outside_the_inventory_are_hosts_or_external() -> None:
    cluster = load_text(INVENTORY).cluster
    output = SourceOutput()
    for dst in ("172.30.0.1", "8.8.4.4", "10.99.0.1"):
        packet = parse_gprint(
            _syn("__PROFILE__|__PROFILE__|allow|0", 40001, 443, dst=dst), Direction.EGRESS
        )
        assert packet is not None
        output.packets.append(packet)
    records = {r["dest_ip"]: r for r in flow_records(cluster, {"n1": output}).table.to_pylist()}
    assert (records["172.30.0.1"]["dest_type"], records["172.30.0.1"]["dest_name"]) == (
        "host",
        "n1",
    )
    assert (records["8.8.4.4"]["dest_type"], records["8.8.4.4"]["dest_name_aggr"]) == (
        "external",
        "pub",
    )
    assert records["10.99.0.1"]["dest_name_aggr"] == "pvt"

"""`sync_feed` end to end against a real HTTP server: formats, status, added/removed, 304,
the last good set kept on failure, the shrink/grow hold, what is never blocked, and the
GlobalNetworkSet the engine then sees."""

from __future__ import annotations

import gzip
import json
from ipaddress import IPv4Network, ip_network
from pathlib import Path

import yaml

from netwarden.dialects import load_paths, load_text
from netwarden.engine.decide import PolicyEngine
from netwarden.model import FeedContent, Flow, ThreatFeed
from netwarden.model.feeds import (
    CsvFormat,
    FeedFormat,
    FeedSafety,
    FileSource,
    HttpSource,
    JsonFormat,
    NewlineFormat,
    StixFormat,
)
from netwarden.threatintel.safety import protected_nets
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.threatintel.conftest import FeedServer

CLUSTER = """
apiVersion: v1
kind: Node
metadata: {name: worker-1}
status: {addresses: [{type: InternalIP, address: 172.18.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {nodeName: worker-1}
status: {podIP: 10.244.1.5}
"""


def http_feed(url: str, feed_format: FeedFormat | None = None, **options: object) -> ThreatFeed:
    return ThreatFeed(
        "blocklist",
        FeedContent.IP_SET,
        HttpSource(url, feed_format or NewlineFormat()),
        labels={"threat": "high"},
        **options,  # type: ignore[arg-type]
    )


def test_formats_bad_lines_and_network_set(feed_server: FeedServer, tmp_path: Path) -> None:
    body = (
        "# comment\n198.51.100.7\n198.51.100.6/31\nnot-an-ip\n\n2001:db8::/33\n10.0.0.1/99 # bad\n"
    )
    url = feed_server.serve("/list.txt", body, etag='"1"')
    store = FeedStore(tmp_path)
    status = sync_feed(http_feed(url), store, SyncOptions())
    assert status.last_error is None
    assert store.entries("blocklist") == ["198.51.100.6/31", "2001:db8::/33"]
    assert status.bad_count == 2
    assert status.bad == (
        "line 4: 'not-an-ip': not an IP address or prefix",
        "line 7: '10.0.0.1/99': invalid prefix length (0-32)",
    )
    assert (status.entries, status.added, status.removed, status.values) == (2, 2, 0, 5)
    manifest = tmp_path / "networksets" / "threatfeed.blocklist.yaml"
    (network_set,) = load_paths([manifest]).cluster.network_sets
    assert network_set.name == "threatfeed.blocklist" and network_set.labels == {"threat": "high"}
    assert network_set.nets == (ip_network("198.51.100.6/31"), ip_network("2001:db8::/33"))


def test_csv_json_stix_and_gzip_file(feed_server: FeedServer, tmp_path: Path) -> None:
    store = FeedStore(tmp_path)
    csv_body = "# exported\nname;ip;score\nx;198.51.100.1;9\ny;198.51.100.2\nz;198.51.100.3;7\n"
    csv_format = CsvFormat(field_name="ip", column_delimiter=";", record_size=3, header=True)
    csv_url = feed_server.serve("/f.csv", csv_body)
    status = sync_feed(http_feed(csv_url, csv_format), store, SyncOptions())
    assert store.entries("blocklist") == ["198.51.100.1/32", "198.51.100.3/32"]
    assert status.bad == ("line 4: 'y;198.51.100.2': 2 columns, expected 3",)

    json_url = feed_server.serve(
        "/f.json", json.dumps({"data": [{"ip": "203.0.113.9"}, {"ip": 7}, {"ip": "203.0.113.8"}]})
    )
    status = sync_feed(http_feed(json_url, JsonFormat("$.data[*].ip")), store, SyncOptions())
    assert store.entries("blocklist") == ["203.0.113.8/31"]
    assert status.bad == ("item 2: '7': not a string",)
    assert (status.added, status.removed) == (1, 2)

    bundle = {
        "type": "bundle",
        "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                "created": "2024-01-01T00:00:00.000Z",
                "modified": "2024-01-01T00:00:00.000Z",
                "pattern": "[ipv4-addr:value = '192.0.2.200']",
                "pattern_type": "stix",
                "valid_from": "2024-01-01T00:00:00Z",
            }
        ],
    }
    stix_url = feed_server.serve("/bundle.json", json.dumps(bundle), content_encoding_gzip=True)
    sync_feed(http_feed(stix_url, StixFormat()), store, SyncOptions())
    assert store.entries("blocklist") == ["192.0.2.200/32"]

    local = tmp_path / "local.txt.gz"
    local.write_bytes(gzip.compress(b"192.0.2.1\n192.0.2.0/30\n"))
    file_feed = ThreatFeed("local", FeedContent.IP_SET, FileSource(str(local), NewlineFormat()))
    assert sync_feed(file_feed, store, SyncOptions()).last_error is None
    assert store.entries("local") == ["192.0.2.0/30"]


def test_not_modified_and_failure_keep_the_last_good_set(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.7\n", etag='"1"')
    store = FeedStore(tmp_path)
    feed = http_feed(url)
    assert sync_feed(feed, store, SyncOptions()).entries == 1
    status = sync_feed(feed, store, SyncOptions())
    assert feed_server.statuses("/list.txt")[-1]["If-None-Match"] == '"1"'
    assert status.last_error is None and store.entries("blocklist") == ["198.51.100.7/32"]

    feed_server.routes["/list.txt"].status = 500
    failed = sync_feed(feed, store, SyncOptions())
    assert failed.last_error == "HTTP 500 Internal Server Error"
    assert failed.consecutive_failures == 1 and failed.last_success == status.last_success
    assert store.entries("blocklist") == ["198.51.100.7/32"]
    assert sync_feed(feed, store, SyncOptions()).consecutive_failures == 2

    feed_server.routes["/list.txt"] = feed_server.routes["/list.txt"].__class__(b"{not json")
    json_feed = http_feed(url, JsonFormat("$[*]"))
    broken = sync_feed(json_feed, store, SyncOptions())
    assert broken.last_error is not None and "invalid JSON" in broken.last_error
    assert store.entries("blocklist") == ["198.51.100.7/32"]


def test_shrink_to_nothing_and_sudden_growth_are_held(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    store = FeedStore(tmp_path)
    many = "".join(f"198.51.{i // 200}.{i % 200}\n" for i in range(0, 400, 2))  # 200 entries
    url = feed_server.serve("/list.txt", many)
    feed = http_feed(url, safety=FeedSafety(max_growth_factor=3))
    assert sync_feed(feed, store, SyncOptions()).entries == 200

    feed_server.serve("/list.txt", "# the feed server lost its data\n")
    held = sync_feed(feed, store, SyncOptions())
    assert held.held == "shrank from 200 entries to nothing"
    assert len(store.entries("blocklist") or []) == 200
    assert (tmp_path / "feeds" / "blocklist" / "held.txt").read_text() == ""

    huge = "".join(f"203.0.{i // 250}.{i % 250 * 1}\n" for i in range(0, 2000, 2))  # 1000
    feed_server.serve("/list.txt", huge)
    grown = sync_feed(feed, store, SyncOptions())
    assert grown.held == "grew from 200 to 1000 entries (more than x3)"
    assert len(store.entries("blocklist") or []) == 200

    accepted = sync_feed(feed, store, SyncOptions(accept=frozenset({"blocklist"})))
    assert accepted.held is None and accepted.entries == 1000
    assert (accepted.added, accepted.removed) == (1000, 200)
    assert not (tmp_path / "feeds" / "blocklist" / "held.txt").exists()


def test_cluster_loopback_link_local_and_allowlist_are_never_blocked(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    body = "\n".join(
        [
            "198.51.100.7",  # blocked
            "10.244.0.0/16",  # holds the pod 10.244.1.5
            "172.18.0.2",  # the node
            "127.0.0.1",
            "169.254.169.254",  # link-local (cloud metadata)
            "192.0.2.0/24",  # overlaps the allowlist
            "100.64.0.0/10",  # the --protect CIDR (pod CIDR of another pool)
            "fe80::1",
        ]
    )
    url = feed_server.serve("/list.txt", body)
    cluster = load_text(CLUSTER).cluster
    options = SyncOptions(protected_nets(cluster, (), [IPv4Network("100.64.0.0/10")]))
    feed = http_feed(url, safety=FeedSafety(allowlist=(IPv4Network("192.0.2.128/25"),)))
    status = sync_feed(feed, FeedStore(tmp_path), options)
    assert FeedStore(tmp_path).entries("blocklist") == ["198.51.100.7/32"]
    assert status.withheld_count == 7
    assert set(status.withheld) == {
        "line 2: 10.244.0.0/16 not blocked: overlaps shop/web-0",
        "line 3: 172.18.0.2/32 not blocked: overlaps node worker-1",
        "line 4: 127.0.0.1/32 not blocked: overlaps loopback",
        "line 5: 169.254.169.254/32 not blocked: overlaps link-local",
        "line 6: 192.0.2.0/24 not blocked: overlaps allowlist",
        "line 7: 100.64.0.0/10 not blocked: overlaps protected CIDR",
        "line 8: fe80::1/128 not blocked: overlaps link-local",
    }


POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: block-threats}
spec:
  order: 10
  selector: all()
  types: [Egress]
  egress:
    - action: Deny
      destination: {selector: threat == "high"}
    - action: Allow
"""


def test_the_engine_sees_the_feed_as_a_network_set(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/list.txt", "198.51.100.0/24\n")
    sync_feed(http_feed(url), FeedStore(tmp_path), SyncOptions())
    (tmp_path / "cluster.yaml").write_text(CLUSTER + "---\n" + POLICY)
    cluster = load_paths([tmp_path / "cluster.yaml", tmp_path / "networksets"]).cluster
    engine = PolicyEngine(cluster)
    pod = cluster.endpoints_by_key["shop/web-0"]
    listed, clean = cluster.endpoint("198.51.100.9"), cluster.endpoint("198.51.101.9")
    assert listed is not None and clean is not None
    assert not engine.decide(Flow(pod, listed, 443, 6)).allowed
    assert engine.decide(Flow(pod, clean, 443, 6)).allowed
    assert (
        yaml.safe_load((tmp_path / "networksets" / "threatfeed.blocklist.yaml").read_text())[
            "metadata"
        ]["name"]
        == "threatfeed.blocklist"
    )


def test_domain_feed(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve("/domains.txt", "Evil.Example.\nbad..name\n*.phish.example\n10.0.0.1\n")
    feed = ThreatFeed("domains", FeedContent.DOMAIN_SET, HttpSource(url, NewlineFormat()))
    store = FeedStore(tmp_path)
    status = sync_feed(feed, store, SyncOptions())
    assert store.entries("domains") == ["evil.example", "phish.example"]
    assert status.bad_count == 2
    assert not (tmp_path / "networksets" / "threatfeed.domains.yaml").exists()

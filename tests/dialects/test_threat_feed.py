"""Reading Calico GlobalThreatFeed and netwarden ThreatFeed resources, with located errors."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from netwarden.dialects import load_paths
from netwarden.dialects.k8s_config import read_key_values
from netwarden.dialects.source import read_paths, read_text
from netwarden.dialects.threat_feed import parse_duration, read_feeds
from netwarden.errors import InputError
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import (
    CsvFormat,
    FileSource,
    HeaderRef,
    HttpHeader,
    HttpSource,
    JsonFormat,
    KeyKind,
    NewlineFormat,
    StixFormat,
    TaxiiSource,
)

FIXTURES = Path(__file__).parent / "fixtures" / "threat_feed"


def feeds_of(path: Path) -> tuple[dict[str, ThreatFeed], list[str]]:
    feeds, notices = read_feeds(read_paths([path]))
    return {feed.name: feed for feed in feeds}, [str(n) for n in notices]


def test_calico_global_threat_feeds() -> None:
    feeds, notices = feeds_of(FIXTURES / "calico.yaml")
    sample = feeds["sample-global-threat-feed"]
    assert sample.content is FeedContent.IP_SET and sample.enabled
    assert sample.labels == {"level": "high"} and sample.period_seconds == 12 * 3600
    secret_ref = HeaderRef(
        KeyKind.SECRET,
        "globalthreatfeed-sample-global-threat-feed-example",
        "apikey",
        optional=False,
        field_path="spec.pull.http.headers[1].valueFrom.secretKeyRef",
    )
    assert sample.source == HttpSource(
        "https://an.example.threat.feed/deny-list",
        NewlineFormat(),
        (HttpHeader("Accept", "text/plain"), HttpHeader("APIKey", value_from=secret_ref)),
    )
    assert isinstance(sample.source, HttpSource)
    reference = sample.source.headers[1].value_from
    assert reference is not None and str(reference.location) == f"{FIXTURES / 'calico.yaml'}:26"
    assert sample.source_location is not None and sample.source_location.line == 2

    csv_feed = feeds["csv-feed"]
    assert csv_feed.period_seconds == 24 * 3600  # Calico's default
    assert isinstance(csv_feed.source, HttpSource)
    assert csv_feed.source.format == CsvFormat(
        field_name="ip",
        header=True,
        column_delimiter=";",
        comment_delimiter="%",
        record_size=3,
        validate_record_size=False,
    )
    domains = feeds["json-domains"]
    assert domains.content is FeedContent.DOMAIN_SET and not domains.enabled
    assert isinstance(domains.source, HttpSource)
    assert domains.source.format == JsonFormat("$.data[*].domain")
    assert domains.period_seconds == 5400
    assert "pushed" not in feeds
    assert len(notices) == 1
    assert "calico.yaml:65: GlobalThreatFeed pushed: no pull" in notices[0]


def test_netwarden_threat_feeds() -> None:
    feeds, notices = feeds_of(FIXTURES / "netwarden.yaml")
    assert notices == []
    stix = feeds["stix-bundle"]
    assert stix.kind == "ThreatFeed" and stix.jitter_seconds == 300
    assert stix.source == HttpSource(
        "https://intel.example/bundle.json", StixFormat(), (), timeout_seconds=10, max_bytes=1048576
    )
    assert stix.safety.allowlist == (ip_network("192.0.2.0/24"), ip_network("2001:db8::/32"))
    assert stix.safety.max_growth_factor == 4
    taxii = feeds["taxii-collection"]
    assert taxii.source == TaxiiSource(
        "https://taxii.example/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/",
        "reader",
        "s3cret",
        500,
    )
    local = feeds["local-list"]
    assert local.source == FileSource(str(FIXTURES / "lists" / "blocklist.txt"), NewlineFormat())


def test_feeds_do_not_disturb_cluster_loading() -> None:
    result = load_paths([FIXTURES / "calico.yaml", FIXTURES / "netwarden.yaml"])
    assert result.skipped == ()
    assert result.cluster.policies == () and result.cluster.network_sets == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kind: ThreatFeed\nmetadata: {name: x}\nspec:\n  file: {path: a}\n  http: {url: 'https://a/'}\n",
            "t.yaml:5: ThreatFeed x: spec: give exactly one source: http, taxii or file",
        ),
        (
            "kind: ThreatFeed\nmetadata: {name: x}\nspec:\n  period: soon\n  file: {path: a}\n",
            "t.yaml:5: ThreatFeed x: spec.period: invalid duration 'soon'",
        ),
        (
            "kind: ThreatFeed\nmetadata: {name: x}\nspec:\n  http:\n    url: ftp://a/\n",
            "t.yaml:6: ThreatFeed x: spec.http.url: String should match pattern",
        ),
        (
            "kind: ThreatFeed\nmetadata: {name: x}\nspec:\n  file: {path: a}\n  safety:\n    allowlist: [10.0.0.0/33]\n",
            "t.yaml:7: ThreatFeed x: spec.safety.allowlist[0]: invalid CIDR '10.0.0.0/33'",
        ),
        (
            "kind: ThreatFeed\nmetadata: {name: x}\nspec:\n  file:\n    path: a\n    format:\n      csv: {header: true}\n",
            "t.yaml:8: ThreatFeed x: spec.file.format.csv: give exactly one of fieldNum and fieldName",
        ),
        (
            "kind: ThreatFeed\nmetadata: {name: Bad_Name}\nspec:\n  file: {path: a}\n",
            "t.yaml:3: ThreatFeed Bad_Name: metadata.name: invalid feed name 'Bad_Name'",
        ),
    ],
)
def test_netwarden_errors(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_feeds(read_text("apiVersion: netwarden.io/v1alpha1\n" + text, "t.yaml"))
    assert str(caught.value).startswith(message), str(caught.value)


def test_calico_errors() -> None:
    stix_in_calico = """apiVersion: projectcalico.org/v3
kind: GlobalThreatFeed
metadata: {name: x}
spec:
  pull:
    http:
      url: https://a/
      format:
        stix: {}
"""
    with pytest.raises(InputError, match=r"t.yaml:9: .*stix is a netwarden ThreatFeed format"):
        read_feeds(read_text(stix_in_calico, "t.yaml"))
    wrong_content = stix_in_calico.replace("  pull:", "  content: URLSet\n  pull:")
    with pytest.raises(
        InputError,
        match=r"t.yaml:5: GlobalThreatFeed x: spec.content: Input should be 'IPSet' or 'DomainNameSet'",
    ):
        read_feeds(read_text(wrong_content, "t.yaml"))
    duplicate = "\n---\n".join(
        [stix_in_calico.replace("        stix: {}", "        newlineDelimited: {}")] * 2
    )
    with pytest.raises(InputError, match="duplicate feed x"):
        read_feeds(read_text(duplicate, "t.yaml"))
    with pytest.raises(InputError, match="give exactly one source"):
        read_feeds(read_paths([FIXTURES / "bad.yaml"]))


def test_durations() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("1h30m10s") == 5410
    assert parse_duration("250ms") == 0.25
    for bad in ("", "10", "1d", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


CALICO_HEADERS = """apiVersion: projectcalico.org/v3
kind: GlobalThreatFeed
metadata: {name: x}
spec:
  pull:
    http:
      url: https://a/
      headers:
        - name: Authorization
          valueFrom:
            configMapKeyRef: {name: globalthreatfeed-x-auth, key: token, optional: true}
        - name: APIKey
          HEADER
"""


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            "valueFrom: {secretKeyRef: {name: other-secret, key: apikey}}",
            "t.yaml:13: GlobalThreatFeed x: spec.pull.http.headers[1].valueFrom.secretKeyRef.name:"
            " Secret name 'other-secret' must start with 'globalthreatfeed-x-'",
        ),
        (
            "value: k\n          valueFrom: {secretKeyRef: {name: globalthreatfeed-x-a, key: k}}",
            "t.yaml:12: GlobalThreatFeed x: spec.pull.http.headers[1]: value cannot be used when",
        ),
        (
            "valueFrom: {}",
            "t.yaml:13: GlobalThreatFeed x: spec.pull.http.headers[1].valueFrom: give exactly one",
        ),
        (
            "valueFrom: {secretKeyRef: {name: globalthreatfeed-x-a, key: ../../etc/passwd}}",
            "t.yaml:13: GlobalThreatFeed x: spec.pull.http.headers[1].valueFrom.secretKeyRef.key:",
        ),
        (
            'value: "a\\nb"',
            "t.yaml:13: GlobalThreatFeed x: spec.pull.http.headers[1].value: a header value must",
        ),
    ],
)
def test_header_value_from_errors(header: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_feeds(read_text(CALICO_HEADERS.replace("HEADER", header), "t.yaml"))
    assert str(caught.value).startswith(message), str(caught.value)


def test_header_value_from_config_map_and_netwarden_feed_without_prefix() -> None:
    text = CALICO_HEADERS.replace("HEADER", "value: plain")
    (feed,), notices = read_feeds(read_text(text, "t.yaml"))
    assert notices == [] and isinstance(feed.source, HttpSource)
    auth, plain = feed.source.headers
    assert auth.value_from == HeaderRef(
        KeyKind.CONFIG_MAP,
        "globalthreatfeed-x-auth",
        "token",
        optional=True,
        field_path="spec.pull.http.headers[0].valueFrom.configMapKeyRef",
    )
    assert plain == HttpHeader("APIKey", "plain") and "plain" not in repr(plain)
    own = """apiVersion: netwarden.io/v1alpha1
kind: ThreatFeed
metadata: {name: y}
spec:
  http:
    url: https://a/
    headers:
      - {name: X-Key, valueFrom: {secretKeyRef: {name: any-name, key: k}}}
"""
    (mine,), _ = read_feeds(read_text(own, "t.yaml"))
    assert isinstance(mine.source, HttpSource)
    assert mine.source.headers[0].value_from is not None
    assert mine.source.headers[0].value_from.name == "any-name"


SECRETS = """apiVersion: v1
kind: Secret
metadata: {name: globalthreatfeed-x-auth, namespace: tigera-intrusion-detection}
data: {token: czNjcjN0LXZhbHVl}
stringData: {extra: in-clear}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: globalthreatfeed-x-auth}
data: {token: not-secret}
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Secret
    metadata: {name: elsewhere, namespace: default}
    data: {a: YQ==}
"""


def test_secret_and_config_map_manifests() -> None:
    found = read_key_values(read_text(SECRETS, "s.yaml"))
    secret, config_map, nested = found
    assert (secret.kind, secret.name, secret.namespace) == (
        KeyKind.SECRET,
        "globalthreatfeed-x-auth",
        "tigera-intrusion-detection",
    )
    assert secret.values == {"token": b"s3cr3t-value", "extra": b"in-clear"}
    assert "s3cr3t" not in repr(secret) and "in-clear" not in repr(secret)
    assert (config_map.kind, config_map.namespace) == (KeyKind.CONFIG_MAP, None)
    assert config_map.values == {"token": b"not-secret"}
    assert (nested.name, nested.namespace, nested.values) == ("elsewhere", "default", {"a": b"a"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kind: Secret\nmetadata: {name: s}\ndata: {token: '%%not-base64-s3cr3t'}\n",
            "s.yaml:4: Secret s: data.token: not valid base64 (the value is not shown)",
        ),
        (
            "kind: ConfigMap\nmetadata: {name: c}\ndata: {token: 12345}\n",
            "s.yaml:4: ConfigMap c: data.token: the value must be a string",
        ),
        (
            "kind: Secret\nmetadata: {name: s}\nstringData: {'../x': s3cr3t}\n",
            "s.yaml:4: Secret s: stringData: invalid key '../x'",
        ),
        (
            "kind: Secret\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Secret\n"
            "metadata: {name: s}\n",
            "s.yaml:7: Secret s: metadata.name: duplicate Secret (first defined at s.yaml:1)",
        ),
    ],
)
def test_secret_errors_never_show_values(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_key_values(read_text("apiVersion: v1\n" + text, "s.yaml"))
    assert str(caught.value).startswith(message), str(caught.value)
    assert "s3cr3t" not in str(caught.value)

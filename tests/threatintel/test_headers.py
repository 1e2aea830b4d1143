"""Header values from Secrets and ConfigMaps, end to end against a real HTTP server that
answers 401 without the right headers: manifests among `-f`, `--secrets-dir` (first), rotation,
optional references, located errors, redirects that leave the feed's host, and no secret value
ever in the output, the errors or the state directory."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from typer.testing import CliRunner, Result

from netwarden.cli.main import app
from netwarden.model import FeedContent, ThreatFeed
from netwarden.model.feeds import (
    HeaderRef,
    HttpHeader,
    HttpSource,
    KeyKind,
    KeyValues,
    NewlineFormat,
)
from netwarden.threatintel.headers import HeaderValues
from netwarden.threatintel.state import FeedStore
from netwarden.threatintel.sync import SyncOptions, sync_feed
from tests.cli.conftest import ENV
from tests.threatintel.conftest import FeedServer

TOKEN = "Bearer T0KEN-7f3a9c-do-not-print"
API_KEY = "k3y-5b1e-do-not-print"
NAME = "globalthreatfeed-remote-auth"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=ENV)


def feed_yaml(url: str, extra_header: str = "") -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: GlobalThreatFeed
metadata: {{name: remote}}
spec:
  pull:
    http:
      url: {url}
      headers:
        - name: Authorization
          valueFrom:
            secretKeyRef:
              name: {NAME}
              key: token
        - name: X-Api-Key
          valueFrom:
            configMapKeyRef: {{name: {NAME}, key: api-key}}
{extra_header}"""


def secrets_yaml(token: str, namespace: str = "tigera-intrusion-detection") -> str:
    encoded = base64.b64encode(token.encode()).decode()
    return f"""apiVersion: v1
kind: Secret
metadata: {{name: {NAME}, namespace: {namespace}}}
data: {{token: {encoded}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {NAME}, namespace: {namespace}}}
data: {{api-key: {API_KEY}}}
"""


def leaked(texts: list[str], state: Path) -> list[str]:
    """Where a secret shows up: in any text given, or in any file of the state directory
    (as is, or base64-encoded as a manifest would hold it)."""
    needles = [TOKEN, API_KEY, "T0KEN-7f3a9c", base64.b64encode(TOKEN.encode()).decode()]
    found = [f"output {i}" for i, text in enumerate(texts) if any(n in text for n in needles)]
    for path in state.rglob("*"):
        if path.is_file() and any(n.encode() in path.read_bytes() for n in needles):
            found.append(str(path))
    return found


def test_secret_and_config_map_headers_from_manifests(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.serve(
        "/list.txt",
        "198.51.100.7\n",
        require_headers={"Authorization": TOKEN, "X-Api-Key": API_KEY},
    )
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feed_yaml(url))
    secrets = tmp_path / "secrets.yaml"
    state = tmp_path / "state"
    outputs: list[str] = []

    # No Secret anywhere: the feed fails without pulling, the error names file:line and field.
    missing = run("feeds", "sync", "-f", feeds, "--state-dir", state)
    outputs += [missing.stdout, missing.stderr]
    assert missing.exit_code == 1
    status = json.loads(run("feeds", "status", "--state-dir", state, "-o", "json").stdout)[0]
    assert status["last_error"].startswith(
        f"{feeds}:12: GlobalThreatFeed remote: spec.pull.http.headers[0].valueFrom.secretKeyRef:"
        f" Secret {NAME} not found (looked in the -f manifests)"
    ), status["last_error"]
    assert feed_server.statuses("/list.txt") == []  # nothing was sent without the header

    # The Secret and ConfigMap as manifests beside the feed: the server lets the pull in.
    secrets.write_text(secrets_yaml(TOKEN))
    synced = run("feeds", "sync", "-f", feeds, "-f", secrets, "--state-dir", state)
    outputs += [synced.stdout, synced.stderr]
    assert synced.exit_code == 0, synced.stdout + synced.stderr
    sent = feed_server.statuses("/list.txt")[-1]
    assert (sent["Authorization"], sent["X-Api-Key"]) == (TOKEN, API_KEY)
    assert FeedStore(state).entries("remote") == ["198.51.100.7/32"]

    # A wrong secret: 401, the feed fails, its last good set stays.
    secrets.write_text(secrets_yaml("Bearer wrong"))
    refused = run("feeds", "sync", "-f", feeds, "-f", secrets, "--state-dir", state)
    outputs += [refused.stdout, refused.stderr]
    assert refused.exit_code == 1 and "HTTP 401 Unauthorized" in refused.stdout
    assert FeedStore(state).entries("remote") == ["198.51.100.7/32"]

    # In another namespace the Secret is not read, and the error says why.
    secrets.write_text(secrets_yaml(TOKEN, namespace="default"))
    elsewhere = run("feeds", "sync", "-f", feeds, "-f", secrets, "--state-dir", state)
    outputs += [elsewhere.stdout, elsewhere.stderr]
    status = json.loads(run("feeds", "status", "--state-dir", state, "-o", "json").stdout)[0]
    assert (
        "namespace default is not read: Calico reads tigera-intrusion-detection"
        in (status["last_error"])
    )
    table = run("feeds", "status", "--state-dir", state)
    outputs += [table.stdout, json.dumps(status)]
    assert leaked(outputs, state) == []


def test_secrets_dir_first_rotation_and_optional(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.serve(
        "/list.txt",
        "198.51.100.7\n",
        require_headers={"Authorization": TOKEN, "X-Api-Key": API_KEY},
    )
    optional = """        - name: X-Tenant
          valueFrom:
            secretKeyRef: {name: globalthreatfeed-remote-tenant, key: id, optional: true}
"""
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feed_yaml(url, optional))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(secrets_yaml("Bearer stale-from-git"))
    mounted = tmp_path / "mounted"
    (mounted / NAME).mkdir(parents=True)
    (mounted / NAME / "token").write_text(TOKEN)  # what a Secret volume mount holds
    state = tmp_path / "state"
    args = ["-f", feeds, "-f", secrets, "--secrets-dir", mounted, "--state-dir", state]

    first = run("feeds", "sync", *args)
    assert first.exit_code == 0, first.stdout + first.stderr
    # The token from the folder won over the manifest; the key the folder lacks (api-key)
    # came from the ConfigMap manifest; the optional header was left out, with a note.
    sent = feed_server.statuses("/list.txt")[-1]
    assert (sent["Authorization"], sent["X-Api-Key"]) == (TOKEN, API_KEY)
    assert "X-Tenant" not in sent
    assert (
        f"feed remote: header X-Tenant not sent: optional Secret globalthreatfeed-remote-tenant "
        f"not found (looked in --secrets-dir {mounted} and the -f manifests)"
    ) in first.stderr.replace("\n", "")

    # Rotation: the folder is read again at each pull.
    rotated = TOKEN + "-v2"
    feed_server.routes["/list.txt"].require_headers["Authorization"] = rotated
    (mounted / NAME / "token").write_text(rotated)
    again = run("feeds", "sync", *args)
    assert again.exit_code == 0, again.stdout
    assert feed_server.statuses("/list.txt")[-1]["Authorization"] == rotated

    # A trailing newline (echo into the file) is refused without showing the value.
    (mounted / NAME / "token").write_text(rotated + "\n")
    broken = run("feeds", "sync", *args)
    assert broken.exit_code == 1
    status = FeedStore(state).status("remote")
    assert status is not None and status.last_error is not None
    assert "holds a line break" in status.last_error and "T0KEN" not in status.last_error
    assert leaked([first.stdout, first.stderr, again.stdout, broken.stdout], state) == []


def test_secret_headers_do_not_follow_a_redirect_to_another_host(
    feed_server: FeedServer, other_feed_server: FeedServer, tmp_path: Path
) -> None:
    elsewhere = other_feed_server.serve("/list.txt", "198.51.100.8\n")
    home = feed_server.serve("/moved", "", redirect=elsewhere)
    same_host = feed_server.serve("/same", "", redirect=feed_server.url("/here"))
    feed_server.serve("/here", "198.51.100.9\n", require_headers={"X-Api-Key": API_KEY})
    secret = HeaderRef(KeyKind.SECRET, NAME, "api-key", field_path="headers[0]")
    headers = (HttpHeader("X-Api-Key", value_from=secret), HttpHeader("Accept", "text/plain"))
    values = HeaderValues((KeyValues(KeyKind.SECRET, NAME, None, {"api-key": API_KEY.encode()}),))
    store = FeedStore(tmp_path)
    for name, url in (("moved", home), ("same", same_host)):
        feed = ThreatFeed(name, FeedContent.IP_SET, HttpSource(url, NewlineFormat(), headers))
        status = sync_feed(feed, store, SyncOptions(header_values=values))
        assert status.last_error is None, status.last_error
    at_home = feed_server.statuses("/moved")[0]
    away = other_feed_server.statuses("/list.txt")[0]
    assert at_home["X-Api-Key"] == API_KEY
    assert "X-Api-Key" not in away and away["Accept"] == "text/plain"
    assert feed_server.statuses("/here")[0]["X-Api-Key"] == API_KEY  # same host: kept
    assert store.entries("moved") == ["198.51.100.8/32"]

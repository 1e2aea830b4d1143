"""A lab's state file: what `lab up` made and every later change, saved as JSON so that
`probe`, `status`, `pod`, `apply`, `collect` and `down` work from any process.

One file per lab, `<state dir>/<name>.json` (`NETWARDEN_LAB_DIR`, default /run/netwarden/labs),
replaced atomically on every save, so a reader always sees one whole state. Commands that
change a lab hold its lock (`lab_lock`) from loading the state to saving it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from pydantic import TypeAdapter

from netwarden.dataplane.lab_lock import ProcessIdentity
from netwarden.dataplane.lab_topology import LabPlan, ServedPort
from netwarden.dataplane.nft_ruleset import Ruleset
from netwarden.dataplane.nft_update import LoadedRuleset
from netwarden.errors import LabError

#: Environment override of where state files live.
STATE_DIR_ENV = "NETWARDEN_LAB_DIR"
DEFAULT_STATE_DIR = Path("/run/netwarden/labs")


@dataclass(frozen=True)
class ServerProcess:
    netns: str
    pid: int


@dataclass(frozen=True)
class SourceText:
    """One input file as it was read, kept so the lab can be re-decided later."""

    path: str
    text: str


@dataclass(frozen=True)
class AppliedRuleset:
    """A ruleset loaded in a lab node's namespace; `loaded` is what the next incremental
    update is computed against."""

    node: str
    netns: str
    chains: int
    rules: int
    sets: int
    elements: int
    sha256: str
    loaded: LoadedRuleset | None = None

    @classmethod
    def of(cls, node: str, netns: str, ruleset: Ruleset) -> AppliedRuleset:
        """What the lab state keeps of `ruleset` once it is loaded in `netns`."""
        return cls(
            node,
            netns,
            ruleset.chains,
            ruleset.rules,
            ruleset.sets,
            ruleset.elements,
            hashlib.sha256(ruleset.script.encode()).hexdigest(),
            LoadedRuleset.of(ruleset),
        )


@dataclass(frozen=True)
class PodChange:
    """A change of the lab's inventory after `lab up` (`lab pod add/del/label`), replayed on
    top of the lab's inputs whenever they are read. `add` records where the pod went (node,
    address) so that replaying it gives the same pod."""

    action: str  # "add" | "delete" | "label"
    key: str  # namespace/pod
    labels: tuple[tuple[str, str], ...] = ()  # add: the pod's labels; label: set these
    unset: tuple[str, ...] = ()  # label: remove these keys
    node: str | None = None
    ip: IPv4Address | None = None
    ports: tuple[ServedPort, ...] = ()
    at: float | None = None  # Unix time it was made (the collector names endpoints by it)


@dataclass(frozen=True)
class AppliedSources:
    """Inputs `lab apply` loaded while a collection ran (`LabState.flow_logs`), and when: the
    collector decides each record's pending hits (and names its endpoints) with the inputs
    valid when its connection started. The collection's end clears them."""

    at: float  # Unix time, taken before the rulesets were loaded (as `PodChange.at`)
    sources: tuple[SourceText, ...]


@dataclass(frozen=True)
class LabState:
    """What `lab up` made, saved so that `probe`, `status` and `down` work from any process.
    `status` is `creating` until every part exists, then `up`. `sources` are the inputs the
    lab (and its enforced policies, if any) came from; `rulesets` what is enforced now.
    `flow_logs` is set while a collection runs (`flows.collect_lab`): every ruleset the lab
    compiles meanwhile (`lab pod`, `lab apply`) logs its verdicts, or collection goes blind.
    `collector` is the process running that collection (one at a time per lab); `applied`
    the inputs `lab apply` replaced `sources` with meanwhile. Commands that change the lab
    hold its lock (`lab_lock.lab_lock`) from loading the state to saving it."""

    plan: LabPlan
    status: str
    servers: tuple[ServerProcess, ...]
    created: float  # Unix time
    seconds: float  # how long `lab up` took
    sources: tuple[SourceText, ...] = ()
    rulesets: tuple[AppliedRuleset, ...] = ()
    changes: tuple[PodChange, ...] = ()
    flow_logs: bool = False
    collector: ProcessIdentity | None = None
    applied: tuple[AppliedSources, ...] = ()

    @property
    def enforced(self) -> bool:
        return bool(self.rulesets)


@dataclass(frozen=True)
class Teardown:
    """What `destroy_lab` removed."""

    name: str
    namespaces: int
    processes: int
    state_file: bool


_STATE = TypeAdapter(LabState)


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def state_path(name: str, directory: Path | None = None) -> Path:
    return (directory or state_dir()) / f"{name}.json"


def save_state(state: LabState, directory: Path | None = None) -> None:
    path = state_path(state.plan.name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(_STATE.dump_json(state, indent=1))
    temporary.replace(path)  # atomic: a reader sees the old state or the new one


def load_state(name: str, directory: Path | None = None) -> LabState:
    path = state_path(name, directory)
    try:
        return _STATE.validate_json(path.read_bytes())
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} is up (no {path})") from None
    except ValueError as error:
        raise LabError(
            f"{path}: unreadable lab state ({error}); `lab down --all` cleans up"
        ) from None


def list_states(directory: Path | None = None) -> list[LabState]:
    folder = directory or state_dir()
    if not folder.is_dir():
        return []
    return [load_state(path.stem, folder) for path in sorted(folder.glob("*.json"))]

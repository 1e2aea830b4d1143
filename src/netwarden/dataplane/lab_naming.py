"""Names of what a lab creates, all derived from the lab's name and prefix: the lab prefix
(`nw-<lab>-`), namespace names, interface names and the leaf ends' MACs.

They are pure functions of the lab and the part, so that `lab pod add` names a new pod's
namespace and link the way `lab up` would have.
"""

from __future__ import annotations

import hashlib
import re

from netwarden.errors import LabError

#: Names of everything a lab creates start with `<prefix>-<lab>-`.
DEFAULT_PREFIX = "nw"

_LAB_NAME = re.compile(r"[a-z0-9]{1,12}")
_PREFIX = re.compile(r"[a-z]{1,5}")
_SAFE_PART = re.compile(r"[a-z0-9][a-z0-9.-]*")
_MAX_NETNS = 200  # /run/netns/<name> must stay a valid file name (255 bytes)


def check_lab_name(name: str) -> str:
    """Lab names are 1-12 lower-case letters and digits: no `-`, so `nw-<name>-` never is the
    prefix of another lab's names."""
    if not _LAB_NAME.fullmatch(name):
        raise LabError(f"invalid lab name {name!r}: expected 1-12 lower-case letters and digits")
    return name


def lab_prefix(name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """`nw-<name>-`: the start of every namespace name of the lab."""
    if not _PREFIX.fullmatch(prefix):
        raise LabError(f"invalid lab prefix {prefix!r}: expected 1-5 lower-case letters")
    return f"{prefix}-{check_lab_name(name)}-"


def netns_name(lab_prefix: str, role: str, name: str) -> str:
    """The namespace of a lab part: `<lab prefix><role>-<name>` (a digest when the name is
    not safe as a file name, shortened when too long)."""
    part = name if _SAFE_PART.fullmatch(name) else _digest(name)
    full = f"{lab_prefix}{role}-{part}"
    if len(full) > _MAX_NETNS:
        full = f"{full[: _MAX_NETNS - 11]}-{_digest(full)}"
    return full


def interface_name(lab_prefix: str, prefix: str, what: tuple[str, str]) -> str:
    """`nw` + 10 hex digits: within the 15 characters Linux allows, unique per lab."""
    digest = hashlib.sha256(f"{lab_prefix}{what[0]}/{what[1]}".encode()).hexdigest()
    return f"{prefix}{digest[: 15 - len(prefix) - 3]}"


def leaf_mac(lab_prefix: str, what: tuple[str, str]) -> str:
    """A locally administered unicast MAC (02:...), stable for the same lab and endpoint."""
    digest = hashlib.sha256(f"{lab_prefix}{what[0]}/{what[1]}/mac".encode()).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]

"""The table of readers: (API group, kind) -> function reading one document into model parts.

To add a format: write `dialects/<name>.py` with a `READERS` dict, add the module to `DIALECTS`,
and add `tests/dialects/test_<name>.py` with fixtures in `tests/dialects/fixtures/<name>/`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from netwarden.dialects import (
    admin_netpol,
    calico,
    calico_inventory,
    k8s_inventory,
    k8s_netpol,
    k8s_services,
    requirements,
    threat_feed,
)
from netwarden.dialects.source import Document

Reader = Callable[[Document], Sequence[Any]]

DIALECTS = (
    k8s_netpol,
    admin_netpol,
    k8s_inventory,
    k8s_services,
    calico,
    calico_inventory,
    requirements,
    threat_feed,
)

READERS: dict[tuple[str, str], Reader] = {
    key: reader for dialect in DIALECTS for key, reader in dialect.READERS.items()
}

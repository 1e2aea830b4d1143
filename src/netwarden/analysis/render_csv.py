"""CSV: the machine-readable contract. Header `src,dst,protocol,ports`, one row per allowed
(source, destination, protocol); src/dst are `namespace/pod` (with `--by workload`, the
workload group's name) or an IP range `a.b.c.d-e.f.g.h`; protocol is `TCP`, `UDP`, `SCTP`,
`ICMP`, another name or number, or `*` for every protocol and port; ports are sorted single
ports and inclusive ranges (`53,80,8000-8080`), empty for protocols without ports. Rows are
sorted by source, then destination, and written as they are produced (streamed)."""

from __future__ import annotations

import csv
from typing import TextIO

from netwarden.analysis.connectivity import ConnectivityMap
from netwarden.analysis.groups import By

HEADER = ("src", "dst", "protocol", "ports")


def render(cmap: ConnectivityMap, by: By, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for connection in cmap.connections(by):
        writer.writerows(connection.rows())

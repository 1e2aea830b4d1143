"""Pieces every writer shares (`k8s_writer`, `calico_writer` and the modules they are built
from): the manifest type, how a construct the target cannot hold is reported (`Inexpressible`
inside, `WriteError` out, with the part at fault), and the numbers both targets print alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from netwarden.errors import WriteError
from netwarden.model import ALL_PORTS, Location, Policy, PortMatch, PortRange

Manifest = dict[str, Any]


class Inexpressible(Exception):
    """A construct the target cannot hold; `writing` turns it into a WriteError."""


@contextmanager
def writing(location: Location | None, resource: str, target: str) -> Iterator[None]:
    """Report any Inexpressible raised inside as a WriteError about `resource`."""
    try:
        yield
    except Inexpressible as error:
        raise WriteError(location, resource, f"cannot be written for {target}: {error}") from None


@contextmanager
def part(where: str) -> Iterator[None]:
    """Prefix the message of an Inexpressible raised inside with the part at fault."""
    try:
        yield
    except Inexpressible as error:
        raise Inexpressible(f"{where}: {error}") from None


def describe(policy: Policy) -> str:
    """`NetworkPolicy shop/web`, `staged GlobalNetworkPolicy lockdown`."""
    return f"{'staged ' if policy.staged else ''}{policy.kind} {policy.key}"


def number(value: float) -> int | float:
    """Orders and priorities print as integers when they are whole."""
    return int(value) if value == int(value) else value


def port_span(port: PortMatch) -> PortRange | None:
    """The port range, None for every port; ranges must lie within 1-65535."""
    span = port.ports
    if span is None or span == ALL_PORTS:
        return None
    if span.start < 1 or span.end > 65535 or span.start > span.end:
        raise Inexpressible(f"port range {span} (ports are 1-65535)")
    return span

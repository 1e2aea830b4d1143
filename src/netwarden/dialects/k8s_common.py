"""Pieces shared by the Kubernetes-shaped dialects: metadata, CIDRs, port numbers, names."""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Annotated

from pydantic import AfterValidator, Field

from netwarden.dialects.validation import Schema
from netwarden.model import IPNetwork

PortNumber = Annotated[int, Field(ge=1, le=65535)]

_SERVICE_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def parse_cidr(text: str) -> IPNetwork:
    """`10.10.1.1/4` means its network, as the API server and every dataplane read it."""
    if "/" not in text:
        raise ValueError(f"invalid CIDR {text!r}: missing prefix length")
    try:
        return ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR {text!r}") from None


def _check_port_name(name: str) -> str:
    """Named ports follow IANA_SVC_NAME: at most 15 lowercase letters, digits and inner dashes,
    with at least one letter and no double dash."""
    if not _SERVICE_NAME.match(name) or "--" in name:
        raise ValueError(f"invalid port name {name!r} (at most 15 characters a-z, 0-9, '-')")
    return name


PortName = Annotated[str, AfterValidator(_check_port_name)]


class ObjectMeta(Schema):
    name: str = Field(min_length=1)
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}

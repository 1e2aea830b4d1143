"""Named nftables counters of one table, read over netlink without the nft command.

Why not `nft list counters table ...`: nft 1.0.6 fills its whole cache first, every set
element included, whatever is listed (a counter, a chain, the counters of a table). With a
million threat-feed addresses that is tens of seconds and ~650 MB of nft memory for a few
numbers. The kernel itself answers a dump of a table's counter objects (`NFT_MSG_GETOBJ`,
filtered by table and type) in milliseconds, however large the sets are, so this module asks
it directly: one request on a `NETLINK_NETFILTER` socket, replies parsed with `struct`.

The socket is opened inside the network namespace (`netns.entered`: the socket stays in the
namespace it was created in). Needs CAP_NET_ADMIN, as nft does.

    >>> read_counters(None, "netwarden_threat")          # doctest: +SKIP
    [NamedCounter(name='c0_to', comment='threatfeed/blocklist to', packets=3, bytes=180)]
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from contextlib import nullcontext
from dataclasses import dataclass

from netwarden.dataplane.netns import entered
from netwarden.errors import ApplyError

NETLINK_NETFILTER = 12
NFPROTO_INET = 1
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETOBJ = 19
NFT_OBJECT_COUNTER = 1
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
# enum nft_object_attributes / nft_counter_attributes (linux/netfilter/nf_tables.h)
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFTA_OBJ_USERDATA = 8
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
#: libnftnl's user-data type of an object's comment.
NFTNL_UDATA_OBJ_COMMENT = 0
_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_ATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class NamedCounter:
    name: str
    comment: str
    packets: int
    bytes: int


def read_counters(netns: str | None, table: str, family: int = NFPROTO_INET) -> list[NamedCounter]:
    """The counter objects of `table` (empty when there is no such table)."""
    sock = _socket(netns)
    try:
        sock.settimeout(10)
        request = struct.pack("=BBH", family, 0, 0)
        request += _attr(NFTA_OBJ_TABLE, table.encode() + b"\0")
        request += _attr(NFTA_OBJ_TYPE, struct.pack(">I", NFT_OBJECT_COUNTER))
        message_type = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETOBJ
        flags = NLM_F_REQUEST | NLM_F_DUMP
        sock.sendall(_HEADER.pack(_HEADER.size + len(request), message_type, flags, 1, 0) + request)
        return _replies(sock)
    except OSError as error:
        raise ApplyError(f"cannot read the counters of table {table}: {error}") from None
    finally:
        sock.close()


def _replies(sock: socket.socket) -> list[NamedCounter]:
    counters: list[NamedCounter] = []
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return counters
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
                if code == errno.ENOENT:
                    return counters
                raise OSError(code, os.strerror(code))
            # nlmsghdr, then nfgenmsg (4 bytes), then the object's attributes
            counters.append(_counter(_attrs(data[offset + _HEADER.size + 4 : offset + length])))
            offset += (length + 3) & ~3
        if not data:
            return counters


def _counter(attrs: dict[int, bytes]) -> NamedCounter:
    numbers = _attrs(attrs.get(NFTA_OBJ_DATA, b""))
    packets = int.from_bytes(numbers.get(NFTA_COUNTER_PACKETS, b""), "big")
    size = int.from_bytes(numbers.get(NFTA_COUNTER_BYTES, b""), "big")
    return NamedCounter(
        _text(attrs.get(NFTA_OBJ_NAME, b"")),
        _comment(attrs.get(NFTA_OBJ_USERDATA, b"")),
        packets,
        size,
    )


def _attrs(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[kind & _TYPE_MASK] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _comment(userdata: bytes) -> str:
    """libnftnl user data: (type u8, length u8, value) records; the comment ends in NUL."""
    offset = 0
    while offset + 2 <= len(userdata):
        kind, length = userdata[offset], userdata[offset + 1]
        if kind == NFTNL_UDATA_OBJ_COMMENT:
            return _text(userdata[offset + 2 : offset + 2 + length])
        offset += 2 + length
    return ""


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _attr(kind: int, value: bytes) -> bytes:
    length = _ATTR.size + len(value)
    return _ATTR.pack(length, kind) + value + b"\0" * (-length % 4)


def _socket(netns: str | None) -> socket.socket:
    try:
        with entered(netns) if netns else nullcontext():
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as error:
        where = f" in network namespace {netns}" if netns else ""
        raise ApplyError(f"cannot open a netfilter socket{where}: {error}") from None

"""Real traffic between a lab's pods for the collector's tests: one connection with known
payload sizes each way, made from inside the client pod's namespace."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

import pytest

from netwarden.dataplane.lab_plan import LabPlan
from netwarden.dataplane.netns import entered
from netwarden.model import TCP


@dataclass(frozen=True)
class Conversation:
    """One connection the test makes: who, where, and how many payload bytes each way."""

    src: str
    dst: str
    port: int
    protocol: int
    sent: int  # client -> server payload bytes
    answer: int  # server -> client payload bytes
    allowed: bool


def addresses(plan: LabPlan) -> tuple[dict[str, str], dict[str, str]]:
    """Per pod (`ns/pod`): its network namespace, and its first address: what `run` takes."""
    return {e.key: e.netns for e in plan.endpoints}, {e.key: str(e.ips[0]) for e in plan.endpoints}


def _serve(listener: socket.socket, conversation: Conversation, received: list[int]) -> None:
    """Read everything the client sends, then answer with `answer` bytes."""
    if conversation.protocol == TCP:
        connection, _ = listener.accept()
        with connection:
            total = 0
            while chunk := connection.recv(65536):
                total += len(chunk)
            connection.sendall(b"a" * conversation.answer)
        received.append(total)
    else:
        total = 0
        while total < conversation.sent:
            data, peer = listener.recvfrom(65536)
            total += len(data)
        listener.sendto(b"a" * conversation.answer, peer)
        received.append(total)


def run(conversation: Conversation, netns: dict[str, str], ips: dict[str, str]) -> tuple[str, int]:
    """Make the connection; returns (client address, client port) as the packets carry them."""
    kind = socket.SOCK_STREAM if conversation.protocol == TCP else socket.SOCK_DGRAM
    received: list[int] = []
    server = None
    if conversation.allowed:
        with entered(netns[conversation.dst]):
            listener = socket.socket(socket.AF_INET, kind)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ips[conversation.dst], conversation.port))
        if kind == socket.SOCK_STREAM:
            listener.listen(1)
        server = threading.Thread(target=_serve, args=(listener, conversation, received))
        server.start()
    with entered(netns[conversation.src]):
        client = socket.socket(socket.AF_INET, kind)
    with client:
        client.settimeout(5 if conversation.allowed else 1.5)
        client.bind((ips[conversation.src], 0))
        address = client.getsockname()
        target = (ips[conversation.dst], conversation.port)
        if not conversation.allowed:
            with pytest.raises(OSError):
                client.connect(target)
            return address
        if kind == socket.SOCK_STREAM:
            client.connect(target)
            client.sendall(b"q" * conversation.sent)
            client.shutdown(socket.SHUT_WR)
            got = 0
            while chunk := client.recv(65536):
                got += len(chunk)
        else:
            for _ in range(conversation.sent // 1000):
                client.sendto(b"q" * 1000, target)
            got = len(client.recvfrom(65536)[0])
    assert server is not None
    server.join(10)
    listener.close()
    assert received == [conversation.sent] and got == conversation.answer
    return address

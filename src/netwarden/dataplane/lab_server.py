"""The small server each lab namespace runs: every TCP and UDP port of its endpoints, one process.

    python -m netwarden.dataplane.lab_server --netns nw-demo-pod-x.a --ip 10.244.1.10 \\
        --tcp 80,81 --udp 53

It enters the namespace, binds every port on every address (a UDP reply must leave from the
address the probe was sent to, so nothing binds 0.0.0.0), then forks into its own session and
prints `ready <pid>` with the pid that keeps serving, so the caller can record it and return
while the server lives on. TCP connections are accepted and closed at once (the handshake is
the answer); each UDP datagram is answered with `netwarden-lab <netns>`. A bind error is printed
on stderr with exit code 1 before anything is forked.

Standard library only, and no import of netwarden's heavier modules: one of these starts per
namespace, so its start-up time is the lab's.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys

from netwarden.dataplane.netns import enter

#: Connections a listening socket holds before accepting: probes come in bursts.
BACKLOG = 512


def bind_all(ips: list[str], tcp: list[int], udp: list[int]) -> list[socket.socket]:
    """Listening TCP and bound UDP sockets for every (address, port)."""
    sockets = []
    for ip in ips:
        for port in tcp:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((ip, port))
            listener.listen(BACKLOG)
            sockets.append(listener)
        for port in udp:
            datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            datagram.bind((ip, port))
            sockets.append(datagram)
    for sock in sockets:
        sock.setblocking(False)
    return sockets


def serve(sockets: list[socket.socket], reply: bytes) -> None:
    """Answer forever: accept-and-close on TCP, echo `reply` on UDP."""
    selector = selectors.DefaultSelector()
    for listening in sockets:
        selector.register(listening, selectors.EVENT_READ, listening)
    while True:
        for key, _ in selector.select():
            sock: socket.socket = key.data
            try:
                if sock.type == socket.SOCK_STREAM:
                    connection, _ = sock.accept()
                    connection.close()
                else:
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(reply, peer)
            except (BlockingIOError, ConnectionError):
                continue  # the peer went away first, or an ICMP error came back: not ours


def _ports(text: str) -> list[int]:
    return [int(port) for port in text.split(",") if port]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab_server", description=__doc__.splitlines()[0])
    parser.add_argument("--netns", required=True)
    parser.add_argument("--ip", action="append", required=True)
    parser.add_argument("--tcp", type=_ports, default=[])
    parser.add_argument("--udp", type=_ports, default=[])
    args = parser.parse_args(argv)
    try:
        enter(args.netns)  # single-threaded: the whole process moves, for good
        sockets = bind_all(args.ip, args.tcp, args.udp)
    except OSError as error:
        print(f"lab_server {args.netns}: {error}", file=sys.stderr, flush=True)
        return 1
    if os.fork() != 0:
        os._exit(0)  # the caller reaps this parent; the child is nobody's child but init's
    os.setsid()
    os.chdir("/")  # pin no directory of the caller's
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    print(f"ready {os.getpid()}", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    serve(sockets, f"netwarden-lab {args.netns}".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whether a server can listen on a port, checked before it starts.

A server that finds its port taken only after it started failed late and unclearly: ``crowdloop
serve`` printed that it was serving, then uvicorn's bind error ended it with exit 3 ("not fitted");
``crowdloop demo`` took the other server's health answer for its own child's and failed later on
an "invalid or revoked token". Binding a socket first (then closing it) finds the clash at once.
"""

from __future__ import annotations

import errno
import os
import random
import socket
from pathlib import Path

from crowdloop.errors import CrowdloopError, InvalidParameterError

SERVER_PORTS = range(20000, 32768)
"""Where :func:`free_port` looks: below the ephemeral ports (by default Linux's 32768-60999, and
49152-65535 on Windows and macOS), from which the kernel picks both for a bind to port 0 and for
every outgoing connection. A port found by binding to 0 and closing was one of them, so between
that check and the server's own bind, any client connection on the machine could be given it,
and the server then failed to start; with the tests in two processes, each busy with
connections, that became likelier. Here only another server choosing the same port in that
moment can take it, a far rarer race. On Linux a configured range that starts lower is read
(:func:`server_ports`)."""

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def server_ports() -> range:
    """:data:`SERVER_PORTS`, cut below this Linux host's ephemeral range where it starts inside them
    (unless that leaves fewer than 1,000: then no range is outside it)."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return SERVER_PORTS
    if low - SERVER_PORTS.start < 1000:
        return SERVER_PORTS
    return range(SERVER_PORTS.start, min(SERVER_PORTS.stop, low))


def server_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``, for a server; the errors of :func:`ensure_port_free`.

    ``crowdloop serve`` makes it before its checks and migrations and hands it to uvicorn. Checking
    the port and letting uvicorn bind it after the migrations left seconds in which another process
    could take it: uvicorn then failed after "serving" had been printed. It listens at once: a socket
    only bound, with ``SO_REUSEADDR``, can be bound again by another process that sets it too (most
    servers do), and uvloop's server then ran on a port it never listened on, serving nothing.
    Connections made meanwhile wait in the backlog. ``IPPROTO_TCP`` is given explicitly: with the
    protocol left at 0, asyncio does not set ``TCP_NODELAY`` on the accepted connections, and every
    reused connection waited ~40 ms on Nagle's algorithm and delayed ACKs.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn's own bind chooses
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as error:
        sock.close()
        raise _bind_error(host, port, error) from None
    sock.set_inheritable(True)  # uvicorn's worker processes listen on it too
    return sock


BACKLOG = 2048
"""uvicorn's own default backlog."""


def _bind_error(host: str, port: int, error: OSError) -> InvalidParameterError:
    if error.errno == errno.EADDRINUSE:
        return InvalidParameterError(
            f"port {port} is in use on {host}: stop what listens there or choose another --port."
        )
    return InvalidParameterError(f"cannot listen on {host}:{port}: {error.strerror}.")


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`InvalidParameterError` (exit 2) unless every address of ``host`` can bind ``port``.

    Binds as the servers do (``SO_REUSEADDR`` off Windows, IPv6 sockets v6-only), so a port left
    in ``TIME_WAIT`` by a stopped server counts as free and only a listener counts as in use.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InvalidParameterError(f"cannot listen on {host}:{port}: {error.strerror}.") from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as sock:
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                raise _bind_error(host, port, error) from None


def free_port(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A port of :func:`server_ports` that nobody listens on right now, for a server started next
    (``crowdloop demo``'s, the tests')."""
    chooser = random.SystemRandom()  # not the seeded global generator: two processes would pick alike
    ports = server_ports()
    for _ in range(attempts):
        port = chooser.choice(ports)
        try:
            ensure_port_free(host, port)
        except InvalidParameterError:
            continue
        return port
    raise CrowdloopError(f"no free port among {attempts} tried in {ports.start}-{ports.stop - 1}.")

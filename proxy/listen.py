"""Listen addresses (HOST:PORT): split, compare, resolve, and prove bindable before start-up.

Rule: every start-up problem with an address is one sentence naming the address (a ConfigError
when it cannot be resolved, a StartupError when it cannot be bound), never a traceback.
"""

from __future__ import annotations

import errno
import socket

from proxy.errors import ConfigError, StartupError

WILDCARDS = ("0.0.0.0", "::", "*", "")


def host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def listeners_overlap(a: str, b: str) -> bool:
    """True when two HOST:PORT listeners would collide (same port, same or wildcard host)."""
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b or port_a == "0":
        return False
    host_a, host_b = host_a.strip("[]"), host_b.strip("[]")
    return host_a == host_b or host_a in WILDCARDS or host_b in WILDCARDS


def resolve(listen: str, key: str) -> list[tuple[int, tuple[str, int]]]:
    """(family, sockaddr) for each address HOST resolves to; ConfigError when it does not."""
    host, port = host_port(listen)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"{key}: cannot resolve host {host!r} ({exc})") from None
    return [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]


def probe_bind(listen: str, key: str) -> None:
    """Bind (without SO_REUSEPORT, so a process sharing the port is noticed too) and release.
    StartupError when the address is taken or not ours to bind."""
    for family, sockaddr in resolve(listen, key):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"cannot listen on {listen} ({key}): address already in use "
                                   "(another mediaproxy or server holds it)") from None
            raise StartupError(f"cannot listen on {listen} ({key}): "
                               f"{exc.strerror or exc}") from None
        finally:
            sock.close()

"""What the local endpoint checks before a request reaches the model.

A web page the user visits can make the browser send requests to 127.0.0.1, and with DNS
rebinding (``evil.example`` resolving first to the attacker, then to 127.0.0.1) it can read the
answers too. So the endpoint listens on loopback unless told otherwise, answers only requests
addressed to a name it serves (the Host header), refuses browser requests (an Origin header)
from origins the user did not allow, and bounds what one client can take: the body size,
``max_tokens`` and the number of requests waiting for the model.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import threading
from urllib.parse import urlsplit

from engine.core import errors

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::"})

REMOTE_WARNING = ("serving on {host}, not loopback: any machine that can reach port {port} can use "
                  "this model with the bearer token; the traffic is plain HTTP, not encrypted")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def remote_warning(host: str, allow_remote: bool, port: int) -> str | None:
    """The warning for a non-loopback ``--host``, which must come with ``--allow-remote``."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise errors.usage(f"host: {host} is not a loopback address; add --allow-remote to let other "
                           "machines reach the endpoint")
    return REMOTE_WARNING.format(host=host, port=port or "(any free port)")


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` lower-cased, as browsers send it; raises ValueError otherwise."""
    if origin.strip() == "*":
        raise ValueError("'*' would let every web page call the endpoint; name each origin")
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} is not an origin like http://localhost:3000")
    return f"{parts.scheme}://{parts.netloc.lower()}"


class RequestGuard:
    """The Host and Origin checks of one server, and its CORS answer for allowed origins."""

    def __init__(self, host: str, port: int, allow_origins: list[str]) -> None:
        self.port = port
        self.names = set(LOOPBACK_NAMES)
        if host not in ANY_ADDRESS:
            self.names.add(host.lower())
        # A remote client addresses the server by IP; a rebinding attack needs a DNS name.
        self.any_ip = not is_loopback(host)
        self.origins = set()
        for origin in allow_origins:
            try:
                self.origins.add(normal_origin(origin))
            except ValueError as exc:
                raise errors.usage(f"allow-origin: {exc}") from None

    def host_ok(self, header: str | None) -> bool:
        if not header:
            return False
        try:
            parts = urlsplit(f"//{header.strip()}")
            name, port = parts.hostname, parts.port
        except ValueError:
            return False
        if name is None or (port or 80) != self.port:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))

    def origin_ok(self, header: str | None) -> bool:
        """No Origin (not a browser) is fine; a browser's must be one the user allowed."""
        if header is None:
            return True
        try:
            return normal_origin(header) in self.origins
        except ValueError:
            return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Admission:
    """One generation at a time, up to ``waiting`` more queued; beyond that a request is turned away."""

    def __init__(self, waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(1 + waiting)
        self.running = threading.Lock()

    def try_enter(self) -> bool:
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()


class ClientGone:
    """Set once the client closed its connection (or a write to it failed).

    The decoder asks between any two tokens; a peek at the socket sees the peer's close even while
    nothing is being written (a whole answer), so a client that gives up frees the model."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        if not self._event.is_set() and self._closed_by_peer():
            self._event.set()
        return self._event.is_set()

    def _closed_by_peer(self) -> bool:
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            return bool(readable) and not self._sock.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

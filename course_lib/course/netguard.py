"""Block every network connection except loopback, to prove the course runs offline.

Used by the test suite (conftest.py) and, when COURSE_BLOCK_NETWORK=1, by
`course_lib.setup()` inside notebook kernels.
"""

from __future__ import annotations

import ipaddress
import socket

_original_connect = socket.socket.connect


class NetworkBlocked(ConnectionError):
    """Raised when code tries to reach a non-loopback address while the guard is on."""


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: would need DNS


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise NetworkBlocked(f"network access to {address!r} blocked: the course must run offline")
    return _original_connect(self, address)


def block_network() -> None:
    """Refuse socket connections to anything but loopback (idempotent)."""
    socket.socket.connect = _guarded_connect


def allow_network() -> None:
    """Undo block_network."""
    socket.socket.connect = _original_connect

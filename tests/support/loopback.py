"""Ports on loopback for the servers the tests start, and for addresses nothing answers on."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback now: a test server binds it next, or, left alone, a
    connection to it is refused."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])

"""A datagram socket named in $NOTIFY_SOCKET, as systemd makes one for a Type=notify
service: a path, or an abstract name written ``@name``."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def bound_notify_socket(kind: str, directory: Path, timeout: float) -> tuple[socket.socket, str]:
    """A bound socket and the $NOTIFY_SOCKET value that names it; ``kind`` is "path" or
    "abstract"."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        value = str(directory / "notify")
        sock.bind(value)
    else:
        value = f"@volfs-test-notify-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + value[1:])
    sock.settimeout(timeout)
    return sock, value

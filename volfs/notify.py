"""Tell the service manager how the daemon is doing: systemd's ``sd_notify`` protocol.

Under a ``Type=notify`` unit, systemd passes ``$NOTIFY_SOCKET`` and waits for
``READY=1`` before it calls the service started (and before units ordered after it
start); ``STOPPING=1`` says a stop has begun, ``STATUS=...`` is the line that
``systemctl status`` shows. Without ``$NOTIFY_SOCKET`` (a shell, a test, another
supervisor) nothing is sent.

Why a few lines of our own rather than a library: the protocol is one datagram of
``KEY=VALUE`` lines to the unix socket named in ``$NOTIFY_SOCKET`` (an ``@`` first
means Linux's abstract namespace). systemd documents it as a stable interface and,
in sd_notify(3), invites services to reimplement it instead of linking libsystemd.
``systemd-python`` (``systemd.daemon.notify``) is a C extension that needs
``libsystemd-dev`` and a compiler on every machine that installs volfs, for one
``sendto``; ``sdnotify`` (0.3.2) is pure Python but by default swallows every error
in silence, so a misconfigured unit would time out with nothing in the log. Here a
failure to notify is one warning, and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("volfs")

ENV = "NOTIFY_SOCKET"


def socket_address(value: str) -> str:
    """The address to send to for a ``$NOTIFY_SOCKET`` value: ``@name`` is abstract.

    >>> socket_address("@/org/freedesktop/systemd1/notify/123")
    '\\x00/org/freedesktop/systemd1/notify/123'
    """
    return "\0" + value[1:] if value.startswith("@") else value


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=serving"``) as one message.

    Returns whether a message was sent: False without ``$NOTIFY_SOCKET``, or when
    sending failed (then a warning says why). Never blocks: a full socket is a
    failure, not a wait, so a stalled service manager cannot stall the daemon.
    """
    value = os.environ.get(ENV, "")
    if not value:
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message, socket_address(value))
    except OSError as exc:
        log.warning("cannot tell the service manager %s through %s=%s: %s",
                    " ".join(fields), ENV, value, exc.strerror or exc)
        return False
    return True

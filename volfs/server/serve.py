"""Serving the control API on a root-only unix socket, with hypercorn's trio worker.

The socket is the API's only access control, so it is never reachable with a
mode wider than 0600: it is bound inside a fresh 0700 directory, set to 0600
there, and only then renamed onto its public path (rename replaces a stale socket
atomically). This avoids ``umask``, which is process-wide and would race with
FUSE handlers creating files in other threads.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import cast

import hypercorn.trio
import trio
from hypercorn.config import Config, Sockets
from hypercorn.typing import Framework
from starlette.types import ASGIApp

log = logging.getLogger("volfs.server")

SOCKET_MODE = 0o600
# In-flight requests get this long to finish when the server is cancelled.
GRACEFUL_TIMEOUT = 5.0


class SocketInUse(OSError):
    """Another live process answers on the socket path."""


async def serve_unix(
    app: ASGIApp,
    socket_path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the unix socket ``socket_path`` until cancelled.

    A socket file left behind by a dead daemon is replaced; one a live process
    still answers on is not (SocketInUse). ``task_status.started()`` is called
    once the socket accepts connections. Cancelling the surrounding scope stops
    accepting, gives in-flight requests ``GRACEFUL_TIMEOUT`` seconds, and removes
    the socket file.

    Example::

        async with trio.open_nursery() as nursery:
            await nursery.start(serve_unix, app, Path("/var/lib/volfs-state/volfs.sock"))
            ...
            nursery.cancel_scope.cancel()

    Raises:
        SocketInUse: another process is serving on ``socket_path``.
        OSError: the socket could not be bound (missing directory, path too long).
    """
    await _refuse_if_live(socket_path)
    sock = _bind_private(socket_path)
    identity = os.lstat(socket_path)
    try:
        await serve_socket(app, sock, task_status=task_status)
    finally:
        sock.close()
        _remove_if_ours(socket_path, identity)


async def serve_socket(
    app: ASGIApp,
    sock: socket.socket,
    *,
    tls: tuple[Path, Path] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``sock`` (bound and listening, unix or TCP) until cancelled.

    ``tls`` is ``(certificate file, key file)`` to serve HTTPS instead of HTTP.
    ``task_status.started()`` is called once connections are accepted. Cancelling
    stops accepting and gives in-flight requests ``GRACEFUL_TIMEOUT`` seconds; the
    caller closes ``sock``.
    """
    sock.setblocking(False)
    config = _SocketConfig(sock, tls)
    stop = trio.Event()
    server_scope = trio.CancelScope(shield=True)

    async def run_server(task_status: trio.TaskStatus[list[str]]) -> None:
        # Shielded so that an outer cancel becomes a graceful stop (via ``stop``)
        # instead of cutting every in-flight request off at once. hypercorn reports
        # started once the socket listens; from then on the kernel queues
        # connections until its accept loop takes them.
        with server_scope:
            await hypercorn.trio.serve(
                cast(Framework, app),
                config,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        await nursery.start(run_server)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            server_scope.deadline = trio.current_time() + GRACEFUL_TIMEOUT + 1.0


class _SocketConfig(Config):
    """Hypercorn settings for one already-bound socket (unix or TCP), with quiet logs."""

    def __init__(self, sock: socket.socket, tls: tuple[Path, Path] | None = None) -> None:
        self._sock = sock
        if tls is not None:
            self.certfile, self.keyfile = str(tls[0]), str(tls[1])
        # Logger objects, not "-": hypercorn would otherwise give its loggers handlers
        # and a format of their own; these reach the daemon's (--log-format). A line
        # per request only with --debug; only real errors otherwise, one line each.
        access_logger = logging.getLogger("volfs.server.access")
        self.accesslog = access_logger if access_logger.isEnabledFor(logging.DEBUG) else None
        error_logger = logging.getLogger("volfs.server.http")
        error_logger.setLevel(logging.ERROR)
        self.errorlog = error_logger
        self.graceful_timeout = GRACEFUL_TIMEOUT
        self.include_server_header = False

    def create_sockets(self) -> Sockets:
        if self.ssl_enabled:
            return Sockets(secure_sockets=[self._sock], insecure_sockets=[], quic_sockets=[])
        return Sockets(secure_sockets=[], insecure_sockets=[self._sock], quic_sockets=[])


async def _refuse_if_live(socket_path: Path) -> None:
    """Raise SocketInUse if something answers on ``socket_path``.

    A path that exists but is not a socket is refused too: it is not ours to replace.
    """
    try:
        mode = os.lstat(socket_path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket", str(socket_path))
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await probe.connect(str(socket_path))
    except OSError:
        return  # ECONNREFUSED: a dead daemon's socket, safe to replace
    finally:
        probe.close()
    raise SocketInUse(errno.EADDRINUSE, "another process is serving on", str(socket_path))


def _bind_private(socket_path: Path) -> socket.socket:
    """A listening socket at ``socket_path`` that was never wider than 0600 there."""
    private_dir = tempfile.mkdtemp(prefix=".vs", dir=socket_path.parent)  # mode 0700
    staging = os.path.join(private_dir, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(staging)
        os.chmod(staging, SOCKET_MODE)
        sock.listen(128)
        os.rename(staging, socket_path)
    except BaseException:
        sock.close()
        _unlink_quietly(staging)
        raise
    finally:
        os.rmdir(private_dir)
    sock.setblocking(False)
    return sock


def _remove_if_ours(socket_path: Path, identity: os.stat_result) -> None:
    """Remove the socket file unless another daemon has put its own there since."""
    try:
        current = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if (current.st_dev, current.st_ino) == (identity.st_dev, identity.st_ino):
        _unlink_quietly(str(socket_path))


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

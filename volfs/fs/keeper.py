"""The connection keeper: a small process that holds a duplicate of the daemon's /dev/fuse
descriptor, so that the kernel keeps the FUSE connection (and the mount) alive when the
daemon dies. Opt-in (``volfs serve --keep-connection``); a prototype.

While any process holds an open /dev/fuse descriptor of a connection, the kernel does
not end it: a ``kill -9`` of the daemon leaves callers waiting for an answer instead of
failing with ENOTCONN. A new daemon asks the keeper for the descriptor and serves it
(:mod:`volfs.fs.takeover`): to the callers, the restart is a pause.

The keeper listens on a unix socket in the state dir. One request per connection, one
line, descriptors passed with SCM_RIGHTS:

- ``PUT`` (with one descriptor): keep this connection (a previous one is let go).
- ``GET``: answered ``FD`` with a duplicate of the kept descriptor, or ``NONE``.
- ``DROP``: let go of the connection and exit (the daemon is stopping cleanly).

The keeper lets go by itself when the connection ends (unmounted, aborted through
/sys/fs/fuse/connections): it polls the descriptor for POLLERR only, and never reads it.

What it does not handle: under systemd, a restart of the unit with the default
``KillMode=control-group`` kills the keeper too; the production home of this job is
systemd's file-descriptor store (``FDSTORE=1``), which this prototype does not use.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET_NAME = "keeper.sock"
_REPLY_MAX = 64
_START_WAIT_SECONDS = 5.0


class KeeperError(Exception):
    """The keeper could not be reached or answered nonsense; ``str()`` is one line."""


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def get(path: Path) -> int | None:
    """A duplicate of the kept /dev/fuse descriptor, or None (no keeper, or it holds none)."""
    try:
        reply, fds = _ask(path, b"GET", None)
    except KeeperError:
        return None
    if reply == b"FD" and len(fds) == 1:
        return fds[0]
    for fd in fds:
        os.close(fd)
    return None


def put(path: Path, fuse_fd: int) -> None:
    """Give the keeper (started here if none answers) a duplicate of ``fuse_fd``."""
    if not _answers(path):
        _start(path)
    reply, _ = _ask(path, b"PUT", fuse_fd)
    if reply != b"OK":
        raise KeeperError(f"keeper at {path} answered {reply!r} to PUT")


def drop(path: Path) -> None:
    """Tell the keeper to let go and exit (best effort: a missing keeper is fine)."""
    with contextlib.suppress(KeeperError):
        _ask(path, b"DROP", None)


def _answers(path: Path) -> bool:
    try:
        _ask(path, b"PING", None)
    except KeeperError:
        return False
    return True


def _start(path: Path) -> None:
    """Start a keeper in its own session (a signal to the daemon's group spares it)."""
    path.unlink(missing_ok=True)
    subprocess.Popen([sys.executable, "-m", "volfs.fs.keeper", str(path)],
                     start_new_session=True, close_fds=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + _START_WAIT_SECONDS
    while time.monotonic() < deadline:
        if _answers(path):
            return
        time.sleep(0.02)
    raise KeeperError(f"the connection keeper did not answer on {path} in "
                      f"{_START_WAIT_SECONDS:g} s")


def _ask(path: Path, request: bytes, fd: int | None) -> tuple[bytes, list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_START_WAIT_SECONDS)
        try:
            sock.connect(str(path))
            if fd is None:
                sock.sendall(request)
            else:
                socket.send_fds(sock, [request], [fd])
            sock.shutdown(socket.SHUT_WR)
            reply, fds, _, _ = socket.recv_fds(sock, _REPLY_MAX, 1)
        except OSError as exc:
            raise KeeperError(f"keeper at {path}: {exc.strerror or exc}") from None
    return reply.strip(), fds


def serve(path: Path) -> None:
    """The keeper's loop: answer requests until DROP, or until the connection ends."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(8)
    kept: int | None = None
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == kept:  # POLLERR/POLLHUP: the connection ended
                poller.unregister(kept)
                os.close(kept)
                kept = None
                _quit(listener, path)
            elif fd == listener.fileno():
                kept = _answer(listener, kept, poller, path)


def _answer(listener: socket.socket, kept: int | None, poller: select.poll,
            path: Path) -> int | None:
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(_START_WAIT_SECONDS)
        try:
            request, fds, _, _ = socket.recv_fds(conn, _REPLY_MAX, 1)
        except OSError:
            return kept
        request = request.strip()
        if request == b"PUT" and len(fds) == 1:
            if kept is not None:
                poller.unregister(kept)
                os.close(kept)
            kept = fds[0]
            poller.register(kept, 0)  # errors only: never wake for pending requests
            conn.sendall(b"OK")
        elif request == b"GET":
            if kept is None:
                conn.sendall(b"NONE")
            else:
                socket.send_fds(conn, [b"FD"], [kept])
        elif request == b"PING":
            conn.sendall(b"OK")
        elif request == b"DROP":
            conn.sendall(b"OK")
            _quit(listener, path)
        else:
            for fd in fds:
                os.close(fd)
            conn.sendall(b"ERR")
    return kept


def _quit(listener: socket.socket, path: Path) -> None:
    listener.close()
    path.unlink(missing_ok=True)
    sys.exit(0)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

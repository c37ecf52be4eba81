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
- ``HOLD``: the serving daemon's lease, a connection it keeps open while it lives. When
  it closes (the daemon died), the keeper waits :data:`GRACE_SECONDS` for a new daemon
  to ``HOLD``; then it lets go, and callers get ENOTCONN as without a keeper (a pause
  is bounded: a daemon that does not come back is an outage again, and the container
  recovery of ``--recover-containers`` takes over).

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
_START_WAIT_SECONDS = 10.0
GRACE_SECONDS = 10.0  # how long callers may wait for a new daemon; a start takes ~3 s


class KeeperError(Exception):
    """The keeper could not be reached or answered nonsense; ``str()`` is one line."""


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def get(path: Path) -> int | None:
    """A duplicate of the kept /dev/fuse descriptor, or None (no keeper, or it holds none).

    Whoever holds it must not wait on the mount itself (a stat, a close of a file there:
    FUSE's flush waits uninterruptibly) until it serves it: nobody else can answer.
    """
    try:
        reply, fds = _ask(path, b"GET", None)
    except KeeperError:
        return None
    for fd in fds:  # received descriptors are inheritable: no child may hold this one
        os.set_inheritable(fd, False)
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


def hold(path: Path) -> socket.socket:
    """The lease: keep the returned socket open while this daemon serves the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        sock.sendall(b"HOLD")
    except OSError as exc:
        sock.close()
        raise KeeperError(f"keeper at {path}: {exc.strerror or exc}") from None
    return sock


def drop(path: Path) -> None:
    """Tell the keeper to let go and exit (best effort: a missing keeper is fine). Once
    it answers, the connection has ended (unless this process holds it too)."""
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
    with open(path.with_suffix(".log"), "ab") as log:  # where a keeper's own failure shows
        # Run as a file, isolated (-I): the standard library is all it imports, so it
        # starts fast, and holds nothing of the daemon's.
        subprocess.Popen([sys.executable, "-I", __file__, str(path)],
                         start_new_session=True, close_fds=True, stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log)
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
    """The keeper's loop: answer requests until DROP, until the connection ends, or until
    no daemon has held it for GRACE_SECONDS."""
    _Keeper(path).run()


class _Keeper:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o600)
        self.listener.listen(8)
        self.kept: int | None = None
        self.lease: socket.socket | None = None
        self.deadline: float | None = None  # no lease: let go at this time.monotonic()
        self.poller = select.poll()
        self.poller.register(self.listener, select.POLLIN)

    def run(self) -> None:
        while True:
            timeout = None
            if self.deadline is not None:
                timeout = max(0, int((self.deadline - time.monotonic()) * 1000))
            for fd, _ in self.poller.poll(timeout):
                if fd == self.kept:  # POLLERR/POLLHUP: the connection ended
                    self._quit()
                elif self.lease is not None and fd == self.lease.fileno():
                    self._lease_ended()
                elif fd == self.listener.fileno():
                    self._answer()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self._quit()  # no daemon came back: callers get ENOTCONN now

    def _lease_ended(self) -> None:
        assert self.lease is not None
        self.poller.unregister(self.lease)
        self.lease.close()
        self.lease = None
        self.deadline = time.monotonic() + GRACE_SECONDS

    def _answer(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(_START_WAIT_SECONDS)
        try:
            request, fds, _, _ = socket.recv_fds(conn, _REPLY_MAX, 1)
        except OSError:
            conn.close()
            return
        request = request.strip()
        if request == b"HOLD":
            if self.lease is not None:
                self.poller.unregister(self.lease)
                self.lease.close()
            self.lease = conn
            self.deadline = None
            self.poller.register(conn, select.POLLIN)  # readable: EOF, the daemon died
            return
        with conn:
            if request == b"PUT" and len(fds) == 1:
                if self.kept is not None:
                    self.poller.unregister(self.kept)
                    os.close(self.kept)
                self.kept = fds[0]
                self.poller.register(self.kept, 0)  # errors only, never pending requests
                conn.sendall(b"OK")
            elif request == b"GET":
                if self.kept is None:
                    conn.sendall(b"NONE")
                else:
                    socket.send_fds(conn, [b"FD"], [self.kept])
            elif request == b"PING":
                conn.sendall(b"OK")
            elif request == b"DROP":
                if self.kept is not None:  # gone before the answer: the mount is dead now
                    os.close(self.kept)
                    self.kept = None
                conn.sendall(b"OK")
                self._quit()
            else:
                for fd in fds:
                    os.close(fd)
                conn.sendall(b"ERR")

    def _quit(self) -> None:
        self.listener.close()
        self.path.unlink(missing_ok=True)
        sys.exit(0)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

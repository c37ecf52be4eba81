"""Serving a FUSE connection that another (dead) daemon opened: a restart as a pause.

A prototype behind ``volfs serve --keep-connection``. How it works:

1. **The INIT, recorded.** The kernel sends FUSE_INIT once per connection, and libfuse
   (3.14, under pyfuse3) answers every other request with EIO until it has processed
   one. So at the first start the daemon reads the kernel's INIT request itself, before
   libfuse does, and keeps it (with libfuse's reply and the time of the mount) in the
   state dir (:class:`Connection`).
2. **The INIT, fed.** libfuse reads and writes its session descriptor with plain
   read()/writev() until INIT has negotiated splice (which it does not want here, as
   pyfuse3 has no ``write_buf``): :func:`feed_init` puts one end of a socketpair on the
   session's descriptor number (dup2), writes the INIT into the other end, runs
   pyfuse3's loop until libfuse's reply comes out, stops the loop, and puts the real
   /dev/fuse back on the same number. At the first start the reply goes on to the
   kernel; at a takeover it is compared with the first one (the kernel negotiated the
   connection once: libfuse must agree with what it answered then, ``max_write`` above
   all, or the kernel refuses libfuse's reads) and dropped.
3. **The descriptor, kept.** A duplicate goes to the keeper (:mod:`volfs.fs.keeper`). A
   new daemon asks it for one and gives libfuse ``/dev/fd/N`` as the mount point (libfuse
   then serves descriptor N instead of mounting).
4. **Lost requests, resent.** Requests the dead daemon had read but not answered sit in
   the kernel's processing list: FUSE_NOTIFY_RESEND (kernels from 6.9) puts them back in
   the pending queue, to be read again.

What it does not handle: the node ids and open-file handles the kernel holds from the
dead daemon are not known to the new one unless its tables were kept (see
:mod:`volfs.fs.inodes`); a libfuse built with other options, or another libfuse, is
refused (its INIT reply differs) and the daemon mounts anew.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

log = logging.getLogger(__name__)

CONNECTION_FILE = "connection.json"
FUSE_INIT = 26
FUSE_NOTIFY_RESEND = 7
_IN_HEADER = struct.Struct("<IIQQIIII")  # len, opcode, unique, nodeid, uid, gid, pid, pad
_OUT_HEADER = struct.Struct("<IiQ")  # len, error (a notify code when unique is 0), unique
_READ_SIZE = 1 << 21  # more than any INIT; the kernel wants at least 8 KiB


class TakeoverError(Exception):
    """A kept connection cannot be served; ``str()`` is one line."""


@dataclass(frozen=True)
class Connection:
    """What a new daemon needs to serve a connection negotiated by an earlier one."""

    init: bytes  # the kernel's FUSE_INIT request, as read
    reply: bytes  # libfuse's answer to it, as the kernel got it
    mounted_at: float  # when the mount appeared (containers started before hold a dead one)

    def save(self, state_dir: Path) -> None:
        data = {"init": base64.b64encode(self.init).decode(),
                "reply": base64.b64encode(self.reply).decode(),
                "mounted_at": self.mounted_at}
        staging = state_dir / f".{CONNECTION_FILE}.tmp"
        staging.write_text(json.dumps(data))
        os.replace(staging, state_dir / CONNECTION_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> Connection | None:
        try:
            data = json.loads((state_dir / CONNECTION_FILE).read_text())
            return cls(base64.b64decode(data["init"]), base64.b64decode(data["reply"]),
                       float(data["mounted_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def session_fd() -> int:
    """The one /dev/fuse descriptor this process holds (libfuse's, after it mounted)."""
    found = [int(name) for name in os.listdir("/proc/self/fd")
             if _points_to(f"/proc/self/fd/{name}") == "/dev/fuse"]
    if len(found) != 1:
        raise TakeoverError(f"expected one /dev/fuse descriptor, found {len(found)}")
    return found[0]


def _points_to(link: str) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def read_init(fd: int) -> bytes:
    """The kernel's FUSE_INIT, read from a fresh connection (the mount queued it)."""
    request = os.read(fd, _READ_SIZE)
    _, opcode, *_ = _IN_HEADER.unpack_from(request)
    if opcode != FUSE_INIT:
        raise TakeoverError(f"the first request of the connection is opcode {opcode}, "
                            f"not FUSE_INIT")
    return request


async def feed_init(fd: int, init: bytes) -> bytes:
    """Make libfuse's session, which serves ``fd``, process ``init``; its reply.

    ``fd`` is the real /dev/fuse descriptor before and after; meanwhile it is a socket,
    so that neither the INIT nor its reply touch the kernel's connection.
    """
    real = os.dup(fd)
    ours, libfuses = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        os.dup2(libfuses.fileno(), fd, inheritable=False)
        libfuses.close()
        ours.send(init)
        async with trio.open_nursery() as nursery:
            # pyfuse3's loop reads the INIT from the socket, libfuse answers into it;
            # the loop is then cancelled while it waits for the next request.
            nursery.start_soon(pyfuse3.main)
            await trio.lowlevel.wait_readable(ours)
            reply = ours.recv(_READ_SIZE)
            nursery.cancel_scope.cancel()
    finally:
        os.dup2(real, fd, inheritable=False)
        os.close(real)
        ours.close()
    return reply


def check_reply(reply: bytes, first: bytes) -> None:
    """The INIT reply must be the one the kernel got (the unique is the same request's)."""
    length, error, _ = _OUT_HEADER.unpack_from(reply)
    if error != 0:
        raise TakeoverError(f"libfuse refused the recorded FUSE_INIT: "
                            f"{os.strerror(-error)}")
    if reply != first:
        raise TakeoverError("libfuse negotiates the connection differently from the "
                            "daemon that opened it (another libfuse or other options)")


def resend_lost_requests(fd: int) -> None:
    """Ask the kernel to queue again what the dead daemon read but never answered."""
    try:
        os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size, FUSE_NOTIFY_RESEND, 0))
    except OSError as exc:  # a kernel before 6.9: those requests wait until aborted
        log.warning("the kernel cannot resend requests the previous daemon read: %s",
                    exc.strerror or exc)

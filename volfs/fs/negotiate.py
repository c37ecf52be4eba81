"""What volfs adds to libfuse's answer to the kernel's FUSE_INIT.

libfuse 3.14 (Debian 12's, under pyfuse3) asks the kernel only for the capabilities
it knows. One it does not know costs a round trip on every write(2):
``FUSE_HANDLE_KILLPRIV_V2`` (kernel 5.11). Without it the kernel never marks an inode
as having nothing that a write must remove (``S_NOSEC``: no set-user-ID or set-group-ID
bit, no ``security.capability``), so before every write it asks the daemon for the
file's ``security.capability``: one GETXATTR per write, which costs as much as the
write itself. With it, the kernel asks once per inode, and again only after it has
taken fresh attributes from the daemon or a ``security.*`` attribute was set.

What the flag leaves to the filesystem is what the kernel cannot see: a set-ID bit or a
capability added behind its back while it holds an inode as "nothing to remove" (a
host process changing a HostPath file). The kernel re-checks at its next refresh of the
inode's attributes (a HostPath's attribute timeout is one second).

volfs reads the INIT itself, lets libfuse answer it (:func:`takeover.feed_init`), adds
the flag where the kernel offers it, and sends the answer on.
"""

from __future__ import annotations

import os
import struct

from volfs.fs import takeover

FUSE_HANDLE_KILLPRIV_V2 = 1 << 28
_INIT_IN = struct.Struct("<IIII")  # major, minor, max_readahead, flags (after the header)
_INIT_OUT = struct.Struct("<IIII")  # the same four fields of the reply
_IN_HEADER_SIZE = 40
_OUT_HEADER_SIZE = 16


def offered_flags(init: bytes) -> int:
    """The capability flags (the first 32) the kernel offers in its INIT request."""
    return _INIT_IN.unpack_from(init, _IN_HEADER_SIZE)[3]


def amend(init: bytes, reply: bytes) -> bytes:
    """libfuse's INIT reply, with the flags volfs wants that the kernel offers."""
    _, error, _ = struct.unpack_from("<IiQ", reply)
    if error != 0:
        return reply  # libfuse refused the INIT: nothing to add to
    major, minor, readahead, flags = _INIT_OUT.unpack_from(reply, _OUT_HEADER_SIZE)
    flags |= offered_flags(init) & FUSE_HANDLE_KILLPRIV_V2
    amended = bytearray(reply)
    _INIT_OUT.pack_into(amended, _OUT_HEADER_SIZE, major, minor, readahead, flags)
    return bytes(amended)


async def answer_init(fd: int) -> tuple[bytes, bytes]:
    """Read the kernel's INIT from ``fd`` (a fresh connection), let libfuse answer it,
    amend the answer, send it: the INIT and the answer, as the kernel got it."""
    init = takeover.read_init(fd)
    reply = amend(init, await takeover.feed_init(fd, init))
    os.write(fd, reply)
    return init, reply

"""The store interface: what a volume kind must provide to be served by the fs layer.

A store owns one volume's bytes. The fs layer gives every backing object it
meets a FUSE inode and a *handle* the store chose (a local store's handle is an
inode record: an O_PATH descriptor, or a kernel file handle to reopen one from; a
network store's, the server's file handle); it hands that handle back
on every later call. Stores speak ``os.stat_result``-shaped attributes and raise
``OSError``; the fs layer turns both into FUSE replies at one boundary.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from volfs.stores.quota import Usage

log = logging.getLogger(__name__)

# How long a stats reader (a metrics scrape, CSI's NodeGetVolumeStats) waits for a
# volume's backing statfs: a share that is down must not hold it up.
STATFS_SECONDS = 2.0

Handle = Any
FileHandle = int


@dataclass(frozen=True)
class Entry:
    """A backing object just found or made: the store's handle and its attributes.

    ``generation`` tells the object from an earlier one that had the same inode number
    (a filesystem gives a deleted file's number to the next file it makes): a file
    handle, which carries the inode's generation, or None where the store holds the
    inode open and so its number cannot be reused.
    """

    handle: Handle
    attrs: os.stat_result
    generation: Hashable = None

    @property
    def key(self) -> Hashable:
        """What identifies the object within its store: equal for two hard links."""
        return (self.attrs.st_dev, self.attrs.st_ino, self.generation)


@dataclass(frozen=True)
class Owner:
    """Who asked: new objects belong to the caller, as on a local filesystem."""

    uid: int
    gid: int


@dataclass(frozen=True)
class AttrChanges:
    """The parts of a setattr that were asked for; None means "leave as is"."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    keep_setid: bool = False  # a privileged caller: a truncate leaves set-ID bits be
    # Nothing to change but the privileges a chown (even ``chown(-1, -1)``) or a write
    # by an unprivileged caller removes: the kernel sends that as an empty SETATTR once
    # the filesystem handles them (FUSE_HANDLE_KILLPRIV_V2, fs/negotiate.py).
    drop_setid: bool = False


def setid_bits_to_drop(mode: int) -> int:
    """The set-ID bits that writing to (or truncating) a file of ``mode`` removes.

    The kernel leaves this to the filesystem (volfs negotiates FUSE_HANDLE_KILLPRIV_V2,
    see fs/negotiate.py) for callers without CAP_FSETID; a write request does not say
    who writes, so the fs layer judges by who opened the file (root keeps the bits).
    Set-user-ID always; set-group-ID only with group execute (without it, the bit
    marks mandatory locking, not a privilege).
    """
    if not stat.S_ISREG(mode):
        return 0
    bits = mode & stat.S_ISUID
    if mode & stat.S_ISGID and mode & stat.S_IXGRP:
        bits |= stat.S_ISGID
    return bits


class Store(Protocol):
    """One volume's backing storage. Every method may raise OSError."""

    usage: Usage
    track_usage: bool  # False: usage is neither measured nor limited (a host directory)
    read_only: bool
    cache_timeout: float  # seconds the kernel may cache entries and attributes
    # Others change these files too (the host, other NFS clients): with the kernel's
    # writeback cache on, their data must not wait in it (fs/operations.py).
    outside_writers: bool

    async def open_root(self) -> Entry: ...
    async def lookup(self, parent: Handle, name: bytes) -> Entry: ...
    def forget(self, handle: Handle) -> None: ...
    async def getattr(self, handle: Handle) -> os.stat_result: ...
    async def setattr(self, handle: Handle, changes: AttrChanges,
                      fh: FileHandle | None) -> os.stat_result: ...
    async def readlink(self, handle: Handle) -> bytes: ...
    async def mknod(self, parent: Handle, name: bytes, mode: int, rdev: int,
                    owner: Owner) -> Entry: ...
    async def mkdir(self, parent: Handle, name: bytes, mode: int, owner: Owner) -> Entry: ...
    async def symlink(self, parent: Handle, name: bytes, target: bytes,
                      owner: Owner) -> Entry: ...
    async def unlink(self, parent: Handle, name: bytes) -> None: ...
    async def rmdir(self, parent: Handle, name: bytes) -> None: ...
    async def rename(self, old_parent: Handle, old_name: bytes, new_parent: Handle,
                     new_name: bytes, flags: int) -> None: ...
    async def link(self, handle: Handle, new_parent: Handle,
                   new_name: bytes) -> os.stat_result: ...
    # keep_setid: the opener is privileged (root): its writes and O_TRUNC leave set-ID
    # bits be, as the kernel does for a caller with CAP_FSETID (setid_bits_to_drop).
    async def open(self, handle: Handle, flags: int, *,
                   keep_setid: bool = False) -> FileHandle: ...
    async def create(self, parent: Handle, name: bytes, mode: int, flags: int,
                     owner: Owner, *, keep_setid: bool = False
                     ) -> tuple[FileHandle, Entry]: ...
    async def read(self, fh: FileHandle, offset: int, size: int) -> bytes: ...
    async def write(self, fh: FileHandle, offset: int, data: bytes) -> int: ...
    async def flush(self, fh: FileHandle) -> None: ...
    async def fsync(self, fh: FileHandle, datasync: bool) -> None: ...
    async def release(self, fh: FileHandle) -> None: ...
    async def listdir(self, handle: Handle) -> Sequence[bytes]: ...
    async def setxattr(self, handle: Handle, name: bytes, value: bytes) -> None: ...
    async def getxattr(self, handle: Handle, name: bytes) -> bytes: ...
    async def listxattr(self, handle: Handle) -> Sequence[bytes]: ...
    async def removexattr(self, handle: Handle, name: bytes) -> None: ...
    async def statfs(self) -> os.statvfs_result: ...


async def statfs_or_none(store: Store) -> os.statvfs_result | None:
    """``store``'s backing statfs, or None if it fails or takes over STATFS_SECONDS."""
    with trio.move_on_after(STATFS_SECONDS):
        try:
            return await store.statfs()
        except OSError as exc:
            log.debug("statfs of a volume's backing filesystem failed: %s", exc)
    return None

"""The few Linux calls Python's ``os`` module lacks, through ctypes.

An inode-based passthrough holds an ``O_PATH`` descriptor per inode and works on
it with ``*at()`` calls. Python offers most of them (``dir_fd=``), but not
``renameat2`` (RENAME_NOREPLACE / RENAME_EXCHANGE), nor ``AT_EMPTY_PATH`` for
``fchownat`` and ``utimensat``, which is what lets us change the owner or the
times of the very inode an ``O_PATH`` descriptor names (symlinks included)
without going back to a path; nor ``name_to_handle_at`` / ``open_by_handle_at``,
which let a descriptor be closed and the same inode be opened again later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


MAX_HANDLE_SZ = 128


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


_libc.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                    ctypes.POINTER(_FileHandle), ctypes.POINTER(ctypes.c_int),
                                    ctypes.c_int]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]
_libc.fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint,
                           ctypes.c_int]
_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec),
                            ctypes.c_int]


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def renameat2(old_dir: int, old_name: bytes, new_dir: int, new_name: bytes, flags: int) -> None:
    """rename(2) between two directory descriptors, honouring RENAME_* flags."""
    _check(_libc.renameat2(old_dir, old_name, new_dir, new_name, flags))


def fchown_inode(fd: int, uid: int, gid: int) -> None:
    """chown the inode an O_PATH descriptor names (a symlink itself, not its target).

    -1 leaves that id unchanged, as for chown(2).
    """
    _check(_libc.fchownat(fd, b"", uid & 0xFFFFFFFF, gid & 0xFFFFFFFF,
                          AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))


def _timespec(ns: int | None) -> _Timespec:
    if ns is None:
        return _Timespec(0, UTIME_OMIT)
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


def utimens_inode(fd: int, atime_ns: int | None, mtime_ns: int | None) -> None:
    """Set the times of the inode an O_PATH descriptor names; None leaves one as it is."""
    times = (_Timespec * 2)(_timespec(atime_ns), _timespec(mtime_ns))
    _check(_libc.utimensat(fd, b"", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))



def name_to_handle(fd: int) -> tuple[bytes, int]:
    """The file handle of the inode ``fd`` names (an O_PATH one will do), and its mount id."""
    handle = _FileHandle()
    handle.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    _check(_libc.name_to_handle_at(fd, b"", ctypes.byref(handle), ctypes.byref(mount_id),
                                   AT_EMPTY_PATH))
    return bytes(handle)[: 8 + handle.handle_bytes], mount_id.value


def open_by_handle(mount_fd: int, handle: bytes, flags: int) -> int:
    """Open the inode a file handle names (ESTALE once it is deleted). Needs
    CAP_DAC_READ_SEARCH; ``mount_fd`` is any non-O_PATH descriptor on its filesystem."""
    buffer = _FileHandle.from_buffer_copy(handle.ljust(ctypes.sizeof(_FileHandle), b"\0"))
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(buffer), flags)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)

"""Turning store attributes into what FUSE replies carry."""

from __future__ import annotations

import os
import stat

import pyfuse3

SYNTHETIC_MODE = stat.S_IFDIR | 0o755
SYNTHETIC_TIMEOUT = 1.0


def entry_attributes(ino: int, st: os.stat_result, timeout: float) -> pyfuse3.EntryAttributes:
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = ino
    attrs.generation = 0
    attrs.entry_timeout = timeout
    attrs.attr_timeout = timeout
    attrs.st_mode = st.st_mode
    attrs.st_nlink = st.st_nlink
    attrs.st_uid = st.st_uid
    attrs.st_gid = st.st_gid
    attrs.st_rdev = st.st_rdev
    attrs.st_size = st.st_size
    attrs.st_blksize = st.st_blksize
    attrs.st_blocks = st.st_blocks
    attrs.st_atime_ns = st.st_atime_ns
    attrs.st_mtime_ns = st.st_mtime_ns
    attrs.st_ctime_ns = st.st_ctime_ns
    return attrs


def synthetic_attributes(ino: int, nchildren: int, time_ns: int) -> pyfuse3.EntryAttributes:
    """A read-only directory owned by root, as the made-up levels of the tree are."""
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = ino
    attrs.entry_timeout = SYNTHETIC_TIMEOUT
    attrs.attr_timeout = SYNTHETIC_TIMEOUT
    attrs.st_mode = SYNTHETIC_MODE
    attrs.st_nlink = 2 + nchildren
    attrs.st_uid = 0
    attrs.st_gid = 0
    attrs.st_size = 4096
    attrs.st_blksize = 4096
    attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = time_ns
    return attrs

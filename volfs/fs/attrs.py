"""Turning store attributes into what FUSE replies carry."""

from __future__ import annotations

import os
import stat

import pyfuse3

# The made-up levels (<root>, pods, pods/<uid>, .../volumes, .../<kind>) are root's,
# as kubelet keeps its pods directory: no other host user may list them or pass through
# to a pod's volumes (an EmptyDir is 0777). Containers reach their volumes through bind
# mounts made by root, so they need no way through. ``--tree-group`` lets one group in.
SYNTHETIC_MODE = stat.S_IFDIR | 0o750
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


def synthetic_attributes(ino: int, nchildren: int, time_ns: int,
                         gid: int = 0) -> pyfuse3.EntryAttributes:
    """A read-only directory owned by root and group ``gid``, mode 0750, as the made-up
    levels of the tree are (the mount's ``default_permissions`` has the kernel enforce it)."""
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = ino
    attrs.entry_timeout = SYNTHETIC_TIMEOUT
    attrs.attr_timeout = SYNTHETIC_TIMEOUT
    attrs.st_mode = SYNTHETIC_MODE
    attrs.st_nlink = 2 + nchildren
    attrs.st_uid = 0
    attrs.st_gid = gid
    attrs.st_size = 4096
    attrs.st_blksize = 4096
    attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = time_ns
    return attrs

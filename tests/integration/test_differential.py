"""Differential test: random sequences of file operations on a native directory and on
a volume through volfs (an EmptyDir, and a HostPath) must behave identically.

Hypothesis generates a sequence of operations over a small name space (three names
at the top, ``a b c``, and two under the first two, ``a/x a/y b/x b/y``); each
operation is applied to a native temporary directory (on the same filesystem as the
volume's backing directory) and to a fresh subdirectory of one volume served for the
whole module, and the two outcomes are compared at once. The test runs once per kind
of volume the local store serves: EmptyDir, and HostPath over a directory of the host.

Operations covered:
  * open with O_RDONLY / O_WRONLY / O_RDWR and any mix of O_CREAT, O_EXCL, O_TRUNC,
    O_APPEND, O_DIRECTORY, O_NOFOLLOW (always O_NONBLOCK, so FIFOs never block), with a
    mode (setuid, none, ...); up to two descriptors stay open across operations, so
    files are also used after being renamed over or unlinked;
  * on a descriptor: write (at the file position), pwrite at an offset, read, pread at
    an offset, lseek, ftruncate, fstat, close;
  * on a path: truncate, mkdir, rmdir, unlink, rename with flags 0, RENAME_NOREPLACE or
    RENAME_EXCHANGE, link (of the name itself, symlinks included), symlink (targets:
    relative, through ``..``, absolute, dangling, looping), readlink, mkfifo, chmod
    (setuid, setgid, sticky, 000), chown and lchown, utime with explicit nanoseconds
    (following symlinks or not), listdir, stat, lstat, setxattr (with XATTR_CREATE /
    XATTR_REPLACE), getxattr, listxattr, removexattr (user.* names).

Properties checked:
  * every operation returns the same value, or fails with the same errno, on both
    sides (read data, written counts, file positions, listings, link targets, xattr
    values, and the normalised stat of every stat/lstat/fstat);
  * after the sequence (and after closing every descriptor) the whole tree is the same:
    names, file types, permission bits (setuid/setgid/sticky included), owners, nlink,
    which names are hard links of one another, sizes of everything but directories,
    the contents of every regular file, symlink targets, user xattrs, and mtimes where
    they were set explicitly (explicit times lie in 2001 and are recognised by value).

Not compared: atime, ctime, inode numbers, st_blocks, directory sizes and seek offsets
in directories (the backing filesystem's business: ext4 reports its hash cookies, FUSE
the directory size), and mtimes that the operations set implicitly.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.daemon import PASSTHROUGH_KINDS, Daemon, passthrough_volume
from volfs.stores.syscalls import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2

pytestmark = pytest.mark.slow

MAX_EXAMPLES = int(os.environ.get("VOLFS_DIFF_EXAMPLES", "2000"))
TOP = ["a", "b", "c"]
PATHS = TOP + ["a/x", "a/y", "b/x", "b/y"]
SYMLINK_TARGETS = ["a", "b/x", "x", "../a", "/nonexistent/volfs", "c", "a/../b"]
MODES = [0o644, 0o600, 0o755, 0o777, 0o000, 0o4755, 0o2755, 0o1777, 0o2775]
IDS = [-1, 0, 1000, 4242]
EXPLICIT_BASE_NS = 978_307_200_000_000_000  # 2001-01-01: no natural mtime is this old
XATTRS = ["user.a", "user.b"]
SLOTS = 2
_examples = itertools.count()


@pytest.fixture(scope="module", params=PASSTHROUGH_KINDS)
def roots(request: pytest.FixtureRequest, shared_daemon: Daemon, open_tmp: Path
          ) -> Iterator[tuple[Path, Path]]:
    native = open_tmp / f"diff-native-{os.getpid()}-{request.param}"
    native.mkdir()
    with passthrough_volume(request.param, shared_daemon, open_tmp,
                            f"diff{os.getpid()}{request.param.lower()}") as (mounted, backing):
        # The same filesystem as the volume's backing directory, so limits and errnos agree.
        assert os.stat(native).st_dev == os.stat(backing).st_dev
        old_umask = os.umask(0o022)
        try:
            yield native, mounted
        finally:
            os.umask(old_umask)


# -- operations -------------------------------------------------------------------------

@dataclass
class Side:
    """One of the two worlds: a root directory descriptor and the open file slots."""

    root: int
    fds: list[int | None] = field(default_factory=lambda: [None] * SLOTS)

    def close_all(self) -> None:
        for i, fd in enumerate(self.fds):
            if fd is not None:
                os.close(fd)
                self.fds[i] = None


def _norm_stat(st: os.stat_result) -> tuple[Any, ...]:
    kind = stat.S_IFMT(st.st_mode)
    mtime = st.st_mtime_ns if _explicit(st.st_mtime_ns) else None
    return (kind, stat.S_IMODE(st.st_mode), st.st_nlink, st.st_uid, st.st_gid,
            None if kind == stat.S_IFDIR else st.st_size, st.st_rdev, mtime)


def _explicit(ns: int) -> bool:
    return EXPLICIT_BASE_NS <= ns < EXPLICIT_BASE_NS + 10**15


def _slot(side: Side, slot: int) -> int:
    fd = side.fds[slot]
    if fd is None:
        raise OSError(errno.EBADF, "slot is empty")
    return fd


def apply(side: Side, op: tuple[Any, ...]) -> Any:
    """Run one operation in one world; its result, in a form both worlds can compare."""
    name, *args = op
    root = side.root
    match name:
        case "open":
            slot, path, flags, mode = args
            if side.fds[slot] is not None:
                os.close(side.fds[slot])
                side.fds[slot] = None
            side.fds[slot] = os.open(path, flags | os.O_NONBLOCK, mode, dir_fd=root)
            return "opened"
        case "close":
            os.close(_slot(side, args[0]))
            side.fds[args[0]] = None
            return None
        case "write":
            slot, data = args
            return os.write(_slot(side, slot), data)
        case "pwrite":
            slot, data, offset = args
            return os.pwrite(_slot(side, slot), data, offset)
        case "read":
            slot, size = args
            return os.read(_slot(side, slot), size)
        case "pread":
            slot, size, offset = args
            return os.pread(_slot(side, slot), size, offset)
        case "lseek":
            slot, offset, whence = args
            fd = _slot(side, slot)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                return "directory"  # its offsets are cookies each filesystem makes up
            return os.lseek(fd, offset, whence)
        case "ftruncate":
            slot, size = args
            return os.ftruncate(_slot(side, slot), size)
        case "fstat":
            return _norm_stat(os.fstat(_slot(side, args[0])))
        case "truncate":
            path, size = args
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK, dir_fd=root)
            try:  # os.truncate takes no dir_fd
                return os.ftruncate(fd, size)
            finally:
                os.close(fd)
        case "mkdir":
            path, mode = args
            return os.mkdir(path, mode, dir_fd=root)
        case "rmdir":
            return os.rmdir(args[0], dir_fd=root)
        case "unlink":
            return os.unlink(args[0], dir_fd=root)
        case "rename":
            old, new, flags = args
            return renameat2(root, old.encode(), root, new.encode(), flags)
        case "link":
            old, new = args
            return os.link(old, new, src_dir_fd=root, dst_dir_fd=root, follow_symlinks=False)
        case "symlink":
            target, path = args
            return os.symlink(target, path, dir_fd=root)
        case "readlink":
            return os.readlink(args[0], dir_fd=root)
        case "mkfifo":
            path, mode = args
            return os.mkfifo(path, mode, dir_fd=root)
        case "chmod":
            path, mode = args
            return os.chmod(path, mode, dir_fd=root)
        case "chown":
            path, uid, gid, follow = args
            return os.chown(path, uid, gid, dir_fd=root, follow_symlinks=follow)
        case "utime":
            path, atime, mtime, follow = args
            return os.utime(path, ns=(atime, mtime), dir_fd=root, follow_symlinks=follow)
        case "listdir":
            fd = os.open(args[0], os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)
        case "stat":
            path, follow = args
            return _norm_stat(os.stat(path, dir_fd=root, follow_symlinks=follow))
        case "setxattr" | "getxattr" | "listxattr" | "removexattr":
            return _xattr(root, name, args)
    raise AssertionError(f"unknown operation {name}")


def _xattr(root: int, name: str, args: list[Any]) -> Any:
    path = f"/proc/self/fd/{root}/{args[0]}"  # the xattr calls take no dir_fd
    match name:
        case "setxattr":
            return os.setxattr(path, args[1], args[2], args[3])
        case "getxattr":
            return os.getxattr(path, args[1])
        case "listxattr":
            return sorted(os.listxattr(path))
        case _:
            return os.removexattr(path, args[1])


def outcome(side: Side, op: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", apply(side, op)
    except OSError as exc:
        return "error", errno.errorcode.get(exc.errno or 0, exc.errno)


# -- strategies ---------------------------------------------------------------------------

paths = st.sampled_from(PATHS)
slots = st.integers(0, SLOTS - 1)
modes = st.sampled_from(MODES)
offsets = st.sampled_from([0, 1, 7, 4095, 4096, 4097, 65536, 200_000])
sizes = st.sampled_from([0, 1, 5, 4096, 10_000, 70_000])
datas = st.builds(lambda n, b: bytes([b]) * n,
                  st.sampled_from([0, 1, 3, 100, 4096, 5000]), st.integers(0, 255))
access = st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
extra_flags = st.lists(st.sampled_from([os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND,
                                        os.O_DIRECTORY, os.O_NOFOLLOW]), max_size=3)
open_flags = st.builds(lambda a, extra: a | sum(set(extra)), access, extra_flags)
# Open with O_CREAT more often than not: most sequences should have files in them.
creating = st.builds(lambda a, extra: a | os.O_CREAT | sum(set(extra) - {os.O_DIRECTORY}),
                     st.sampled_from([os.O_WRONLY, os.O_RDWR]), extra_flags)
times = st.integers(0, 10**6).map(lambda k: EXPLICIT_BASE_NS + k * 123_456_789)

operations = st.one_of(
    st.tuples(st.just("open"), slots, paths, st.one_of(creating, open_flags), modes),
    st.tuples(st.just("open"), slots, paths, open_flags, modes),
    st.tuples(st.just("close"), slots),
    st.tuples(st.just("write"), slots, datas),
    st.tuples(st.just("write"), slots, datas),
    st.tuples(st.just("pwrite"), slots, datas, offsets),
    st.tuples(st.just("read"), slots, sizes),
    st.tuples(st.just("pread"), slots, sizes, offsets),
    st.tuples(st.just("lseek"), slots, offsets, st.sampled_from([os.SEEK_SET, os.SEEK_END])),
    st.tuples(st.just("ftruncate"), slots, sizes),
    st.tuples(st.just("fstat"), slots),
    st.tuples(st.just("truncate"), paths, sizes),
    st.tuples(st.just("mkdir"), paths, modes),
    st.tuples(st.just("rmdir"), paths),
    st.tuples(st.just("unlink"), paths),
    st.tuples(st.just("rename"), paths, paths,
              st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])),
    st.tuples(st.just("link"), paths, paths),
    st.tuples(st.just("symlink"), st.sampled_from(SYMLINK_TARGETS), paths),
    st.tuples(st.just("readlink"), paths),
    st.tuples(st.just("mkfifo"), paths, modes),
    st.tuples(st.just("chmod"), paths, modes),
    st.tuples(st.just("chown"), paths, st.sampled_from(IDS), st.sampled_from(IDS),
              st.booleans()),
    st.tuples(st.just("utime"), paths, times, times, st.booleans()),
    st.tuples(st.just("listdir"), st.sampled_from([".", "a", "b"])),
    st.tuples(st.just("stat"), paths, st.booleans()),
    st.tuples(st.just("setxattr"), paths, st.sampled_from(XATTRS),
              st.sampled_from([b"", b"v1", b"value-two"]),
              st.sampled_from([0, os.XATTR_CREATE, os.XATTR_REPLACE])),
    st.tuples(st.just("getxattr"), paths, st.sampled_from(XATTRS)),
    st.tuples(st.just("listxattr"), paths),
    st.tuples(st.just("removexattr"), paths, st.sampled_from(XATTRS)),
)




def _layout(top: tuple[str, ...], sub: tuple[str, ...], fill: int) -> list[tuple[Any, ...]]:
    """Operations that make a starting tree, so that most later operations find something."""
    ops: list[tuple[Any, ...]] = []
    subs = [f"{t}/{s}" for t in ("a", "b") for s in ("x", "y")]
    for path, kind in [*zip(TOP, top, strict=True), *zip(subs, sub, strict=True)]:
        if "/" in path and top[TOP.index(path.split("/")[0])] != "dir":
            continue
        if kind == "file":
            ops += [("open", 0, path, os.O_CREAT | os.O_WRONLY, 0o644),
                    ("write", 0, bytes([fill]) * (fill * 37)), ("close", 0)]
        elif kind == "dir":
            ops.append(("mkdir", path, 0o755))
        elif kind == "symlink":
            ops.append(("symlink", "b" if path == "a" else "a", path))
    # Leave files open, so descriptor operations have something to work on from the start.
    files = [op[2] for op in ops if op[0] == "open"]
    for slot, (path, flags) in enumerate(zip(files[:2], (os.O_RDWR, os.O_RDWR | os.O_APPEND),
                                             strict=False)):
        ops.append(("open", slot, path, flags, 0))
    return ops


layouts = st.builds(
    _layout,
    st.tuples(*[st.sampled_from(["file", "dir", "dir", "symlink", "none"])] * len(TOP)),
    st.tuples(*[st.sampled_from(["file", "file", "dir", "none"])] * 4),
    st.integers(1, 255))


# -- the whole tree ------------------------------------------------------------------------

def snapshot(root: int) -> dict[str, Any]:
    """Everything the module docstring promises to compare, by relative path."""
    by_inode: dict[tuple[int, int], list[str]] = {}
    found: dict[str, tuple[Any, ...]] = {}

    def walk(rel: str) -> None:
        fd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
        try:
            names = sorted(os.listdir(fd))
        finally:
            os.close(fd)
        for name in names:
            path = f"{rel}/{name}" if rel != "." else name
            st = os.stat(path, dir_fd=root, follow_symlinks=False)
            by_inode.setdefault((st.st_dev, st.st_ino), []).append(path)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                fd = os.open(path, os.O_RDONLY, dir_fd=root)
                try:
                    extra = os.read(fd, st.st_size + 1)
                finally:
                    os.close(fd)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path, dir_fd=root)
            xattrs = None
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                where = f"/proc/self/fd/{root}/{path}"
                xattrs = {x: os.getxattr(where, x) for x in sorted(os.listxattr(where))}
            found[path] = (_norm_stat(st), extra, xattrs, (st.st_dev, st.st_ino))
            if stat.S_ISDIR(st.st_mode):
                walk(path)

    walk(".")
    return {path: (*info[:3], tuple(sorted(by_inode[info[3]])))
            for path, info in found.items()}


# -- the test --------------------------------------------------------------------------------

@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layout=layouts, steps=st.lists(operations, min_size=8, max_size=40))
def test_volfs_matches_a_native_directory(roots: tuple[Path, Path],
                                          layout: list[tuple[Any, ...]],
                                          steps: list[tuple[Any, ...]]) -> None:
    ops = layout + steps
    native_base, mounted_base = roots
    name = f"ex{next(_examples)}"
    sides = []
    for base in (native_base, mounted_base):
        os.mkdir(base / name, 0o755)
        sides.append(Side(os.open(base / name, os.O_RDONLY | os.O_DIRECTORY)))
    native, mounted = sides
    try:
        for i, op in enumerate(ops):
            expected = outcome(native, op)
            got = outcome(mounted, op)
            assert got == expected, f"operation {i} {op!r}: native {expected}, volfs {got}"
        native.close_all()
        mounted.close_all()
        expected_tree, got_tree = snapshot(native.root), snapshot(mounted.root)
        assert got_tree.keys() == expected_tree.keys()
        for path in expected_tree:
            assert got_tree[path] == expected_tree[path], path
    finally:
        for side, base in ((native, native_base), (mounted, mounted_base)):
            side.close_all()
            os.close(side.root)
            shutil.rmtree(base / name)

"""POSIX behaviour of the passthrough store, through a real volfs mount.

Every test that takes a fresh directory runs twice: in an EmptyDir and in a
HostPath volume (the same store under two policies). Every test works in a fresh
directory of its volume (or, for the quota
tests, in a pod of its own with a ``sizeLimit``), and checks what a local
filesystem would do: the same results, the same errnos.

Non-root callers run as uid 1000 through ``setpriv``, started with their
working directory already inside the volume (the temporary directories above
the mount are root's own, 0700, so a path from / would not do).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import mmap
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import PASSTHROUGH_KINDS, Daemon, passthrough_volume, pod_manifest
from tests.waiting import wait_until
from volfs.stores import syscalls
from volfs.stores.syscalls import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2

USER = 1000
OTHER_USER = 1001
_dirs = itertools.count()
DT_DIR = 4  # d_type of a directory


# -- fixtures and helpers ---------------------------------------------------------------

@pytest.fixture(scope="module", params=PASSTHROUGH_KINDS)
def volume(request: pytest.FixtureRequest, shared_daemon: Daemon, open_tmp: Path
           ) -> Iterator[tuple[Path, Path]]:
    """One volume of each passthrough kind for the module: (path through the mount,
    where its bytes really are)."""
    with passthrough_volume(request.param, shared_daemon, open_tmp,
                            f"posix{os.getpid()}") as paths:
        yield paths


@pytest.fixture
def d(volume: tuple[Path, Path]) -> Iterator[Path]:
    """A fresh, world-writable directory of the module's volume."""
    path = volume[0] / f"t{next(_dirs)}"
    path.mkdir()
    os.chmod(path, 0o777)
    yield path


def as_user(cwd: Path, code: str, uid: int = USER, gid: int = USER
            ) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as uid:gid (no supplementary groups) in ``cwd``.

    The code gets ``os``, ``errno`` and ``sys``, and a helper ``err(fn, *a)`` that
    returns the errno name an OSError carries, or "ok".
    """
    prelude = textwrap.dedent("""\
        import errno, os, sys
        def err(fn, *args, **kw):
            try:
                fn(*args, **kw)
            except OSError as exc:
                return errno.errorcode[exc.errno]
            return "ok"
    """)
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
         sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def user_out(cwd: Path, code: str, uid: int = USER, gid: int = USER) -> str:
    result = as_user(cwd, code, uid, gid)
    assert result.returncode == 0, result.stderr
    return result.stdout


def errno_of(fn: Callable[..., object], *args: object, **kwargs: object) -> int:
    with pytest.raises(OSError) as excinfo:
        fn(*args, **kwargs)
    assert excinfo.value.errno is not None
    return excinfo.value.errno


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec),
                            ctypes.c_int]


def utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int],
              nofollow: bool = False) -> None:
    times = (_Timespec * 2)(_Timespec(*atime), _Timespec(*mtime))
    flags = syscalls.AT_SYMLINK_NOFOLLOW if nofollow else 0
    if _libc.utimensat(syscalls.AT_FDCWD, os.fsencode(path), times, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))


class _Dirent(ctypes.Structure):
    """glibc's ``struct dirent`` on Linux (64-bit inode and offset)."""

    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.opendir.restype = ctypes.c_void_p
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.closedir.argtypes = [ctypes.c_void_p]


def dirents(path: Path) -> dict[str, tuple[int, int]]:
    """Every entry readdir(3) gives, ``.`` and ``..`` included: name -> (d_ino, d_type)."""
    handle = _libc.opendir(os.fsencode(path))
    assert handle, os.strerror(ctypes.get_errno())
    entries = {}
    try:
        while entry := _libc.readdir(handle):
            entries[os.fsdecode(entry.contents.d_name)] = (entry.contents.d_ino,
                                                           entry.contents.d_type)
    finally:
        _libc.closedir(handle)
    return entries


def ls_a(path: Path) -> list[str]:
    return subprocess.run(["ls", "-1a", str(path)], capture_output=True, text=True,
                          check=True, env={"LC_ALL": "C", "PATH": os.environ["PATH"]}
                          ).stdout.split("\n")[:-1]


def rename2(d: Path, old: str, new: str, flags: int) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        renameat2(fd, old.encode(), fd, new.encode(), flags)
    finally:
        os.close(fd)


# -- open flags, reads and writes ---------------------------------------------------

def test_o_excl_refuses_any_existing_name(d: Path) -> None:
    fd = os.open(d / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.close(fd)
    assert errno_of(os.open, d / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == errno.EEXIST
    os.symlink("nowhere", d / "dangling")
    assert errno_of(os.open, d / "dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY
                    ) == errno.EEXIST
    assert not (d / "nowhere").exists()
    os.mkdir(d / "dir")
    assert errno_of(os.open, d / "dir", os.O_CREAT | os.O_EXCL | os.O_RDONLY) == errno.EEXIST


def test_o_creat_without_excl_opens_the_existing_file_unchanged(d: Path) -> None:
    (d / "f").write_bytes(b"kept")
    os.chmod(d / "f", 0o640)
    os.chown(d / "f", USER, USER)
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o777)
    try:
        assert os.read(fd, 10) == b"kept"
    finally:
        os.close(fd)
    st = os.stat(d / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, USER, USER)


def test_o_trunc_empties_the_file(d: Path) -> None:
    (d / "f").write_bytes(b"x" * 10_000)
    fd = os.open(d / "f", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"new"


def test_o_append_fds_interleave_at_the_end(d: Path) -> None:
    (d / "log").write_bytes(b"head\n")
    a = os.open(d / "log", os.O_WRONLY | os.O_APPEND)
    b = os.open(d / "log", os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(50):
            os.write(a, b"a%d\n" % i)
            os.write(b, b"b%d\n" % i)
        os.lseek(a, 0, os.SEEK_SET)  # a seek does not move where appends go
        os.write(a, b"tail\n")
    finally:
        os.close(a)
        os.close(b)
    expected = b"head\n" + b"".join(b"a%d\nb%d\n" % (i, i) for i in range(50)) + b"tail\n"
    assert (d / "log").read_bytes() == expected


def test_pread_pwrite_and_sparse_files(d: Path) -> None:
    fd = os.open(d / "sparse", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        far = 64 * 1024 * 1024 + 5
        assert os.pwrite(fd, b"end", far) == 3
        assert os.fstat(fd).st_size == far + 3
        assert os.pread(fd, 8, 4096) == b"\0" * 8  # the hole reads as zeros
        assert os.pread(fd, 10, far) == b"end"  # short read at EOF
        assert os.pread(fd, 10, far + 3) == b""
        assert os.pwrite(fd, b"mid", 1000) == 3
        assert os.pread(fd, 7, 998) == b"\0\0mid\0\0"
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"start")
        assert os.read(fd, 3) == b"\0" * 3  # the file position moved past the write
    finally:
        os.close(fd)
    st = os.stat(d / "sparse")
    assert st.st_blocks * 512 < 1024 * 1024  # holes take no space


def test_truncate_and_ftruncate(d: Path) -> None:
    (d / "f").write_bytes(b"abcdefgh")
    os.truncate(d / "f", 3)
    assert (d / "f").read_bytes() == b"abc"
    os.truncate(d / "f", 6)
    assert (d / "f").read_bytes() == b"abc\0\0\0"
    fd = os.open(d / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 1)
        assert os.fstat(fd).st_size == 1
        os.ftruncate(fd, 100_000)
        assert os.pread(fd, 4, 0) == b"a\0\0\0"
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_size == 100_000
    os.mkdir(d / "dir")
    assert errno_of(os.truncate, d / "dir", 0) == errno.EISDIR


# -- rename ---------------------------------------------------------------------------

def test_rename_over_an_existing_file(d: Path) -> None:
    (d / "a").write_bytes(b"new")
    (d / "b").write_bytes(b"old contents")
    held = os.open(d / "b", os.O_RDONLY)
    try:
        os.rename(d / "a", d / "b")
        assert sorted(os.listdir(d)) == ["b"]
        assert (d / "b").read_bytes() == b"new"
        assert os.read(held, 100) == b"old contents"  # the replaced inode lives while open
        assert os.fstat(held).st_nlink == 0
    finally:
        os.close(held)


def test_rename_of_two_names_of_one_file_changes_nothing(d: Path) -> None:
    (d / "a").write_bytes(b"x")
    os.link(d / "a", d / "b")
    os.rename(d / "a", d / "b")
    assert sorted(os.listdir(d)) == ["a", "b"]
    assert os.stat(d / "a").st_nlink == 2


def test_directory_rename_moves_the_subtree(d: Path) -> None:
    (d / "src" / "deep").mkdir(parents=True)
    (d / "src" / "deep" / "f").write_text("inside")
    os.mkdir(d / "dst")
    os.rename(d / "src", d / "dst" / "moved")
    assert (d / "dst" / "moved" / "deep" / "f").read_text() == "inside"
    assert not (d / "src").exists()
    assert os.stat(d / "dst").st_nlink == 3
    os.mkdir(d / "empty")
    os.rename(d / "dst" / "moved", d / "empty")  # over an empty directory
    assert (d / "empty" / "deep" / "f").read_text() == "inside"
    os.mkdir(d / "full")
    (d / "full" / "x").touch()
    assert errno_of(os.rename, d / "empty", d / "full") in (errno.ENOTEMPTY, errno.EEXIST)
    assert errno_of(os.rename, d / "empty", d / "empty" / "deep" / "sub") == errno.EINVAL
    (d / "file").touch()
    assert errno_of(os.rename, d / "file", d / "full") == errno.EISDIR
    assert errno_of(os.rename, d / "full", d / "file") == errno.ENOTDIR
    assert errno_of(os.rename, d / "missing", d / "x") == errno.ENOENT


def test_rename_noreplace(d: Path) -> None:
    (d / "a").write_text("a")
    (d / "b").write_text("b")
    assert errno_of(rename2, d, "a", "b", RENAME_NOREPLACE) == errno.EEXIST
    assert (d / "a").read_text() == "a" and (d / "b").read_text() == "b"
    rename2(d, "a", "c", RENAME_NOREPLACE)
    assert sorted(os.listdir(d)) == ["b", "c"] and (d / "c").read_text() == "a"


def test_rename_exchange_swaps_a_file_and_a_directory(d: Path) -> None:
    (d / "f").write_text("file")
    (d / "dir").mkdir()
    (d / "dir" / "inner").write_text("inner")
    rename2(d, "f", "dir", RENAME_EXCHANGE)
    assert (d / "f" / "inner").read_text() == "inner"
    assert (d / "dir").read_text() == "file"
    assert errno_of(rename2, d, "f", "missing", RENAME_EXCHANGE) == errno.ENOENT
    assert errno_of(rename2, d, "f", "dir", RENAME_EXCHANGE | RENAME_NOREPLACE
                    ) == errno.EINVAL


# -- hard links and symlinks ----------------------------------------------------------------

def test_hard_links_share_one_inode(d: Path) -> None:
    (d / "a").write_bytes(b"shared")
    os.mkdir(d / "sub")
    os.link(d / "a", d / "sub" / "b")
    a, b = os.stat(d / "a"), os.stat(d / "sub" / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    os.chmod(d / "a", 0o600)
    assert stat.S_IMODE(os.stat(d / "sub" / "b").st_mode) == 0o600
    os.chown(d / "sub" / "b", USER, 2000)
    assert (os.stat(d / "a").st_uid, os.stat(d / "a").st_gid) == (USER, 2000)
    with open(d / "sub" / "b", "ab") as f:
        f.write(b"+more")
    assert (d / "a").read_bytes() == b"shared+more"
    assert os.stat(d / "a").st_size == 11
    os.link(d / "a", d / "c")
    assert os.stat(d / "sub" / "b").st_nlink == 3
    os.unlink(d / "a")
    assert os.stat(d / "sub" / "b").st_nlink == 2
    os.unlink(d / "sub" / "b")
    st = os.stat(d / "c")
    assert (st.st_nlink, stat.S_IMODE(st.st_mode), st.st_uid) == (1, 0o600, USER)
    assert errno_of(os.link, d / "sub", d / "dirlink") == errno.EPERM
    assert errno_of(os.link, d / "c", d / "c") == errno.EEXIST


def test_hard_link_to_a_symlink_links_the_symlink_itself(d: Path) -> None:
    os.symlink("target", d / "s")
    os.link(d / "s", d / "s2", follow_symlinks=False)
    assert os.readlink(d / "s2") == "target"
    assert os.lstat(d / "s").st_nlink == 2


@pytest.mark.parametrize("target", [
    "../x/./y//z/..", "/absolute/elsewhere", "dangling", "a b\tc\u00e9", "." * 3,
    "t" * 4000])
def test_symlink_target_is_stored_verbatim(d: Path, target: str) -> None:
    os.symlink(target, d / "s")
    assert os.readlink(d / "s") == target
    st = os.lstat(d / "s")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len(target.encode())
    assert errno_of(os.stat, d / "s") in (errno.ENOENT, errno.ENAMETOOLONG)
    assert errno_of(os.symlink, "other", d / "s") == errno.EEXIST


def test_symlinks_resolve_in_the_callers_view(d: Path) -> None:
    (d / "dir").mkdir()
    (d / "dir" / "f").write_text("through")
    os.symlink("dir/f", d / "rel")
    os.symlink("../dir", d / "dir" / "up")
    os.symlink(str(d / "dir" / "f"), d / "abs")
    assert (d / "rel").read_text() == "through"
    assert (d / "dir" / "up" / "f").read_text() == "through"
    assert (d / "abs").read_text() == "through"
    os.symlink("loop", d / "loop")
    assert errno_of(os.stat, d / "loop") == errno.ELOOP
    assert errno_of(os.readlink, d / "dir" / "f") == errno.EINVAL


# -- directories and special files -------------------------------------------------------------

def test_mkdir_rmdir_unlink(d: Path) -> None:
    os.mkdir(d / "a", 0o750)
    assert stat.S_IMODE(os.stat(d / "a").st_mode) == 0o750
    assert errno_of(os.mkdir, d / "a") == errno.EEXIST
    (d / "a" / "f").touch()
    assert errno_of(os.rmdir, d / "a") == errno.ENOTEMPTY
    assert errno_of(os.rmdir, d / "a" / "f") == errno.ENOTDIR
    assert errno_of(os.unlink, d / "a") == errno.EISDIR
    assert errno_of(os.unlink, d / "a" / "missing") == errno.ENOENT
    assert errno_of(os.mkdir, d / "missing" / "x") == errno.ENOENT
    assert errno_of(os.mkdir, d / "a" / "f" / "x") == errno.ENOTDIR
    os.unlink(d / "a" / "f")
    os.rmdir(d / "a")
    assert os.listdir(d) == []
    assert os.stat(d).st_nlink == 2


def test_readdir_sees_changes_after_rewind(d: Path) -> None:
    for i in range(300):
        (d / f"f{i:03}").touch()
    with os.scandir(d) as it:
        names = sorted(entry.name for entry in it)
    assert names == [f"f{i:03}" for i in range(300)]
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(os.listdir(fd)) == 300
        (d / "late").touch()
        os.lseek(fd, 0, os.SEEK_SET)
        assert "late" in os.listdir(fd)
    finally:
        os.close(fd)


def test_ls_a_shows_dot_and_dot_dot_as_the_directory_and_its_parent(
        d: Path, volume: tuple[Path, Path]) -> None:
    (d / "f").touch()
    (d / "sub").mkdir()
    assert ls_a(d) == [".", "..", "f", "sub"] == ls_a(volume[1] / d.name)
    assert ls_a(d / "sub") == [".", ".."]
    assert ls_a(volume[0])[:2] == [".", ".."]  # the volume's root
    assert ls_a(volume[0].parent)[:2] == [".", ".."]  # the synthetic levels above it
    for path in (d, d / "sub", volume[0], volume[0].parent):
        entries = dirents(path)
        assert entries["."] == (os.stat(path).st_ino, DT_DIR), path
        assert entries[".."] == (os.stat(path.parent).st_ino, DT_DIR), path


def test_directory_opened_before_its_entries_were_made_lists_them(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in ("one", "two"):
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        os.mkdir("sub", dir_fd=fd)
        assert sorted(os.listdir(fd)) == ["one", "sub", "two"]
        os.unlink("one", dir_fd=fd)
        assert sorted(os.listdir(fd)) == ["sub", "two"]
    finally:
        os.close(fd)


def test_fifo_carries_data_between_processes(d: Path) -> None:
    os.mkfifo(d / "fifo", 0o640)
    st = os.lstat(d / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    writer = subprocess.Popen([sys.executable, "-c",
                               f"open({str(d / 'fifo')!r}, 'w').write('through the pipe')"])
    with open(d / "fifo") as f:
        assert f.read() == "through the pipe"
    assert writer.wait(30) == 0


def test_unix_socket_bound_in_the_volume_accepts_connections(
        d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(d)  # a socket address holds at most 107 bytes of path
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind("sock")
        server.listen(1)
        assert stat.S_ISSOCK(os.lstat(d / "sock").st_mode)
        client = subprocess.Popen(
            [sys.executable, "-c",
             "import socket\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "s.connect('sock')\n"
             "s.sendall(b'hello over the volume'); s.close()\n"], cwd=d)
        server.settimeout(30)
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(100):
                data += chunk
        assert data == b"hello over the volume"
        assert client.wait(30) == 0
    finally:
        server.close()


def test_device_nodes_only_for_root(d: Path) -> None:
    out = user_out(d, """\
        print(err(os.mknod, "chr", 0o600 | 0o020000, os.makedev(1, 3)))
        print(err(os.mknod, "fifo", 0o600 | 0o010000))
    """)
    assert out.split() == ["EPERM", "ok"]
    assert sorted(os.listdir(d)) == ["fifo"]
    os.mknod(d / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    st = os.lstat(d / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


# -- attributes -----------------------------------------------------------------------------

def test_chmod_chown_and_nanosecond_times(d: Path) -> None:
    (d / "f").write_text("x")
    os.chmod(d / "f", 0o4751)
    assert stat.S_IMODE(os.stat(d / "f").st_mode) == 0o4751
    os.chown(d / "f", USER, 4242)
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (USER, 4242)
    assert not st.st_mode & stat.S_ISUID  # chown clears set-user-ID, even by root
    os.chown(d / "f", -1, 4343)
    assert (os.stat(d / "f").st_uid, os.stat(d / "f").st_gid) == (USER, 4343)
    os.utime(d / "f", ns=(1_111_111_111_123_456_789, 1_222_222_222_987_654_321))
    st = os.stat(d / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_111_111_111_123_456_789,
                                                1_222_222_222_987_654_321)
    os.utime(d / "f", (1000.5, 2000.25))
    assert os.stat(d / "f").st_mtime_ns == 2_000_250_000_000


def test_symlink_itself_with_follow_symlinks_false(d: Path) -> None:
    (d / "target").write_text("t")
    os.utime(d / "target", ns=(5_000_000_000, 6_000_000_000))
    os.symlink("target", d / "link")
    os.utime(d / "link", ns=(7_000_000_001, 8_000_000_002), follow_symlinks=False)
    os.chown(d / "link", USER, USER, follow_symlinks=False)
    link, target = os.lstat(d / "link"), os.stat(d / "target")
    assert (link.st_atime_ns, link.st_mtime_ns) == (7_000_000_001, 8_000_000_002)
    assert (link.st_uid, link.st_gid) == (USER, USER)
    assert (target.st_atime_ns, target.st_mtime_ns) == (5_000_000_000, 6_000_000_000)
    assert (target.st_uid, target.st_gid) == (0, 0)
    os.utime(d / "link", ns=(9_000_000_000, 9_500_000_000))  # follows
    assert os.stat(d / "target").st_mtime_ns == 9_500_000_000
    assert os.lstat(d / "link").st_mtime_ns == 8_000_000_002


def test_utime_omit_and_now(d: Path) -> None:
    (d / "f").write_text("x")
    os.utime(d / "f", ns=(3_000_000_007, 4_000_000_009))
    utimensat(d / "f", (0, syscalls.UTIME_OMIT), (12, 345))
    st = os.stat(d / "f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (3_000_000_007, 12_000_000_345)
    before = time.time_ns()
    utimensat(d / "f", (99, 99), (0, syscalls.UTIME_NOW))
    after = time.time_ns()
    st = os.stat(d / "f")
    assert st.st_atime_ns == 99_000_000_099
    assert before - 1_000_000_000 <= st.st_mtime_ns <= after + 1_000_000_000
    os.symlink("f", d / "s")
    utimensat(d / "s", (0, syscalls.UTIME_OMIT), (77, 0), nofollow=True)
    assert os.lstat(d / "s").st_mtime_ns == 77_000_000_000
    assert os.stat(d / "f").st_atime_ns == 99_000_000_099


def test_setuid_is_cleared_when_another_user_writes(d: Path) -> None:
    for name in ("w", "t"):
        (d / name).write_text("x")
        os.chmod(d / name, 0o6777)
    user_out(d, """\
        with open("w", "a") as f: f.write("by user")
        os.truncate("t", 0)
    """)
    for name in ("w", "t"):
        mode = os.stat(d / name).st_mode
        assert not mode & stat.S_ISUID and not mode & stat.S_ISGID, (name, oct(mode))
    assert (d / "w").read_text() == "xby user"


def test_user_xattrs(d: Path) -> None:
    (d / "f").write_text("x")
    os.setxattr(d / "f", "user.one", b"1")
    os.setxattr(d / "f", "user.bin", bytes(range(256)))
    os.setxattr(d / "f", "user.empty", b"")
    assert os.getxattr(d / "f", "user.one") == b"1"
    assert os.getxattr(d / "f", "user.bin") == bytes(range(256))
    assert os.getxattr(d / "f", "user.empty") == b""
    assert sorted(os.listxattr(d / "f")) == ["user.bin", "user.empty", "user.one"]
    assert errno_of(os.getxattr, d / "f", "user.missing") == errno.ENODATA
    assert errno_of(os.setxattr, d / "f", "user.one", b"2", os.XATTR_CREATE) == errno.EEXIST
    assert errno_of(os.setxattr, d / "f", "user.two", b"2", os.XATTR_REPLACE) == errno.ENODATA
    os.setxattr(d / "f", "user.one", b"uno", os.XATTR_REPLACE)
    assert os.getxattr(d / "f", "user.one") == b"uno"
    os.removexattr(d / "f", "user.one")
    assert errno_of(os.removexattr, d / "f", "user.one") == errno.ENODATA
    assert errno_of(os.getxattr, d / "f", "user.one") == errno.ENODATA
    assert sorted(os.listxattr(d / "f")) == ["user.bin", "user.empty"]
    os.mkdir(d / "dir")
    os.setxattr(d / "dir", "user.on-a-dir", b"yes")
    assert os.listxattr(d / "dir") == ["user.on-a-dir"]
    os.link(d / "f", d / "g")
    assert os.getxattr(d / "g", "user.bin") == bytes(range(256))


def test_fsync_fdatasync_and_flush(d: Path) -> None:
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"durable")
        os.fsync(fd)
        os.fdatasync(fd)
        dup = os.dup(fd)
        os.close(dup)  # a flush while the file stays open
        assert os.pread(fd, 100, 0) == b"durable"
    finally:
        os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def test_mmap_copy_file_range_and_sendfile(d: Path) -> None:
    (d / "src").write_bytes(b"hello world")
    fd = os.open(d / "src", os.O_RDWR)
    out = os.open(d / "dst", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        with mmap.mmap(fd, 11) as mapped:
            mapped[0:5] = b"HELLO"
            mapped.flush()
        assert (d / "src").read_bytes() == b"HELLO world"
        assert os.copy_file_range(fd, out, 5, 6, 0) == 5
        os.lseek(out, 5, os.SEEK_SET)  # sendfile writes at the file position
        assert os.sendfile(out, fd, 0, 5) == 5
        assert os.pread(out, 20, 0) == b"worldHELLO"
    finally:
        os.close(fd)
        os.close(out)


def test_locks_are_seen_by_other_processes(d: Path) -> None:
    (d / "lock").touch()
    probe = textwrap.dedent(f"""\
        import fcntl, os
        fd = os.open({str(d / "lock")!r}, os.O_RDWR)
        for take in (lambda: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB),
                     lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)):
            try:
                take()
                print("free")
            except OSError:
                print("held")
    """)
    fd = os.open(d / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, timeout=60).stdout.split()
    finally:
        os.close(fd)
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60).stdout.split()
    assert (held, free) == (["held", "held"], ["free", "free"])


def test_statvfs(d: Path) -> None:
    st = os.statvfs(d)
    assert st.f_bsize > 0 and st.f_blocks > 0 and st.f_bavail <= st.f_blocks
    assert st.f_namemax == 255


# -- names and paths ------------------------------------------------------------------------

def test_name_of_255_bytes_works_and_256_is_too_long(d: Path) -> None:
    longest = "n" * 255
    (d / longest).write_text("ok")
    os.mkdir(d / ("m" * 254 + "\u00e9")[:254])  # a multi-byte name near the limit
    assert (d / longest).read_text() == "ok"
    assert longest in os.listdir(d)
    os.rename(d / longest, d / ("r" * 255))
    too_long = d / ("n" * 256)
    assert errno_of(os.open, too_long, os.O_CREAT | os.O_WRONLY) == errno.ENAMETOOLONG
    assert errno_of(os.mkdir, too_long) == errno.ENAMETOOLONG
    assert errno_of(os.stat, too_long) == errno.ENAMETOOLONG
    assert errno_of(os.symlink, "x", too_long) == errno.ENAMETOOLONG
    assert errno_of(os.rename, d / ("r" * 255), too_long) == errno.ENAMETOOLONG


def test_paths_near_and_past_path_max_work_relative_to_a_directory(d: Path) -> None:
    component = "d" * 200
    fds = [os.open(d, os.O_RDONLY | os.O_DIRECTORY)]
    length = len(os.fsencode(d))
    try:
        while length + 201 < 4096 - 20:  # just below PATH_MAX, with a file name to spare
            os.mkdir(component, dir_fd=fds[-1])
            fds.append(os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
            length += 201
        deep = str(d) + ("/" + component) * (len(fds) - 1)
        assert len(deep) == length and length > 3800
        with open(deep + "/file.txt", "w") as f:  # still addressable from /
            f.write("near PATH_MAX")
        fd = os.open("file.txt", os.O_RDONLY, dir_fd=fds[-1])
        try:
            assert os.read(fd, 100) == b"near PATH_MAX"
        finally:
            os.close(fd)
        # Past PATH_MAX: only relative names reach it, and everything still works.
        for _ in range(5):
            os.mkdir(component, dir_fd=fds[-1])
            fds.append(os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        assert errno_of(os.stat, deep + ("/" + component) * 5) == errno.ENAMETOOLONG
        bottom = fds[-1]
        fd = os.open("f", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=bottom)
        try:
            os.write(fd, b"deep down")
            assert os.pread(fd, 100, 0) == b"deep down"
        finally:
            os.close(fd)
        os.rename("f", "g", src_dir_fd=bottom, dst_dir_fd=bottom)
        os.symlink("g", "s", dir_fd=bottom)
        os.link("g", "h", src_dir_fd=bottom, dst_dir_fd=fds[1])
        assert os.stat("h", dir_fd=fds[1]).st_nlink == 2
        assert sorted(os.listdir(bottom)) == ["g", "s"]
        os.unlink("h", dir_fd=fds[1])
        assert os.stat("s", dir_fd=bottom).st_size == 9
    finally:
        for fd in fds:
            os.close(fd)


# -- ownership and permissions for callers that are not root ---------------------------------

def test_objects_made_by_a_user_are_owned_by_that_user_on_the_backing_store(
        volume: tuple[Path, Path], d: Path) -> None:
    user_out(d, """\
        open("file", "w").write("mine")
        os.mkdir("dir")
        os.symlink("file", "link")
        os.mkfifo("fifo")
        os.mkdir("dir/nested")
        fd = os.open("dir/nested/made", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
        os.close(fd)
        os.link("file", "hard")
    """)
    store = volume[1] / d.name
    for name in ("file", "dir", "link", "fifo", "dir/nested", "dir/nested/made", "hard"):
        for where in (store / name, d / name):
            st = os.lstat(where)
            assert (st.st_uid, st.st_gid) == (USER, USER), where
    assert stat.S_IMODE(os.stat(store / "dir/nested/made").st_mode) == 0o640


def test_setgid_directory_passes_on_its_group(volume: tuple[Path, Path], d: Path) -> None:
    os.mkdir(d / "shared")
    os.chown(d / "shared", 0, 4242)
    os.chmod(d / "shared", 0o2777)
    user_out(d / "shared", """\
        open("file", "w").close()
        os.mkdir("sub", 0o755)
        open("sub/deeper", "w").close()
    """)
    store = volume[1] / d.name / "shared"
    for where in (d / "shared", store):
        f, sub, deeper = (os.stat(where / n) for n in ("file", "sub", "sub/deeper"))
        assert (f.st_uid, f.st_gid) == (USER, 4242)
        assert (sub.st_uid, sub.st_gid) == (USER, 4242)
        assert sub.st_mode & stat.S_ISGID and not f.st_mode & stat.S_ISGID
        assert deeper.st_gid == 4242


def test_mode_bits_refuse_other_users(d: Path) -> None:
    os.mkdir(d / "private", 0o700)
    (d / "private" / "secret").write_text("s")
    (d / "readonly").write_text("ro")
    os.chmod(d / "readonly", 0o444)
    (d / "mine-ro").write_text("ro")
    os.chown(d / "mine-ro", USER, USER)
    os.chmod(d / "mine-ro", 0o444)
    out = user_out(d, """\
        print(err(os.listdir, "private"))
        print(err(os.stat, "private/secret"))
        print(err(open, "private/new", "w"))
        print(err(open, "readonly", "a"))
        print(err(os.truncate, "readonly", 0))
        print(err(open, "mine-ro", "w"))
        print(err(os.chmod, "readonly", 0o666))
        print(err(os.chown, "mine-ro", 0, 0))
        print(err(os.setxattr, "readonly", "user.x", b"1"))
        print(err(open, "readonly", "r"))
        print(err(os.chmod, "mine-ro", 0o644))
    """)
    assert out.split() == ["EACCES", "EACCES", "EACCES", "EACCES", "EACCES", "EACCES",
                           "EPERM", "EPERM", "EACCES", "ok", "ok"]
    assert (d / "readonly").read_text() == "ro"


def test_sticky_directory_protects_other_users_files(d: Path) -> None:
    os.mkdir(d / "tmp")
    os.chmod(d / "tmp", 0o1777)
    (d / "tmp" / "theirs").write_text("t")
    os.chown(d / "tmp" / "theirs", OTHER_USER, OTHER_USER)
    os.chmod(d / "tmp" / "theirs", 0o666)
    out = user_out(d / "tmp", """\
        open("mine", "w").close()
        print(err(os.unlink, "theirs"))
        print(err(os.rename, "theirs", "stolen"))
        print(err(os.rename, "mine", "theirs"))
        print(err(open, "theirs", "a"))
        print(err(os.unlink, "mine"))
    """)
    assert out.split() == ["EPERM", "EPERM", "EPERM", "ok", "ok"]
    assert sorted(os.listdir(d / "tmp")) == ["theirs"]


# -- quota (sizeLimit) ----------------------------------------------------------------------

LIMIT = 1024 * 1024


@pytest.fixture
def small(shared_daemon: Daemon, pod_name: str) -> Iterator[tuple[Path, Callable[[], int]]]:
    """An EmptyDir with sizeLimit 1Mi, and how to read its usedBytes from the CLI."""
    shared_daemon.apply(pod_manifest(pod_name, """\
    - name: small
      emptyDir:
        sizeLimit: 1Mi
"""))

    def used() -> int:
        volumes = shared_daemon.pod(pod_name)["status"]["volumes"]
        return int(next(v for v in volumes if v["name"] == "small")["usedBytes"])

    yield shared_daemon.volume_path(pod_name, "small"), used
    shared_daemon.cli("delete", "pod", pod_name)


def fill(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b"q" * size)


def test_quota_append_writes_stop_at_the_limit(small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "base", LIMIT - 1000)
    fd = os.open(path / "log", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        assert os.write(fd, b"a" * 600) == 600
        assert os.write(fd, b"b" * 600) == 400  # a short write up to the limit
        assert errno_of(os.write, fd, b"c") == errno.ENOSPC
        # On Linux pwrite on an O_APPEND descriptor appends too, so it needs room.
        assert errno_of(os.pwrite, fd, b"d", 0) == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.stat(path / "log").st_size == 1000
    assert used() == LIMIT
    # Overwriting stored bytes needs no new room.
    fd = os.open(path / "log", os.O_WRONLY)
    try:
        assert os.pwrite(fd, b"z" * 1000, 0) == 1000
        assert errno_of(os.pwrite, fd, b"z", 1000) == errno.ENOSPC
    finally:
        os.close(fd)


def test_quota_truncate_up_is_refused_whole(small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "f", 1000)
    assert errno_of(os.truncate, path / "f", LIMIT + 1) == errno.ENOSPC
    assert os.stat(path / "f").st_size == 1000
    fd = os.open(path / "f", os.O_RDWR)
    try:
        assert errno_of(os.ftruncate, fd, 2 * LIMIT) == errno.ENOSPC
        os.ftruncate(fd, LIMIT)  # exactly the limit fits (a hole counts)
    finally:
        os.close(fd)
    assert used() == LIMIT
    assert errno_of(fill, path / "g", 1) == errno.ENOSPC
    os.truncate(path / "f", 10)
    assert used() == 10


def test_quota_o_trunc_and_unlink_free_space(small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "f", LIMIT)
    assert used() == LIMIT
    os.close(os.open(path / "f", os.O_WRONLY | os.O_TRUNC))
    assert used() == 0
    fill(path / "f", LIMIT)
    os.unlink(path / "f")
    assert used() == 0
    fill(path / "g", LIMIT)
    assert used() == LIMIT


def test_quota_unlinked_open_file_keeps_its_space_until_closed(
        small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "f", LIMIT - 10)
    fd = os.open(path / "f", os.O_RDWR)
    try:
        os.unlink(path / "f")
        assert used() == LIMIT - 10
        assert errno_of(fill, path / "g", 11) == errno.ENOSPC
        os.unlink(path / "g")
        assert os.pwrite(fd, b"more", LIMIT - 10) == 4  # it can still grow
        assert used() == LIMIT - 6
    finally:
        os.close(fd)
    # release reaches the daemon after close returns
    wait_until(lambda: used() == 0, 20, "the unlinked file's bytes were not freed at close")
    fill(path / "g", LIMIT)


@pytest.mark.timeout(90)
def test_quota_stays_exact_over_a_storm_of_creates_and_unlinks(
        small: tuple[Path, Callable[[], int]]) -> None:
    """Thousands of files made and removed, some of them while still open: the usage is
    the bytes stored at every step, and the whole limit is free again at the end."""
    path, used = small
    sizes = {f"f{i:05d}": i % 300 for i in range(3000)}
    for name, size in sizes.items():
        fill(path / name, size)
    assert used() == sum(sizes.values())
    assert len({(path / name).stat().st_ino for name in sizes}) == len(sizes)
    held = [os.open(path / name, os.O_RDONLY) for name in list(sizes)[::3]]
    try:
        for name in sizes:
            os.unlink(path / name)
        assert used() == sum(list(sizes.values())[::3])
    finally:
        for fd in held:
            os.close(fd)
    wait_until(lambda: used() == 0, 20, "the unlinked files' bytes were not freed at close")
    assert os.listdir(path) == []
    fill(path / "all", LIMIT)

def test_quota_rename_over_a_file_frees_the_replaced_one(
        small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "a", 600_000)
    fill(path / "b", 400_000)
    assert used() == 1_000_000
    os.rename(path / "a", path / "b")
    assert used() == 600_000
    fill(path / "c", LIMIT - 600_000)
    assert used() == LIMIT
    # Replacing a file that is still open frees it only when it is closed.
    held = os.open(path / "c", os.O_RDONLY)
    try:
        os.rename(path / "b", path / "c")
        assert used() == LIMIT
    finally:
        os.close(held)
    wait_until(lambda: used() == 600_000, 20,
               "the replaced file's bytes were not freed when it was closed")


def test_quota_counts_hard_links_once(small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fill(path / "a", 600_000)
    os.link(path / "a", path / "b")
    os.mkdir(path / "dir")
    os.link(path / "a", path / "dir" / "c")
    assert used() == 600_000
    fill(path / "other", LIMIT - 600_000)
    assert used() == LIMIT
    os.unlink(path / "a")
    os.unlink(path / "b")
    assert used() == LIMIT  # one name is left
    os.rename(path / "other", path / "dir" / "c")
    assert used() == LIMIT - 600_000
    assert os.stat(path / "dir" / "c").st_size == LIMIT - 600_000


def test_quota_posix_fallocate_stops_at_the_limit(small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fd = os.open(path / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, 4096)
        assert errno_of(os.posix_fallocate, fd, 0, 2 * LIMIT) == errno.ENOSPC
    finally:
        os.close(fd)
    assert os.stat(path / "f").st_size <= LIMIT
    assert used() == os.stat(path / "f").st_size


def test_quota_sparse_write_counts_the_logical_size(
        small: tuple[Path, Callable[[], int]]) -> None:
    path, used = small
    fd = os.open(path / "sparse", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert errno_of(os.pwrite, fd, b"x", LIMIT) == errno.ENOSPC
        assert os.pwrite(fd, b"x", LIMIT - 1) == 1
        assert os.pwrite(fd, b"y" * 10, 5000) == 10  # inside the file: no growth
        # A write that starts past the end of a full volume stores nothing.
        assert errno_of(os.pwrite, fd, b"z" * 100_000, LIMIT + 1) == errno.ENOSPC
        assert os.fstat(fd).st_size == LIMIT
        os.ftruncate(fd, LIMIT - 100)
        assert os.pwrite(fd, b"w" * 100_000, LIMIT - 50) == 50
    finally:
        os.close(fd)
    assert used() == LIMIT
    assert os.stat(path / "sparse").st_size == LIMIT

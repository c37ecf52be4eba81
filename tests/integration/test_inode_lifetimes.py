"""Inode lifetimes: lookup counts and forget are exact, and the daemon lets go.

volfs names every inode the kernel knows by a descriptor, of which it keeps at
most a third of its RLIMIT_NOFILE open (the rest are reopened by file handle).
These tests watch the daemon's descriptor count (and its memory) while files
come and go by the hundred thousand, and while the kernel drops its caches:
every descriptor must come back, and a volume with more files than the daemon
may open descriptors must still work.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration import daemon as daemon_module
from tests.integration.daemon import Daemon, pod_manifest

SCRATCH = "    - name: scratch\n      emptyDir: {}\n"
FD_SLACK = 8  # descriptors that may come and go on their own (sockets, the database)


def drop_kernel_caches() -> None:
    """Make the kernel forget every inode nobody uses (it then sends FORGET)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("2")


def settle(fds: Callable[[], int], at_most: int, timeout: float = 30.0) -> int:
    """Poll until the daemon holds at most ``at_most`` descriptors; dropping caches halfway."""
    deadline = time.monotonic() + timeout
    dropped = False
    while (count := fds()) > at_most:
        if not dropped and time.monotonic() > deadline - timeout / 2:
            drop_kernel_caches()
            dropped = True
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return count


class Watched:
    """A daemon process, its volume, and one directory in it kept open as a dir_fd."""

    def __init__(self, daemon: Daemon, pod: str) -> None:
        daemon.apply(pod_manifest(pod, SCRATCH))
        assert daemon.proc is not None
        self.proc = psutil.Process(daemon.proc.pid)
        self.path = daemon.volume_path(pod, "scratch")
        os.mkdir(self.path / "many")
        self.dir_fd = os.open(self.path / "many", os.O_RDONLY | os.O_DIRECTORY)

    def fds(self) -> int:
        return self.proc.num_fds()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def baseline(self) -> int:
        """The descriptor count once everything the kernel held has been forgotten."""
        drop_kernel_caches()
        time.sleep(0.5)  # let forgets drain; settle() below does the real waiting
        return settle(self.fds, 10**9, timeout=0)

    def create(self, count: int, prefix: str = "f", data: bytes = b"") -> int:
        """Create ``count`` files; returns the most descriptors the daemon held meanwhile."""
        most = 0
        for i in range(count):
            fd = os.open(f"{prefix}{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644,
                         dir_fd=self.dir_fd)
            if data:
                os.write(fd, data)
            os.close(fd)
            if i % 2000 == 0:
                most = max(most, self.fds())
        return max(most, self.fds())

    def delete(self, count: int, prefix: str = "f") -> None:
        for i in range(count):
            os.unlink(f"{prefix}{i}", dir_fd=self.dir_fd)

    def close(self) -> None:
        os.close(self.dir_fd)


@pytest.fixture
def watched(daemon: Daemon, pod_name: str) -> Iterator[Watched]:
    w = Watched(daemon, pod_name)
    yield w
    w.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_100k_files_created_and_deleted_leave_no_descriptors_or_memory_behind(
        watched: Watched) -> None:
    """Two rounds of 100,000 files: the first brings the daemon to its working size
    (Python's dicts never shrink, and freed memory stays with the allocator); the
    second must then leave nothing behind, neither descriptors nor memory."""
    start_fds, start_rss = watched.baseline(), watched.rss()
    limit = watched.proc.rlimit(psutil.RLIMIT_NOFILE)[0]
    for round_ in range(2):
        most = watched.create(100_000)
        assert most > start_fds + 1000  # the kernel did hold inodes: this measures something
        assert most < limit
        watched.delete(100_000)
        assert os.listdir(watched.dir_fd) == []
        fds = settle(watched.fds, start_fds + FD_SLACK)
        assert fds <= start_fds + FD_SLACK, f"round {round_}: {fds} descriptors"
        if round_ == 0:
            warm_rss = watched.rss()
    # A node leaked per file (node, handle, table entries: ~500 bytes) would be ~50 MiB;
    # the allocator's own noise between rounds stays near 10 MiB.
    rss = watched.rss()
    assert rss <= warm_rss + 24 * 1024 * 1024, f"grew {(rss - warm_rss) >> 20} MiB in round 2"
    assert rss <= start_rss + 64 * 1024 * 1024, f"grew {(rss - start_rss) >> 20} MiB in all"


@pytest.mark.slow
def test_inodes_the_kernel_drops_are_forgotten_exactly(watched: Watched) -> None:
    base_fds = watched.baseline()
    count = 3000
    assert watched.create(count, data=b"x") >= base_fds + count - FD_SLACK
    # Files that stay: the kernel forgets them when it drops its cache.
    drop_kernel_caches()
    assert settle(watched.fds, base_fds + FD_SLACK) <= base_fds + FD_SLACK
    # readdirplus hands out every entry: each must be counted once, and forgotten.
    with os.scandir(watched.dir_fd) as it:
        assert sum(1 for entry in it if entry.is_file(follow_symlinks=False)) == count
    assert watched.fds() >= base_fds + count - FD_SLACK
    for i in range(count):  # lookups of names readdir already handed out
        assert os.stat(f"f{i}", dir_fd=watched.dir_fd).st_size == 1
    drop_kernel_caches()
    assert settle(watched.fds, base_fds + FD_SLACK) <= base_fds + FD_SLACK
    # Second names and renames: one inode per file, however many names.
    os.mkdir("links", dir_fd=watched.dir_fd)
    for i in range(count):
        os.link(f"f{i}", f"links/l{i}", src_dir_fd=watched.dir_fd, dst_dir_fd=watched.dir_fd)
        os.rename(f"f{i}", f"g{i}", src_dir_fd=watched.dir_fd, dst_dir_fd=watched.dir_fd)
    assert watched.fds() <= base_fds + count + 1 + FD_SLACK
    assert os.stat(f"g{count - 1}", dir_fd=watched.dir_fd).st_nlink == 2
    drop_kernel_caches()
    assert settle(watched.fds, base_fds + FD_SLACK + 1) <= base_fds + FD_SLACK + 1
    for i in range(count):
        os.unlink(f"g{i}", dir_fd=watched.dir_fd)
        os.unlink(f"links/l{i}", dir_fd=watched.dir_fd)
    os.rmdir("links", dir_fd=watched.dir_fd)
    assert settle(watched.fds, base_fds + FD_SLACK) <= base_fds + FD_SLACK


def test_open_files_keep_their_inodes_until_released(watched: Watched) -> None:
    base_fds = watched.baseline()
    held = [os.open(f"h{i}", os.O_CREAT | os.O_RDWR, 0o600, dir_fd=watched.dir_fd)
            for i in range(50)]
    try:
        for i in range(50):
            os.unlink(f"h{i}", dir_fd=watched.dir_fd)
        drop_kernel_caches()
        time.sleep(0.2)
        for i, fd in enumerate(held):  # still usable: inode and descriptor both alive
            os.pwrite(fd, b"%d" % i, 0)
            assert os.pread(fd, 10, 0) == b"%d" % i
            assert os.fstat(fd).st_nlink == 0
        assert watched.fds() >= base_fds + 100  # an O_PATH handle and an open file each
    finally:
        for fd in held:
            os.close(fd)
    assert settle(watched.fds, base_fds + FD_SLACK) <= base_fds + FD_SLACK


# -- more files than the daemon may open descriptors -------------------------------------

NOFILE = 2048


@pytest.fixture
def small_fd_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A daemon that may open only NOFILE descriptors (prlimit around the volfs command)."""
    wrapper = tmp_path / "volfs-limited"
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile={NOFILE}:{NOFILE} "
                       f"{daemon_module.VOLFS} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(daemon_module, "VOLFS", str(wrapper))
    daemon = Daemon(tmp_path / "volfs").start()
    yield daemon
    daemon.stop()


@pytest.mark.slow
def test_more_files_than_descriptors_still_work(small_fd_daemon: Daemon,
                                                pod_name: str) -> None:
    watched = Watched(small_fd_daemon, pod_name)
    try:
        assert watched.proc.rlimit(psutil.RLIMIT_NOFILE) == (NOFILE, NOFILE)
        count = 4 * NOFILE  # in one directory, and a few more in subdirectories
        most = watched.create(count, data=b"payload")
        assert most < NOFILE
        for d in range(4):
            os.makedirs(watched.path / "many" / f"d{d}" / "deeper")
            for i in range(NOFILE // 4):
                (watched.path / "many" / f"d{d}" / "deeper" / f"g{i}").write_bytes(b"%d" % i)
        # The kernel now knows every one of them: more inodes than the daemon may
        # hold descriptors. Listings, lookups, reads, renames and links all work.
        assert len(os.listdir(watched.dir_fd)) == count + 4
        seen = 0
        for top, _, files in os.walk(watched.path / "many"):
            for name in files:
                assert stat.S_ISREG(os.stat(os.path.join(top, name)).st_mode)
                seen += 1
        assert seen == count + NOFILE
        assert watched.fds() < NOFILE
        for i in range(0, count, 97):
            os.rename(f"f{i}", f"r{i}", src_dir_fd=watched.dir_fd, dst_dir_fd=watched.dir_fd)
            os.link(f"r{i}", f"l{i}", src_dir_fd=watched.dir_fd, dst_dir_fd=watched.dir_fd)
            fd = os.open(f"l{i}", os.O_RDONLY, dir_fd=watched.dir_fd)
            try:
                assert os.read(fd, 100) == b"payload"
                assert os.fstat(fd).st_nlink == 2
            finally:
                os.close(fd)
        for name in os.listdir(watched.dir_fd):
            if name.startswith("d"):
                continue
            os.unlink(name, dir_fd=watched.dir_fd)
        assert sorted(os.listdir(watched.dir_fd)) == ["d0", "d1", "d2", "d3"]
        assert watched.fds() < NOFILE
    finally:
        watched.close()


@pytest.mark.slow
def test_a_new_file_on_a_reused_inode_number_is_a_new_inode(small_fd_daemon: Daemon,
                                                            pod_name: str) -> None:
    """A node whose descriptor was closed no longer pins its inode: the host may delete
    the file and give its number to a new one, which must not be served as the old."""
    watched = Watched(small_fd_daemon, pod_name)
    uid = small_fd_daemon.pod(pod_name)["metadata"]["uid"]
    backing = (small_fd_daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir"
               / "scratch" / "many")
    try:
        (watched.path / "many" / "old").write_text("old")
        held = os.stat(watched.path / "many" / "old")  # the kernel keeps this inode
        watched.create(2 * NOFILE)  # more inodes than descriptors: "old" loses its own
        number = (backing / "old").stat().st_ino
        (backing / "old").unlink()
        (backing / "new").write_text("new")
        assert (backing / "new").stat().st_ino == number  # ext4 reuses it at once
        assert (watched.path / "many" / "new").read_text() == "new"
        assert os.stat(watched.path / "many" / "new").st_ino != held.st_ino
    finally:
        watched.close()

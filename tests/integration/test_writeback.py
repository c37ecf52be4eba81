"""``volfs serve --writeback-cache``: what each volume kind promises with the kernel's
writeback cache on (README, "Writes and the page cache").

- EmptyDir: writes wait in the page cache; a write past the sizeLimit fails at fsync or
  close with ENOSPC, nothing past the limit is stored, and the usage stays exact.
- HostPath: files bypass the page cache, so the host and the volume see each other's
  data at once.
- NFS: files bypass the page cache too; what was written and closed is on the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import NfsShare

LIMIT = 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def host_dir(open_tmp: Path) -> Path:
    path = open_tmp / "writeback-host"
    path.mkdir(mode=0o777)
    return path


@pytest.fixture(scope="module")
def wb_daemon(open_tmp: Path, host_dir: Path) -> Iterator[Daemon]:
    daemon = Daemon(open_tmp / "writeback-daemon",
                    extra_args=["--writeback-cache", "--allow-host-path", str(host_dir)]).start()
    yield daemon
    daemon.stop()


def _limited(daemon: Daemon, pod: str) -> tuple[Path, Path]:
    """An EmptyDir with sizeLimit LIMIT: (its path through the mount, its backing dir)."""
    daemon.apply(pod_manifest(pod, f"    - name: small\n      emptyDir:\n"
                                   f"        sizeLimit: {LIMIT}\n"))
    uid = daemon.pod(pod)["metadata"]["uid"]
    return (daemon.volume_path(pod, "small"),
            daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir" / "small")


def _used(daemon: Daemon, pod: str) -> int:
    volumes = daemon.pod(pod)["status"]["volumes"]
    return int(next(v["usedBytes"] for v in volumes if v["name"] == "small"))


def _write_past_the_limit(fd: int) -> int | None:
    """Write twice the limit; the errno if a write(2) already failed (the kernel may
    write back early, under memory pressure), else None."""
    try:
        for offset in range(0, 2 * LIMIT, CHUNK):
            os.pwrite(fd, b"w" * CHUNK, offset)
    except OSError as exc:
        return exc.errno
    return None


@pytest.mark.timeout(60)
def test_past_the_size_limit_fsync_fails_and_nothing_is_stored_past_it(
        wb_daemon: Daemon, pod_name: str) -> None:
    served, backing = _limited(wb_daemon, pod_name)
    fd = os.open(served / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        failed = _write_past_the_limit(fd)
        if failed is None:
            with pytest.raises(OSError) as fsync_error:
                os.fsync(fd)
            failed = fsync_error.value.errno
        assert failed == errno.ENOSPC
    finally:
        with contextlib.suppress(OSError):  # close may tell the error again
            os.close(fd)
    stored = (backing / "big").stat().st_size
    assert stored <= LIMIT
    assert _used(wb_daemon, pod_name) == stored  # exact: what is on disk
    # Room freed is room again: a write that fits is stored (and fsync says so).
    os.truncate(served / "big", 0)
    with open(served / "big", "r+b") as f:
        f.write(b"x" * 1000)
        f.flush()
        os.fsync(f.fileno())
    assert (backing / "big").read_bytes() == b"x" * 1000
    assert _used(wb_daemon, pod_name) == 1000
    wb_daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(60)
def test_past_the_size_limit_close_fails_without_fsync(wb_daemon: Daemon,
                                                       pod_name: str) -> None:
    served, backing = _limited(wb_daemon, pod_name)
    fd = os.open(served / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    failed = _write_past_the_limit(fd)
    if failed is None:
        with pytest.raises(OSError) as close_error:
            os.close(fd)
        failed = close_error.value.errno
    else:
        os.close(fd)
    assert failed == errno.ENOSPC
    stored = (backing / "big").stat().st_size
    assert stored <= LIMIT
    assert _used(wb_daemon, pod_name) == stored
    wb_daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(60)
def test_partial_page_writes_to_a_write_only_file_and_appends(wb_daemon: Daemon,
                                                              pod_name: str) -> None:
    """The kernel reads the rest of a page it writes part of, though the caller opened
    the file write-only; and it places O_APPEND writes itself, from two descriptors."""
    wb_daemon.apply(pod_manifest(pod_name, "    - name: scratch\n      emptyDir: {}\n"))
    served = wb_daemon.volume_path(pod_name, "scratch")
    (served / "f").write_bytes(b"a" * 10_000)
    fd = os.open(served / "f", os.O_WRONLY)
    os.pwrite(fd, b"BBB", 4095)  # across a page boundary, in the middle of the file
    os.close(fd)
    assert (served / "f").read_bytes() == b"a" * 4095 + b"BBB" + b"a" * 5902
    first = os.open(served / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    second = os.open(served / "log", os.O_WRONLY | os.O_APPEND)
    for i in range(50):
        os.write(first if i % 2 else second, b"%02d\n" % i)
    os.close(first)
    os.close(second)
    assert (served / "log").read_bytes() == b"".join(b"%02d\n" % i for i in range(50))
    wb_daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(60)
def test_host_path_data_crosses_at_once_both_ways(wb_daemon: Daemon, host_dir: Path,
                                                  pod_name: str) -> None:
    base = host_dir / pod_name
    base.mkdir(mode=0o777)
    (base / "f").write_bytes(b"from the host")
    wb_daemon.apply(pod_manifest(pod_name, f"    - name: hp\n      hostPath:\n"
                                           f"        path: {base}\n"))
    served = wb_daemon.volume_path(pod_name, "hp")
    fd = os.open(served / "f", os.O_RDWR)
    try:
        assert os.pread(fd, 100, 0) == b"from the host"
        with open(base / "f", "r+b") as f:  # the host changes it in place
            f.write(b"FROM")
        assert os.pread(fd, 100, 0) == b"FROM the host"  # no reopen, no wait
        os.pwrite(fd, b"vol", 0)  # not closed, not synced: the host sees it
        assert (base / "f").read_bytes() == b"volM the host"
        with open(base / "f", "ab") as f:  # the host appends
            f.write(b", more")
        assert os.pread(fd, 100, 0) == b"volM the host, more"
    finally:
        os.close(fd)
    wb_daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(90)
def test_nfs_data_written_and_closed_is_on_the_server(wb_daemon: Daemon, nfs_share: NfsShare,
                                                      pod_name: str) -> None:
    wb_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    served = wb_daemon.volume_path(pod_name, "data")
    data = os.urandom(3 * 1024 * 1024 + 123)
    with open(served / "blob", "wb") as f:
        for start in range(0, len(data), 4096):
            f.write(data[start:start + 4096])
    assert (nfs_share.dir / "blob").read_bytes() == data
    (nfs_share.dir / "blob").write_bytes(b"changed on the server")
    assert (served / "blob").read_bytes() == b"changed on the server"
    wb_daemon.cli("delete", "pod", pod_name)

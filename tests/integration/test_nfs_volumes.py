"""Inline nfs: volumes end to end: a real daemon, a real FUSE mount, a real nfs-ganesha."""

from __future__ import annotations

import errno
import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import Ganesha, NfsShare, new_share
from tests.waiting import wait_until
from volfs.ganesha import free_port
from volfs.stores.nfs import open_store

SCRATCH = """\
    - name: scratch
      emptyDir: {}
"""


def _as_user(uid: int, cwd: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as uid:uid, started in ``cwd`` (a volume): the tree above a volume
    is root's, so the process enters as root and drops to the user there, as a
    container reaches its volume through a bind mount root made."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "sh", "-c", script],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_a_pod_writes_to_the_server_and_the_data_outlives_it(shared_daemon: Daemon,
                                                             nfs_share: NfsShare,
                                                             pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    assert path == (shared_daemon.root / "pods" / uid / "volumes" / "kubernetes.io~nfs"
                    / "data")
    done = _as_user(1000, path, "mkdir logs && echo hello > logs/first.txt")
    assert done.returncode == 0, done.stderr
    on_server = nfs_share.dir / "logs" / "first.txt"
    assert on_server.read_text() == "hello\n"
    assert (on_server.stat().st_uid, on_server.stat().st_gid) == (1000, 1000)

    shared_daemon.cli("delete", "pod", pod_name)
    assert not path.exists()
    assert on_server.read_text() == "hello\n"  # deleting the pod leaves the data

    second = pod_name + "-b"
    shared_daemon.apply(pod_manifest(second, nfs_share.volume()))
    again = shared_daemon.volume_path(second, "data")
    assert (again / "logs" / "first.txt").read_text() == "hello\n"
    pod = shared_daemon.pod(second)
    volume = pod["status"]["volumes"][0]
    assert volume["kind"] == "nfs" and volume["server"] == "127.0.0.1"
    assert volume["readOnly"] is False
    described = shared_daemon.cli("describe", "pod", second).stdout
    assert "NFS (an NFS mount that lasts the lifetime of a pod)" in described
    shared_daemon.cli("delete", "pod", second)


def test_posix_calls_through_the_mount(shared_daemon: Daemon, nfs_share: NfsShare,
                                       pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    (path / "a").mkdir()
    (path / "a" / "f").write_bytes(b"x" * 100_000)
    os.link(path / "a" / "f", path / "twin")
    assert (path / "twin").stat().st_nlink == 2
    assert (path / "twin").stat().st_ino == (path / "a" / "f").stat().st_ino
    os.symlink("a/f", path / "sym")
    assert (path / "sym").read_bytes()[:3] == b"xxx"
    os.rename(path / "a", path / "b")
    assert sorted(os.listdir(path)) == ["b", "sym", "twin"]
    os.mkfifo(path / "pipe")
    assert stat.S_ISFIFO(os.lstat(path / "pipe").st_mode)
    assert stat.S_ISFIFO((nfs_share.dir / "pipe").lstat().st_mode)
    with open(path / "b" / "f", "r+b") as f:
        f.truncate(10)
        os.unlink(path / "b" / "f")
        os.unlink(path / "twin")
        f.seek(0)
        assert f.read() == b"x" * 10  # unlinked but open: still readable
        assert "f" not in os.listdir(path / "b")
    assert os.listdir(nfs_share.dir / "b") == []
    with pytest.raises(OSError) as info:
        os.setxattr(path / "sym", "user.x", b"1", follow_symlinks=False)
    assert info.value.errno in (errno.ENOTSUP, errno.EPERM)
    os.rmdir(path / "b")
    with pytest.raises(OSError) as info:
        os.rename(path / "pipe", shared_daemon.root / "pods" / "pipe")
    assert info.value.errno in (errno.EXDEV, errno.EROFS)
    shared_daemon.cli("delete", "pod", pod_name)


def test_open_files_whose_last_name_is_gone_have_no_link_left(shared_daemon: Daemon,
                                                              nfs_share: NfsShare,
                                                              pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    (path / "over").write_text("replaced")
    (path / "new").write_text("new")
    with open(path / "gone", "w") as gone, open(path / "over") as over:
        os.unlink(path / "gone")
        os.rename(path / "new", path / "over")
        assert os.fstat(gone.fileno()).st_nlink == 0  # as after unlink(2) anywhere
        assert os.fstat(over.fileno()).st_nlink == 0
    wait_until(lambda: sorted(os.listdir(nfs_share.dir)) == ["over"], 10,
               "the unlinked files stay on the server after their last close")
    shared_daemon.cli("delete", "pod", pod_name)


def test_times_nfsv3_cannot_carry_and_times_of_symlinks(shared_daemon: Daemon,
                                                        nfs_share: NfsShare,
                                                        pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    (path / "f").write_text("f")
    # nfstime3 seconds are a uint32: clamped, as Linux's NFSv3 client does, never wrapped
    last = (2**32 - 1) * 10**9
    for asked, kept in ((2**32 * 10**9, last), (2**40 * 10**9 + 5, last), (-10**9, 0),
                        (last - 1, last - 1)):
        os.utime(path / "f", ns=(asked, asked))
        assert os.stat(path / "f").st_mtime_ns == kept, asked
        assert (nfs_share.dir / "f").stat().st_mtime_ns == kept, asked
    # utimensat(AT_SYMLINK_NOFOLLOW) asks the server to set the link's times, never the
    # target's (nfs-ganesha leaves a symlink's times as they are: see docs/nfs.md)
    os.symlink("f", path / "link")
    target = (nfs_share.dir / "f").stat().st_mtime_ns
    os.utime(path / "link", ns=(10**18, 10**18), follow_symlinks=False)
    assert (nfs_share.dir / "f").stat().st_mtime_ns == target
    assert os.lstat(path / "link").st_mtime_ns == os.lstat(nfs_share.dir / "link").st_mtime_ns
    shared_daemon.cli("delete", "pod", pod_name)


def _remove_as_another_client(share: NfsShare, name: bytes) -> None:
    async def remove() -> None:
        store = await open_store(share.server, share.path())
        await store.unlink((await store.open_root()).handle, name)
        await store.close()

    trio.run(remove)


def test_an_open_sees_a_file_another_client_removed(shared_daemon: Daemon,
                                                    nfs_share: NfsShare,
                                                    pod_name: str) -> None:
    """Close-to-open, as NFS clients keep it: an open asks the server, not the name cache."""
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    (path / "gone").write_text("old")
    (path / "again").write_text("old")
    assert (path / "gone").read_text() == (path / "again").read_text() == "old"

    _remove_as_another_client(nfs_share, b"gone")
    _remove_as_another_client(nfs_share, b"again")
    with pytest.raises(FileNotFoundError):
        (path / "gone").open()
    (path / "again").write_text("new")  # made again, not written into the removed file
    assert (nfs_share.dir / "again").read_text() == "new"
    assert (path / "again").read_text() == "new"
    shared_daemon.cli("delete", "pod", pod_name)


def test_a_new_file_with_a_removed_files_inode_number_is_a_new_file(shared_daemon: Daemon,
                                                                     nfs_share: NfsShare,
                                                                     pod_name: str) -> None:
    """A server's filesystem gives the inode number of a removed file to the next new
    one (ext4 does at once); only the file handle tells them apart."""
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    for attempt in range(20):
        old, new = f"old{attempt}", f"new{attempt}"
        (path / old).write_text("old")
        held = (path / old).stat()  # the kernel keeps this inode while volfs knows it
        number = (nfs_share.dir / old).stat().st_ino
        _remove_as_another_client(nfs_share, old.encode())
        (nfs_share.dir / new).write_text("new")
        if (nfs_share.dir / new).stat().st_ino == number:
            break
    else:
        pytest.fail("the server's filesystem never reused an inode number")
    assert (path / new).read_text() == "new"
    assert (path / new).stat().st_ino != held.st_ino
    shared_daemon.cli("delete", "pod", pod_name)


def test_read_only_volumes_refuse_changes(shared_daemon: Daemon, nfs_share: NfsShare,
                                          pod_name: str) -> None:
    (nfs_share.dir / "published").write_text("read me")
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume(read_only=True)))
    path = shared_daemon.volume_path(pod_name, "data")
    assert (path / "published").read_text() == "read me"
    for change in (lambda: (path / "new").write_text("no"),
                   lambda: (path / "published").unlink(),
                   lambda: (path / "dir").mkdir(),
                   lambda: os.chmod(path / "published", 0o600)):
        with pytest.raises(OSError) as info:
            change()
        assert info.value.errno == errno.EROFS
    assert shared_daemon.pod(pod_name)["status"]["volumes"][0]["readOnly"] is True
    shared_daemon.cli("delete", "pod", pod_name)
    assert os.listdir(nfs_share.dir) == ["published"]


def test_a_server_that_does_not_answer_refuses_the_pod(shared_daemon: Daemon,
                                                       nfs_share: NfsShare,
                                                       pod_name: str) -> None:
    port = free_port()
    volumes = SCRATCH + f"""\
    - name: data
      nfs:
        server: 127.0.0.1
        path: "/export?nfsport={port}&mountport={port}&soft&timeo=10&retrans=1"
"""
    started = time.monotonic()
    result = shared_daemon.cli("apply", "-f", "-", input=pod_manifest(pod_name, volumes),
                               check=False)
    assert time.monotonic() - started < 10
    assert result.returncode != 0
    line = result.stderr.strip()
    assert line.count("\n") == 0, line
    assert line.endswith(f"pod {pod_name}: volume data: nfs 127.0.0.1:/export: "
                         "server not responding (connection refused)"), line
    assert shared_daemon.cli("get", "pod", pod_name, check=False).returncode != 0


def test_a_missing_directory_or_bad_option_refuses_the_pod(shared_daemon: Daemon,
                                                           nfs_share: NfsShare,
                                                           pod_name: str) -> None:
    missing = nfs_share.volume().replace(nfs_share.sub_dir, nfs_share.sub_dir + "/nope")
    result = shared_daemon.cli("apply", "-f", "-", input=pod_manifest(pod_name, missing),
                               check=False)
    assert result.returncode != 0
    assert "no such directory on the server" in result.stderr
    bad = nfs_share.volume(nfsvers="4.1")
    result = shared_daemon.cli("apply", "-f", "-", input=pod_manifest(pod_name, bad),
                               check=False)
    assert result.returncode != 0
    assert "volfs speaks NFS version 3 only" in result.stderr


_WRITER = r"""
import os, sys, time
f = open(sys.argv[1], "wb", buffering=0)
def step(data):
    started = time.monotonic()
    try:
        f.write(data)
        os.fsync(f.fileno())
        code = 0
    except OSError as exc:
        code = exc.errno
    print(code, time.monotonic() - started, flush=True)
step(b"a" * 65536)
sys.stdin.readline()
step(b"b" * 65536)
sys.stdin.readline()
step(b"c" * 65536)
try:
    f.close()
    print(0, flush=True)
except OSError as exc:
    print(exc.errno, flush=True)
"""


@pytest.mark.slow
def test_a_server_that_goes_away_gives_eio_in_time_and_other_volumes_keep_working(
        daemon: Daemon, own_ganesha: Ganesha, pod_name: str) -> None:
    share = new_share(own_ganesha, "outage")
    volumes = SCRATCH + share.volume(soft=True, timeo=10, retrans=1)  # EIO after ~2 s
    daemon.apply(pod_manifest(pod_name, volumes))
    data = daemon.volume_path(pod_name, "data")
    scratch = daemon.volume_path(pod_name, "scratch")
    # A container's process writing and fsyncing; the test itself holds no file of the volume.
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(data / "stream.bin")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().split()[0] == "0"
        own_ganesha.stop()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        # Meanwhile the EmptyDir works without waiting: all of it is done while the
        # writer's call still waits for the server (an order, not a time: nothing
        # from the writer yet), and the daemon answers its API.
        for i in range(5):
            (scratch / f"f{i}").write_text("still here")
            assert (scratch / f"f{i}").read_text() == "still here"
        assert not select.select([writer.stdout], [], [], 0)[0], "the EmptyDir waited"
        assert daemon.cli("get", "pods").returncode == 0
        code, seconds = writer.stdout.readline().split()
        assert int(code) == errno.EIO
        assert 1.0 <= float(seconds) < 6.0

        own_ganesha.start()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().split()[0] == "0"  # the same descriptor works again
        assert writer.stdout.readline().strip() == "0"  # and closes cleanly
        assert writer.wait(30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    with open(data / "after.txt", "w") as f:
        f.write("resumed")
    assert (share.dir / "after.txt").read_text() == "resumed"
    content = (share.dir / "stream.bin").read_bytes()
    assert content.startswith(b"a" * 65536) and content.endswith(b"c" * 65536)


def test_a_restarted_daemon_serves_the_volume_again(daemon: Daemon, nfs_share: NfsShare,
                                                    pod_name: str) -> None:
    daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = daemon.volume_path(pod_name, "data")
    (path / "kept.txt").write_text("across restarts")
    daemon.stop()
    assert (nfs_share.dir / "kept.txt").read_text() == "across restarts"
    daemon.start()
    assert daemon.volume_path(pod_name, "data") == path
    assert (path / "kept.txt").read_text() == "across restarts"
    daemon.kill9()
    daemon.start()
    assert (path / "kept.txt").read_text() == "across restarts"


def test_large_files_round_trip(shared_daemon: Daemon, nfs_share: NfsShare,
                                pod_name: str, tmp_path: Path) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(8 << 20))
    subprocess.run(["dd", f"if={source}", f"of={path / 'copy.bin'}", "bs=1M", "conv=fsync"],
                   check=True, capture_output=True)
    assert (nfs_share.dir / "copy.bin").read_bytes() == source.read_bytes()
    back = subprocess.run(["dd", f"if={path / 'copy.bin'}", "bs=256k"], check=True,
                          capture_output=True).stdout
    assert back == source.read_bytes()
    shared_daemon.cli("delete", "pod", pod_name)


def test_a_stopping_daemon_closes_every_store_after_the_mount_is_gone(
        tmp_path: Path, nfs_share: NfsShare, pod_name: str) -> None:
    daemon = Daemon(tmp_path / "volfs", extra_args=["--debug"]).start()
    try:
        daemon.apply(pod_manifest(pod_name, nfs_share.volume() + SCRATCH))
        (daemon.volume_path(pod_name, "data") / "f").write_text("kept")
        assert daemon.stop() == 0
    finally:
        daemon.stop()
    log = daemon.log_path.read_text()
    unmounted = log.index(f"{daemon.root} unmounted")
    closed = log.index(f"nfs {nfs_share.server}: connection dropped: closed")
    assert unmounted < closed  # the mount stops first, then the stores are closed
    assert "Traceback" not in log
    assert (nfs_share.dir / "f").read_text() == "kept"

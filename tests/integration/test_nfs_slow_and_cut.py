"""An NFS server that answers slowly, or drops the connection in the middle of a reply.

The volumes reach the worker's nfs-ganesha through :class:`NfsProxy`, which holds or
cuts the server's replies. What users must see:

- a connection cut mid-reply is taken up again and the call sent again: a hard
  volume's writer never sees an error, and every byte it fsync'ed reads back, through
  the mount and on the server's disk;
- a slow server is waited for (within the soft bound, calls succeed), and the
  daemon's other volumes keep answering meanwhile;
- a server slower than the soft bound gives EIO within that bound, not a hang, and
  once it answers in time again the volume works again (a late reply to a call that
  was given up on is dropped, not taken for another's).
"""

from __future__ import annotations

import errno
import hashlib
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import Ganesha, NfsShare
from tests.integration.nfs_proxy import NfsProxy

SCRATCH = "    - name: scratch\n      emptyDir: {}\n"


@pytest.fixture
def proxy(ganesha: Ganesha) -> Iterator[NfsProxy]:
    with NfsProxy(ganesha.nfs_port) as proxy:
        yield proxy


def _volume(name: str, share: NfsShare, proxy: NfsProxy, options: str) -> str:
    """A pod's NFS volume that reaches the share's NFS port through ``proxy``."""
    path = (f"{share.export}?nfsport={proxy.port}&mountport={share.ganesha.mount_port}"
            f"&{options}")
    return (f"    - name: {name}\n      nfs:\n        server: {share.server}\n"
            f"        path: \"{path}\"\n")


def _write_in_pieces(path: Path, content: bytes, piece: int, fsync_every: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for n, offset in enumerate(range(0, len(content), piece)):
            os.write(fd, content[offset: offset + piece])
            if n % fsync_every == fsync_every - 1:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.timeout(180)
def test_replies_cut_midway_lose_no_byte(shared_daemon: Daemon, nfs_share: NfsShare,
                                         proxy: NfsProxy, pod_name: str) -> None:
    daemon = shared_daemon
    daemon.apply(pod_manifest(pod_name, _volume("data", nfs_share, proxy, "hard&timeo=10")))
    try:
        volume = daemon.volume_path(pod_name, "data")
        content = os.urandom(8 << 20)
        proxy.cut_every = 4  # from now on: every 4th reply is cut off midway
        _write_in_pieces(volume / "cut.bin", content, 64 << 10, fsync_every=16)
        read_back = (volume / "cut.bin").read_bytes()  # reads are cut too
        proxy.cut_every = 0
        cuts, connections = proxy.stats.cuts, proxy.stats.connections
    finally:
        proxy.cut_every = 0
        daemon.cli("delete", "pod", pod_name)
    expected = hashlib.sha256(content).hexdigest()
    assert hashlib.sha256(read_back).hexdigest() == expected
    assert _digest(nfs_share.dir / "cut.bin") == expected
    assert cuts >= 3, cuts  # the test did cut replies
    assert connections > cuts, (connections, cuts)  # and the daemon connected again each time
    print(f"\ncut mid-reply: {cuts} replies of {proxy.stats.replies}, "
          f"{connections} connections, 8 MiB written and read back intact")


@pytest.mark.timeout(180)
def test_a_slow_server_is_waited_for_and_other_volumes_answer_meanwhile(
        shared_daemon: Daemon, nfs_share: NfsShare, proxy: NfsProxy, pod_name: str) -> None:
    daemon = shared_daemon
    proxy.delay = 0.1  # every reply, one after another
    daemon.apply(pod_manifest(pod_name, SCRATCH + _volume(
        "slow", nfs_share, proxy, "soft&timeo=20&retrans=2")))  # soft bound: 6 s
    try:
        scratch = daemon.volume_path(pod_name, "scratch")
        slow = daemon.volume_path(pod_name, "slow")
        content = os.urandom(2 << 20)
        latencies: list[float] = []
        done = threading.Event()
        errors: list[BaseException] = []

        def write_and_read() -> None:
            try:
                _write_in_pieces(slow / "slow.bin", content, 128 << 10, fsync_every=4)
                assert (slow / "slow.bin").read_bytes() == content
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)
            finally:
                done.set()

        writer = threading.Thread(target=write_and_read)
        writer.start()
        n = 0
        while not done.is_set():
            started = time.monotonic()
            (scratch / f"probe-{n}").write_bytes(b"x")
            os.stat(scratch / f"probe-{n}")
            latencies.append(time.monotonic() - started)
            n += 1
        writer.join()
    finally:
        proxy.delay = 0
        daemon.cli("delete", "pod", pod_name)
    assert not errors, errors
    assert _digest(nfs_share.dir / "slow.bin") == hashlib.sha256(content).hexdigest()
    assert latencies, "the EmptyDir was not used while the NFS volume waited"
    print(f"\nslow server (0.1 s a reply): 2 MiB written, fsync'ed and read back; "
          f"{len(latencies)} EmptyDir create+stat meanwhile, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")


@pytest.mark.timeout(180)
def test_a_server_slower_than_the_soft_bound_gives_eio_then_recovers(
        shared_daemon: Daemon, nfs_share: NfsShare, proxy: NfsProxy, pod_name: str) -> None:
    daemon = shared_daemon
    (nfs_share.dir / "before").write_bytes(b"before")
    daemon.apply(pod_manifest(pod_name, _volume(
        "late", nfs_share, proxy, "soft&timeo=5&retrans=1")))  # soft bound: 1 s
    try:
        volume = daemon.volume_path(pod_name, "late")
        assert (volume / "before").read_bytes() == b"before"
        proxy.delay = 3.0  # every reply comes after the call was given up on
        (nfs_share.dir / "during").write_bytes(b"during")
        started = time.monotonic()
        with pytest.raises(OSError) as failed:
            os.stat(volume / "during")  # a LOOKUP the kernel has not cached
        waited = time.monotonic() - started
        proxy.delay = 0
        (nfs_share.dir / "after").write_bytes(b"after")
        # Late replies to the calls given up on still arrive; they must not be taken
        # for the answers to new calls. The volume answers right once the server does.
        deadline = time.monotonic() + 60
        while True:
            try:
                assert (volume / "after").read_bytes() == b"after"
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert (volume / "during").read_bytes() == b"during"
        assert (volume / "before").read_bytes() == b"before"
    finally:
        proxy.delay = 0
        daemon.cli("delete", "pod", pod_name)
    assert failed.value.errno == errno.EIO, failed.value
    assert waited < 30, waited  # a bounded wait (the bound is 1 s a call), not a hang
    print(f"\nserver slower than the soft bound: EIO after {waited:.2f} s, then recovered")

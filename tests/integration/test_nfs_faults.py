"""NFS faults under load: the server stopped in the middle of writes, killed in the
middle of a large read, and what the volumes' users see.

``test_nfs_volumes.py`` checks one writer's EIO bound on a soft mount, step by step.
Here writers stream data through a ``soft`` and a ``hard`` volume while the server is
stopped for OUTAGE_SECONDS (3 s; ``scripts/nfs-faults SECONDS`` runs longer outages
and prints the figures, ``VOLFS_NFS_OUTAGE_SECONDS``):

- the soft writer gets EIO (nothing else), and after the server is back it goes on
  from its last fsync'ed length; the hard writer never sees an error, its calls wait;
- meanwhile an EmptyDir of the same daemon answers: lookups of its files are timed
  (figures only: the test asserts that every call returned);
- afterwards every fsync'ed prefix of both files, before and after the outage,
  reads back with its checksum, through the mount and on the server's disk.

And a server killed (``kill -9``, its connections dropped in the middle of replies)
while large reads are in flight, and started again once the soft read has ended: the
soft read ends with EIO (or the file's exact bytes, had it got them all), the hard
one waits and ends with the exact bytes; never wrong bytes, never a hang.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crash import Writer, verify
from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import Ganesha, NfsShare, new_share
from tests.waiting import wait_until

OUTAGE_SECONDS = float(os.environ.get("VOLFS_NFS_OUTAGE_SECONDS", "3"))
SCRATCH = "    - name: scratch\n      emptyDir: {}\n"


def _soft_and_hard(share: NfsShare) -> str:
    """Two volumes on ``share``: ``soft`` (EIO after about 2 s) and ``hard`` (calls are
    sent again through an outage; EIO only after 2 minutes)."""
    return (share.volume("soft", soft=True, timeo=10, retrans=1)
            + share.volume("hard", hard=True, timeo=10))


def _backing_dir(daemon: Daemon, pod: str, volume: str) -> Path:
    """Where an EmptyDir's bytes are on disk (under the state dir)."""
    uid = daemon.pod(pod)["metadata"]["uid"]
    return daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir" / volume


def _lookups_until(scratch: Path, backing: Path, done: Any) -> list[float]:
    """Stat new files of an EmptyDir until ``done()``: each a LOOKUP the daemon must
    answer (made on its disk directly, so the kernel has no entry cached). Seconds each."""
    latencies = []
    i = 0
    while not done():
        name = f"probe-{i}"
        (backing / name).touch()
        started = time.monotonic()
        os.stat(scratch / name)
        latencies.append(time.monotonic() - started)
        i += 1
    return latencies


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE_SECONDS + 240)
def test_an_outage_mid_write_gives_soft_eio_hard_waits_and_corrupts_nothing(
        daemon: Daemon, own_ganesha: Ganesha, pod_name: str, tmp_path: Path) -> None:
    share = new_share(own_ganesha, "outage")
    daemon.apply(pod_manifest(pod_name, SCRATCH + _soft_and_hard(share)))
    scratch = daemon.volume_path(pod_name, "scratch")
    backing = _backing_dir(daemon, pod_name, "scratch")
    stop, resume = multiprocessing.Event(), multiprocessing.Event()
    errored = {v: multiprocessing.Event() for v in ("soft", "hard")}
    results: Any = multiprocessing.Queue()
    writers = {v: Writer(daemon.volume_path(pod_name, v) / f"{v}.bin",
                         tmp_path / f"{v}.journal", seed=i, fsync_every=2)
               for i, v in enumerate(("soft", "hard"))}
    for volume, writer in writers.items():
        writer.start(stop, resume, results, errored[volume])
    try:
        wait_until(lambda: all(len(w.acknowledged()) >= 3 for w in writers.values()), 60,
                   "both writers fsync'ed a few times")
        before = {v: len(w.acknowledged()) for v, w in writers.items()}
        own_ganesha.stop()
        stopped = time.monotonic()
        latencies = _lookups_until(
            scratch, backing, lambda: errored["soft"].is_set()
            and time.monotonic() - stopped >= OUTAGE_SECONDS)
        during = {v: len(w.acknowledged()) for v, w in writers.items()}
        own_ganesha.start()
        restarted = time.monotonic()
        resume.set()
        wait_until(lambda: all(len(w.acknowledged()) >= during[v] + 3
                               for v, w in writers.items()), 120,
                   "both writers fsync'ed again after the server came back")
        resumed = time.monotonic() - restarted
    finally:
        stop.set()
        resume.set()
        for writer in writers.values():
            assert writer.process is not None
            writer.process.join(150)
            if writer.process.is_alive():
                writer.process.kill()
    assert all(w.process is not None and w.process.exitcode == 0 for w in writers.values()), \
        "a writer hung or failed"
    outcome = {r["path"]: r for r in (results.get(timeout=10) for _ in writers)}
    soft, hard = (outcome[str(writers[v].path)] for v in ("soft", "hard"))

    assert set(soft["errors"]) == {"EIO"}, soft  # EIO, and nothing else
    assert hard["errors"] == {}, hard  # hard: waits, never fails (within its 2 minutes)
    assert latencies, "no lookup on the EmptyDir returned during the outage"
    verified = {}
    for volume, writer in writers.items():
        acknowledged = writer.acknowledged()
        verified[volume] = verify(writer.path, acknowledged)  # through the mount
        assert verify(share.dir / writer.path.name, acknowledged) == verified[volume]
    assert "Traceback" not in daemon.log(), daemon.log()

    print(f"\nnfs outage of {OUTAGE_SECONDS:g} s (server stopped) during writes:"
          f"\n  EmptyDir lookups meanwhile: {len(latencies)}, median "
          f"{_ms(statistics.median(latencies))}, max {_ms(max(latencies))}"
          f"\n  soft (timeo=1 s, retrans=1): EIO {soft['errors']['EIO']} times, longest "
          f"call {soft['longest']:.2f} s; hard: no error, longest call {hard['longest']:.2f} s"
          f"\n  fsyncs before / during / after the outage: "
          + ", ".join(f"{v} {before[v]} / {during[v] - before[v]} / "
                      f"{len(writers[v].acknowledged()) - during[v]}" for v in writers)
          + f"\n  writes resumed {resumed:.2f} s after the server started again"
          f"\n  verified through the mount and on the server: "
          + ", ".join(f"{v} {verified[v] / 2**20:.1f} MiB" for v in writers))


_READER = r"""
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
digest = hashlib.sha256()
try:
    digest.update(os.read(fd, 4 << 20))
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            break
        digest.update(data)
    print("read", digest.hexdigest(), flush=True)
except OSError as exc:
    print("error", exc.errno, flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_during_large_reads_gives_the_right_bytes_or_eio(
        daemon: Daemon, own_ganesha: Ganesha, pod_name: str) -> None:
    share = new_share(own_ganesha, "killed")
    content = os.urandom(64 << 20)
    (share.dir / "big.bin").write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()
    daemon.apply(pod_manifest(pod_name, _soft_and_hard(share)))
    paths = {v: daemon.volume_path(pod_name, v) / "big.bin" for v in ("soft", "hard")}
    readers = {v: subprocess.Popen([sys.executable, "-c", _READER, str(p)], text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for v, p in paths.items()}
    outcomes: dict[str, list[str]] = {}
    try:
        for reader in readers.values():
            assert reader.stdout is not None
            assert reader.stdout.readline().strip() == "ready"
        for reader in readers.values():
            assert reader.stdin is not None
            reader.stdin.write("go\n")
            reader.stdin.flush()
        own_ganesha.kill()  # while both read: replies cut off in the middle
        # The soft read ends (EIO after its bound, or done if it got every byte first);
        # the hard one waits for the server.
        wait_until(lambda: readers["soft"].poll() is not None, 30, "the soft read ended")
        assert readers["hard"].poll() is None
        own_ganesha.start()
        for volume, reader in readers.items():
            out, _ = reader.communicate(timeout=180)  # the hard bound, and some
            outcomes[volume] = out.split()
    finally:
        for reader in readers.values():
            if reader.poll() is None:
                reader.kill()
                reader.wait()
    for volume, words in outcomes.items():
        assert words in (["read", expected], ["error", str(errno.EIO)]), (volume, words)
    assert outcomes["hard"] == ["read", expected]  # hard re-sends: the read completes
    for path in paths.values():  # and nothing wrong stayed cached
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected
    print(f"\nnfs server killed during 64 MiB reads, started again: soft "
          f"{outcomes['soft'][0]}, hard {outcomes['hard'][0]} (right bytes)")

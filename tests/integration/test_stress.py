"""Every kind of volume at once, under data and metadata load, with every byte checked.

One pod has an EmptyDir on disk, one in memory, a HostPath and an NFS volume. On
each, a process writes, truncates, renames and reads back files against a model of
their bytes and another makes a storm of metadata calls (NFS gets two); one more
holds files open on all four while it opens, writes and closes others across them.
At the end: every byte as written, no call failed with an errno a local filesystem
would not give (EIO above all), no traceback in the daemon's log, and the NFS
server saw one connection, not thousands.

The suite runs it for STRESS_SECONDS (20 s); ``scripts/stress MINUTES`` runs the
same test for longer and prints the figures (``VOLFS_STRESS_SECONDS`` sets it).
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.loads import EXPECTED_ERRNOS, data_load, handle_load, metadata_load
from tests.integration.nfs import Ganesha, connections_reset, new_share, server_sockets

STRESS_SECONDS = float(os.environ.get("VOLFS_STRESS_SECONDS", "20"))
VOLUMES = ("disk", "memory", "host", "nfs")
FD_SLACK = 64  # files the loads hold open at one moment and not the next
# Flat memory is judged over minutes only (the suite's 20 s are still filling caches):
# from a quarter of the run to its end, RSS may grow by this much and no more.
RSS_JUDGED_AFTER_SECONDS = 120
RSS_SLACK = 16 << 20


@pytest.fixture
def pod_volumes(tmp_path: Path, own_ganesha: Ganesha, pod_name: str
                ) -> Iterator[tuple[Daemon, dict[str, Path]]]:
    host = tmp_path / "host"
    host.mkdir()
    share = new_share(own_ganesha, pod_name)
    volumes = ("    - name: disk\n      emptyDir: {}\n"
               "    - name: memory\n      emptyDir:\n        medium: Memory\n"
               f"    - name: host\n      hostPath:\n        path: {host}\n"
               "        type: Directory\n" + share.volume("nfs"))
    daemon = Daemon(tmp_path / "volfs", extra_args=["--allow-host-path", str(host)]).start()
    try:
        daemon.apply(pod_manifest(pod_name, volumes))
        yield daemon, {name: daemon.volume_path(pod_name, name) for name in VOLUMES}
        daemon.cli("delete", "pod", pod_name)
    finally:
        daemon.stop()


def _workers(paths: dict[str, Path], results: Any) -> list[multiprocessing.Process]:
    jobs: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    for seed, volume in enumerate(VOLUMES):
        jobs.append((data_load, (str(paths[volume]), seed, STRESS_SECONDS, results)))
        jobs.append((metadata_load, (str(paths[volume]), seed, STRESS_SECONDS, results)))
    jobs.append((metadata_load, (str(paths["nfs"]), 99, STRESS_SECONDS, results)))
    jobs.append((handle_load, ([str(p) for p in paths.values()], 0, STRESS_SECONDS, results)))
    return [multiprocessing.Process(target=target, args=args) for target, args in jobs]


@pytest.mark.timeout(STRESS_SECONDS + 180)
def test_every_kind_of_volume_at_once_under_load_keeps_every_byte(
        pod_volumes: tuple[Daemon, dict[str, Path]], own_ganesha: Ganesha) -> None:
    daemon, paths = pod_volumes
    sockets_before = server_sockets(own_ganesha)
    resets_before = connections_reset(own_ganesha)
    results: Any = multiprocessing.Queue()
    workers = _workers(paths, results)
    started = time.monotonic()
    for worker in workers:
        worker.start()
    most_sockets = sockets_before
    deadline = started + STRESS_SECONDS + 90  # past it, some call has not returned
    volfs = psutil.Process(daemon.pid)
    # The daemon's descriptors and memory once the load's working set is made (a quarter
    # in), and at the end: flat means the second is no larger than the first.
    settled: tuple[int, int] | None = None
    try:
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            most_sockets = max(most_sockets, server_sockets(own_ganesha))
            if settled is None and time.monotonic() > started + STRESS_SECONDS / 4:
                settled = (volfs.num_fds(), volfs.memory_info().rss)
            time.sleep(0.2)
        hung = [w.name for w in workers if w.is_alive()]
        assert not hung, f"{len(hung)} workers still wait on a call"
    finally:
        for worker in workers:
            worker.kill()
            worker.join(5)
    outcomes = [results.get(timeout=10) for _ in workers]
    resets = connections_reset(own_ganesha) - resets_before
    assert settled is not None
    end = (volfs.num_fds(), volfs.memory_info().rss)

    print(f"\nstress: {len(workers)} processes for {time.monotonic() - started:.0f} s on "
          f"{', '.join(VOLUMES)}; server sockets {sockets_before} before, at most "
          f"{most_sockets} during; connections reset: {resets}; daemon fds {settled[0]} "
          f"at a quarter, {end[0]} at the end; RSS {settled[1] >> 20} MiB at a quarter, "
          f"{end[1] >> 20} MiB at the end")
    for outcome in outcomes:
        print(f"  {outcome['name']}: {outcome['ops']} ops, errors {outcome['errors']}")

    wrong = [(o["name"], o["wrong"]) for o in outcomes if o["wrong"]]
    assert not wrong, wrong
    expected = {errno.errorcode[code] for code in EXPECTED_ERRNOS}
    unexpected = [(o["name"], o["errors"]) for o in outcomes if set(o["errors"]) - expected]
    assert not unexpected, unexpected
    assert all(o["ops"] > 0 for o in outcomes)
    assert most_sockets <= sockets_before + 2, (sockets_before, most_sockets)
    assert resets <= 1, resets
    assert end[0] <= settled[0] + FD_SLACK, (settled, end)  # no descriptor leaks
    if STRESS_SECONDS >= RSS_JUDGED_AFTER_SECONDS:  # scripts/stress: memory stays flat
        assert end[1] <= settled[1] + RSS_SLACK, (settled, end)
    assert "Traceback" not in daemon.log(), daemon.log()

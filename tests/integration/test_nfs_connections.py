"""An NFS volume keeps one connection to its server, whatever its callers do, and
every call it is asked to make returns.

A call that cannot be sent (a symlink target too long for libnfs to encode), or that
the server rejects, is that call's failure, answered at once: it must not cost the
connection, and it must not be sent again and again until its deadline.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import time

import pytest

from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.loads import EXPECTED_ERRNOS, metadata_load
from tests.integration.nfs import (
    Ganesha,
    NfsShare,
    connections_reset,
    new_share,
    server_sockets,
)

LOAD_SECONDS = 15.0
LOAD_PROCESSES = 4


def test_a_symlink_target_too_long_to_send_is_enametoolong_at_once(
        shared_daemon: Daemon, nfs_share: NfsShare, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, nfs_share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    resets = connections_reset(nfs_share.ganesha)
    for length in (4000, 4095):
        with pytest.raises(OSError) as refused:
            os.symlink("t" * length, path / f"long-{length}")
        assert refused.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as refused:
        os.mkdir(path / ("n" * 256))
    assert refused.value.errno == errno.ENAMETOOLONG
    # What fits is made, and the volume goes on answering on the same connection.
    os.symlink("t" * 3000, path / "fits")
    assert os.readlink(path / "fits") == "t" * 3000
    assert (nfs_share.dir / "fits").is_symlink()
    assert connections_reset(nfs_share.ganesha) == resets
    shared_daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(180)
def test_a_mixed_metadata_load_keeps_one_connection_and_every_call_returns(
        own_ganesha: Ganesha, shared_daemon: Daemon, pod_name: str) -> None:
    share = new_share(own_ganesha, pod_name)
    shared_daemon.apply(pod_manifest(pod_name, share.volume()))
    path = shared_daemon.volume_path(pod_name, "data")
    sockets_before = server_sockets(own_ganesha)
    resets_before = connections_reset(own_ganesha)

    done: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=metadata_load,
                                       args=(str(path), seed, LOAD_SECONDS, done))
               for seed in range(LOAD_PROCESSES)]
    for worker in workers:
        worker.start()
    most_sockets = sockets_before
    # Every call returns: a worker outliving its load by a minute waits on a hung call.
    deadline = time.monotonic() + LOAD_SECONDS + 60
    try:
        while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
            most_sockets = max(most_sockets, server_sockets(own_ganesha))
            time.sleep(0.1)
        assert [worker.exitcode for worker in workers] == [0] * LOAD_PROCESSES
    finally:
        for worker in workers:
            worker.kill()
            worker.join(5)
    results = [done.get(timeout=5) for _ in workers]
    assert all(r["ops"] > 100 and r["wrong"] is None for r in results), results
    expected = {errno.errorcode[code] for code in EXPECTED_ERRNOS}
    assert all(set(r["errors"]) <= expected for r in results), results  # no EIO

    assert most_sockets <= sockets_before + 2, (sockets_before, most_sockets)
    assert connections_reset(own_ganesha) - resets_before <= 1
    assert "Traceback" not in shared_daemon.log()
    assert os.listdir(path)  # the volume still answers
    shared_daemon.cli("delete", "pod", pod_name)

"""kill -9 of the daemon in the middle of heavy writes, and the restart: nothing
acknowledged is lost.

One pod has an EmptyDir on disk, a HostPath and an inline NFS volume (a private
nfs-ganesha); a second pod uses a claim bound to an NFS PersistentVolume. A writer
on each of the four volumes appends random chunks and fsyncs every few, journalling
the checksum of every prefix fsync acknowledged (``tests/integration/crash.py``);
meanwhile a client creates pods and claims through the control API and notes each
one the API acknowledged. Then ``kill -9``, in the middle of all that, and a
restart on the same state dir. After each round:

- the state database passes SQLite's ``integrity_check`` (read before the restart);
- every acknowledged prefix of every file written so far (this round's and every
  earlier round's) reads back with its checksum, through the mount;
- both pods have their uids and paths, the claim is Bound to the same PV (and the
  PV to it), and every pod and claim the API acknowledged is there.

The suite runs ROUNDS (2) rounds of ROUND_SECONDS (1 s) of writes;
``scripts/crash ROUNDS SECONDS`` runs more and longer rounds and prints the figures
(``VOLFS_CRASH_ROUNDS``, ``VOLFS_CRASH_SECONDS``).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.crash import Writer, verify
from tests.integration.daemon import Daemon, pod_manifest
from tests.integration.nfs import Ganesha, new_share
from tests.waiting import wait_until

ROUNDS = int(os.environ.get("VOLFS_CRASH_ROUNDS", "2"))
ROUND_SECONDS = float(os.environ.get("VOLFS_CRASH_SECONDS", "1"))
MIN_FSYNCS = 3  # per writer and round, before the kill
VOLUMES = ("disk", "host", "nfs", "claim")


@dataclass
class Rig:
    daemon: Daemon
    journals: Path
    paths: dict[str, Path] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)


def _claim_objects(share_path: str, server: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "crash-pv"},
          "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                   "storageClassName": "manual", "persistentVolumeReclaimPolicy": "Retain",
                   "nfs": {"server": server, "path": share_path}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "crash-claim"},
           "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                    "resources": {"requests": {"storage": "1Gi"}}}}
    return pv, pvc


CLAIM_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: on-claim
spec:
  containers:
    - name: main
      image: busybox
      volumeMounts:
        - {name: claim, mountPath: /data}
  volumes:
    - name: claim
      persistentVolumeClaim: {claimName: crash-claim}
"""


@pytest.fixture
def rig(tmp_path: Path, own_ganesha: Ganesha) -> Iterator[Rig]:
    host = tmp_path / "host"
    host.mkdir()
    inline = new_share(own_ganesha, "crash-inline")
    claimed = new_share(own_ganesha, "crash-claimed")
    daemon = Daemon(tmp_path / "volfs", extra_args=["--allow-host-path", str(host)]).start()
    journals = tmp_path / "journals"
    journals.mkdir()
    rig = Rig(daemon, journals)
    try:
        volumes = ("    - name: disk\n      emptyDir: {}\n"
                   f"    - name: host\n      hostPath:\n        path: {host}\n"
                   "        type: Directory\n" + inline.volume("nfs"))
        daemon.apply(pod_manifest("writers", volumes))
        pv, pvc = _claim_objects(claimed.path(), claimed.server)
        for path, obj in (("/api/v1/persistentvolumes", pv),
                          ("/api/v1/namespaces/default/persistentvolumeclaims", pvc)):
            response = daemon.api("POST", path, obj)
            assert response.status_code == 201, response.text
        daemon.apply(CLAIM_POD)
        rig.uids, paths = _pods(daemon)
        rig.paths = {volume: Path(paths[volume]) for volume in VOLUMES}
        yield rig
    finally:
        daemon.stop()


class ControlClient(threading.Thread):
    """Creates pods and claims through the API until the daemon stops answering; keeps
    the names of those the API acknowledged (201)."""

    def __init__(self, daemon: Daemon, prefix: str) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.prefix = prefix
        self.acknowledged: list[tuple[str, str]] = []  # (resource, name)

    def run(self) -> None:
        transport = httpx.HTTPTransport(uds=str(self.daemon_.socket))
        base = "/api/v1/namespaces/default"
        with httpx.Client(transport=transport, base_url="http://volfs", timeout=30) as client:
            for i in range(1_000_000):
                name = f"{self.prefix}-{i}"
                if i % 2:
                    resource = "persistentvolumeclaims"
                    body: dict[str, Any] = {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name},
                        "spec": {"accessModes": ["ReadWriteOnce"],
                                 "storageClassName": "nothing-provides-this",
                                 "resources": {"requests": {"storage": "1Mi"}}}}
                else:
                    resource = "pods"
                    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                     "volumes": [{"name": "v", "emptyDir": {}}]}}
                try:
                    response = client.post(f"{base}/{resource}", json=body)
                except httpx.HTTPError:
                    return  # the daemon is gone
                if response.status_code != 201:
                    return
                self.acknowledged.append((resource, name))


def _integrity(state_db: Path) -> str:
    conn = sqlite3.connect(state_db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _binding(daemon: Daemon) -> tuple[str, str, str, str]:
    claim = daemon.api("GET", "/api/v1/namespaces/default/persistentvolumeclaims/crash-claim")
    pv = daemon.api("GET", "/api/v1/persistentvolumes/crash-pv")
    assert claim.status_code == 200 and pv.status_code == 200, (claim.text, pv.text)
    c, v = claim.json(), pv.json()
    same = v["spec"]["claimRef"]["uid"] == c["metadata"]["uid"]
    return (c["status"]["phase"], c["spec"]["volumeName"], v["status"]["phase"],
            "same" if same else "other")


def _pods(daemon: Daemon) -> tuple[dict[str, str], dict[str, str]]:
    """The uids of the two pods, and the path of each volume."""
    uids, paths = {}, {}
    for name in ("writers", "on-claim"):
        response = daemon.api("GET", f"/api/v1/namespaces/default/pods/{name}")
        assert response.status_code == 200, response.text
        pod = response.json()
        uids[name] = pod["metadata"]["uid"]
        paths.update({v["name"]: v["path"] for v in pod["status"]["volumes"]})
    return uids, paths


def _round_done(writers: list[Writer], started: float) -> bool:
    return (all(len(w.acknowledged()) >= MIN_FSYNCS for w in writers)
            and time.monotonic() - started >= ROUND_SECONDS)


def _answering(paths: dict[str, Path]) -> bool:
    try:
        for path in paths.values():
            os.stat(path)
            os.listdir(path)
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(ROUNDS * (ROUND_SECONDS + 90) + 120)
def test_kill_9_under_heavy_writes_loses_no_fsynced_byte(rig: Rig) -> None:
    daemon = rig.daemon
    binding = _binding(daemon)
    assert binding == ("Bound", "crash-pv", "Bound", "same"), binding
    written: list[Writer] = []
    figures: list[str] = []
    total_acknowledged = 0
    for round_ in range(ROUNDS):
        stop = multiprocessing.Event()
        writers = [Writer(rig.paths[v] / f"round-{round_}.bin",
                          rig.journals / f"{v}-{round_}.journal", seed=round_ * 10 + i)
                   for i, v in enumerate(VOLUMES)]
        for writer in writers:
            writer.start(stop)
        control = ControlClient(daemon, f"r{round_}")
        control.start()
        started = time.monotonic()
        try:
            wait_until(functools.partial(_round_done, writers, started), ROUND_SECONDS + 60,
                       "every writer had fsync'ed a few times")
            assert all(w.process is not None and w.process.is_alive() for w in writers), \
                "a writer ended before the kill"
            killed = time.monotonic()
            daemon.kill9()
            for writer in writers:  # each meets ENOTCONN on the dead mount; none hangs
                assert writer.process is not None
                writer.process.join(30)
                assert not writer.process.is_alive(), f"{writer.path}: the writer hangs"
            control.join(30)
            assert not control.is_alive(), "a control API client hangs"
        finally:
            stop.set()
            for writer in writers:
                if writer.process is not None and writer.process.is_alive():
                    writer.process.kill()
        written += writers

        assert _integrity(daemon.state_dir / "state.db") == "ok"
        daemon.start()
        wait_until(lambda: _answering(rig.paths), 30, "every volume answers again")
        back = time.monotonic() - killed

        verified = sum(verify(w.path, w.acknowledged()) for w in written)
        this_round = sum(w.acknowledged()[-1][0] for w in writers)
        total_acknowledged += this_round
        assert verified == total_acknowledged  # the prefixes are the files' first bytes
        assert _pods(daemon) == (rig.uids, {v: str(p) for v, p in rig.paths.items()})
        assert _binding(daemon) == binding
        base = "/api/v1/namespaces/default"
        for resource, name in control.acknowledged:
            response = daemon.api("GET", f"{base}/{resource}/{name}")
            assert response.status_code == 200, f"{resource} {name} acknowledged, then lost"
        figures.append(f"round {round_ + 1}: {this_round / 2**20:.1f} MiB fsync'ed "
                       f"({sum(len(w.acknowledged()) for w in writers)} fsyncs), "
                       f"{len(control.acknowledged)} objects created, all there; volumes "
                       f"answering {back:.2f} s after the kill")

    print(f"\ncrash: {ROUNDS} rounds of kill -9 during writes on {', '.join(VOLUMES)}")
    for line in figures:
        print("  " + line)
    print(f"  every fsync'ed byte verified after every restart: "
          f"{total_acknowledged / 2**20:.1f} MiB in {len(written)} files, "
          f"{verified / 2**20:.1f} MiB read back in the last pass")
    assert "Traceback" not in daemon.log(), daemon.log()

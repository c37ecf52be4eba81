"""Long deletes with a real daemon: what the CLI prints to a pipe, and the events that
mark the start and the end of a wipe, with its count.

Whether a look lands while the wipe runs depends on the machine's speed, so these
tests assert what is certain (the closing line, the events, the counts); what a look
sees in the middle is tested below the API, in tests/direct/test_delete_progress.py
and tests/unit/test_cli_progress.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.daemon import VOLFS, Daemon, pod_manifest
from tests.integration.nfs import NfsShare
from tests.integration.test_claims import PVS, SCS, create, phase, pv, pvc, pvcs
from tests.waiting import wait_until

SCRATCH = """\
    - name: scratch
      emptyDir: {}
"""
DIRS, FILES_PER_DIR = 20, 1000


def events_about(daemon: Daemon, uid: str) -> list[dict[str, Any]]:
    items = daemon.api("GET", "/api/v1/namespaces/default/events").json()["items"]
    return [e for e in items if e["involvedObject"].get("uid") == uid]


def fill(directory: Path, dirs: int, files: int) -> None:
    """``dirs`` directories of ``files`` empty files each (made without the daemon)."""
    for d in range(dirs):
        os.mkdir(directory / f"d{d}")
        for f in range(files):
            os.mknod(directory / f"d{d}" / f"f{f}")


def delete_through_a_pipe(daemon: Daemon, *args: str) -> list[str]:
    """``volfs delete ARGS`` with stdout and stderr into one pipe: its lines, in order."""
    done = subprocess.run([VOLFS, "delete", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=daemon.env,
                          timeout=90, check=False)
    assert done.returncode == 0, done.stdout
    assert "\r" not in done.stdout  # a pipe gets lines, never a redrawn one
    return done.stdout.splitlines()


def test_deleting_a_large_empty_dir_reports_its_wipe(shared_daemon: Daemon,
                                                     pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    backing = shared_daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir" / "scratch"
    fill(backing, DIRS, FILES_PER_DIR)
    entries = DIRS * FILES_PER_DIR + DIRS

    lines = delete_through_a_pipe(shared_daemon, "pod", pod_name)
    assert lines[-1] == f'pod "{pod_name}" deleted'
    closing = f"pod default/{pod_name}: deleted volume scratch: {entries:,} entries in "
    assert lines[-2].startswith(closing), lines
    # Any line before is a look taken while the wipe ran: a count, never a redraw.
    for line in lines[:-2]:
        assert line.startswith(f"pod default/{pod_name}: deleting volume scratch: "), lines

    reasons = [(e["reason"], e["message"]) for e in events_about(shared_daemon, uid)]
    wipe = [r for r in reasons if r[0] in ("Deleting", "Deleted")]
    assert wipe[0] == ("Deleting", "Deleting volume scratch: its data goes with the pod")
    assert wipe[1][1].startswith(f"Deleted volume scratch: {entries:,} entries in ")
    assert len(wipe) == 2
    assert not (shared_daemon.state_dir / "pods" / uid).exists()
    assert shared_daemon.cli("get", "pod", pod_name, check=False).returncode != 0


def test_recycling_and_archiving_on_nfs_report_start_and_end(daemon: Daemon,
                                                             nfs_share: NfsShare) -> None:
    # Recycle: a pre-made PV whose directory holds a small tree.
    create(daemon, PVS, pv("again", nfs_share, policy="Recycle"))
    create(daemon, pvcs(), pvc("first"))
    fill(nfs_share.dir, 3, 10)
    (nfs_share.dir / "top").write_text("gone soon")
    lines = delete_through_a_pipe(daemon, "pvc", "first")
    assert lines[-1] == 'persistentvolumeclaim "first" deleted'
    closing = f"persistentvolume again: volume recycled: {nfs_share.path()} emptied: 34 entries in "
    assert lines[-2].startswith(closing), lines
    wait_until(lambda: phase(daemon, f"{PVS}/again") == "Available", 30,
               "the recycled volume did not become Available")
    uid = daemon.api("GET", f"{PVS}/again").json()["metadata"]["uid"]
    recycled = [(e["reason"], e["message"]) for e in events_about(daemon, uid)]
    assert ("Recycling", "Recycling the volume: emptying it for its next claim") in recycled
    (ended,) = [m for r, m in recycled if r == "VolumeRecycled"]
    assert ended.startswith(f"Volume recycled: {nfs_share.path()} emptied: 34 entries in ")

    # Archive: a provisioned claim's directory is renamed, its entries kept.
    cls = f"kept-{os.getpid()}"
    create(daemon, SCS, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": cls}, "provisioner": "volfs.io/nfs",
        "mountOptions": nfs_share.mount_options,
        "parameters": {"server": nfs_share.server, "share": nfs_share.export,
                       "onDelete": "archive", "subDir": "${pvc.metadata.name}"}})
    claim = create(daemon, pvcs(), pvc("beta", cls=cls))
    volume = daemon.api("GET", f"{PVS}/{claim['spec']['volumeName']}").json()
    lines = delete_through_a_pipe(daemon, "pvc", "beta")
    assert lines[-1] == 'persistentvolumeclaim "beta" deleted'
    assert lines[-2].startswith(f"persistentvolume {volume['metadata']['name']}: "), lines
    assert "archived-beta: 0 entries in " in lines[-2]
    wait_until(lambda: daemon.api("GET", f"{PVS}/{volume['metadata']['name']}").status_code
               == 404, 30, "the archived volume was not deleted")
    archived = [(e["reason"], e["message"])
                for e in events_about(daemon, volume["metadata"]["uid"])]
    assert ("Deleting", "Deleting the volume's storage (reclaim policy Delete)") in archived
    (ended,) = [m for r, m in archived if r == "Deleted"]
    export = nfs_share.export.rstrip("/")
    assert ended.startswith(f"{export}/beta archived as {export}/archived-beta: 0 entries in ")
    assert (nfs_share.dir / "archived-beta").is_dir()

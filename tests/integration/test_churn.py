"""Fifty clients at once apply and delete pods and claims against one daemon; afterwards
the state is consistent (tests/invariants.py): no claim bound twice, no PV bound to two
claims, every Bound claim's PV names it back, no directory of a gone pod or PV on disk
or on the NFS export, the synthetic tree lists only live pods, and once everything is
deleted the daemon holds the descriptors it held before.

Claims come from a class that provisions on NFS (reclaim Delete) or bind a few static
PVs (reclaim Recycle, so they come back); many clients use the same few names, so they
race for them. Refusals (409 AlreadyExists or a claim in use, 404, 422) are fair
answers; a 5xx or a dropped connection is not.

The suite runs it for CHURN_SECONDS (12 s); ``scripts/churn MINUTES`` runs the same
test for longer and prints the figures (``VOLFS_CHURN_SECONDS`` sets it).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.daemon import Daemon
from tests.integration.nfs import Ganesha, NfsShare, new_share
from tests.invariants import Snapshot, open_fds, problems, what_fds_are
from tests.waiting import wait_until
from volfs.config import default_memory_dir

CHURN_SECONDS = float(os.environ.get("VOLFS_CHURN_SECONDS", "12"))
FD_SLACK = 8  # the last connections, and descriptors the kernel's caches still pin
CLIENTS = 50
STATIC_PVS = 4
SHARED_NAMES = 6  # names every client may use: the races
PODS = "/api/v1/namespaces/default/pods"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"
PVS = "/api/v1/persistentvolumes"
SCS = "/apis/storage.k8s.io/v1/storageclasses"
FAIR = {200, 201, 202, 404, 409, 422}


def client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                        base_url="http://volfs", timeout=120)


def claim(name: str, cls: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "resources": {"requests": {"storage": "1Mi"}}}}


def pod(name: str, claim_name: str | None, memory: bool) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}}]
    if memory:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})
    if claim_name:
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim_name}})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox",
                                     "volumeMounts": [{"name": v["name"],
                                                       "mountPath": f"/{v['name']}"}
                                                      for v in volumes]}],
                     "volumes": volumes}}


class Churn:
    """The clients' shared tally: answers by status, failures (5xx, errors) in full."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: collections.Counter[tuple[str, int]] = collections.Counter()
        self.failures: list[str] = []

    def record(self, what: str, answer: httpx.Response | Exception) -> None:
        with self.lock:
            if isinstance(answer, Exception):
                self.failures.append(f"{what}: {type(answer).__name__}: {answer}")
                return
            self.answers[(what.split()[0], answer.status_code)] += 1
            if answer.status_code not in FAIR:
                self.failures.append(f"{what}: {answer.status_code} {answer.text[:300]}")


def run_client(daemon: Daemon, number: int, until: float, churn: Churn) -> None:
    rng = random.Random(number)
    with client(daemon) as http:
        while time.monotonic() < until:
            shared = rng.random() < 0.5
            tag = f"s{rng.randrange(SHARED_NAMES)}" if shared else f"c{number}-{rng.randrange(3)}"
            cls = "churn" if rng.random() < 0.7 else ""
            action = rng.choice(["claim", "claim", "pod", "pod", "pod", "delete-pod",
                                 "delete-pod", "delete-claim"])
            try:
                if action == "claim":
                    churn.record(f"create claim {tag}", http.post(PVCS, json=claim(tag, cls)))
                elif action == "pod":
                    uses = tag if rng.random() < 0.5 else None
                    churn.record(f"create pod {tag}",
                                 http.post(PODS, json=pod(tag, uses, rng.random() < 0.2)))
                elif action == "delete-pod":
                    churn.record(f"delete pod {tag}", http.delete(f"{PODS}/{tag}"))
                else:
                    churn.record(f"delete claim {tag}", http.delete(f"{PVCS}/{tag}"))
            except httpx.HTTPError as exc:
                churn.record(f"{action} {tag}", exc)


def snapshot(daemon: Daemon, provisioned: Path, baseline: int | None) -> Snapshot:
    with client(daemon) as http:
        def items(path: str) -> list[dict[str, Any]]:
            answer = http.get(path)
            assert answer.status_code == 200, answer.text
            return list(answer.json()["items"])
        assert daemon.proc is not None
        return Snapshot(pods=items(PODS), claims=items(PVCS), volumes=items(PVS),
                        root=daemon.root,
                        volume_dirs=[daemon.state_dir / "pods",
                                     default_memory_dir(daemon.state_dir)],
                        provisioned=[provisioned], daemon_pid=daemon.proc.pid,
                        fd_baseline=baseline)


def settled(daemon: Daemon, provisioned: Path, baseline: int | None) -> list[str]:
    """The problems once the controllers have caught up (they bind and reclaim behind
    the requests' backs), or those still there after a minute."""
    found: list[str] = []

    def consistent() -> bool:
        found[:] = problems(snapshot(daemon, provisioned, baseline))
        return not found

    with contextlib.suppress(AssertionError):
        wait_until(consistent, 60, "the state did not settle")
    return found


@pytest.fixture
def static_share(ganesha: Ganesha) -> NfsShare:
    return new_share(ganesha, "churn-static")


def test_fifty_clients_churning_pods_and_claims_leave_a_consistent_state(
        daemon: Daemon, nfs_share: NfsShare, static_share: NfsShare) -> None:
    with client(daemon) as http:
        made = http.post(SCS, json={
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "churn"}, "provisioner": "volfs.io/nfs",
            "reclaimPolicy": "Delete", "mountOptions": nfs_share.mount_options,
            "parameters": {"server": nfs_share.server, "share": nfs_share.export,
                           "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}})
        assert made.status_code == 201, made.text
        for k in range(STATIC_PVS):
            (static_share.dir / f"pv{k}").mkdir(mode=0o777)
            made = http.post(PVS, json={
                "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"pv{k}"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Recycle", "storageClassName": "",
                         "mountOptions": static_share.mount_options,
                         "nfs": {"server": static_share.server,
                                 "path": f"{static_share.export}/pv{k}"}}})
            assert made.status_code == 201, made.text
    assert daemon.proc is not None
    baseline = open_fds(daemon.proc.pid)

    churn = Churn()
    started = time.monotonic()
    until = started + CHURN_SECONDS
    clients = [threading.Thread(target=run_client, args=(daemon, n, until, churn))
               for n in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.monotonic() - started
    requests = sum(churn.answers.values())
    print(f"\nchurn: {CLIENTS} clients, {elapsed:.1f} s, {requests} requests "
          f"({requests / elapsed:.1f}/s)")
    for (verb, code), count in sorted(churn.answers.items()):
        print(f"  {verb:7} {code}: {count}")
    assert not churn.failures, "\n".join(churn.failures[:20])
    assert churn.answers[("create", 201)] > 0

    during = settled(daemon, nfs_share.dir, None)
    snap = snapshot(daemon, nfs_share.dir, None)
    print(f"  left: {len(snap.pods)} pods, {len(snap.claims)} claims, "
          f"{len(snap.volumes)} PVs; daemon fds {open_fds(daemon.proc.pid)} "
          f"(baseline {baseline})")
    assert not during, "\n".join(during)

    # Everything deleted: nothing left on disk or on the export, descriptors as before.
    with client(daemon) as http:
        for item in snap.pods:
            assert http.delete(f"{PODS}/{item['metadata']['name']}").status_code in (200, 404)
        for item in snap.claims:
            assert http.delete(f"{PVCS}/{item['metadata']['name']}").status_code in (200, 404)
    after = settled(daemon, nfs_share.dir, None)
    assert not after, "\n".join(after)
    # Then the descriptors, read from /proc only: every request above (the settling
    # included) came on a connection of its own, and the daemon closes a connection its
    # client has closed at hypercorn's keep-alive timeout (5 s), not at once.
    pid = daemon.proc.pid
    with contextlib.suppress(AssertionError):
        wait_until(lambda: open_fds(pid) <= baseline + FD_SLACK, 30, "descriptors")
    print(f"  after deleting all: daemon fds {open_fds(pid)} (baseline {baseline})")
    fds = open_fds(pid)
    assert fds <= baseline + FD_SLACK, (f"the daemon holds {fds} descriptors, {baseline} at "
                                        f"the start: {what_fds_are(pid)}")
    final = snapshot(daemon, nfs_share.dir, None)
    assert (final.pods, final.claims) == ([], [])
    assert not [d for ns in nfs_share.dir.iterdir() for d in ns.iterdir()]
    assert "Traceback" not in daemon.log()

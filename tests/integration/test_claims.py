"""Persistent volumes on a real nfs-ganesha: binding, pods on claims, provisioning, reclaim.

Objects go in through the control API's Kubernetes paths (as kubectl sends them);
what lands on the NFS server is checked by looking at the export directory itself.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.daemon import Daemon
from tests.integration.nfs import NfsShare
from tests.waiting import wait_until

PVS = "/api/v1/persistentvolumes"
SCS = "/apis/storage.k8s.io/v1/storageclasses"


def pvcs(namespace: str = "default") -> str:
    return f"/api/v1/namespaces/{namespace}/persistentvolumeclaims"


def create(daemon: Daemon, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    response = daemon.api("POST", path, obj)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def pv(name: str, share: NfsShare, size: str = "1Gi", cls: str = "manual",
       modes: tuple[str, ...] = ("ReadWriteMany",), policy: str = "Retain") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes),
                     "storageClassName": cls, "persistentVolumeReclaimPolicy": policy,
                     "nfs": {"server": share.server, "path": share.path()}}}


def pvc(name: str, size: str = "1Gi", cls: str | None = "manual",
        modes: tuple[str, ...] = ("ReadWriteMany",)) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": list(modes),
                            "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}


def claim_pod(name: str, claim: str, read_only: bool = False) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: main
      image: busybox
      volumeMounts:
        - name: data
          mountPath: /data
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: {claim}
        readOnly: {str(read_only).lower()}
"""


def phase(daemon: Daemon, path: str) -> str:
    return str(daemon.api("GET", path).json()["status"]["phase"])


def test_example_manifests_bind_and_data_outlives_the_pod(
        daemon: Daemon, nfs_share: NfsShare, examples_dir: Path) -> None:
    pv_doc = yaml.safe_load((examples_dir / "pv-nfs.yaml").read_text())
    pv_doc["spec"]["nfs"].update(server=nfs_share.server, path=nfs_share.path())
    create(daemon, PVS, pv_doc)
    claim = create(daemon, pvcs(), yaml.safe_load((examples_dir / "pvc-nfs.yaml").read_text()))
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == "nfs"
    assert phase(daemon, f"{PVS}/nfs") == "Bound"

    web = (examples_dir / "pod-web-pvc.yaml").read_text()
    daemon.apply(web)
    path = daemon.volume_path("web-frontend", "nfs")
    assert "kubernetes.io~nfs" in str(path)
    (path / "index.html").write_text("<h1>kept</h1>")
    assert (nfs_share.dir / "index.html").read_text() == "<h1>kept</h1>"  # on the server

    daemon.cli("delete", "pod", "web-frontend")
    assert (nfs_share.dir / "index.html").read_text() == "<h1>kept</h1>"
    daemon.apply(claim_pod("reader", "nfs"))
    assert (daemon.volume_path("reader", "data") / "index.html").read_text() == "<h1>kept</h1>"


def test_a_pod_waits_pending_until_its_claim_binds(daemon: Daemon, nfs_share: NfsShare) -> None:
    daemon.apply(claim_pod("early", "later"))
    pod = daemon.pod("early")
    assert pod["status"]["phase"] == "Pending"
    assert 'persistentvolumeclaim "later" not found' in pod["status"]["conditions"][0]["message"]
    assert not (daemon.root / "pods" / pod["metadata"]["uid"] / "volumes" /
                "kubernetes.io~nfs" / "data").exists()

    create(daemon, pvcs(), pvc("later"))
    assert daemon.pod("early")["status"]["phase"] == "Pending"  # no volume yet
    create(daemon, PVS, pv("arrives", nfs_share))  # binds, and the pod's volume appears
    wait_until(lambda: daemon.pod("early")["status"]["phase"] == "Running", 20,
               "the pod did not run once its claim was bound")
    path = daemon.volume_path("early", "data")
    (path / "hello").write_text("late but there")
    assert (nfs_share.dir / "hello").read_text() == "late but there"
    events = daemon.api("GET", "/api/v1/namespaces/default/events").json()["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "later"}
    assert "Bound" in reasons


def test_capacity_is_enforced_with_enospc(daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("small", nfs_share, size="1Mi"))
    create(daemon, pvcs(), pvc("small", size="1Mi"))
    daemon.apply(claim_pod("filler", "small"))
    path = daemon.volume_path("filler", "data")
    written = 0
    with pytest.raises(OSError) as excinfo, open(path / "big", "wb", buffering=0) as f:
        while True:
            written += f.write(b"x" * 65536)
    assert excinfo.value.errno == errno.ENOSPC
    assert written <= 1024 * 1024
    assert (nfs_share.dir / "big").stat().st_size <= 1024 * 1024
    claim = daemon.api("GET", f"{pvcs()}/small").json()
    assert 0 < claim["status"]["usedBytes"] <= 1024 * 1024


def test_read_only_many_and_read_only_volumes_refuse_writes(
        daemon: Daemon, nfs_share: NfsShare) -> None:
    (nfs_share.dir / "seed").write_text("read me")
    create(daemon, PVS, pv("rox", nfs_share, modes=("ReadOnlyMany",)))
    create(daemon, pvcs(), pvc("rox", modes=("ReadOnlyMany",)))
    daemon.apply(claim_pod("ro", "rox"))
    path = daemon.volume_path("ro", "data")
    assert (path / "seed").read_text() == "read me"
    with pytest.raises(OSError) as excinfo:
        (path / "new").write_text("no")
    assert excinfo.value.errno == errno.EROFS


def test_read_write_once_pod_refuses_a_second_pod(daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("solo", nfs_share, modes=("ReadWriteOncePod",)))
    create(daemon, pvcs(), pvc("solo", modes=("ReadWriteOncePod",)))
    daemon.apply(claim_pod("first", "solo"))
    second = daemon.cli("apply", "-f", "-", input=claim_pod("second", "solo"), check=False)
    assert second.returncode == 2
    assert "ReadWriteOncePod and in use by pod first" in second.stderr
    daemon.cli("delete", "pod", "first")
    daemon.apply(claim_pod("second", "solo"))


def test_a_claim_in_use_is_not_deleted(daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("used", nfs_share))
    create(daemon, pvcs(), pvc("used"))
    daemon.apply(claim_pod("user", "used"))
    response = daemon.api("DELETE", f"{pvcs()}/used")
    assert response.status_code == 409
    assert "in use by pod user" in response.json()["message"]


def test_provisioning_and_reclaim_on_the_server(daemon: Daemon, nfs_share: NfsShare) -> None:
    share = nfs_share.export
    for name, on_delete in (("gone", "delete"), ("kept", "archive")):
        create(daemon, SCS, {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": f"{name}-{os.getpid()}"}, "provisioner": "volfs.io/nfs",
            "mountOptions": nfs_share.mount_options,
            "parameters": {"server": nfs_share.server, "share": share, "onDelete": on_delete,
                           "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}})
    a = create(daemon, pvcs(), pvc("alpha", cls=f"gone-{os.getpid()}"))
    b = create(daemon, pvcs(), pvc("beta", cls=f"kept-{os.getpid()}"))
    assert a["status"]["phase"] == b["status"]["phase"] == "Bound"
    assert (nfs_share.dir / "default" / "alpha").is_dir()
    daemon.apply(claim_pod("writer", "beta"))
    (daemon.volume_path("writer", "data") / "report").write_text("archive me")
    assert (nfs_share.dir / "default" / "beta" / "report").read_text() == "archive me"
    daemon.cli("delete", "pod", "writer")

    assert daemon.api("DELETE", f"{pvcs()}/alpha").status_code == 200
    assert daemon.api("DELETE", f"{pvcs()}/beta").status_code == 200
    assert not (nfs_share.dir / "default" / "alpha").exists()
    assert not (nfs_share.dir / "default" / "beta").exists()
    assert (nfs_share.dir / "default" / "archived-beta" / "report").read_text() == "archive me"
    assert daemon.api("GET", PVS).json()["items"] == []


def test_wait_for_first_consumer_provisions_when_a_pod_comes(daemon: Daemon,
                                                             nfs_share: NfsShare) -> None:
    create(daemon, SCS, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": f"late-{os.getpid()}"}, "provisioner": "volfs.io/nfs",
        "volumeBindingMode": "WaitForFirstConsumer", "mountOptions": nfs_share.mount_options,
        "parameters": {"server": nfs_share.server, "share": nfs_share.export,
                       "subDir": "${pvc.metadata.name}"}})
    assert create(daemon, pvcs(), pvc("late", cls=f"late-{os.getpid()}"))["status"]["phase"] \
        == "Pending"
    described = daemon.cli("describe", "pvc", "late").stdout
    assert "waiting for first consumer to be created before binding" in described
    assert not (nfs_share.dir / "late").exists()

    daemon.cli("apply", "-f", "-", "--wait", "--timeout", "30", input=claim_pod("consumer", "late"))
    assert phase(daemon, f"{pvcs()}/late") == "Bound"
    (daemon.volume_path("consumer", "data") / "hello").write_text("first consumer")
    assert (nfs_share.dir / "late" / "hello").read_text() == "first consumer"
    daemon.cli("delete", "pod", "consumer")


def test_recycle_scrubs_the_directory(daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("again", nfs_share, policy="Recycle"))
    create(daemon, pvcs(), pvc("first"))
    (nfs_share.dir / "old-secret").write_text("gone soon")
    assert daemon.api("DELETE", f"{pvcs()}/first").status_code == 200
    wait_until(lambda: phase(daemon, f"{PVS}/again") == "Available", 20,
               "the recycled volume did not become Available")
    assert list(nfs_share.dir.iterdir()) == []
    assert create(daemon, pvcs(), pvc("second"))["status"]["phase"] == "Bound"


def test_restart_keeps_bindings_and_usage(daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("durable", nfs_share, size="10Mi"))
    create(daemon, pvcs(), pvc("durable", size="10Mi"))
    daemon.apply(claim_pod("keeper", "durable"))
    (daemon.volume_path("keeper", "data") / "f").write_bytes(b"k" * 12345)
    daemon.kill9()
    daemon.start()
    claim = daemon.api("GET", f"{pvcs()}/durable").json()
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["volumeName"] == "durable"
    assert claim["status"]["usedBytes"] == 12345
    assert (daemon.volume_path("keeper", "data") / "f").read_bytes() == b"k" * 12345


def test_released_volume_keeps_its_claim_ref_until_an_admin_clears_it(
        daemon: Daemon, nfs_share: NfsShare) -> None:
    create(daemon, PVS, pv("retained", nfs_share))
    claim = create(daemon, pvcs(), pvc("once"))
    daemon.api("DELETE", f"{pvcs()}/once")
    volume = daemon.api("GET", f"{PVS}/retained").json()
    assert volume["status"]["phase"] == "Released"
    assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    response = daemon.api("PATCH", f"{PVS}/retained", None)  # (no body: refused)
    assert response.status_code >= 400
    transport_patch = daemon.api("GET", f"{PVS}/retained").json()
    transport_patch["spec"].pop("claimRef")
    assert daemon.api("PUT", f"{PVS}/retained", transport_patch).status_code == 200
    assert phase(daemon, f"{PVS}/retained") == "Available"
    assert json.loads(json.dumps(create(daemon, pvcs(), pvc("twice"))))["status"]["phase"] == \
        "Bound"

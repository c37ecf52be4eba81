"""A second kind of PersistentVolume is one module plus one registration.

The kind here lives only in this test: a PV on a local directory (Kubernetes' ``local:``
source), which a provisioner makes under a temporary directory and a deleter removes.
Registered beside NFS, it is validated, provisioned, bound, reclaimed and served to a
pod's claim volume by the same binder and claim plugin, which know neither kind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from volfs.api import parse_pod
from volfs.api.errors import Cause, Invalid
from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    build_claim,
    build_storage_class,
    build_volume,
)
from volfs.controllers.storage import StorageController
from volfs.lifecycle.claims import ClaimPlugin
from volfs.lifecycle.volumes import PodRef
from volfs.persistent import NfsSource, PersistentSources, Provisioned, ReclaimFailed
from volfs.persistent.plugins import PROVISIONED_BY
from volfs.state import AsyncStateDB, StateDB
from volfs.stores.base import Owner
from volfs.stores.local import LocalStore
from volfs.stores.progress import Progress, remove_tree
from volfs.stores.quota import Usage

Object = dict[str, Any]
LOCAL_PROVISIONER = "example.com/local-dir"


class ClosableLocalStore(LocalStore):
    closed = False

    async def close(self) -> None:
        self.closed = True


class LocalDirSource:
    """The whole second kind: open, provision, delete."""

    source_kind = "local"
    kind_dir = "kubernetes.io~local-volume"
    provisioner = LOCAL_PROVISIONER

    def __init__(self, base: Path) -> None:
        self.base = base

    async def open_store(self, pv: PersistentVolume) -> ClosableLocalStore:
        assert pv.spec.local is not None
        return ClosableLocalStore(pv.spec.local["path"],
                                  Usage(limit=pv.spec.capacity_bytes()))

    def check_class(self, sc: StorageClass) -> list[Cause]:
        return [(f"parameters.{k}", f'unknown parameter "{k}"') for k in sc.parameters]

    async def provision(self, claim: PersistentVolumeClaim, sc: StorageClass,
                        pv_name: str) -> Provisioned:
        path = self.base / pv_name
        path.mkdir()
        return Provisioned(spec={"local": {"path": str(path)}})

    def can_delete(self, pv: Object) -> bool:
        return pv["metadata"].get("annotations", {}).get(PROVISIONED_BY) == LOCAL_PROVISIONER

    async def delete(self, pv: Object, progress: Progress) -> str:
        try:
            remove_tree(Path(pv["spec"]["local"]["path"]), progress)
        except OSError as exc:
            raise ReclaimFailed(str(exc)) from None
        return f"{pv['spec']['local']['path']} removed"


class Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def record(self, obj: Object, type_: str, reason: str, message: str) -> None:
        self.reasons.append(reason)


class NoShares:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"NFS share operation {name} called")


def _controller(tmp_path: Path, sources: PersistentSources) -> tuple[StorageController, Events]:
    events = Events()
    db = AsyncStateDB(StateDB(tmp_path / "state.db"))
    return StorageController(db, sources, events), events


def _claim(name: str, cls: str) -> PersistentVolumeClaim:
    return build_claim({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": name},
                        "spec": {"storageClassName": cls, "accessModes": ["ReadWriteOnce"],
                                 "resources": {"requests": {"storage": "1Mi"}}}}, None)


def _class(provisioner: str, **parameters: str) -> StorageClass:
    return build_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                "metadata": {"name": "local"}, "provisioner": provisioner,
                                "reclaimPolicy": "Delete", "parameters": parameters}, None)


def test_a_second_kind_is_provisioned_bound_served_and_deleted(tmp_path: Path) -> None:
    (tmp_path / "volumes").mkdir()
    local = LocalDirSource(tmp_path / "volumes")
    sources = PersistentSources([NfsSource(NoShares()), local])
    controller, events = _controller(tmp_path, sources)
    claims = ClaimPlugin(controller, sources)

    async def scenario() -> None:
        await controller.create_class(_class(LOCAL_PROVISIONER))
        await controller.create_claim(_claim("data", "local"))
        claim = await controller.get_claim("default", "data")
        assert claim["status"]["phase"] == "Bound"
        pv = await controller.get_volume(claim["spec"]["volumeName"])
        path = Path(pv["spec"]["local"]["path"])
        assert path.parent == tmp_path / "volumes" and path.is_dir()

        pod = parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                  "volumes": [{"name": "v", "persistentVolumeClaim":
                                               {"claimName": "data"}}]}})
        ref = PodRef("uid-1", "default", "web")
        store = await claims.set_up(ref, pod.spec.volumes[0], read_only=False)
        assert isinstance(store, ClosableLocalStore)
        root = await store.open_root()
        fh, _ = await store.create(root.handle, b"hello", 0o644, os.O_WRONLY,
                                   Owner(os.getuid(), os.getgid()))
        await store.write(fh, 0, b"served by the second kind")
        await store.release(fh)
        assert (path / "hello").read_bytes() == b"served by the second kind"
        await claims.tear_down(ref, pod.spec.volumes[0])
        assert store.closed

        await controller.delete_claim("default", "data")
        assert not path.exists()  # reclaimed by the kind's own deleter
        assert await controller.list_volumes() == []

    trio.run(scenario)
    assert events.reasons[:2] == ["ProvisioningSucceeded", "Bound"]


def test_what_no_plugin_serves_is_refused_at_create(tmp_path: Path) -> None:
    controller, _ = _controller(tmp_path, PersistentSources([NfsSource(NoShares())]))
    pv = build_volume({"apiVersion": "v1", "kind": "PersistentVolume",
                       "metadata": {"name": "v"},
                       "spec": {"capacity": {"storage": "1Gi"},
                                "accessModes": ["ReadWriteOnce"],
                                "local": {"path": "/d"}}}, None)

    async def scenario() -> None:
        with pytest.raises(Invalid) as refused:
            await controller.create_volume(pv)
        assert str(refused.value) == ("spec.local: volume source local is not supported "
                                      "(volfs serves nfs)")
        with pytest.raises(Invalid) as refused:
            await controller.create_class(_class(LOCAL_PROVISIONER))
        assert str(refused.value) == (f'provisioner: Unsupported value: "{LOCAL_PROVISIONER}": '
                                      'supported values: "volfs.io/nfs", '
                                      '"kubernetes.io/no-provisioner"')
        with pytest.raises(Invalid) as refused:  # the plugin checks its own parameters
            await controller.create_class(_class("volfs.io/nfs", server="s", share="/x",
                                                 colour="blue"))
        assert str(refused.value) == 'parameters.colour: unknown parameter "colour"'
        assert await controller.list_volumes() == []
        assert await controller.list_classes() == []

    trio.run(scenario)


def test_a_kind_without_a_recycler_fails_a_recycle_in_kubernetes_words(tmp_path: Path) -> None:
    sources = PersistentSources([LocalDirSource(tmp_path)])
    controller, events = _controller(tmp_path, sources)
    pv = build_volume({"apiVersion": "v1", "kind": "PersistentVolume",
                       "metadata": {"name": "v"},
                       "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"],
                                "persistentVolumeReclaimPolicy": "Recycle",
                                "local": {"path": str(tmp_path)}}}, None)

    async def scenario() -> None:
        await controller.create_volume(pv)
        await controller.create_claim(_claim("data", ""))
        await controller.delete_claim("default", "data")
        failed = await controller.get_volume("v")
        assert failed["status"] == {"phase": "Failed", "reason": "VolumeFailedRecycle",
                                    "message": "no recyclable volume plugin matched"}

    trio.run(scenario)
    assert "VolumeFailedRecycle" in events.reasons

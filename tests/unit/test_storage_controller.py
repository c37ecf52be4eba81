"""The storage controller over a real SQLite state, with shares as local directories.

The share operations are a local stand-in (directories under a temp dir, one per
"server:share"); the NFS-backed ones are exercised by the integration tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.shares import LocalShares
from volfs.api.errors import Conflict
from volfs.api.storage import build_claim, build_storage_class, build_volume
from volfs.controllers.storage import StorageController
from volfs.persistent import NfsSource, PersistentSources, expand_sub_dir
from volfs.state import AsyncStateDB, StateDB
from volfs.stores.progress import Progress


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.db = StateDB(tmp / "state.db")
        self.shares = LocalShares(tmp / "nfs")
        self.events: list[tuple[str, str, str]] = []
        self.bound_notices = 0
        self.controller = StorageController(AsyncStateDB(self.db),
                                            PersistentSources([NfsSource(self.shares)]), self)
        self.controller.tell_when_bound(self)

    async def record(self, obj: dict[str, Any], type_: str, reason: str, msg: str) -> None:
        self.events.append((obj["metadata"]["name"], reason, msg))

    async def claims_bound(self) -> None:
        self.bound_notices += 1

    async def pv(self, name: str, size: str, policy: str = "Retain", cls: str = "",
                 **spec: Any) -> dict[str, Any]:
        return await self.controller.create_volume(build_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": policy, "storageClassName": cls,
                     "nfs": {"server": "127.0.0.1", "path": f"/static/{name}"}, **spec}},
            None))

    async def pvc(self, name: str, size: str, cls: str | None = "") -> dict[str, Any]:
        spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": size}}}
        if cls is not None:
            spec["storageClassName"] = cls
        return await self.controller.create_claim(build_claim({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}, None))

    async def sc(self, name: str, on_delete: str = "delete", sub_dir: str | None = None,
                 reclaim: str = "Delete", default: bool = False, mode: str = "Immediate"
                 ) -> None:
        params = {"server": "127.0.0.1", "share": "/exports", "onDelete": on_delete}
        if sub_dir:
            params["subDir"] = sub_dir
        annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
        await self.controller.create_class(build_storage_class({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": "volfs.io/nfs", "reclaimPolicy": reclaim, "parameters": params,
            "volumeBindingMode": mode},
            None))

    def pod_using(self, pod: str, claim: str) -> None:
        """A pod as the pod manager stores it, naming ``claim``."""
        self.db.put({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": pod, "namespace": "default", "uid": f"uid-{pod}"},
                     "spec": {"containers": [{"name": "main", "image": "busybox"}],
                              "volumes": [{"name": "data",
                                           "persistentVolumeClaim": {"claimName": claim}}]}})

    async def phase(self, kind: str, name: str) -> str | None:
        if kind == "pv":
            obj = await self.controller.get_volume(name)
        else:
            obj = await self.controller.get_claim("default", name)
        return obj["status"]["phase"]


def run(tmp_path: Path, scenario: Callable[[Harness], Awaitable[None]]) -> Harness:
    harness = Harness(tmp_path)
    trio.run(scenario, harness)
    return harness


def test_claim_waits_until_a_volume_fits_then_binds(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        claim = await h.pvc("data", "2Gi")
        assert claim["status"]["phase"] == "Pending"
        await h.pv("small", "1Gi")
        assert await h.phase("pvc", "data") == "Pending"
        await h.pv("fits", "5Gi")
        claim = await h.controller.get_claim("default", "data")
        assert claim["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                   "capacity": {"storage": "5Gi"}}
        assert claim["spec"]["volumeName"] == "fits"
        pv = await h.controller.get_volume("fits")
        assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        assert pv["status"]["phase"] == "Bound"
    h = run(tmp_path, scenario)
    assert ("data", "FailedBinding", "no persistent volumes available for this claim and no "
            "storage class is set") in h.events
    assert h.bound_notices == 1


def test_bindings_survive_a_new_controller_on_the_same_database(tmp_path: Path) -> None:
    async def first(h: Harness) -> None:
        await h.pv("pv1", "1Gi")
        await h.pvc("c1", "1Gi")
    run(tmp_path, first)

    async def second(h: Harness) -> None:
        await h.controller.sync()
        assert await h.phase("pvc", "c1") == "Bound"
        assert await h.phase("pv", "pv1") == "Bound"
    run(tmp_path, second)


def test_retain_keeps_the_claim_ref_and_releases(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.pv("kept", "1Gi", "Retain")
        claim = await h.pvc("c", "1Gi")
        await h.controller.delete_claim("default", "c")
        pv = await h.controller.get_volume("kept")
        assert pv["status"]["phase"] == "Released"
        assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        again = await h.pvc("c", "1Gi")  # a new claim of the same name: a new uid
        assert again["status"]["phase"] == "Pending"
    run(tmp_path, scenario)


def test_provisioning_and_reclaim_by_on_delete(tmp_path: Path) -> None:
    share = tmp_path / "nfs" / "127.0.0.1" / "exports"

    async def scenario(h: Harness) -> None:
        await h.sc("gone", on_delete="delete", sub_dir="${pvc.metadata.namespace}/"
                   "${pvc.metadata.name}")
        await h.sc("kept", on_delete="archive", sub_dir="tenants/${pvc.metadata.namespace}/"
                   "${pvc.metadata.name}")
        a = await h.pvc("alpha", "1Gi", cls="gone")
        b = await h.pvc("beta", "1Gi", cls="kept")
        assert a["status"]["phase"] == b["status"]["phase"] == "Bound"
        assert (share / "default" / "alpha").is_dir()
        assert (share / "tenants" / "default" / "beta").is_dir()
        (share / "tenants" / "default" / "beta" / "file").write_text("keep me")
        pv_b = b["spec"]["volumeName"]
        assert (await h.controller.get_volume(pv_b))["spec"]["nfs"]["path"] == \
            "/exports/tenants/default/beta"
        await h.controller.delete_claim("default", "alpha")
        await h.controller.delete_claim("default", "beta")
        assert await h.controller.list_volumes() == []
    run(tmp_path, scenario)
    assert not (share / "default" / "alpha").exists()
    archived = share / "tenants" / "default" / "archived-beta" / "file"
    assert archived.read_text() == "keep me"


def test_recycle_scrubs_and_makes_the_volume_available(tmp_path: Path) -> None:
    data = tmp_path / "nfs" / "127.0.0.1" / "static" / "r"

    async def scenario(h: Harness) -> None:
        data.mkdir(parents=True)
        await h.pv("r", "1Gi", "Recycle")
        await h.pvc("c", "1Gi")
        (data / "old").write_text("secret")
        await h.controller.delete_claim("default", "c")
        pv = await h.controller.get_volume("r")
        assert pv["status"]["phase"] == "Available" and "claimRef" not in pv["spec"]
    run(tmp_path, scenario)
    assert list(data.iterdir()) == []


class LookingShares(LocalShares):
    """Local shares that, once a scrub has removed everything, look at the controller
    before the recycle returns: what a client reading the PV then is served."""

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self.look: Callable[[], Any] = lambda: None
        self.seen: list[Any] = []

    async def scrub_dir(self, server: str, path: str, opts: list[str],
                        progress: Progress | None = None) -> None:
        await super().scrub_dir(server, path, opts, progress)
        self.seen.append(self.look())


def test_a_recycle_under_way_is_the_volume_s_operation_and_its_events_count(
        tmp_path: Path) -> None:
    data = tmp_path / "nfs" / "127.0.0.1" / "static" / "r"
    h = Harness(tmp_path)
    shares = LookingShares(tmp_path / "nfs")
    h.controller = StorageController(AsyncStateDB(h.db),
                                     PersistentSources([NfsSource(shares)]), h)
    shares.look = lambda: h.controller.volume_operation("r")

    async def scenario() -> None:
        data.mkdir(parents=True)
        await h.pv("r", "1Gi", "Recycle")
        await h.pvc("c", "1Gi")
        for name in ("a", "b", "c"):
            (data / name).write_text("old")
        await h.controller.delete_claim("default", "c")
        assert h.controller.volume_operation("r") is None  # over

    trio.run(scenario)
    (under_way,) = shares.seen
    assert (under_way["action"], under_way["done"], under_way["total"]) == (
        "Recycling volume r", 3, None)
    reasons = [(reason, msg) for name, reason, msg in h.events if name == "r"]
    assert reasons[0] == ("Recycling", "Recycling the volume: emptying it for its next claim")
    assert reasons[1][0] == "VolumeRecycled"
    assert reasons[1][1].startswith("Volume recycled: /static/r emptied: 3 entries in ")


def test_deleting_a_bound_volume_loses_the_claim(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.pv("v", "1Gi")
        await h.pvc("c", "1Gi")
        await h.controller.delete_volume("v")
        assert await h.phase("pvc", "c") == "Lost"
    run(tmp_path, scenario)


def test_default_class_provisions_unset_claims_only(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.sc("std", default=True)
        unset = await h.pvc("unset", "1Gi", cls=None)
        empty = await h.pvc("empty", "1Gi", cls="")
        assert unset["status"]["phase"] == "Bound"
        assert unset["spec"]["storageClassName"] == "std"
        assert empty["status"]["phase"] == "Pending"
    run(tmp_path, scenario)


def test_wait_for_first_consumer_binds_and_provisions_only_once_a_pod_uses_the_claim(
        tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.sc("late", mode="WaitForFirstConsumer")
        await h.pv("static", "1Gi", cls="late")
        await h.pvc("provisioned", "1Gi", cls="late")
        await h.pvc("matched", "1Gi", cls="late")
        await h.controller.sync()
        assert await h.phase("pvc", "provisioned") == await h.phase("pvc", "matched") == "Pending"
        assert await h.phase("pv", "static") == "Available"
        assert not (h.shares.base / "127.0.0.1").exists()  # nothing provisioned yet
        assert len([e for e in h.events if e[1] == "WaitForFirstConsumer"]) == 2  # once each

        h.pod_using("web", "matched")
        await h.controller.sync()
        assert await h.phase("pvc", "matched") == "Bound"
        assert (await h.controller.get_volume("static"))["spec"]["claimRef"]["name"] == "matched"
        assert await h.phase("pvc", "provisioned") == "Pending"

        h.pod_using("db", "provisioned")
        await h.controller.sync()
        claim = await h.controller.get_claim("default", "provisioned")
        assert claim["status"]["phase"] == "Bound"
        assert (h.shares.base / "127.0.0.1" / "exports"
                / f"default-provisioned-{claim['spec']['volumeName']}").is_dir()
    h = run(tmp_path, scenario)
    assert ("provisioned", "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding") in h.events
    assert h.bound_notices == 2


def test_a_claim_in_use_cannot_be_deleted(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.pv("v", "1Gi")
        await h.pvc("c", "1Gi")
        with pytest.raises(Conflict, match="in use by pod web"):
            await h.controller.delete_claim("default", "c", in_use_by=["web"])
        assert await h.phase("pvc", "c") == "Bound"
    run(tmp_path, scenario)


def test_static_volume_with_delete_policy_fails_rather_than_guessing(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.pv("static", "1Gi", "Delete")
        await h.pvc("c", "1Gi")
        await h.controller.delete_claim("default", "c")
        pv = await h.controller.get_volume("static")
        assert pv["status"]["phase"] == "Failed"
        assert "no deletable volume plugin matched" in pv["status"]["message"]
    run(tmp_path, scenario)


def test_sub_dir_templates() -> None:
    claim = build_claim({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "metadata": {"name": "db", "namespace": "shop"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}, None)
    assert expand_sub_dir("${pvc.metadata.namespace}/${pvc.metadata.name}/${pv.metadata.name}",
                          claim, "pvc-1") == "shop/db/pvc-1"
    with pytest.raises(ValueError):
        expand_sub_dir("${pvc.spec}", claim, "pvc-1")

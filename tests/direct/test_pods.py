"""The pod manager called directly: real state database, plugins and hooks, no mount.

Everything sits in a temporary directory: the SQLite database, the EmptyDir and
HostPath directories, the hook directories; the Filesystem the pods are published
in is never mounted. Create sets a pod up all-or-nothing (a failing hook or volume
leaves nothing behind), delete removes EmptyDir data and never host data, and a
restart sets every known pod up again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from volfs.api import Pod, parse_pod
from volfs.api.errors import AlreadyExists, Invalid, NotFound, SetupFailed
from volfs.fs import Filesystem
from volfs.lifecycle.hooks import ON_CREATE, ON_DELETE, HookRunner
from volfs.lifecycle.hostpath import HOST_PATH_KIND, HostPathPlugin, allowed_prefixes
from volfs.lifecycle.pods import PodManager
from volfs.lifecycle.volumes import EMPTY_DIR_KIND, EmptyDirPlugin, PluginRegistry
from volfs.state import AsyncStateDB, StateDB


@dataclass
class Node:
    """One volfs daemon's parts, without the mount and the API in front of them."""

    dir: Path
    db: StateDB
    fs: Filesystem
    pods: PodManager

    @property
    def disk(self) -> Path:
        return self.dir / "disk"

    @property
    def host(self) -> Path:
        return self.dir / "host"

    @property
    def hook_log(self) -> Path:
        return self.dir / "hooks.log"

    def hook(self, stage: str, name: str, body: str) -> None:
        """An executable in ``stage`` that logs its name and pod, then runs ``body``."""
        path = self.dir / "hooks" / stage / name
        path.write_text(f'#!/bin/sh\necho "{stage}/{name} $POD_NAMESPACE/$POD_NAME $POD_UID"'
                        f' >> "{self.hook_log}"\ncat > "{path}.stdin"\n{body}\n')
        path.chmod(0o755)

    def hooks_run(self) -> list[str]:
        return self.hook_log.read_text().splitlines() if self.hook_log.exists() else []

    def restarted(self) -> Node:
        """The same state directory, served by new parts (as after a daemon restart)."""
        self.db.close()
        return _node(self.dir)

    def published(self) -> list[str]:
        return self.fs.tree.children(("pods",)) or []

    def volume_dir(self, uid: str, name: str) -> Path:
        return self.disk / uid / EMPTY_DIR_KIND / name


def _node(base: Path) -> Node:
    db = StateDB(base / "state.db")
    fs = Filesystem(statfs_path=str(base))
    plugins = PluginRegistry([EmptyDirPlugin(base / "disk", base / "memory"),
                              HostPathPlugin(allowed_prefixes([str(base / "host")]))])
    hooks = HookRunner(base / "hooks", base / "root", timeout=30.0)
    return Node(base, db, fs, PodManager(AsyncStateDB(db), fs, plugins, hooks, base / "root"))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    for path in ("disk", "memory", "host", f"hooks/{ON_CREATE}", f"hooks/{ON_DELETE}"):
        (tmp_path / path).mkdir(parents=True)
    made = _node(tmp_path)
    yield made
    made.db.close()


def pod(name: str, *volumes: dict[str, Any]) -> Pod:
    return parse_pod({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox", "volumeMounts": [
                     {"name": v["name"], "mountPath": f"/{v['name']}"} for v in volumes]}],
                 "volumes": list(volumes)}})


def scratch(limit: str = "1Mi") -> dict[str, Any]:
    return {"name": "scratch", "emptyDir": {"sizeLimit": limit}}


def host_path(path: Path, type_: str = "DirectoryOrCreate") -> dict[str, Any]:
    return {"name": "data", "hostPath": {"path": str(path), "type": type_}}


def run(fn: Callable[[], Awaitable[None]]) -> None:
    trio.run(fn)


def test_create_sets_up_publishes_runs_the_hooks_and_stores_the_pod(node: Node) -> None:
    node.hook(ON_CREATE, "10-log", "exit 0")

    async def main() -> None:
        created = await node.pods.create_pod(pod("web", scratch(), host_path(node.host / "d")))
        uid = created["metadata"]["uid"]
        assert node.volume_dir(uid, "scratch").is_dir()
        assert (node.host / "d").is_dir()  # DirectoryOrCreate made it
        assert node.published() == [uid]
        assert sorted(v.name for v in node.fs.volumes(uid)) == ["data", "scratch"]
        assert node.hooks_run() == [f"{ON_CREATE}/10-log default/web {uid}"]
        given = json.loads((node.dir / "hooks" / ON_CREATE / "10-log.stdin").read_text())
        assert given["metadata"]["uid"] == uid
        stored = await node.pods.get_pod("default", "web")
        assert stored["metadata"]["uid"] == uid and stored["status"]["phase"] == "Running"
        volumes = {v["name"]: v for v in stored["status"]["volumes"]}
        assert volumes["scratch"]["path"] == str(
            node.dir / "root" / "pods" / uid / "volumes" / EMPTY_DIR_KIND / "scratch")
        assert volumes["data"]["path"].endswith(f"/volumes/{HOST_PATH_KIND}/data")
        assert (volumes["scratch"]["usedBytes"], volumes["data"]["usedBytes"]) == (0, None)

        with pytest.raises(AlreadyExists):
            await node.pods.create_pod(pod("web", scratch()))
        assert node.published() == [uid] and len(node.hooks_run()) == 1
        assert [p["metadata"]["uid"] for p in await node.pods.list_pods(None)] == [uid]

    run(main)


def test_a_listed_pods_status_follows_its_stored_spec_and_live_usage(node: Node) -> None:
    """The status a list reports is kept per pod between lists: it must still follow
    every write of the pod (a new resourceVersion) and the volumes' live usage."""

    async def main() -> None:
        created = await node.pods.create_pod(pod("web", scratch()))
        uid = created["metadata"]["uid"]

        async def listed() -> dict[str, Any]:
            [obj] = await node.pods.list_pods("default")
            return obj

        first = await listed()
        assert [v["name"] for v in first["status"]["volumes"]] == ["scratch"]
        assert first["status"]["mounts"][0]["mountPath"] == "/scratch"
        [served] = node.fs.volumes(uid)
        served.store.usage.used = 4096  # as writes through the mount count it
        assert (await listed())["status"]["volumes"][0]["usedBytes"] == 4096

        # A write of the pod with another spec (by hand here: the API refuses one) shows.
        stored = node.db.get("Pod", "default", "web")
        assert stored is not None
        stored["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "2Mi"
        stored["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/moved"
        node.db.put(stored)
        second = await listed()
        assert second["status"]["volumes"][0]["sizeLimitBytes"] == 2 << 20
        assert second["status"]["mounts"][0]["mountPath"] == "/moved"
        assert second == await node.pods.get_pod("default", "web")

        # The same name again after a delete: the new pod's uid in every path.
        await node.pods.delete_pod("default", "web")
        again = await node.pods.create_pod(pod("web", scratch()))
        path = (await listed())["status"]["volumes"][0]["path"]
        assert again["metadata"]["uid"] in path and uid not in path

    run(main)


def test_delete_wipes_empty_dir_data_and_never_host_data(node: Node) -> None:
    node.hook(ON_DELETE, "10-log", "exit 0")
    node.hook(ON_DELETE, "20-fails", "echo cannot unregister >&2; exit 4")
    (node.host / "d").mkdir()
    (node.host / "d" / "kept").write_bytes(b"host data")

    async def main() -> None:
        created = await node.pods.create_pod(pod("web", scratch(), host_path(node.host / "d")))
        uid = created["metadata"]["uid"]
        (node.volume_dir(uid, "scratch") / "f").write_bytes(b"scratch data")
        (node.host / "d" / "written").write_bytes(b"by the pod")
        result = await node.pods.delete_pod("default", "web")
        # A failing delete hook is reported; the delete goes on.
        assert result.warnings == [
            f"hook {ON_DELETE}/20-fails failed (exit status 4): cannot unregister"]
        assert node.hooks_run() == [f"{ON_DELETE}/10-log default/web {uid}",
                                    f"{ON_DELETE}/20-fails default/web {uid}"]
        assert not (node.disk / uid).exists()
        assert node.published() == [] and node.fs.volumes(uid) == []
        with pytest.raises(NotFound):
            await node.pods.get_pod("default", "web")
        with pytest.raises(NotFound):
            await node.pods.delete_pod("default", "web")

    run(main)
    assert (node.host / "d" / "kept").read_bytes() == b"host data"
    assert (node.host / "d" / "written").read_bytes() == b"by the pod"


def test_a_failing_create_hook_rolls_the_pod_back_leaving_nothing(node: Node) -> None:
    node.hook(ON_CREATE, "10-log", "exit 0")
    node.hook(ON_CREATE, "20-fails", "echo no room for $POD_NAME >&2; exit 3")
    node.hook(ON_CREATE, "30-never", "exit 0")
    (node.host / "d").mkdir()
    (node.host / "d" / "kept").write_bytes(b"host data")

    async def main() -> None:
        with pytest.raises(SetupFailed) as raised:
            await node.pods.create_pod(pod("web", scratch(), host_path(node.host / "d")))
        assert str(raised.value) == (
            f"hook {ON_CREATE}/20-fails failed (exit status 3): no room for web")
        assert list(node.disk.iterdir()) == []  # the EmptyDir was wiped, its parents too
        assert node.published() == []
        assert await node.pods.list_pods(None) == []
        assert [line.split()[0] for line in node.hooks_run()] == [
            f"{ON_CREATE}/10-log", f"{ON_CREATE}/20-fails"]  # none after the failure
        # Nothing of it is left in the way: once the hook passes, the same pod is created.
        (node.dir / "hooks" / ON_CREATE / "20-fails").unlink()
        created = await node.pods.create_pod(pod("web", scratch(), host_path(node.host / "d")))
        assert node.published() == [created["metadata"]["uid"]]

    run(main)
    assert sorted(p.name for p in (node.host / "d").iterdir()) == ["kept"]


def test_a_volume_refused_at_set_up_undoes_the_volumes_before_it(node: Node) -> None:
    node.hook(ON_CREATE, "10-log", "exit 0")

    async def main() -> None:
        missing = node.host / "missing"
        with pytest.raises(Invalid) as raised:
            await node.pods.create_pod(pod("web", scratch(), host_path(missing, "Directory")))
        assert raised.value.causes == [(
            "spec.volumes[1].hostPath.path",
            f"pod web: volume data: hostPath {missing}: expected Directory, found nothing")]
        assert list(node.disk.iterdir()) == [] and node.published() == []
        assert await node.pods.list_pods(None) == []
        assert node.hooks_run() == []  # hooks run only once every volume is set up

    run(main)
    assert not (node.host / "missing").exists()


def test_a_restart_measures_every_volume_finishes_deletes_and_makes_missing_ones(
        node: Node) -> None:
    """The restore measures every EmptyDir in one batch before setting pods up: each
    volume still gets its own usage, a directory lost meanwhile is made again (empty),
    and a delete the stop interrupted is finished rather than served."""
    sizes = {"a": 100, "b": 2000, "c": 0}
    uids: dict[str, str] = {}
    memory = {"name": "ram", "emptyDir": {"medium": "Memory"}}

    async def create() -> None:
        for name, size in sizes.items():
            created = await node.pods.create_pod(pod(name, scratch(), memory))
            uids[name] = uid = created["metadata"]["uid"]
            (node.volume_dir(uid, "scratch") / "f").write_bytes(b"x" * size)
            (node.dir / "memory" / uid / EMPTY_DIR_KIND / "ram" / "m").write_bytes(b"m" * 7)
        doomed = await node.pods.create_pod(pod("doomed", scratch()))
        uids["doomed"] = doomed["metadata"]["uid"]

    run(create)
    stored = node.db.get("Pod", "default", "doomed")
    assert stored is not None
    stored["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # a stop mid-delete
    node.db.put(stored)
    lost = node.volume_dir(uids["c"], "scratch")
    (lost / "f").unlink()
    lost.rmdir()
    again = node.restarted()
    try:
        run(lambda: again.pods.restore([again.disk, again.dir / "memory"]))
        assert sorted(again.published()) == sorted(uids[n] for n in sizes)
        for name, size in sizes.items():
            used = {v.name: v.store.usage.used for v in again.fs.volumes(uids[name])}
            assert used == {"scratch": size, "ram": 7}, name
        assert lost.is_dir()  # made again, empty
        assert not (again.disk / uids["doomed"]).exists()
        assert again.db.get("Pod", "default", "doomed") is None
    finally:
        again.db.close()


def test_after_a_restart_every_pod_is_set_up_again_and_orphans_are_wiped(node: Node) -> None:
    async def create() -> None:
        created = await node.pods.create_pod(pod("web", scratch("10Ki")))
        (node.volume_dir(created["metadata"]["uid"], "scratch") / "f").write_bytes(b"x" * 3000)

    run(create)
    (uid,) = node.published()
    orphan = node.disk / "0f0f0f0f-dead-4bad-8bad-0123456789ab"  # a crash left it
    (orphan / EMPTY_DIR_KIND / "scratch").mkdir(parents=True)
    again = node.restarted()
    try:
        assert again.published() == []

        async def restore() -> None:
            await again.pods.restore([again.disk, again.dir / "memory"])
            await again.pods.restore([again.disk, again.dir / "memory"])  # idempotent, too

        run(restore)
        assert again.published() == [uid]
        (served,) = again.fs.volumes(uid)
        assert served.store.usage.used == 3000  # measured from the disk
        assert served.store.usage.limit == 10 * 1024
        assert (again.volume_dir(uid, "scratch") / "f").read_bytes() == b"x" * 3000
        assert not orphan.exists()
    finally:
        again.db.close()


def test_after_a_restart_a_list_shows_each_pods_stored_spec_and_follows_its_writes(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """The restore keeps the status it parsed each pod for (the first list then parses
    none): it must be that pod's, and a later write of the pod must still show."""

    async def create() -> None:
        await node.pods.create_pod(pod("a", scratch("1Mi")))
        await node.pods.create_pod(pod("b", scratch("3Mi"), {"name": "ram", "emptyDir": {
            "medium": "Memory"}}))

    run(create)
    again = node.restarted()
    try:
        async def main() -> None:
            with caplog.at_level("INFO", logger="volfs"):
                await again.pods.restore([again.disk, again.dir / "memory"])
            said = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
            assert "2 of 2 pods served again" in said
            assert not [m for m in said if m.endswith(" set up")]  # one line, not one a volume
            listed = {o["metadata"]["name"]: o for o in await again.pods.list_pods(None)}
            for name, obj in listed.items():
                uid = obj["metadata"]["uid"]
                assert [(v["name"], v["path"].split("/pods/")[1]) for v in
                        obj["status"]["volumes"]] == [
                    (v.name, f"{uid}/volumes/{EMPTY_DIR_KIND}/{v.name}")
                    for v in (parse_pod(obj, None).spec.volumes or [])], name
            assert listed["a"]["status"]["volumes"][0]["sizeLimitBytes"] == 1 << 20
            assert [v["sizeLimitBytes"] for v in listed["b"]["status"]["volumes"]] == [
                3 << 20, None]

            stored = again.db.get("Pod", "default", "a")
            assert stored is not None
            stored["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] = "2Mi"  # by hand, as above
            again.db.put(stored)
            [a] = [o for o in await again.pods.list_pods("default")
                   if o["metadata"]["name"] == "a"]
            assert a["status"]["volumes"][0]["sizeLimitBytes"] == 2 << 20

        run(main)
    finally:
        again.db.close()

"""Deleting a pod's EmptyDir, counted: the pod manager called directly (real state
database, plugins and directories, no mount).

While the wipe runs, the pod is Terminating and its ``status.operation`` counts the
entries removed, which ``describe`` prints; events mark the start and the end (with
the count); a stop in the middle is finished by the next start. To look "while it
runs" without timing, the EmptyDir plugin here is the real one, with its wipe's counter
wrapped: at a chosen entry it runs a look from the worker thread, where the wipe is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from volfs.api import Volume, parse_pod
from volfs.api.errors import NotFound
from volfs.cli.describe import describe_pod
from volfs.fs import Filesystem
from volfs.lifecycle.hooks import ON_CREATE, ON_DELETE, HookRunner
from volfs.lifecycle.pods import PodManager
from volfs.lifecycle.volumes import EMPTY_DIR_KIND, EmptyDirPlugin, PluginRegistry, PodRef
from volfs.state import AsyncStateDB, StateDB
from volfs.state.events import EVENT
from volfs.stores.progress import Progress, remove_tree

FILES, DIRS = 2100, 3  # FILES spread over DIRS subdirectories


class Stopped(Exception):
    """The daemon "stops" in the middle of a wipe (its state is left as a kill leaves it)."""


@dataclass(frozen=True)
class WatchedEmptyDir(EmptyDirPlugin):
    """The real EmptyDir plugin; at entry ``at`` of a wipe, ``look`` runs on the loop."""

    at: int = 0
    look: Callable[[], Any] | None = None
    seen: list[Any] = field(default_factory=list)

    async def wipe(self, pod: PodRef, volume: Volume, progress: Progress) -> None:
        count = progress.add

        def add(n: int = 1) -> None:
            count(n)
            if progress.done == self.at and self.look is not None:
                self.seen.append(trio.from_thread.run(self.look))

        setattr(progress, "add", add)  # noqa: B010 (the instance's counter, not the class's)
        await super().wipe(pod, volume, progress)


def manager(base: Path, plugin: EmptyDirPlugin) -> tuple[StateDB, PodManager]:
    for path in ("disk", "memory", f"hooks/{ON_CREATE}", f"hooks/{ON_DELETE}"):
        (base / path).mkdir(parents=True, exist_ok=True)
    db = StateDB(base / "state.db")
    pods = PodManager(AsyncStateDB(db), Filesystem(statfs_path=str(base)),
                      PluginRegistry([plugin]), HookRunner(base / "hooks", base / "root", 30.0),
                      base / "root")
    return db, pods


def scratch_pod(name: str) -> Any:
    return parse_pod({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                      "spec": {"containers": [{"name": "app", "image": "busybox"}],
                               "volumes": [{"name": "scratch", "emptyDir": {}}]}})


def fill(directory: Path) -> None:
    for d in range(DIRS):
        (directory / f"d{d}").mkdir()
        for f in range(FILES // DIRS):
            (directory / f"d{d}" / f"f{f}").write_bytes(b"x")


def events(db: StateDB, uid: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in db.list(EVENT)
            if e["involvedObject"]["uid"] == uid]


def test_remove_tree_counts_every_entry_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("not the volume's")
    volume = tmp_path / "volume"
    volume.mkdir()
    fill(volume)
    os.symlink(outside, volume / "d0" / "link-to-dir")
    os.symlink("/nonexistent", volume / "dangling")
    os.mkfifo(volume / "fifo")
    (volume / "d1" / "a" / "b").mkdir(parents=True)
    progress = Progress("Deleting volume v")
    remove_tree(volume, progress)
    assert not volume.exists()
    assert progress.done == FILES + DIRS + 3 + 2  # + the link, dangling link, fifo; a, b
    assert (outside / "kept").read_text() == "not the volume's"
    remove_tree(volume, progress)  # gone already: nothing to do
    assert progress.done == FILES + DIRS + 5


def test_while_the_wipe_runs_the_pod_is_terminating_with_its_count(tmp_path: Path) -> None:
    plugin = WatchedEmptyDir(tmp_path / "disk", tmp_path / "memory", at=1000)
    db, pods = manager(tmp_path, plugin)
    object.__setattr__(plugin, "look", lambda: pods.get_pod("default", "big"))

    async def main() -> None:
        uid = (await pods.create_pod(scratch_pod("big")))["metadata"]["uid"]
        fill(tmp_path / "disk" / uid / EMPTY_DIR_KIND / "scratch")
        await pods.delete_pod("default", "big")
        with pytest.raises(NotFound):
            await pods.get_pod("default", "big")

        (mid_way,) = plugin.seen
        assert mid_way["metadata"]["deletionTimestamp"]
        operation = mid_way["status"]["operation"]
        assert (operation["action"], operation["done"], operation["total"],
                operation["unit"]) == ("Deleting volume scratch", 1000, None, "entries")
        lines = [" ".join(line.split()) for line in describe_pod(mid_way).splitlines()]
        assert "Status: Terminating" in lines
        assert any(line.startswith("Operation: Deleting volume scratch: 1,000 entries (")
                   for line in lines), lines

        (started, ended) = [e for e in events(db, uid) if e[0] in ("Deleting", "Deleted")]
        assert started == ("Deleting", "Deleting volume scratch: its data goes with the pod")
        assert ended[0] == "Deleted"
        assert ended[1].startswith(f"Deleted volume scratch: {FILES + DIRS:,} entries in ")
        assert not (tmp_path / "disk" / uid).exists()

    try:
        trio.run(main)
    finally:
        db.close()


def test_a_stop_in_the_middle_of_a_wipe_is_finished_by_the_next_start(tmp_path: Path) -> None:
    async def stop() -> None:
        raise Stopped

    plugin = WatchedEmptyDir(tmp_path / "disk", tmp_path / "memory", at=1000)
    db, pods = manager(tmp_path, plugin)
    object.__setattr__(plugin, "look", stop)
    volume_dir: Path | None = None

    async def delete_until_stopped() -> str:
        nonlocal volume_dir
        uid: str = (await pods.create_pod(scratch_pod("big")))["metadata"]["uid"]
        volume_dir = tmp_path / "disk" / uid / EMPTY_DIR_KIND / "scratch"
        fill(volume_dir)
        with pytest.raises(Stopped):
            await pods.delete_pod("default", "big")
        return uid

    uid = trio.run(delete_until_stopped)
    assert volume_dir is not None and volume_dir.is_dir()  # half wiped
    db.close()

    db, again = manager(tmp_path, EmptyDirPlugin(tmp_path / "disk", tmp_path / "memory"))
    try:
        (stored,) = db.list("Pod")
        assert stored["metadata"]["deletionTimestamp"]  # the delete was final already
        trio.run(again.restore, [tmp_path / "disk", tmp_path / "memory"])
        assert db.list("Pod") == []
        assert not (tmp_path / "disk" / uid).exists()
        assert [reason for reason, _ in events(db, uid)].count("Deleted") == 1
    finally:
        db.close()

"""The workload controller called directly, one pass at a time: a real state database,
pod manager and storage controller over temporary directories, no mount, no loop.

Each ``sync()`` is one pass, so the tests say exactly what one pass does: how many
replicas it makes, in which order, what it deletes, what it collects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from tests.direct.assembly import assembled
from volfs.api import parse_pod
from volfs.lifecycle.pods import PodManager
from volfs.state import AsyncStateDB
from volfs.state.events import EVENT
from volfs.workloads import Workloads


def _run(base: Path, test: Callable[[AsyncStateDB, PodManager, Workloads],
                                     Awaitable[None]]) -> None:
    async def main() -> None:
        async with assembled(base) as parts:
            await test(parts.state, parts.pods, Workloads(parts.state, parts.pods,
                                                          parts.storage))

    trio.run(main)


def controller(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"replicas": replicas, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [
                    {"name": "s", "mountPath": "/s"}]}],
                    "volumes": [{"name": "s", "emptyDir": {}}]}}}}


def stateful_set(name: str, replicas: int, policy: str = "OrderedReady") -> dict[str, Any]:
    # A claim of a class nobody serves stays Pending: so does the pod that uses it.
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "c", "image": "i", "volumeMounts": [
                             {"name": "data", "mountPath": "/d"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "storageClassName": "none",
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}


async def names(db: AsyncStateDB, kind: str = "Pod") -> list[str]:
    return sorted(o["metadata"]["name"] for o in await db.list(kind))


def test_one_pass_makes_replaces_and_trims_a_controllers_pods(tmp_path: Path) -> None:
    async def test(db: AsyncStateDB, pods: PodManager, workloads: Workloads) -> None:
        await workloads.controllers.create(controller("web", 3))
        await workloads.sync()
        made = await names(db)
        assert len(made) == 3 and all(n.startswith("web-") for n in made)
        await workloads.sync()
        assert await names(db) == made  # a pass with nothing to do makes nothing

        await pods.delete_pod("default", made[0])
        await workloads.sync()
        now = await names(db)
        assert len(now) == 3 and made[0] not in now

        stored = await workloads.controllers.get("default", "web")
        stored["spec"]["replicas"] = 1
        await workloads.controllers.update(stored)
        await workloads.sync()
        [left] = await names(db)
        status = (await workloads.controllers.get("default", "web"))["status"]
        assert (status["replicas"], status["readyReplicas"], status["observedGeneration"]) == (
            1, 1, 2)

        await workloads.delete(workloads.controllers, "default", "web", None)
        assert await names(db) == [left]  # Background: the collector's, on the next pass
        await workloads.sync()
        assert await names(db) == []

    _run(tmp_path, test)


def test_after_a_restart_a_pass_counts_what_exists(tmp_path: Path) -> None:
    async def first(db: AsyncStateDB, pods: PodManager, workloads: Workloads) -> None:
        await workloads.controllers.create(controller("web", 2))
        await workloads.sync()

    async def second(db: AsyncStateDB, pods: PodManager, workloads: Workloads) -> None:
        before = await names(db)
        await workloads.sync()
        assert await names(db) == before and len(before) == 2

    _run(tmp_path, first)
    _run(tmp_path, second)


def test_ordered_ready_waits_for_each_replica_and_parallel_does_not(tmp_path: Path) -> None:
    async def test(db: AsyncStateDB, pods: PodManager, workloads: Workloads) -> None:
        await workloads.stateful_sets.create(stateful_set("db", 3))
        await workloads.sync()
        await workloads.sync()
        # db-0 waits for its claim (Pending): db-1 is not made, nor its claim.
        assert await names(db) == ["db-0"]
        assert await names(db, "PersistentVolumeClaim") == ["data-db-0"]

        await workloads.stateful_sets.create(stateful_set("fast", 3, "Parallel"))
        await workloads.sync()
        assert await names(db) == ["db-0", "fast-0", "fast-1", "fast-2"]
        assert await names(db, "PersistentVolumeClaim") == [
            "data-db-0", "data-fast-0", "data-fast-1", "data-fast-2"]

        # Scaled down, the highest ordinals go; their claims stay.
        stored = await workloads.stateful_sets.get("default", "fast")
        stored["spec"]["replicas"] = 1
        await workloads.stateful_sets.update(stored)
        await workloads.sync()
        assert await names(db) == ["db-0", "fast-0"]
        assert len(await names(db, "PersistentVolumeClaim")) == 4

    _run(tmp_path, test)


def test_a_replicas_name_taken_by_another_pod_is_a_failed_create(tmp_path: Path) -> None:
    async def test(db: AsyncStateDB, pods: PodManager, workloads: Workloads) -> None:
        other = await workloads.controllers.create(controller("x", 1))  # db-0 is its one
        await workloads.stateful_sets.create(stateful_set("db", 1, "Parallel"))
        squatter = stateful_set("db", 1)["spec"]["template"]
        squatter = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "db-0", "labels": {"app": "x"}, "ownerReferences": [{
                "apiVersion": "v1", "kind": "ReplicationController", "name": "x",
                "uid": other["metadata"]["uid"], "controller": True}]},
            "spec": {"containers": squatter["spec"]["containers"],
                     "volumes": [{"name": "data", "emptyDir": {}}]}}
        await pods.create_pod(parse_pod(squatter))
        await workloads.sync()
        reasons = [e["reason"] for e in await db.list(EVENT)
                   if e["involvedObject"]["kind"] == "StatefulSet"]
        assert reasons == ["FailedCreate"]
        await workloads.sync()  # backing off: no second event at once
        assert len([e for e in await db.list(EVENT) if e["reason"] == "FailedCreate"]) == 1

    _run(tmp_path, test)

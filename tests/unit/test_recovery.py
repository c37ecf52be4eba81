"""Recovery after a daemon restart, without an engine: which containers hold a dead
mount, which the policy restarts and in what order, what their pods' status says, and
what the events tell (a fake engine that records what it was asked)."""

from __future__ import annotations

import datetime
import logging
import types
from pathlib import Path
from typing import Any

import pytest
import trio
from docker.errors import APIError

from tests.unit.test_docker_runtime import RUN, SIMPLE, FakeRuntime, manager, pod
from volfs.cli.describe import describe_pod
from volfs.cli.printers import pods_table
from volfs.lifecycle.pods import PodManager
from volfs.lifecycle.recovery import (
    DOCKER_VOLUME_ANNOTATION,
    OTHER,
    PLUGIN,
    RUN_POD,
    ContainerRecovery,
    RecoveryPolicy,
    chosen_by,
    find_stranded,
    pod_uid_of,
    restart_groups,
    volume_pods,
)
from volfs.runtime import (
    LABEL_CONTAINER,
    LABEL_OWNER,
    LABEL_UID,
    BoundContainer,
    BoundMount,
    ContainerState,
    RuntimeFailed,
    RuntimeUnavailable,
)
from volfs.runtime.docker import DockerRuntime, _epoch
from volfs.state import AsyncStateDB, StateDB

__all__ = ["manager"]  # the fixture, used by name

ROOT = "/var/lib/volfs"
MOUNTED = 1000.0


def bound(name: str, started: float | None, *sources: str,
          labels: dict[str, str] | None = None, driver: str = "") -> BoundContainer:
    return BoundContainer(id=f"id-{name}", name=name, labels=labels or {}, started=started,
                          mounts=tuple(BoundMount(s, "vol" if driver else "", driver)
                                       for s in sources))


def run_labels(uid: str, container: str, root: str = ROOT) -> dict[str, str]:
    return {LABEL_OWNER: root, LABEL_UID: uid, LABEL_CONTAINER: container}


def test_the_engines_start_times_are_read_to_the_microsecond() -> None:
    assert _epoch("1970-01-01T00:16:40.123456789Z") == pytest.approx(1000.123456)
    assert _epoch("1970-01-01T00:16:40Z") == 1000.0
    assert _epoch("0001-01-01T00:00:00Z") is None
    assert _epoch("garbage") is None


def test_only_containers_started_before_the_mount_are_stranded_and_each_is_classed() -> None:
    volume = f"{ROOT}/pods/u1/volumes/kubernetes.io~empty-dir/data"
    found = find_stranded([
        bound("run", 999.0, volume, labels=run_labels("u1", "app")),
        bound("plugin", 10.0, f"{ROOT}/pods/u2/volumes/x/y", driver="volfs"),
        bound("other", 10.0, f"{ROOT}/pods/u3/volumes/x/y/sub"),
        bound("another-daemons", 10.0, volume, labels=run_labels("u1", "app", "/elsewhere")),
        bound("after", MOUNTED, volume, labels=run_labels("u1", "app")),  # on the new mount
        bound("unknown", None, volume),
    ], ROOT, MOUNTED, plugin_driver="volfs", volume_pods={})
    assert [(s.container.name, s.kind, s.pod_uid) for s in found] == [
        ("run", RUN_POD, "u1"), ("plugin", PLUGIN, "u2"), ("other", OTHER, "u3"),
        ("another-daemons", OTHER, "u1")]


def test_no_plugin_served_means_no_plugin_containers() -> None:
    (found,) = find_stranded([bound("c", 1.0, f"{ROOT}/pods/u/v", driver="")], ROOT, MOUNTED,
                             plugin_driver="", volume_pods={})
    assert found.kind == OTHER


def test_a_plugin_volume_leads_to_its_pod_by_name() -> None:
    """The engine knows no source for a plugin's volume: its name leads to its pod."""
    (found,) = find_stranded([bound("c", 1.0, "", driver="volfs")], ROOT, MOUNTED,
                             plugin_driver="volfs", volume_pods={"vol": "u7"})
    assert (found.kind, found.pod_uid) == (PLUGIN, "u7")
    annotations = {DOCKER_VOLUME_ANNOTATION: "vol"}
    pods: list[dict[str, Any]] = [{"metadata": {"uid": "u7", "annotations": annotations}},
                                  {"metadata": {"uid": "u8"}}]
    assert volume_pods(pods) == {"vol": "u7"}


def test_pod_uid_of_a_path() -> None:
    assert pod_uid_of(f"{ROOT}/pods/u1/volumes/k/v", ROOT) == "u1"
    assert pod_uid_of(f"{ROOT}/pods", ROOT) == ""
    assert pod_uid_of(ROOT, ROOT) == ""
    assert pod_uid_of("/elsewhere/pods/u1", ROOT) == ""


@pytest.mark.parametrize("policy, kinds", [
    (RecoveryPolicy.MANAGED, {RUN_POD, PLUGIN}),
    (RecoveryPolicy.ALL, {RUN_POD, PLUGIN, OTHER}),
    (RecoveryPolicy.NONE, set()),
])
def test_the_policy_chooses(policy: RecoveryPolicy, kinds: set[str]) -> None:
    found = find_stranded([
        bound("run", 1.0, f"{ROOT}/pods/u1/v", labels=run_labels("u1", "app")),
        bound("plugin", 1.0, f"{ROOT}/pods/u2/v", driver="volfs"),
        bound("other", 1.0, f"{ROOT}/pods/u3/v"),
    ], ROOT, MOUNTED, "volfs", {})
    assert {s.kind for s in found if chosen_by(policy, s)} == kinds


def test_a_pods_containers_are_one_group_in_spec_order() -> None:
    found = find_stranded([
        bound("b-side", 1.0, f"{ROOT}/pods/u1/v", labels=run_labels("u1", "side")),
        bound("z-app", 1.0, f"{ROOT}/pods/u1/v", labels=run_labels("u1", "app")),
        bound("loner", 1.0, f"{ROOT}/elsewhere"),
        bound("user", 1.0, f"{ROOT}/pods/u1/v"),
    ], ROOT, MOUNTED, "volfs", {})
    pods = {"u1": {"spec": {"containers": [{"name": "app"}, {"name": "side"}]}}}
    groups = restart_groups(found, pods)
    assert [[s.container.name for s in g] for g in groups] == [
        ["loner"], ["z-app", "b-side", "user"]]


class FakeEngine:
    """Bound containers as given; records each restart (ids, grace)."""

    def __init__(self, containers: list[BoundContainer],
                 fail: Exception | None = None) -> None:
        self.containers = containers
        self.restarted: list[tuple[list[str], float]] = []
        self.fail = fail

    async def bound_containers(self, root: str, driver: str) -> list[BoundContainer]:
        if isinstance(self.fail, RuntimeUnavailable):
            raise self.fail
        return self.containers

    async def restart_containers(self, ids: list[str], grace_seconds: float) -> None:
        if self.fail:
            raise self.fail
        self.restarted.append((ids, grace_seconds))


def events(db: AsyncStateDB) -> list[tuple[str, str, str]]:
    found = trio.run(db.list, "Event")
    return sorted((e["involvedObject"]["name"], e["reason"], e["message"]) for e in found)


def stored_pod(db: AsyncStateDB, uid: str, name: str) -> None:
    trio.run(db.put, {"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "namespace": "default", "uid": uid},
                      "spec": {"containers": [{"name": "app"}, {"name": "side"}]}})


@pytest.fixture
def db(tmp_path: Path) -> AsyncStateDB:
    return AsyncStateDB(StateDB(tmp_path / "state.db"))


def test_recovery_restarts_by_pod_with_a_short_grace_and_tells_on_the_pod(
    db: AsyncStateDB
) -> None:
    stored_pod(db, "u1", "web")
    engine = FakeEngine([
        bound("web-side", 1.0, f"{ROOT}/pods/u1/v", labels=run_labels("u1", "side")),
        bound("web-app", 1.0, f"{ROOT}/pods/u1/v", labels=run_labels("u1", "app")),
        bound("gone", 1.0, f"{ROOT}/pods/u9/v", labels=run_labels("u9", "app")),  # the sweep's
        bound("user", 1.0, f"{ROOT}/pods/u1/v"),  # not managed
    ])
    recovery = ContainerRecovery(db, engine, ROOT, RecoveryPolicy.MANAGED, "volfs")
    assert trio.run(recovery.run, MOUNTED) == 2
    assert engine.restarted == [(["id-web-app", "id-web-side"], 1.0)]
    told = events(db)
    assert [(name, reason) for name, reason, _ in told] == [
        ("web", "Restarted"), ("web", "Restarted"), ("web", "VolumeMountLost"),
        ("web", "VolumeMountLost")]
    assert ("web", "VolumeMountLost", "container user (bind mount) holds the volume mount of "
            "a volfs daemon that stopped and sees 'Transport endpoint is not connected' "
            "there; not restarted (--recover-containers=managed): run docker restart user"
            ) in told
    assert any(m.startswith("containers web-app, web-side hold the volume mount")
               for _, r, m in told if r == "VolumeMountLost")


def test_with_policy_none_nothing_is_restarted_and_the_pod_is_told(db: AsyncStateDB) -> None:
    stored_pod(db, "u1", "web")
    engine = FakeEngine([bound("web-app", 1.0, f"{ROOT}/pods/u1/v",
                               labels=run_labels("u1", "app"))])
    assert trio.run(ContainerRecovery(db, engine, ROOT, RecoveryPolicy.NONE, "volfs").run,
                    MOUNTED) == 0
    assert engine.restarted == []
    assert [r for _, r, _ in events(db)] == ["VolumeMountLost"]


def test_an_unreachable_engine_is_a_warning_where_containers_may_be_stranded(
    db: AsyncStateDB, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FakeEngine([], fail=RuntimeUnavailable("no Docker engine answers at x"))
    recovery = ContainerRecovery(db, engine, ROOT, RecoveryPolicy.MANAGED, "v")
    caplog.set_level(logging.DEBUG)
    assert trio.run(recovery.run, MOUNTED) == 0  # no pod volfs runs: nothing expected
    assert [r.levelname for r in caplog.records if "not looked for" in r.message] == ["DEBUG"]
    trio.run(db.put, {"apiVersion": "v1", "kind": "Pod", "spec": {}, "metadata": {
        "name": "web", "namespace": "default", "uid": "u1",
        "annotations": {"volfs.io/run": "true"}}})
    caplog.clear()
    assert trio.run(recovery.run, MOUNTED) == 0
    (record,) = [r for r in caplog.records if "not looked for" in r.message]
    assert record.levelname == "WARNING"
    assert record.message.endswith("were not looked for: no Docker engine answers at x")
    assert events(db) == []


def test_a_failed_restart_is_a_warning_event(db: AsyncStateDB) -> None:
    stored_pod(db, "u1", "web")
    engine = FakeEngine([bound("web-app", 1.0, f"{ROOT}/pods/u1/v",
                               labels=run_labels("u1", "app"))], fail=RuntimeFailed("refused"))
    assert trio.run(ContainerRecovery(db, engine, ROOT, RecoveryPolicy.MANAGED, "v").run,
                    MOUNTED) == 0
    assert ("web", "Failed", "container web-app not restarted: refused; run docker restart "
            "web-app") in events(db)


def test_a_pod_whose_container_holds_a_dead_mount_is_not_ready_and_says_why(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, _ = manager

    async def main() -> dict[str, Any]:
        created = await pods.create_pod(pod(SIMPLE, RUN))
        uid = created["metadata"]["uid"]
        runtime.running[uid] = [ContainerState(name="app", state="running", started=1.0),
                                ContainerState(name="side", state="running", started=5000.0)]
        pods.mounted(MOUNTED, recovers=False)
        return (await pods.list_pods("default"))[0]

    listed = trio.run(main)
    status = listed["status"]
    assert [s["ready"] for s in status["containerStatuses"]] == [False, True]
    assert status["reason"] == "VolumeMountLost"
    engine_name = f"volfs_web_app_{listed['metadata']['uid'].replace('-', '')[:8]}"
    assert status["message"] == (
        "containers app hold the volume mount of a volfs daemon that stopped and see "
        "'Transport endpoint is not connected' there; restart them: docker restart "
        f"{engine_name} (volfs serve --recover-containers=managed does this when it starts)")
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready == [{"type": "Ready", "status": "False", "reason": "VolumeMountLost",
                      "message": status["message"]}]


def test_a_pod_restarted_after_the_mount_is_ready(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, _ = manager

    async def main() -> dict[str, Any]:
        created = await pods.create_pod(pod(SIMPLE, RUN))
        uid = created["metadata"]["uid"]
        runtime.running[uid] = [ContainerState(name=n, state="running", started=MOUNTED + 1)
                                for n in ("app", "side")]
        pods.mounted(MOUNTED, recovers=True)
        return (await pods.list_pods("default"))[0]

    status = trio.run(main)["status"]
    assert [s["ready"] for s in status["containerStatuses"]] == [True, True]
    assert "reason" not in status and status["phase"] == "Running"


def test_get_pods_and_describe_show_the_reason_as_kubectl_does() -> None:
    lost = {"metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"phase": "Running", "reason": "VolumeMountLost", "message": "restart",
                       "containerStatuses": [{"name": "app", "ready": False}]}}
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    rows = pods_table([lost], now, all_namespaces=False, wide=False).splitlines()
    assert rows[1].split()[:3] == ["web", "0/1", "VolumeMountLost"]
    lines = [" ".join(line.split()) for line in describe_pod(lost).splitlines()]
    assert lines[lines.index("Status: Running") + 1:][:2] == [
        "Reason: VolumeMountLost", "Message: restart"]


class RecordingApi:
    """The Engine API calls a restart makes; a stop of ``refuse`` fails as the engine's."""

    def __init__(self, refuse: str = "") -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse = refuse

    def stop(self, container_id: str, timeout: int) -> None:
        if container_id == self.refuse:
            raise APIError("500 Server Error", explanation="cannot stop container")
        self.calls.append(("stop", container_id))

    def start(self, container_id: str) -> None:
        self.calls.append(("start", container_id))


def restarted(api: RecordingApi, ids: list[str]) -> None:
    runtime = DockerRuntime("unix:///nowhere", owner=ROOT)
    runtime._client = types.SimpleNamespace(api=api)  # type: ignore[assignment]
    trio.run(runtime.restart_containers, ids, 1.0)


def test_the_engine_stops_a_pods_containers_then_starts_them_in_order() -> None:
    api = RecordingApi()
    restarted(api, ["a", "b", "c"])
    assert sorted(api.calls[:3]) == [("stop", "a"), ("stop", "b"), ("stop", "c")]
    assert api.calls[3:] == [("start", "a"), ("start", "b"), ("start", "c")]


def test_a_refused_stop_is_one_error_and_nothing_is_started() -> None:
    api = RecordingApi(refuse="b")
    with pytest.raises(RuntimeFailed, match="^cannot stop container$"):
        restarted(api, ["a", "b"])
    assert [call for call, _ in api.calls] == ["stop"]


def test_an_unexpected_failure_is_logged_and_the_daemon_serves_on(
    db: AsyncStateDB, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FakeEngine):
        async def bound_containers(self, root: str, driver: str) -> list[BoundContainer]:
            raise ValueError("odd answer")

    assert trio.run(ContainerRecovery(db, Broken([]), ROOT, RecoveryPolicy.MANAGED, "v").run,
                    MOUNTED) == 0
    assert "not recovered: ValueError: odd answer" in caplog.text

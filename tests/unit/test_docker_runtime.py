"""The runtime layer without an engine: plans, binds, states, and the lifecycle's use of
a ContainerRuntime (a fake that records what it was asked)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import trio
from docker.errors import ImageNotFound
from docker.models.images import Image

from volfs.api import parse_object
from volfs.api.errors import Invalid, SetupFailed
from volfs.fs import Filesystem
from volfs.lifecycle.hooks import HookRunner
from volfs.lifecycle.pod_containers import NOT_RUN_MESSAGE
from volfs.lifecycle.pods import ContainersNotRemoved, PodManager
from volfs.lifecycle.volumes import EmptyDirPlugin, PluginRegistry
from volfs.runtime import (
    ContainerState,
    PodPlan,
    RuntimeFailed,
    RuntimeUnavailable,
    check_runnable,
    container_name,
    expand,
    plan_pod,
    pod_phase,
    prepare_binds,
)
from volfs.runtime.docker import DockerRuntime, _state
from volfs.state import AsyncStateDB, StateDB


def pod(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Any:
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "annotations": annotations or {}}, "spec": spec}
    return parse_object(doc, None)[0]


APP = {"name": "app", "image": "busybox",
       "volumeMounts": [{"name": "scratch", "mountPath": "/data"},
                        {"name": "scratch", "mountPath": "/logs", "subPath": "a/logs",
                         "readOnly": True}]}
SCRATCH = [{"name": "scratch", "emptyDir": {}}]


def mounts(volume_path: str) -> list[dict[str, Any]]:
    return [{"container": "app", "name": "scratch", "mountPath": "/data", "subPath": None,
             "path": volume_path, "readOnly": False},
            {"container": "app", "name": "scratch", "mountPath": "/logs", "subPath": "a/logs",
             "path": volume_path, "readOnly": True}]


# -- plans --------------------------------------------------------------------------------

def test_plan_passes_command_args_env_and_binds_through() -> None:
    spec = {"containers": [{**APP, "command": ["sh", "-c"], "args": ["echo $(B) $$(A)"],
                            "workingDir": "/data",
                            "env": [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)y"}],
                            "securityContext": {"runAsUser": 1000}}],
            "securityContext": {"runAsUser": 5, "runAsGroup": 2000},
            "restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 3,
            "volumes": SCRATCH}
    plan = plan_pod(pod(spec), "0123abcd-0000", mounts("/v"))
    (app,) = plan.containers
    assert app.command == ("sh", "-c")
    assert app.args == ("echo xy $(A)",)
    assert app.env == (("A", "x"), ("B", "xy"))
    assert app.working_dir == "/data"
    assert app.user == "1000:2000"  # the container's user, the pod's group
    assert [(b.source, b.target, b.read_only) for b in app.binds] == [
        ("/v", "/data", False), ("/v/a/logs", "/logs", True)]
    assert (plan.restart_policy, plan.grace_seconds) == ("on-failure", 3.0)
    assert container_name(plan, "app") == "volfs_web_app_0123abcd"
    assert plan.labels("app", "/root")["io.volfs.pod.uid"] == "0123abcd-0000"


def test_plan_defaults_keep_the_images_entrypoint_and_kubernetes_grace() -> None:
    plan = plan_pod(pod({"containers": [{"name": "app", "image": "busybox"}]}), "u", [])
    (app,) = plan.containers
    assert (app.command, app.args, app.user, app.binds) == (None, None, None, ())
    assert (plan.restart_policy, plan.grace_seconds) == ("always", 30.0)


def test_what_volfs_cannot_run_is_refused_field_by_field() -> None:
    spec = {"initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [
                {"name": "a", "env": [{"name": "X", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.name"}}}]},
                {"name": "b", "image": "busybox", "envFrom": [{"configMapRef": {"name": "c"}}],
                 "securityContext": {"runAsGroup": 5}}]}
    fields = [f for f, _ in check_runnable(pod(spec))]
    assert fields == ["spec.initContainers", "spec.containers[0].image",
                      "spec.containers[0].env[0].valueFrom", "spec.containers[1].envFrom",
                      "spec.containers[1].securityContext.runAsGroup"]


@pytest.mark.parametrize("text, expected", [
    ("$(A)", "1"), ("$(NOPE)", "$(NOPE)"), ("$$(A)", "$(A)"), ("$$", "$"), ("a$b", "a$b"),
    ("$(A)$(A)", "11"), ("$(", "$("),
])
def test_expand_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"A": "1"}) == expected


# -- binds --------------------------------------------------------------------------------

def test_sub_paths_are_made_with_the_volume_roots_mode(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir(mode=0o750)
    os.chmod(volume, 0o2750)
    plan = plan_pod(pod({"containers": [APP], "volumes": SCRATCH}), "u", mounts(str(volume)))
    prepare_binds(plan)
    assert (volume / "a").stat().st_mode & 0o7777 == 0o2750
    assert (volume / "a" / "logs").stat().st_mode & 0o7777 == 0o2750
    prepare_binds(plan)  # again: nothing to do


def test_a_sub_path_may_not_lead_out_of_its_volume(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "a").symlink_to(tmp_path)
    plan = plan_pod(pod({"containers": [APP], "volumes": SCRATCH}), "u", mounts(str(volume)))
    with pytest.raises(RuntimeFailed, match="subPath a/logs: leads out of its volume"):
        prepare_binds(plan)
    assert not (tmp_path / "logs").exists()  # nothing made outside


def test_a_symlink_inside_its_volume_is_fine(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    (volume / "real" / "logs").mkdir(parents=True)
    (volume / "a").symlink_to("real")
    plan = plan_pod(pod({"containers": [APP], "volumes": SCRATCH}), "u", mounts(str(volume)))
    prepare_binds(plan)


# -- states -------------------------------------------------------------------------------

def inspected(status: str, **state: Any) -> dict[str, Any]:
    return {"Id": "c0ffee", "Image": "sha256:abc", "RestartCount": 2,
            "Config": {"Image": "busybox"},
            "State": {"Status": status, "StartedAt": "2026-01-02T03:04:05.123456789Z",
                      "FinishedAt": "0001-01-01T00:00:00Z", **state}}


def test_engine_states_in_kubernetes_terms() -> None:
    running = _state("app", inspected("running")).to_k8s()
    assert running["ready"] is True and running["restartCount"] == 2
    assert running["state"] == {"running": {"startedAt": "2026-01-02T03:04:05Z"}}
    assert running["containerID"] == "docker://c0ffee"
    done = _state("app", inspected("exited", ExitCode=0,
                                   FinishedAt="2026-01-02T03:05:00.5Z")).to_k8s()
    assert done["state"]["terminated"]["reason"] == "Completed"
    assert done["state"]["terminated"]["finishedAt"] == "2026-01-02T03:05:00Z"
    assert _state("a", inspected("exited", ExitCode=3)).reason == "Error"
    assert _state("a", inspected("exited", ExitCode=137, OOMKilled=True)).reason == "OOMKilled"
    assert _state("a", inspected("created")).reason == "ContainerCreating"
    assert _state("a", inspected("restarting")).reason == "CrashLoopBackOff"


@pytest.mark.parametrize("states, expected", [
    (["running", "running"], "Running"),
    (["running", "waiting"], "Pending"),
    (["running"], "Pending"),  # one of two containers is missing
    ([("terminated", 0), ("terminated", 0)], "Succeeded"),
    ([("terminated", 0), ("terminated", 1)], "Failed"),
    (["running", ("terminated", 1)], "Running"),
])
def test_pod_phase(states: list[Any], expected: str) -> None:
    made = [ContainerState(name=str(i), state=s if isinstance(s, str) else s[0],
                           exit_code=None if isinstance(s, str) else s[1])
            for i, s in enumerate(states)]
    assert pod_phase(made, 2) == expected


def test_an_unreachable_engine_is_one_line(tmp_path: Path) -> None:
    runtime = DockerRuntime(f"unix://{tmp_path}/none.sock", owner="/root")
    with pytest.raises(RuntimeUnavailable) as excinfo:
        trio.run(runtime.pod_states, None)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"no Docker engine answers at unix://{tmp_path}/none.sock (")


class FakeImages:
    """Images by name, each with its ``Config`` (Cmd, Entrypoint)."""

    def __init__(self, configs: dict[str, dict[str, Any]]) -> None:
        self.configs = configs

    def get(self, name: str) -> Image:
        if name not in self.configs:
            raise ImageNotFound(f"No such image: {name}")
        return Image(attrs={"Id": f"sha256:{name}", "Config": self.configs[name]})


class FakeContainers:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create(self, **args: Any) -> Any:
        self.created.append(args)
        return types.SimpleNamespace(start=lambda: None, remove=lambda force: None)


class FakeClient:
    def __init__(self, configs: dict[str, dict[str, Any]]) -> None:
        self.images = FakeImages(configs)
        self.containers = FakeContainers()


@pytest.mark.parametrize("container, starts", [
    ({}, False),
    ({"command": ["sleep", "1"]}, True),
    ({"args": ["sleep", "1"]}, True),  # the engine runs CMD as the command with no ENTRYPOINT
    ({"image": "with-cmd"}, True),
    ({"image": "with-entrypoint"}, True),
])
def test_a_container_with_no_command_anywhere_is_refused_naming_it(
    container: dict[str, Any], starts: bool
) -> None:
    client = FakeClient({"bare": {"Cmd": None, "Entrypoint": None},
                         "with-cmd": {"Cmd": ["sh"]}, "with-entrypoint": {"Entrypoint": ["sh"]}})
    spec = {"containers": [{"name": "fine", "image": "bare", "command": ["true"]},
                           {"name": "app", "image": "bare", **container}]}
    plan = plan_pod(pod(spec), "u", [])
    runtime = DockerRuntime("unix:///nowhere", owner="/root")
    if starts:
        runtime._start_pod(client, plan)  # type: ignore[arg-type]
        assert len(client.containers.created) == 2
        return
    with pytest.raises(RuntimeFailed) as excinfo:
        runtime._start_pod(client, plan)  # type: ignore[arg-type]
    assert str(excinfo.value) == (
        "container app: image bare has no command (no CMD or ENTRYPOINT) and the container "
        "gives none: add command: to the container in the manifest, or use an image with "
        "a CMD")
    assert client.containers.created == []  # refused before anything was made


# -- the lifecycle with a fake runtime ----------------------------------------------------

class FakeRuntime:
    """Records calls; ``fail`` makes the next start (or remove) raise it."""

    def __init__(self) -> None:
        self.started: list[PodPlan] = []
        self.removed: list[tuple[str, float]] = []
        self.running: dict[str, list[ContainerState]] = {}
        self.fail_start: Exception | None = None
        self.fail_remove: Exception | None = None
        self.queries = 0

    async def start_pod(self, plan: PodPlan) -> None:
        if self.fail_start:
            raise self.fail_start
        self.started.append(plan)
        self.running[plan.uid] = [ContainerState(name=c.name, state="running")
                                  for c in plan.containers]

    async def remove_pod(self, uid: str, grace_seconds: float) -> int:
        if self.fail_remove:
            raise self.fail_remove
        self.removed.append((uid, grace_seconds))
        return len(self.running.pop(uid, []))

    async def pod_states(self, uids: Collection[str] | None) -> dict[str, list[ContainerState]]:
        self.queries += 1
        return {u: s for u, s in self.running.items() if uids is None or u in uids}


@pytest.fixture
def manager(tmp_path: Path) -> tuple[PodManager, FakeRuntime, Path]:
    runtime = FakeRuntime()
    (tmp_path / "hooks" / "on-create.d").mkdir(parents=True)
    (tmp_path / "hooks" / "on-delete.d").mkdir(parents=True)
    db = AsyncStateDB(StateDB(tmp_path / "state.db"))
    pods = PodManager(db, Filesystem(statfs_path=str(tmp_path)),
                      PluginRegistry([EmptyDirPlugin(tmp_path / "disk", tmp_path / "mem")]),
                      HookRunner(tmp_path / "hooks", tmp_path / "root", 5.0),
                      tmp_path / "root", runtime)
    (tmp_path / "disk").mkdir()
    return pods, runtime, tmp_path / "disk"


RUN = {"volfs.io/run": "true"}
SIMPLE = {"containers": [{"name": "app", "image": "busybox",
                          "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]},
                         {"name": "side", "image": "busybox"}],
          "terminationGracePeriodSeconds": 4, "volumes": SCRATCH}


def test_run_pods_start_report_and_stop_their_containers(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, disk = manager

    async def main() -> None:
        created = await pods.create_pod(pod(SIMPLE, RUN))
        uid = created["metadata"]["uid"]
        (plan,) = runtime.started
        assert plan.uid == uid and plan.containers[0].binds[0].target == "/data"
        assert created["status"]["phase"] == "Running"
        assert [s["ready"] for s in created["status"]["containerStatuses"]] == [True, True]
        runtime.running[uid][1] = ContainerState(name="side", state="terminated", exit_code=1,
                                                 reason="Error")
        listed = (await pods.list_pods("default"))[0]
        assert [s["name"] for s in listed["status"]["containerStatuses"]] == ["app", "side"]
        assert listed["status"]["containerStatuses"][1]["state"]["terminated"]["exitCode"] == 1
        result = await pods.delete_pod("default", "web")
        assert runtime.removed == [(uid, 4.0)] and result.warnings == []
        assert not (disk / uid).exists()

    trio.run(main)


def test_a_pod_volfs_runs_no_containers_of_says_so(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    """No containerStatuses (kubectl's READY is "-", not a broken-looking 0/2), and a
    status.message saying how to have them run; a pod volfs runs has no such message."""
    pods, runtime, _ = manager

    async def main() -> None:
        created = await pods.create_pod(pod(SIMPLE))
        for shown in (created, await pods.get_pod("default", "web")):
            assert "containerStatuses" not in shown["status"]
            assert shown["status"]["message"] == NOT_RUN_MESSAGE
        assert runtime.started == []
        await pods.delete_pod("default", "web")
        ran = await pods.create_pod(pod(SIMPLE, RUN))
        assert "message" not in ran["status"] and len(ran["status"]["containerStatuses"]) == 2

    trio.run(main)


def test_a_delete_may_give_the_containers_another_grace_period(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, _ = manager

    async def main() -> None:
        for grace, expected in ((0, 0.0), (None, 4.0)):  # None: the pod's own
            uid = (await pods.create_pod(pod(SIMPLE, RUN)))["metadata"]["uid"]
            await pods.delete_pod("default", "web", grace_seconds=grace)
            assert runtime.removed[-1] == (uid, expected)

    trio.run(main)


def test_a_failed_start_rolls_the_pod_back(manager: tuple[PodManager, FakeRuntime, Path]) -> None:
    pods, runtime, disk = manager
    runtime.fail_start = RuntimeFailed("image nope is not present")

    async def main() -> None:
        with pytest.raises(SetupFailed, match="containers not started: image nope"):
            await pods.create_pod(pod(SIMPLE, RUN))
        assert await pods.list_pods(None) == []
        assert len(runtime.removed) == 1  # asked to remove whatever it made
        assert list(disk.iterdir()) == []

    trio.run(main)


def test_unrunnable_pods_are_invalid_before_anything_is_made(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, disk = manager
    spec = {**SIMPLE, "initContainers": [{"name": "i", "image": "busybox"}]}

    async def main() -> None:
        with pytest.raises(Invalid, match="spec.initContainers"):
            await pods.create_pod(pod(spec, RUN))
        assert runtime.started == [] and list(disk.iterdir()) == []
        await pods.create_pod(pod(spec))  # not run: the same pod is fine
        await pods.get_pod("default", "web")
        await pods.delete_pod("default", "web")
        assert runtime.queries == 0 and runtime.removed == []  # never asked about it

    trio.run(main)


def test_delete_with_the_engine_away_warns_and_a_refusal_keeps_the_pod(
    manager: tuple[PodManager, FakeRuntime, Path]
) -> None:
    pods, runtime, _ = manager

    async def main() -> None:
        await pods.create_pod(pod(SIMPLE, RUN))
        runtime.fail_remove = RuntimeFailed("device busy")
        with pytest.raises(ContainersNotRemoved, match="device busy"):
            await pods.delete_pod("default", "web")
        assert (await pods.get_pod("default", "web"))["status"]["phase"] == "Running"
        runtime.fail_remove = RuntimeUnavailable("no Docker engine answers")
        result = await pods.delete_pod("default", "web")
        assert result.warnings == ["containers not removed: no Docker engine answers"]
        runtime.fail_remove = None
        assert await pods.sweep_containers() == 1  # the engine is back: orphans go
        assert runtime.running == {}

    trio.run(main)


def test_an_engine_whose_socket_is_missing_is_unreachable_without_the_sdk(
        tmp_path: Path) -> None:
    """Where the socket does not exist, the engine is unreachable at once, in the SDK's
    words for it, and the SDK is not imported for that (a host without Docker pays
    nothing for it at each start). In a fresh interpreter: this one has the SDK."""
    code = (
        "import sys, trio\n"
        "from volfs.runtime import RuntimeUnavailable\n"
        "from volfs.runtime.docker import DockerRuntime\n"
        f"runtime = DockerRuntime('unix://{tmp_path}/none.sock', owner='/root')\n"
        "try:\n"
        "    trio.run(runtime.pod_states, None)\n"
        "except RuntimeUnavailable as exc:\n"
        "    print(exc)\n"
        "print('docker' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert out == [f"no Docker engine answers at unix://{tmp_path}/none.sock (No such file "
                   "or directory); start dockerd, or point 'volfs serve --docker-host' at "
                   "one", "False"]

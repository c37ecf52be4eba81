"""A daemon killed under running containers: once it serves again, the containers of
``volfs run`` pods and of volume-plugin volumes read and write their volumes again
(restarted by volfs, ``--recover-containers``), or, with ``none``, stay as they are and
their pods say so."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon
from tests.integration.docker import IMAGE, Engine, docker_engine, plugin_name, volfs_for
from tests.waiting import wait_until

__all__ = ["docker_engine"]  # the fixture, used by name

pytestmark = pytest.mark.slow

LOST = "Transport endpoint is not connected"


@dataclass
class Rig:
    volfs: Daemon
    engine: Engine
    plugin: str
    host_dir: Path

    def sh(self, container: str, script: str, check: bool = True) -> Any:
        return self.engine.docker("exec", container, "sh", "-c", script, check=check)

    def run_pod(self, name: str) -> str:
        """A ``volfs run`` pod with an EmptyDir and a HostPath; its container's name."""
        self.volfs.cli("run", "-f", "-", input=f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 30
  containers:
    - name: app
      image: {IMAGE}
      volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
        - {{name: host, mountPath: /host}}
  volumes:
    - name: scratch
      emptyDir: {{}}
    - name: host
      hostPath: {{path: {self.host_dir}, type: Directory}}
""")
        uid = self.volfs.pod(name)["metadata"]["uid"]
        (found,) = self.engine.containers(f"label=io.volfs.pod.uid={uid}")
        return found

    def started_at(self, container: str) -> str:
        return str(self.engine.inspect(container)["State"]["StartedAt"])

    def events(self, **involved: str) -> list[dict[str, Any]]:
        items = json.loads(self.volfs.cli("get", "events", "-A", "-o", "json").stdout)["items"]
        return [e for e in items
                if all(e["involvedObject"].get(k) == v for k, v in involved.items())]


@pytest.fixture
def rig(tmp_path: Path, docker_engine: Engine, request: pytest.FixtureRequest
          ) -> Iterator[Rig]:
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    name = plugin_name()
    extra = list(getattr(request, "param", []))
    volfs = volfs_for(docker_engine, tmp_path / "volfs", "--allow-host-path", str(host_dir),
                      *extra, plugin=name).start()
    made = Rig(volfs, docker_engine, name, host_dir)
    try:
        yield made
    finally:
        try:
            if volfs.proc is None:
                volfs.start()  # to unmount plugin volumes and delete pods cleanly
            owner = f"label=io.volfs.root={volfs.root}"
            for container in [*docker_engine.containers(owner),
                              *docker_engine.containers(f"name={name}-")]:
                docker_engine.docker("rm", "-f", container, check=False)
            volumes = docker_engine.docker("volume", "ls", "-q", "--filter",
                                           f"driver={name}").stdout.split()
            for volume in volumes:
                docker_engine.docker("volume", "rm", "-f", volume, check=False)
        finally:
            volfs.stop()


@pytest.mark.timeout(240)
def test_kill_9_then_restart_recovers_run_pods_and_plugin_volume_containers(
    rig: Rig, pod_name: str
) -> None:
    app = rig.run_pod(pod_name)
    rig.sh(app, "echo scratch > /scratch/f && echo host > /host/f")
    rig.engine.docker("volume", "create", "-d", rig.plugin, "--opt", "type=emptyDir",
                        "data")
    user = f"{rig.plugin}-user"
    rig.engine.docker("run", "-d", "--name", user, "--network", "none",
                        "-v", "data:/data", IMAGE)
    rig.sh(user, "echo plugin > /data/f")
    before = {c: rig.started_at(c) for c in (app, user)}

    rig.volfs.kill9()
    assert LOST in rig.sh(app, "cat /scratch/f", check=False).stderr
    rig.volfs.start()

    def reads_again() -> bool:
        return all(rig.sh(c, s, check=False).returncode == 0 for c, s in (
            (app, "cat /scratch/f /host/f"), (user, "cat /data/f")))

    wait_until(reads_again, 90, "the containers never read their volumes again")
    assert rig.sh(app, "cat /scratch/f /host/f").stdout == "scratch\nhost\n"
    assert rig.sh(user, "cat /data/f").stdout == "plugin\n"
    rig.sh(app, "echo again > /scratch/g && echo again > /host/g")
    rig.sh(user, "echo again > /data/g")
    assert (rig.host_dir / "g").read_text() == "again\n"
    assert (rig.volfs.volume_path(pod_name, "scratch") / "g").read_text() == "again\n"
    assert all(rig.started_at(c) != before[c] for c in (app, user))  # restarted, not new

    def told(pod: str, container: str, namespace: str = "default") -> bool:
        reasons = [(e["reason"], e["message"]) for e in rig.events(name=pod,
                                                                     namespace=namespace)]
        return (any(r == "VolumeMountLost" and container in m for r, m in reasons)
                and any(r == "Restarted" and f"container {container} " in m
                        for r, m in reasons))

    wait_until(lambda: told(pod_name, app), 30, f"no events on {pod_name}")
    wait_until(lambda: told("data", user, "docker-volumes"), 30, "no events on the volume")
    status = rig.volfs.pod(pod_name)["status"]
    assert status["phase"] == "Running" and "reason" not in status
    assert [s["ready"] for s in status["containerStatuses"]] == [True]
    rows = [line.split() for line in rig.volfs.cli("get", "pods").stdout.splitlines()]
    assert [r[:3] for r in rows if r[0] == pod_name] == [[pod_name, "1/1", "Running"]]
    assert f"restarted container {app} (volfs run pod)" in rig.volfs.log()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("rig", [["--recover-containers", "none"]], indirect=True)
def test_with_recover_containers_none_the_pod_is_not_ready_and_says_what_to_do(
    rig: Rig, pod_name: str
) -> None:
    app = rig.run_pod(pod_name)
    before = rig.started_at(app)
    rig.volfs.kill9()
    rig.volfs.start()

    status = rig.volfs.pod(pod_name)["status"]
    assert status["reason"] == "VolumeMountLost"
    assert f"docker restart {app}" in status["message"]
    assert [s["ready"] for s in status["containerStatuses"]] == [False]
    assert any(c["type"] == "Ready" and c["status"] == "False" for c in status["conditions"])
    rows = [line.split() for line in rig.volfs.cli("get", "pods").stdout.splitlines()]
    assert [r[:3] for r in rows if r[0] == pod_name] == [[pod_name, "0/1", "VolumeMountLost"]]
    described = rig.volfs.cli("describe", "pod", pod_name).stdout
    assert "VolumeMountLost" in described and f"docker restart {app}" in described
    wait_until(lambda: any(e["reason"] == "VolumeMountLost" for e in rig.events(
        name=pod_name)), 30, "no VolumeMountLost event")
    assert rig.started_at(app) == before  # not restarted
    assert LOST in rig.sh(app, "ls /scratch", check=False).stderr

    rig.engine.docker("restart", "-t", "1", app)  # what the message says to do
    status = rig.volfs.pod(pod_name)["status"]
    assert "reason" not in status and status["containerStatuses"][0]["ready"] is True
    rig.sh(app, "ls /scratch /host")


def test_a_clean_restart_with_nothing_attached_restarts_nothing(tmp_path: Path,
                                                                docker_engine: Engine) -> None:
    daemon = volfs_for(docker_engine, tmp_path / "volfs").start()
    try:
        daemon.stop()
        daemon.start()
        assert "restarted container" not in daemon.log()
        assert "VolumeMountLost" not in daemon.log()
    finally:
        daemon.stop()
    assert os.path.ismount(daemon.root) is False

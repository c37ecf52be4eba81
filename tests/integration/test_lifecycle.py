"""Pod lifecycle: hooks, rollback, restarts (clean and kill -9), the mount point."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.daemon import VOLFS, Daemon, DaemonError, pod_manifest
from tests.integration.docker import PLUGIN_DIR, plugin_name

SCRATCH = """\
    - name: scratch
      emptyDir: {}
"""


def write_hook(daemon: Daemon, stage: str, name: str, script: str) -> Path:
    hook = daemon.state_dir / "hooks" / stage / name
    hook.write_text("#!/bin/sh\n" + script)
    hook.chmod(0o755)
    return hook


def test_kill_9_and_restart_keeps_pods_and_data(daemon: Daemon) -> None:
    daemon.apply(pod_manifest("web", SCRATCH + """\
    - name: limited
      emptyDir:
        sizeLimit: 64Mi
"""))
    before = daemon.pod("web")
    path = daemon.volume_path("web", "scratch")
    with open(path / "kept", "wb") as f:
        f.write(b"survives" * 1000)
        f.flush()
        os.fsync(f.fileno())
    (daemon.volume_path("web", "limited") / "used").write_bytes(b"u" * 12345)

    daemon.kill9()
    with pytest.raises(OSError) as excinfo:  # the crashed daemon left a dead mount behind
        os.listdir(daemon.root / "pods")
    assert excinfo.value.errno == errno.ENOTCONN
    daemon.start()  # detects the stale mount and replaces it

    after = daemon.pod("web")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert daemon.volume_path("web", "scratch") == path
    assert (path / "kept").read_bytes() == b"survives" * 1000
    used = {v["name"]: v["usedBytes"] for v in after["status"]["volumes"]}
    assert used["limited"] == 12345  # usage is measured again, not forgotten


def test_sigterm_unmounts_cleanly(daemon: Daemon) -> None:
    assert os.path.ismount(daemon.root)
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.ismount(daemon.root)


def test_a_live_foreign_mount_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    second = Daemon(tmp_path / "second")
    second.base.mkdir()
    second.root.parent.mkdir(exist_ok=True)
    os.symlink(daemon.root, second.root)  # same mount point, other state dir
    with pytest.raises(DaemonError) as excinfo:
        second.start()
    assert "already a live mount" in str(excinfo.value)
    assert os.path.ismount(daemon.root)  # the first daemon is untouched
    assert daemon.cli("get", "pods").returncode == 0


def test_a_second_daemon_on_one_state_dir_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    twin = Daemon(tmp_path / "twin")
    twin.base.mkdir()
    os.symlink(daemon.state_dir, twin.state_dir)
    with pytest.raises(DaemonError) as excinfo:
        twin.start()
    assert "another volfs daemon" in str(excinfo.value)


def _warnings(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log().splitlines() if " WARNING " in line]


def test_a_docker_plugin_name_in_use_leaves_the_rest_served(tmp_path: Path) -> None:
    """Another process serves the plugin socket: one warning, and the mount and the
    control API work as usual."""
    name = plugin_name()
    path = PLUGIN_DIR / f"{name}.sock"
    PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen(1)
        daemon = Daemon(tmp_path / "volfs", extra_args=["--docker-plugin", name])
        try:
            daemon.start()
            assert os.path.ismount(daemon.root)
            assert daemon.cli("get", "pods").returncode == 0
            warnings = _warnings(daemon)
            assert len(warnings) == 1, daemon.log()
            assert f"another process serves {path}" in warnings[0]
            assert "--docker-plugin NAME ('' serves none)" in warnings[0]
            assert path.exists()  # the other process's socket is left alone
        finally:
            daemon.stop()
            path.unlink(missing_ok=True)


def test_a_kube_api_port_in_use_leaves_the_rest_served(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        daemon = Daemon(tmp_path / "volfs", extra_args=["--kube-api", f"127.0.0.1:{port}"])
        try:
            daemon.start()
            assert os.path.ismount(daemon.root)
            assert daemon.cli("get", "pods").returncode == 0
            warnings = _warnings(daemon)
            assert len(warnings) == 1, daemon.log()
            assert f"--kube-api 127.0.0.1:{port} not served: address already in use" \
                in warnings[0]
            assert "choose another port with --kube-api 127.0.0.1:PORT" in warnings[0]
            assert "--kube-api" in daemon.cli("kubeconfig", check=False).stderr
        finally:
            daemon.stop()


def test_create_hook_sees_the_pod_and_its_failure_rolls_back(daemon: Daemon) -> None:
    seen = daemon.base / "seen.json"
    write_hook(daemon, "on-create.d", "10-record",
               f'cat > {seen}\necho "$POD_NAME $POD_NAMESPACE $POD_UID $VOLFS_ROOT" > {seen}.env\n')
    daemon.apply(pod_manifest("ok", SCRATCH))
    pod = json.loads(seen.read_text())
    assert pod["metadata"]["name"] == "ok"
    env = Path(f"{seen}.env").read_text().split()
    assert env == ["ok", "default", pod["metadata"]["uid"], str(daemon.root)]

    write_hook(daemon, "on-create.d", "20-refuse", 'echo "quota service says no" >&2\nexit 3\n')
    result = daemon.cli("apply", "-f", "-", input=pod_manifest("refused", SCRATCH), check=False)
    assert result.returncode != 0
    assert "quota service says no" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert daemon.cli("get", "pod", "refused", check=False).returncode != 0
    uids = {p.name for p in (daemon.state_dir / "pods").iterdir()}
    assert uids == {pod["metadata"]["uid"]}  # nothing half-created on disk
    assert set(os.listdir(daemon.root / "pods")) == uids


def test_failing_delete_hook_is_reported_but_delete_completes(daemon: Daemon) -> None:
    write_hook(daemon, "on-delete.d", "10-grumble", 'echo "backup failed" >&2\nexit 1\n')
    daemon.apply(pod_manifest("gone", SCRATCH))
    uid = daemon.pod("gone")["metadata"]["uid"]
    result = daemon.cli("delete", "pod", "gone")
    assert "backup failed" in result.stderr
    assert not (daemon.state_dir / "pods" / uid).exists()
    assert daemon.cli("get", "pod", "gone", check=False).returncode != 0


def test_two_deletes_of_one_pod_at_once_delete_it_once(daemon: Daemon) -> None:
    write_hook(daemon, "on-delete.d", "10-slow", "sleep 1\n")  # the first delete lingers
    daemon.apply(pod_manifest("twice", SCRATCH))
    deletes = [subprocess.Popen([VOLFS, "delete", "pod", "twice"], env=daemon.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for _ in range(2)]
    results = sorted((d.wait(timeout=60), d.communicate()) for d in deletes)
    assert [rc for rc, _ in results] == [0, 1]
    assert results[0][1][0] == 'pod "twice" deleted\n'
    # The second may show the first's wipe under way (its progress lines) before it
    # finds the pod gone.
    *progress, error = results[1][1][1].splitlines()
    assert error == 'error: pods "twice" not found'
    assert all(line.startswith("pod default/twice: deleting") for line in progress), progress
    assert "Traceback" not in daemon.log()


def test_hook_timeout_fails_the_create(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "v", extra_args=["--hook-timeout", "1"]).start()
    try:
        write_hook(daemon, "on-create.d", "10-slow", "sleep 30\n")
        result = daemon.cli("apply", "-f", "-", input=pod_manifest("slow", SCRATCH),
                            check=False)
        assert result.returncode != 0 and "timed out" in result.stderr
        assert daemon.cli("get", "pods", "-o", "json").stdout.count('"slow"') == 0
    finally:
        daemon.stop()


def test_no_daemon_gives_one_line_and_nonzero(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "never-started")
    result = daemon.cli("get", "pods", check=False)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not running" in result.stderr


@pytest.mark.parametrize(("manifest", "message"), [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n", "line"),
    (pod_manifest("Bad_Name", SCRATCH), "metadata.name"),
    (pod_manifest("x", "    - name: a\n      emptyDir: {sizeLimit: lots}\n"),
     'spec.volumes[0].emptyDir.sizeLimit: "lots" is not a quantity'),
    (pod_manifest("x", SCRATCH + SCRATCH), "spec.volumes[1].name"),
    (pod_manifest("x", "    - name: h\n      hostPath: {path: /srv}\n"), "hostPath"),
    ("apiVersion: v9\nkind: Pod\nmetadata: {name: x}\n", "apiVersion"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
        shared_daemon: Daemon, tmp_path: Path, manifest: str, message: str) -> None:
    before = shared_daemon.cli("get", "pods", "-A", "-o", "json").stdout
    path = tmp_path / "pod.yaml"
    path.write_text(manifest)
    result = shared_daemon.cli("apply", "-f", str(path), check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
    after = shared_daemon.cli("get", "pods", "-A", "-o", "json").stdout
    assert json.loads(after)["items"] == json.loads(before)["items"]


def test_restart_wipes_volumes_no_pod_owns(daemon: Daemon) -> None:
    daemon.apply(pod_manifest("keep", SCRATCH))
    uid = daemon.pod("keep")["metadata"]["uid"]
    daemon.stop()
    stray = daemon.state_dir / "pods" / "00000000-dead-beef-0000-000000000000"
    (stray / "kubernetes.io~empty-dir" / "x").mkdir(parents=True)
    daemon.start()
    assert not stray.exists()
    assert (daemon.state_dir / "pods" / uid).exists()

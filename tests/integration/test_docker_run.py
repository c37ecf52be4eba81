"""``volfs run``: a pod's containers on a real Docker engine, bound to volfs volumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.daemon import VOLFS, Daemon
from tests.integration.docker import IMAGE, Engine, docker_engine, volfs_for
from tests.integration.nfs import NfsShare
from tests.waiting import wait_until

__all__ = ["docker_engine"]  # the fixture, used by name

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def volfs(open_tmp: Path, docker_engine: Engine) -> Iterator[Daemon]:
    """One daemon for this module's tests, on the session's engine."""
    base = open_tmp / f"docker-run-{os.getpid()}"
    (base / "host").mkdir(parents=True)
    daemon = volfs_for(docker_engine, base / "volfs",
                       "--allow-host-path", str(base / "host")).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def readme_busybox(open_tmp: Path, docker_engine: Engine) -> str:
    """The image the README tells users to build, built by the README's own recipe."""
    readme = (REPO / "README.md").read_text()
    recipe = re.search(r"```sh\n(mkdir -p img/bin.*?docker import - busybox)\n```", readme,
                       re.DOTALL)
    assert recipe, "the README's busybox recipe is gone"
    folder = open_tmp / f"readme-image-{os.getpid()}"
    folder.mkdir()
    subprocess.run(["bash", "-euo", "pipefail", "-c", recipe.group(1)], cwd=folder, check=True,
                   capture_output=True, timeout=120,
                   env=dict(os.environ, DOCKER_HOST=docker_engine.host,
                            DOCKER_CONFIG=str(docker_engine.dir / "cli")))
    return "busybox"


def pod_yaml(name: str, containers: str, volumes: str, extra_spec: str = "") -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
{extra_spec}  containers:
{containers}
  volumes:
{volumes}
"""


def run(volfs: Daemon, manifest: str, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
    return volfs.cli("run", "-f", "-", *args, input=manifest, check=check)


def container(engine: Engine, pod: dict, name: str) -> str:  # type: ignore[type-arg]
    found = engine.containers(f"label=io.volfs.pod.uid={pod['metadata']['uid']}",
                              f"label=io.volfs.container.name={name}")
    assert len(found) == 1, found
    return found[0]


def sh(engine: Engine, name: str, script: str, *options: str, check: bool = True):  # type: ignore[no-untyped-def]
    return engine.docker("exec", *options, name, "sh", "-c", script, check=check)


def pod_containers(engine: Engine, pod: dict) -> list[str]:  # type: ignore[type-arg]
    return engine.containers(f"label=io.volfs.pod.uid={pod['metadata']['uid']}")


def test_legacy_rc_two_containers_share_an_emptydir(
    volfs: Daemon, docker_engine: Engine, examples_dir: Path
) -> None:
    out = volfs.cli("run", "-f", str(examples_dir / "legacy-rc-emptydir.yaml"),
                    "--image", IMAGE).stdout
    assert out.strip() == "replicationcontroller/share-apache2-controller created", out
    # The controller makes its replica with the run annotation: its containers run.
    wait_until(lambda: len(_running_replicas(volfs)) == 1, 60,
               f"the controller's replica runs its containers:\n{volfs.log()}")
    [name] = _running_replicas(volfs)
    pod = volfs.pod(name)
    volume = volfs.volume_path(name, "data")
    first = container(docker_engine, pod, "share-apache2-1")
    second = container(docker_engine, pod, "share-apache2-2")
    assert first == f"volfs_{name}_share-apache2-1_{pod['metadata']['uid'].replace('-', '')[:8]}"

    rows = {line.split()[0]: line.split() for line in volfs.cli("get", "pods").stdout.splitlines()}
    assert rows["NAME"][:3] == ["NAME", "READY", "STATUS"]
    assert rows[name][1:3] == ["2/2", "Running"]
    statuses = {s["name"]: s for s in pod["status"]["containerStatuses"]}
    assert statuses["share-apache2-1"]["ready"] is True
    assert "running" in statuses["share-apache2-2"]["state"]

    sh(docker_engine, first, "echo written by one > /data/greeting")
    assert sh(docker_engine, second, "cat /data/greeting").stdout == "written by one\n"
    assert (volume / "greeting").read_text() == "written by one\n"  # the host sees it too

    foreground = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}
    assert volfs.api("DELETE", "/api/v1/namespaces/default/replicationcontrollers/"
                     "share-apache2-controller", foreground).status_code == 200
    assert pod_containers(docker_engine, pod) == []
    assert not volume.exists()
    assert not any(Path(volfs.state_dir, "pods").iterdir())


def _running_replicas(volfs: Daemon) -> list[str]:
    """The pods whose containers all run (the controller's replicas, in this test)."""
    items = volfs.api("GET", "/api/v1/namespaces/default/pods").json()["items"]
    return [p["metadata"]["name"] for p in items
            if (statuses := p["status"].get("containerStatuses"))
            and all("running" in s["state"] for s in statuses)]


def test_the_readmes_example_runs_as_printed(
    volfs: Daemon, docker_engine: Engine, examples_dir: Path, readme_busybox: str
) -> None:
    """README, Docker: ``volfs run -f examples/pod-emptydir.yaml --image busybox``, on the
    image its Quick start builds, then ``volfs get pods`` as the README shows it."""
    readme = (REPO / "README.md").read_text()
    printed = re.search(r"volfs run -f examples/pod-emptydir.yaml --image busybox .*\n"
                        r"volfs get pods +# NAME +READY +STATUS .*? (web .*)\n", readme)
    assert printed, "the README's volfs run example is gone"
    out = volfs.cli("run", "-f", str(examples_dir / "pod-emptydir.yaml"),
                    "--image", readme_busybox).stdout
    try:
        assert "(1/1 containers running)" in out, out
        rows = [line.split() for line in volfs.cli("get", "pods").stdout.splitlines()]
        assert rows[0][:3] == ["NAME", "READY", "STATUS"]
        assert [row[:3] for row in rows[1:] if row[0] == "web"] == [printed.group(1).split()]
        greeting = volfs.volume_path("web", "scratch") / "greeting"  # the command ran
        wait_until(greeting.exists, 30, "the example's command never wrote /data/greeting")
        assert greeting.read_text() == "hello\n"
        # run as a command of its own (no sh to find applets): every applet is linked
        app = container(docker_engine, volfs.pod("web"), "app")
        assert docker_engine.docker("exec", app, "cat", "/data/greeting").stdout == "hello\n"
    finally:
        volfs.cli("delete", "pod", "web", "--now")
    assert docker_engine.containers("label=io.volfs.pod.name=web") == []


def test_a_container_with_nothing_to_run_fails_naming_it(
    volfs: Daemon, docker_engine: Engine, pod_name: str, readme_busybox: str
) -> None:
    """The README's image has no CMD: a container without a command is refused in one
    line that names the pod and the container and says what to add."""
    result = run(volfs, pod_yaml(pod_name, """\
    - name: fine
      image: busybox
      command: ["sleep", "600"]
    - name: idle
      image: busybox
""", "    - name: scratch\n      emptyDir: {}\n"), check=False)
    assert result.returncode == 1
    assert result.stderr == (
        f'error: <stdin>: pod "{pod_name}": containers not started: container idle: image '
        "busybox has no command (no CMD or ENTRYPOINT) and the container gives none: add "
        "command: to the container in the manifest, or use an image with a CMD\n")
    assert volfs.cli("get", "pod", pod_name, check=False).returncode != 0
    assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []


def test_command_args_env_working_dir_labels_and_no_network(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
      command: ["sh", "-c"]
      args: ["echo $(GREETING) $GREETING > out; exec sleep 600"]
      workingDir: /work
      env:
        - {name: WHO, value: world}
        - {name: GREETING, value: "hello $(WHO)"}
      volumeMounts:
        - {name: scratch, mountPath: /work}
""", """\
    - name: scratch
      emptyDir: {}
"""))
    pod = volfs.pod(pod_name)
    try:
        name = container(docker_engine, pod, "app")
        info = docker_engine.inspect(name)
        assert info["HostConfig"]["NetworkMode"] == "none"
        assert info["Config"]["Labels"]["io.volfs.pod.name"] == pod_name
        assert info["Config"]["Labels"]["io.volfs.pod.namespace"] == "default"
        assert info["Config"]["Hostname"] == pod_name
        out = volfs.volume_path(pod_name, "scratch") / "out"
        assert sh(docker_engine, name, "cat /work/out").stdout == "hello world hello world\n"
        assert out.read_text() == "hello world hello world\n"
    finally:
        volfs.cli("delete", "pod", pod_name)
    assert pod_containers(docker_engine, pod) == []


def test_read_only_mount_refuses_writes_inside(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: writer
      image: volfs-test
      volumeMounts: [{name: shared, mountPath: /data}]
    - name: reader
      image: volfs-test
      volumeMounts: [{name: shared, mountPath: /data, readOnly: true}]
""", """\
    - name: shared
      emptyDir: {}
"""))
    pod = volfs.pod(pod_name)
    try:
        writer = container(docker_engine, pod, "writer")
        reader = container(docker_engine, pod, "reader")
        sh(docker_engine, writer, "echo ok > /data/f")
        refused = sh(docker_engine, reader, "echo no > /data/g", check=False)
        assert refused.returncode != 0
        assert "Read-only file system" in refused.stderr
        assert sh(docker_engine, reader, "cat /data/f").stdout == "ok\n"
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_sub_path_is_made_with_the_volume_roots_mode_and_bound(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
      volumeMounts:
        - {name: scratch, mountPath: /logs, subPath: app/logs}
        - {name: scratch, mountPath: /all}
""", """\
    - name: scratch
      emptyDir: {}
"""))
    pod = volfs.pod(pod_name)
    try:
        name = container(docker_engine, pod, "app")
        volume = volfs.volume_path(pod_name, "scratch")
        sh(docker_engine, name, "echo line > /logs/app.log")
        assert (volume / "app" / "logs" / "app.log").read_text() == "line\n"
        root_mode = volume.stat().st_mode & 0o7777
        assert (volume / "app").stat().st_mode & 0o7777 == root_mode
        assert (volume / "app" / "logs").stat().st_mode & 0o7777 == root_mode
        assert sh(docker_engine, name, "cat /all/app/logs/app.log").stdout == "line\n"
        mounts = {m["Destination"]: m["Source"] for m in docker_engine.inspect(name)["Mounts"]}
        assert mounts["/logs"] == str(volume / "app" / "logs")
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_sub_path_leading_out_of_its_volume_is_refused(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    host_dir = Path(volfs.base.parent / "host") / pod_name
    host_dir.mkdir(parents=True)
    (host_dir / "escape").symlink_to("/etc")
    result = run(volfs, pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
      volumeMounts: [{name: host, mountPath: /data, subPath: escape}]
""", f"""\
    - name: host
      hostPath: {{path: {host_dir}}}
"""), check=False)
    assert result.returncode == 1
    assert "subPath escape: leads out of its volume" in result.stderr
    assert volfs.cli("get", "pod", pod_name, check=False).returncode != 0
    assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []


def test_uid_1000_meets_ordinary_permission_checks(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: root
      image: volfs-test
      volumeMounts: [{name: scratch, mountPath: /data}]
    - name: user
      image: volfs-test
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      volumeMounts: [{name: scratch, mountPath: /data}]
""", """\
    - name: scratch
      emptyDir: {}
"""))
    pod = volfs.pod(pod_name)
    try:
        root = container(docker_engine, pod, "root")
        user = container(docker_engine, pod, "user")
        assert sh(docker_engine, user, "id -u").stdout == "1000\n"
        sh(docker_engine, root, "mkdir /data/private && echo secret > /data/private/key "
                                "&& chmod 0700 /data/private")
        denied = sh(docker_engine, user, "cat /data/private/key", check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        denied = sh(docker_engine, user, "touch /data/private/mine", check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        sh(docker_engine, user, "echo mine > /data/mine")  # the EmptyDir itself is 0777
        volume = volfs.volume_path(pod_name, "scratch")
        assert (volume / "mine").stat().st_uid == 1000
        assert sh(docker_engine, root, "cat /data/private/key").stdout == "secret\n"
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_size_limit_is_enospc_inside_the_container(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
      volumeMounts: [{name: small, mountPath: /data}]
""", """\
    - name: small
      emptyDir: {sizeLimit: 1Mi}
"""))
    pod = volfs.pod(pod_name)
    try:
        name = container(docker_engine, pod, "app")
        full = sh(docker_engine, name, "dd if=/dev/zero of=/data/big bs=64k count=64", check=False)
        assert full.returncode != 0
        assert "No space left on device" in full.stderr
        assert (volfs.volume_path(pod_name, "small") / "big").stat().st_size <= 1024 * 1024
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_finished_containers_show_in_get_pods(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    run(volfs, pod_yaml(pod_name, """\
    - name: job
      image: volfs-test
      command: ["true"]
""", "    []", extra_spec="  restartPolicy: Never\n"))
    try:
        for _ in range(100):
            pod = volfs.pod(pod_name)
            if pod["status"]["phase"] == "Succeeded":
                break
        state = pod["status"]["containerStatuses"][0]["state"]
        assert state["terminated"]["exitCode"] == 0
        assert state["terminated"]["reason"] == "Completed"
        row = volfs.cli("get", "pod", pod_name).stdout.splitlines()[1].split()
        assert row[1:3] == ["0/1", "Succeeded"]
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_a_slow_container_stop_does_not_hold_up_other_pods(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    """sleep as PID 1 ignores SIGTERM: its delete waits out the grace period, alone."""
    run(volfs, pod_yaml(pod_name, """\
    - name: stubborn
      image: volfs-test
      command: ["sleep", "600"]
""", "    []").replace("terminationGracePeriodSeconds: 1", "terminationGracePeriodSeconds: 15"))
    deleting = subprocess.Popen([VOLFS, "delete", "pod", pod_name], env=volfs.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def delete_began() -> bool:  # its Killing event is there
            events = volfs.cli("get", "events", "-o", "json").stdout
            return any(e["reason"] == "Killing" and e["involvedObject"]["name"] == pod_name
                       for e in json.loads(events)["items"])

        wait_until(delete_began, 60, "the delete never began")
        other = f"{pod_name}-other"
        volfs.apply(pod_yaml(other, "    - name: main\n      image: volfs-test\n",
                             "    - name: scratch\n      emptyDir: {}\n"))
        volfs.cli("delete", "pod", other)
        assert deleting.poll() is None  # still waiting for the container to stop
        out, err = deleting.communicate(timeout=60)
        assert deleting.returncode == 0, err
        assert out == f'pod "{pod_name}" deleted\n'
        assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []
    finally:
        deleting.kill()
        deleting.communicate()


def test_a_delete_with_a_grace_period_says_so_and_kills_a_container_ignoring_sigterm(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    """sleep as PID 1 ignores SIGTERM; the pod's own grace period (120 s) is longer than
    the CLI's timeout here, so only a delete that honours --grace-period 1 ends."""
    run(volfs, pod_yaml(pod_name, """\
    - name: stubborn
      image: volfs-test
      command: ["sleep", "600"]
""", "    []").replace("terminationGracePeriodSeconds: 1", "terminationGracePeriodSeconds: 120"))
    deleted = volfs.cli("delete", "pod", pod_name, "--grace-period", "1")
    assert deleted.stderr == f'pod "{pod_name}": waiting up to 1s for its containers to stop\n'
    assert deleted.stdout == f'pod "{pod_name}" deleted\n'
    assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []
    assert volfs.cli("get", "pod", pod_name, check=False).returncode != 0


def test_a_container_that_cannot_start_rolls_the_pod_back(
    volfs: Daemon, docker_engine: Engine, pod_name: str
) -> None:
    manifest = pod_yaml(pod_name, """\
    - name: fine
      image: volfs-test
      volumeMounts: [{name: scratch, mountPath: /data}]
    - name: missing
      image: volfs-test
      volumeMounts: [{name: scratch, mountPath: /data}]
""", """\
    - name: scratch
      emptyDir: {}
""")
    result = run(volfs, manifest, "--image", "no-such-image:1", check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no-such-image:1 is not present and could not be pulled" in result.stderr
    assert volfs.cli("get", "pod", pod_name, check=False).returncode != 0
    assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []
    assert not any(Path(volfs.state_dir, "pods").iterdir())


def test_web_pod_with_a_claim(volfs: Daemon, docker_engine: Engine, examples_dir: Path,
                              nfs_share: NfsShare) -> None:
    pv = yaml.safe_load((examples_dir / "pv-nfs.yaml").read_text())
    pv["spec"]["nfs"].update(server=nfs_share.server, path=nfs_share.path())
    assert volfs.api("POST", "/api/v1/persistentvolumes", pv).status_code == 201
    claim = yaml.safe_load((examples_dir / "pvc-nfs.yaml").read_text())
    assert volfs.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                     claim).status_code == 201
    out = volfs.cli("run", "-f", str(examples_dir / "pod-web-pvc.yaml"),
                    "--image", IMAGE).stdout
    assert "(1/1 containers running)" in out, out
    pod = volfs.pod("web-frontend")
    sh(docker_engine, container(docker_engine, pod, "web"),
       "echo '<h1>hello</h1>' > /usr/share/nginx/html/index.html")
    assert (nfs_share.dir / "index.html").read_text() == "<h1>hello</h1>\n"  # on the server
    volfs.cli("delete", "pod", "web-frontend")
    assert docker_engine.containers("label=io.volfs.pod.name=web-frontend") == []
    assert (nfs_share.dir / "index.html").exists()  # the data outlives the pod
    volfs.api("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/nfs")
    volfs.api("DELETE", "/api/v1/persistentvolumes/nfs")


def test_run_without_an_engine_fails_in_one_line_and_apply_delete_work(
    tmp_path: Path, pod_name: str
) -> None:
    daemon = Daemon(tmp_path / "volfs",
                    extra_args=["--docker-host", f"unix://{tmp_path}/nothing.sock"]).start()
    try:
        manifest = pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
""", "    []")
        result = run(daemon, manifest, check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1
        assert "no Docker engine answers at unix://" in result.stderr
        assert daemon.cli("get", "pod", pod_name, check=False).returncode != 0
        daemon.apply(manifest)
        assert "READY" not in daemon.cli("get", "pods").stdout
        daemon.cli("delete", "pod", pod_name)
        daemon.stop()
        assert " WARNING " not in daemon.log()  # nobody to ask at stop: nothing said
    finally:
        daemon.stop()


def test_pods_not_run_by_volfs_show_no_container_states(
    volfs: Daemon, pod_name: str
) -> None:
    volfs.apply(pod_yaml(pod_name, """\
    - name: app
      image: anything
""", "    []"))
    try:
        assert "containerStatuses" not in volfs.pod(pod_name)["status"]
        json.dumps(volfs.pod(pod_name))
    finally:
        volfs.cli("delete", "pod", pod_name)


def test_after_a_daemon_restart_a_restarted_container_binds_the_new_mount(
    tmp_path: Path, docker_engine: Engine, pod_name: str
) -> None:
    """By hand: the daemon restarts none itself (test_recovery.py has it do so)."""
    daemon = volfs_for(docker_engine, tmp_path / "volfs", "--recover-containers",
                       "none").start()
    try:
        run(daemon, pod_yaml(pod_name, """\
    - name: app
      image: volfs-test
      volumeMounts: [{name: scratch, mountPath: /data}]
""", """\
    - name: scratch
      emptyDir: {}
"""))
        name = container(docker_engine, daemon.pod(pod_name), "app")
        sh(docker_engine, name, "echo kept > /data/f")

        daemon.stop()
        daemon.start()
        stale = sh(docker_engine, name, "cat /data/f", check=False)
        assert "Transport endpoint is not connected" in stale.stderr
        # same root, same uid, same volume: the same path, now on the new mount
        docker_engine.docker("restart", "-t", "1", name)
        assert sh(docker_engine, name, "cat /data/f").stdout == "kept\n"
        assert daemon.pod(pod_name)["status"]["phase"] == "Running"
    finally:
        daemon.cli("delete", "pod", pod_name, check=False)
        daemon.stop()
    assert docker_engine.containers(f"label=io.volfs.pod.name={pod_name}") == []


def test_a_stop_names_the_containers_left_holding_volumes(
    tmp_path: Path, docker_engine: Engine, pod_name: str
) -> None:
    """Containers the daemon never ran, one binding a volume's path and one not: at stop
    the log names the first, with the command that reconnects it."""
    daemon = volfs_for(docker_engine, tmp_path / "volfs").start()
    holder, bystander = f"{pod_name}-holder", f"{pod_name}-bystander"
    try:
        daemon.apply(pod_yaml(pod_name, "    - name: app\n      image: volfs-test\n", """\
    - name: scratch
      emptyDir: {}
"""))
        volume = daemon.volume_path(pod_name, "scratch")
        docker_engine.docker("run", "-d", "--name", holder, "-v", f"{volume}:/data", IMAGE)
        docker_engine.docker("run", "-d", "--name", bystander, IMAGE)

        assert daemon.stop() == 0
        warnings = [line for line in daemon.log().splitlines() if " WARNING " in line]
        assert len(warnings) == 1, daemon.log()
        assert f"containers {holder} bind-mount paths under {daemon.root}" in warnings[0]
        assert f"docker restart {holder}" in warnings[0]
        assert bystander not in warnings[0]
    finally:
        docker_engine.docker("rm", "-f", holder, bystander, check=False)
        daemon.stop()

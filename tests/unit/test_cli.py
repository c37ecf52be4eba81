"""The ``volfs`` command: argument parsing, failures without a daemon, and full client
paths against the real control API served on a unix socket from a background thread."""

from __future__ import annotations

import grp
import json
import os
import socket
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml
from click.testing import CliRunner, Result
from starlette.types import ASGIApp

from volfs.api import Pod
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, SetupFailed
from volfs.cli import main
from volfs.config import DaemonConfig
from volfs.lifecycle.service import DeleteResult
from volfs.lifecycle.updates import pod_update_causes
from volfs.server import create_app, serve_unix

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: app
    image: busybox
    volumeMounts:
    - name: scratch
      mountPath: /data
  volumes:
  - name: scratch
    emptyDir:
      sizeLimit: 1Gi
"""


class MemoryPods:
    """A PodService that keeps pods in a dict and records every call.

    ``fail`` maps a pod name to the exception its create raises; ``warnings``
    are returned by every delete.
    """

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.fail: dict[str, Exception] = {}
        self.warnings: list[str] = []
        self.graces: list[float | None] = []  # each delete's grace_seconds
        self._created = 0

    async def create_pod(self, pod: Pod) -> dict[str, Any]:
        namespace, name = pod.metadata.namespace, pod.metadata.name
        self.calls.append(("create", namespace, name))
        if name in self.fail:
            raise self.fail[name]
        if (namespace, name) in self.pods:
            raise AlreadyExists("Pod", namespace, name)
        self._created += 1
        uid = f"uid-{self._created}"
        obj = pod.to_k8s()
        obj["metadata"].update(
            uid=uid,
            resourceVersion=str(self._created),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        obj["status"] = {
            "phase": "Running",
            "volumes": [
                {
                    "name": v["name"],
                    "kind": "EmptyDir",
                    "path": f"/var/lib/volfs/pods/{uid}/volumes/kubernetes.io~empty-dir/"
                    + v["name"],
                    "medium": "",
                    "sizeLimitBytes": 1024**3,
                    "usedBytes": 8192,
                }
                for v in obj["spec"].get("volumes", [])
            ],
        }
        self.pods[(namespace, name)] = obj
        return obj

    async def delete_pod(self, namespace: str, name: str,
                         grace_seconds: float | None = None) -> DeleteResult:
        self.calls.append(("delete", namespace, name))
        self.graces.append(grace_seconds)
        if (namespace, name) not in self.pods:
            raise NotFound("Pod", namespace, name)
        return DeleteResult(self.pods.pop((namespace, name)), list(self.warnings))

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get", namespace, name))
        if (namespace, name) not in self.pods:
            raise NotFound("Pod", namespace, name)
        return self.pods[(namespace, name)]

    async def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        self.calls.append(("list", namespace, None))
        return [p for (ns, _), p in self.pods.items() if namespace in (None, ns)]

    async def update_pod(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The daemon's rules: a resourceVersion precondition, Kubernetes' immutable spec."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        self.calls.append(("update", namespace, name))
        stored = self.pods.get((namespace, name))
        if stored is None:
            raise NotFound("Pod", namespace, name)
        if meta.get("resourceVersion") not in (None, stored["metadata"]["resourceVersion"]):
            raise Conflict("Pod", name, f'Operation cannot be fulfilled on pods "{name}": '
                           "the object has been modified")
        new = Pod.model_validate(obj).to_k8s()
        causes = pod_update_causes(stored, new)
        if causes:
            raise Invalid("Pod", name, causes)
        self._created += 1
        updated = {**stored, "metadata": {
            **stored["metadata"], "labels": new["metadata"].get("labels", {}),
            "annotations": new["metadata"].get("annotations", {}),
            "resourceVersion": str(self._created)}, "spec": new["spec"]}
        self.pods[(namespace, name)] = updated
        return updated


class Daemon:
    """serve_unix over a MemoryPods, running trio in a background thread.

    ``app`` makes the ASGI app to serve from the MemoryPods (default: pods alone).
    """

    def __init__(self, socket_path: Path,
                 app: Callable[[MemoryPods], ASGIApp] | None = None) -> None:
        self.socket_path = socket_path
        self.service = MemoryPods()
        self._app = app or create_app
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="volfs-test-daemon")

    def _run(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                await nursery.start(serve_unix, self._app(self.service), self.socket_path)
                self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:  # reported by start()/stop() in the test's thread
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._scope is not None and self._token is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join()
        if self._error is not None:
            raise self._error


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="volfs-test-"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[Daemon]:
    running = Daemon(short_dir / "volfs.sock")
    running.start()
    try:
        yield running
    finally:
        running.stop()
    assert not running.socket_path.exists()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def volfs(runner: CliRunner, daemon: Daemon | Path, *args: str, stdin: str | None = None) -> Result:
    socket_path = daemon.socket_path if isinstance(daemon, Daemon) else daemon
    return runner.invoke(main, [*args, "--socket", str(socket_path)], input=stdin)


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


# --- without a daemon --------------------------------------------------------------


def test_a_bad_manifest_exits_2_with_one_line_and_sends_nothing(
    runner: CliRunner, daemon: Daemon, tmp_path: Path
) -> None:
    good = write(tmp_path, "good.yaml", POD_YAML)
    bad = write(tmp_path, "bad.yaml", POD_YAML.replace("sizeLimit: 1Gi", "sizeLimit: lots"))

    result = volfs(runner, daemon, "apply", "-f", good, "-f", bad)

    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}")
    assert "spec.volumes[0].emptyDir.sizeLimit" in line
    assert "lots" in line
    assert daemon.service.calls == []  # the good file before it was not sent either


def test_unparseable_yaml_exits_2(runner: CliRunner, short_dir: Path) -> None:
    result = volfs(
        runner, short_dir / "none.sock", "apply", "-f", "-", stdin="kind: Pod\n  bad: [\n"
    )
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: <stdin>")


_JSON_HEAD = '{"apiVersion": "v1", "kind": "Pod", "spec": '
_YAML_HEAD = "apiVersion: v1\nkind: Pod\nspec:\n  "


# Refused where the 101st level opens (the object itself is the first): at the 100th
# "[" of the JSON, the 100th "- " of the YAML's last line.
@pytest.mark.parametrize("name, text, where", [
    ("deep.json", _JSON_HEAD + "[" * 5000 + "]" * 5000 + "}",
     f"line 1, column {len(_JSON_HEAD) + 100}"),
    ("deep.yaml", _YAML_HEAD + "- " * 5000 + "x\n", f"line 4, column {2 + 2 * 99 + 1}"),
], ids=["json", "yaml"])
def test_a_manifest_nested_thousands_deep_exits_2_with_one_line(
    runner: CliRunner, daemon: Daemon, tmp_path: Path, name: str, text: str, where: str
) -> None:
    manifest = write(tmp_path, name, text)
    for args, source in ((["-f", manifest], manifest), (["-f", "-"], "<stdin>")):
        result = volfs(runner, daemon, "apply", *args, stdin=text)
        assert result.exit_code == 2
        assert result.stderr == (f"error: {source}: {where}: nested more than 100 levels "
                                 "deep (mappings and lists; at most 100)\n")
    assert daemon.service.calls == []


def test_a_missing_file_exits_2(runner: CliRunner, short_dir: Path) -> None:
    missing = str(short_dir / "nope.yaml")
    result = volfs(runner, short_dir / "none.sock", "apply", "-f", missing)
    assert result.exit_code == 2
    assert result.stderr == f"error: {missing}: No such file or directory\n"


@pytest.mark.parametrize(
    "args",
    [["get", "pods"], ["get", "pod", "web"], ["describe", "pod", "web"], ["delete", "pod", "web"]],
)
def test_no_daemon_is_one_line_and_exit_1(
    runner: CliRunner, short_dir: Path, args: list[str]
) -> None:
    socket_path = short_dir / "volfs.sock"
    result = volfs(runner, socket_path, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: volfs daemon is not running (no answer on {socket_path}); "
        "start it with 'sudo scripts/run' or 'volfs serve'\n"
    )


def test_a_dead_daemons_socket_is_not_running_too(runner: CliRunner, short_dir: Path) -> None:
    socket_path = short_dir / "volfs.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # connection refused from now on
    result = volfs(runner, socket_path, "apply", "-f", "-", stdin=POD_YAML)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: volfs daemon is not running (no answer on ")


def test_the_socket_defaults_to_volfs_socket_env(
    runner: CliRunner, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_path = short_dir / "from-env.sock"
    monkeypatch.setenv("VOLFS_SOCKET", str(socket_path))
    result = runner.invoke(main, ["get", "pods"])
    assert result.exit_code == 1
    assert f"no answer on {socket_path})" in result.stderr


def test_only_pods_are_served(runner: CliRunner, short_dir: Path) -> None:
    result = volfs(runner, short_dir / "volfs.sock", "get", "services")
    assert result.exit_code == 2
    assert 'unknown resource type "services"' in result.stderr


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> list[DaemonConfig]:
    """``volfs.daemon`` replaced by a module whose run() records its config."""
    configs: list[DaemonConfig] = []

    def run(config: DaemonConfig) -> int:
        configs.append(config)
        return 3

    module = types.ModuleType("volfs.daemon")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "volfs.daemon", module)
    return configs


def test_serve_builds_the_config_and_exits_with_runs_status(
    runner: CliRunner, fake_daemon: list[DaemonConfig], tmp_path: Path
) -> None:
    result = runner.invoke(
        main,
        [
            "serve",
            "--root",
            str(tmp_path / "root"),
            "--state-dir",
            str(tmp_path / "state"),
            "--socket",
            str(tmp_path / "s.sock"),
            "--hook-timeout",
            "2.5",
            "--debug",
        ],
    )
    assert result.exit_code == 3, result.output
    assert fake_daemon == [
        DaemonConfig(
            root=tmp_path / "root",
            state_dir=tmp_path / "state",
            socket=tmp_path / "s.sock",
            hook_timeout=2.5,
            debug=True,
        )
    ]


def test_serve_defaults(runner: CliRunner, fake_daemon: list[DaemonConfig]) -> None:
    assert runner.invoke(main, ["serve"]).exit_code == 3
    assert fake_daemon == [DaemonConfig()]
    assert fake_daemon[0].root == Path("/var/lib/volfs")
    assert fake_daemon[0].state_dir == Path("/var/lib/volfs-state")


def test_serve_rejects_a_non_positive_hook_timeout(
    runner: CliRunner, fake_daemon: list[DaemonConfig]
) -> None:
    result = runner.invoke(main, ["serve", "--hook-timeout", "0"])
    assert result.exit_code == 2
    assert fake_daemon == []


def test_serve_tree_group_takes_a_gid_or_a_group_name_from_flags_or_the_config(
    runner: CliRunner, fake_daemon: list[DaemonConfig], tmp_path: Path
) -> None:
    root_group = grp.getgrgid(0).gr_name
    config = write(tmp_path, "volfs.yaml", "tree-group: 4242\n")
    for args, gid in ((["--tree-group", "4242"], 4242), (["--tree-group", root_group], 0),
                      (["--config", config], 4242),
                      (["--config", config, "--tree-group", root_group], 0)):
        fake_daemon.clear()
        result = runner.invoke(main, ["serve", *args])
        assert result.exit_code == 3, result.output
        assert [c.tree_gid for c in fake_daemon] == [gid], args
    fake_daemon.clear()
    assert runner.invoke(main, ["serve"]).exit_code == 3
    assert fake_daemon[0].tree_gid == 0  # root's only, by default


def test_serve_recover_containers_from_flags_or_the_config_and_refusals(
    runner: CliRunner, fake_daemon: list[DaemonConfig], tmp_path: Path
) -> None:
    config = write(tmp_path, "volfs.yaml", "recover-containers: all\n")
    for args, policy in (([], "managed"), (["--recover-containers", "none"], "none"),
                         (["--config", config], "all"),
                         (["--config", config, "--recover-containers", "none"], "none")):
        fake_daemon.clear()
        result = runner.invoke(main, ["serve", *args])
        assert result.exit_code == 3, result.output
        assert [c.recover_containers for c in fake_daemon] == [policy], args
    fake_daemon.clear()
    result = runner.invoke(main, ["serve", "--recover-containers", "some"])
    assert result.exit_code == 2
    assert "'some' is not one of 'managed', 'all', 'none'" in result.stderr
    assert fake_daemon == []


def test_serve_refuses_an_unknown_tree_group_in_one_line(
    runner: CliRunner, fake_daemon: list[DaemonConfig]
) -> None:
    result = runner.invoke(main, ["serve", "--tree-group", "no-such-group-xyz"])
    assert result.exit_code == 2
    assert "'no-such-group-xyz': no such group" in result.stderr
    assert fake_daemon == []


# --- against a daemon --------------------------------------------------------------


def test_apply_creates_then_is_unchanged(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    manifest = write(tmp_path, "pod.yaml", POD_YAML)

    first = volfs(runner, daemon, "apply", "-f", manifest)
    assert (first.exit_code, first.stdout) == (0, "pod/web created\n"), first.output

    again = volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML)
    assert (again.exit_code, again.stdout) == (0, "pod/web unchanged\n"), again.output
    assert [call[0] for call in daemon.service.calls] == ["create", "create", "get"]


def test_apply_of_a_changed_spec_exits_2(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    assert volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML).exit_code == 0
    changed = write(tmp_path, "pod.yaml", POD_YAML.replace("/data", "/scratch"))

    result = volfs(runner, daemon, "apply", "-f", changed)

    assert result.exit_code == 2
    assert result.stderr == (
        f'error: {changed}: pod "web": spec is immutable once created; delete the pod first\n'
    )
    stored = daemon.service.pods[("default", "web")]
    assert stored["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"


def test_apply_reports_a_server_side_invalid_with_exit_2(
    runner: CliRunner, daemon: Daemon, tmp_path: Path
) -> None:
    daemon.service.fail["web"] = Invalid(
        "Pod", "web", [("spec.volumes[0].hostPath.path", "not under an allowed prefix")]
    )
    manifest = write(tmp_path, "pod.yaml", POD_YAML)
    result = volfs(runner, daemon, "apply", "-f", manifest)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {manifest}: spec.volumes[0].hostPath.path: not under an allowed prefix\n"
    )


def test_apply_reports_a_setup_failure_with_exit_1(
    runner: CliRunner, daemon: Daemon, tmp_path: Path
) -> None:
    daemon.service.fail["web"] = SetupFailed("create hook quota.sh exited 1: no quota support")
    manifest = write(tmp_path, "pod.yaml", POD_YAML)
    result = volfs(runner, daemon, "apply", "-f", manifest)
    assert result.exit_code == 1
    assert result.stderr == (
        f'error: {manifest}: pod "web": create hook quota.sh exited 1: no quota support\n'
    )


def test_apply_goes_on_after_a_failed_pod_and_exits_non_zero(
    runner: CliRunner, daemon: Daemon
) -> None:
    daemon.service.fail["web"] = SetupFailed("hook failed")
    two = POD_YAML + "---\n" + POD_YAML.replace("name: web", "name: db")
    result = volfs(runner, daemon, "apply", "-f", "-", stdin=two)
    assert result.exit_code == 1
    assert result.stdout == "pod/db created\n"
    assert result.stderr == 'error: <stdin>: pod "web": hook failed\n'


def test_get_pods_table_json_yaml_and_empty(runner: CliRunner, daemon: Daemon) -> None:
    empty = volfs(runner, daemon, "get", "pods")
    assert (empty.exit_code, empty.stdout) == (0, "")
    assert empty.stderr == "No resources found in default namespace.\n"

    assert volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML).exit_code == 0
    other = POD_YAML.replace("name: web", "name: db\n  namespace: team-a")
    assert volfs(runner, daemon, "apply", "-f", "-", stdin=other).exit_code == 0

    table = volfs(runner, daemon, "get", "pods").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "VOLUMES", "AGE"]
    assert table[1].split()[:3] == ["web", "Running", "1"]
    assert table[1].split()[3].endswith("s")
    assert len(table) == 2
    assert table[0].index("STATUS") == table[1].index("Running")  # aligned columns

    everywhere = volfs(runner, daemon, "get", "pods", "-A").stdout.splitlines()
    assert everywhere[0].split() == ["NAMESPACE", "NAME", "STATUS", "VOLUMES", "AGE"]
    assert sorted(line.split()[0] for line in everywhere[1:]) == ["default", "team-a"]

    wide = volfs(runner, daemon, "get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "VOLUMES", "AGE", "UID", "USED"]
    assert wide[1].split()[4:] == ["uid-1", "8Ki"]

    as_json = json.loads(volfs(runner, daemon, "get", "pods", "-o", "json").stdout)
    assert as_json["kind"] == "PodList"
    assert [p["metadata"]["name"] for p in as_json["items"]] == ["web"]
    as_yaml = yaml.safe_load(volfs(runner, daemon, "get", "pods", "-A", "-o", "yaml").stdout)
    assert len(as_yaml["items"]) == 2


def test_get_pod_shows_uid_and_volume_status(runner: CliRunner, daemon: Daemon) -> None:
    assert volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML).exit_code == 0
    pod = json.loads(volfs(runner, daemon, "get", "pod", "web", "-o", "json").stdout)
    assert pod["metadata"]["uid"] == "uid-1"
    (volume,) = pod["status"]["volumes"]
    assert set(volume) == {"name", "kind", "path", "medium", "sizeLimitBytes", "usedBytes"}
    assert yaml.safe_load(volfs(runner, daemon, "get", "po", "web", "-o", "yaml").stdout) == pod

    missing = volfs(runner, daemon, "get", "pod", "ghost", "-n", "team-a")
    assert missing.exit_code == 1
    assert missing.stderr == 'error: pods "ghost" not found\n'


def test_describe_pod(runner: CliRunner, daemon: Daemon) -> None:
    assert volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML).exit_code == 0
    result = volfs(runner, daemon, "describe", "pod", "web")
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    for expected in (
        "Name: web",
        "Namespace: default",
        "UID: uid-1",
        "Labels: app=web",
        "Status: Running",
        "/data from scratch (rw)",
        "Type: EmptyDir (a temporary directory that shares a pod's lifetime)",
        "SizeLimit: 1Gi",
        "Path: /var/lib/volfs/pods/uid-1/volumes/kubernetes.io~empty-dir/scratch",
        "Used: 8Ki (0% of 1Gi)",  # a quantity, as the limit beside it
    ):
        assert expected in lines, (expected, result.stdout)
    assert lines.index("Volumes:") < lines.index("scratch:")


def test_delete_prints_warnings_and_then_not_found(runner: CliRunner, daemon: Daemon) -> None:
    assert volfs(runner, daemon, "apply", "-f", "-", stdin=POD_YAML).exit_code == 0
    daemon.service.warnings = ['delete hook "backup" failed: exit 3']

    deleted = volfs(runner, daemon, "delete", "pod", "web")
    assert (deleted.exit_code, deleted.stdout) == (0, 'pod "web" deleted\n')
    assert deleted.stderr == 'warning: delete hook "backup" failed: exit 3\n'

    again = volfs(runner, daemon, "delete", "pod", "web")
    assert again.exit_code == 1
    assert again.stderr == 'error: pods "web" not found\n'


@pytest.mark.parametrize("args, grace, notice", [
    ([], None, 'pod "web": waiting up to 30s for its containers to stop (its '
               "terminationGracePeriodSeconds; --grace-period SECONDS or --now shortens it)"),
    (["--grace-period", "5"], 5, 'pod "web": waiting up to 5s for its containers to stop'),
    (["--now"], 1, 'pod "web": waiting up to 1s for its containers to stop'),
    (["--grace-period", "0"], 1, 'pod "web": waiting up to 1s for its containers to stop'),
    (["--grace-period", "0", "--force"], 0, None),
    (["--force"], 0, None),
])
def test_deleting_a_pod_with_running_containers_says_how_long_it_may_wait(
    runner: CliRunner, daemon: Daemon, args: list[str], grace: int | None, notice: str | None
) -> None:
    assert volfs(runner, daemon, "run", "-f", "-", stdin=POD_YAML).exit_code == 0
    stored = daemon.service.pods[("default", "web")]
    stored["status"]["containerStatuses"] = [{"name": "app", "state": {"running": {}}}]

    deleted = volfs(runner, daemon, "delete", "pod", "web", *args)
    assert (deleted.exit_code, deleted.stdout) == (0, 'pod "web" deleted\n')
    assert deleted.stderr == ("" if notice is None else notice + "\n")
    assert daemon.service.graces == [grace]  # sent as DeleteOptions.gracePeriodSeconds


def test_a_delete_that_will_not_wait_says_nothing(runner: CliRunner, daemon: Daemon,
                                                  tmp_path: Path) -> None:
    manifest = write(tmp_path, "pod.yaml", POD_YAML.replace(
        "spec:\n", "spec:\n  terminationGracePeriodSeconds: 7\n"))
    assert volfs(runner, daemon, "apply", "-f", manifest).exit_code == 0  # not run: no containers
    quiet = volfs(runner, daemon, "delete", "-f", manifest)
    assert (quiet.exit_code, quiet.stderr) == (0, "")

    assert volfs(runner, daemon, "run", "-f", manifest).exit_code == 0
    stored = daemon.service.pods[("default", "web")]
    stored["status"]["containerStatuses"] = [{"name": "app", "state": {"terminated": {}}}]
    assert volfs(runner, daemon, "delete", "pod", "web").stderr == ""  # none running

    assert volfs(runner, daemon, "run", "-f", manifest).exit_code == 0
    stored = daemon.service.pods[("default", "web")]
    stored["status"]["containerStatuses"] = [{"name": "app", "state": {"running": {}}}]
    told = volfs(runner, daemon, "delete", "-f", manifest, "--grace-period", "3")
    assert told.stderr == 'pod "web": waiting up to 3s for its containers to stop\n'
    assert daemon.service.graces == [None, None, 3]

    both = volfs(runner, daemon, "delete", "pod", "web", "--now", "--grace-period", "2")
    assert both.exit_code == 2
    assert "--now and --grace-period cannot be specified together" in both.stderr


def test_the_socket_is_private(daemon: Daemon) -> None:
    assert os.stat(daemon.socket_path).st_mode & 0o777 == 0o600

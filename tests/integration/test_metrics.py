"""``volfs serve --metrics``: a live daemon's /metrics, over real mounts and nfs-ganesha.

Volume figures are checked against what volfs itself reports (the pod's
``status.volumes[].usedBytes``, as ``volfs describe`` shows) and against the bytes
and files the test wrote. The daemon's state dir and the HostPath live on a tmpfs of
the test's own, so the backing filesystem's inode and byte counts move only with
what the test does.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.daemon import VOLFS, Daemon, pod_manifest
from tests.integration.nfs import Ganesha, NfsShare, new_share
from tests.waiting import wait_until

MiB = 1024 * 1024
DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "volfs-dashboard.json"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_text(daemon: Daemon) -> str:
    address = (daemon.state_dir / "metrics.address").read_text().strip()
    response = httpx.get(f"http://{address}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def scrape(daemon: Daemon) -> Samples:
    """Every sample of the daemon's /metrics, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(metrics_text(daemon))
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}``; 0 for a series not (yet) exposed."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def volume(samples: Samples, stat: str, pod: str, name: str, claim: str = "") -> float:
    key = (f"kubelet_volume_stats_{stat}", frozenset({
        "namespace": "default", "persistentvolumeclaim": claim, "pod": pod,
        "volume": name}.items()))
    assert key in samples, f"no {key[0]} for volume {name} of pod {pod}"
    return samples[key]


@contextlib.contextmanager
def private_tmpfs(path: Path) -> Iterator[Path]:
    """A tmpfs of the test's own at ``path`` (unmounted at the end)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def metrics_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with --metrics on a port it picks, its state and a HostPath dir on a
    private tmpfs (``<base>/host`` is allowed)."""
    with private_tmpfs(tmp_path / "fs") as fs:
        host = fs / "host"
        host.mkdir(mode=0o777)
        daemon = Daemon(fs / "volfs", extra_args=["--metrics", "127.0.0.1:0",
                                                  "--allow-host-path", str(host)])
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.fixture(scope="module")
def module_metrics_daemon(open_tmp: Path) -> Iterator[Daemon]:
    """One daemon with --metrics for the tests here that only read counters."""
    daemon = Daemon(Path(tempfile.mkdtemp(prefix="metrics-", dir=open_tmp)),
                    extra_args=["--metrics", "127.0.0.1:0"]).start()
    yield daemon
    daemon.stop()


def write_files(directory: Path, count: int, size: int) -> None:
    for index in range(count):
        (directory / f"f{index}").write_bytes(os.urandom(size))


def used_bytes(daemon: Daemon, pod: str, name: str) -> Any:
    """What volfs reports for the volume (``volfs describe`` prints this figure)."""
    return next(v["usedBytes"] for v in daemon.pod(pod)["status"]["volumes"]
                if v["name"] == name)


def claim_objects(share: NfsShare, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A 1 GiB PV on ``share`` and a claim that binds it by name."""
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                   "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                   "nfs": {"server": share.server, "path": share.path()}}}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
           "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                    "volumeName": name, "resources": {"requests": {"storage": "1Gi"}}}}
    return pv, pvc


@pytest.mark.timeout(180)
def test_volume_stats_follow_what_is_written(metrics_daemon: Daemon, nfs_share: NfsShare,
                                             pod_name: str) -> None:
    daemon = metrics_daemon
    host = daemon.base.parent / "host"
    pv, pvc = claim_objects(nfs_share, pod_name)
    assert daemon.api("POST", "/api/v1/persistentvolumes", pv).status_code == 201
    assert daemon.api("POST", "/api/v1/namespaces/default/persistentvolumeclaims",
                      pvc).status_code == 201
    daemon.apply(pod_manifest(pod_name, f"""\
    - name: scratch
      emptyDir: {{sizeLimit: 64Mi}}
    - name: memory
      emptyDir: {{medium: Memory}}
    - name: host
      hostPath: {{path: {host}, type: Directory}}
    - name: data
      persistentVolumeClaim: {{claimName: {pod_name}}}
"""))
    wait_until(lambda: daemon.pod(pod_name)["status"]["phase"] == "Running", 30,
               "the pod's claim did not bind")
    try:
        check_volume_stats(daemon, pod_name, host, nfs_share)
    finally:
        daemon.cli("delete", "pod", pod_name, check=False)  # its Memory EmptyDir too


def check_volume_stats(daemon: Daemon, pod_name: str, host: Path, nfs_share: NfsShare) -> None:
    before = scrape(daemon)
    for name in ("scratch", "host", "data"):
        write_files(daemon.volume_path(pod_name, name), 3, MiB)
    after = scrape(daemon)

    def moved(stat: str, name: str, claim: str = "") -> float:
        return (volume(after, stat, pod_name, name, claim)
                - volume(before, stat, pod_name, name, claim))

    # EmptyDir with a sizeLimit: the limit is the capacity, usage is volfs's own figure.
    assert volume(after, "capacity_bytes", pod_name, "scratch") == 64 * MiB
    assert volume(after, "used_bytes", pod_name, "scratch") == used_bytes(
        daemon, pod_name, "scratch")
    assert moved("used_bytes", "scratch") >= 3 * MiB
    assert volume(after, "available_bytes", pod_name, "scratch") == 64 * MiB - volume(
        after, "used_bytes", pod_name, "scratch")
    state_fs = os.statvfs(daemon.state_dir)
    assert volume(after, "inodes", pod_name, "scratch") == state_fs.f_files
    assert moved("inodes_used", "scratch") >= 3
    # The claim: its PV's capacity, its live usage, the claim's name as a label.
    assert volume(after, "capacity_bytes", pod_name, "data", pod_name) == 1024 * MiB
    assert volume(after, "used_bytes", pod_name, "data", pod_name) == used_bytes(
        daemon, pod_name, "data")
    assert moved("used_bytes", "data", pod_name) >= 3 * MiB
    # HostPath: not tracked, so the backing filesystem's figures (a tmpfs of this test).
    assert used_bytes(daemon, pod_name, "host") is None
    host_fs = os.statvfs(host)
    assert volume(after, "capacity_bytes", pod_name, "host") == host_fs.f_blocks * host_fs.f_frsize
    assert moved("used_bytes", "host") >= 3 * MiB
    assert moved("inodes_used", "host") >= 3
    # Memory EmptyDir without a limit: the tmpfs's capacity, nothing used.
    assert volume(after, "capacity_bytes", pod_name, "memory") > 0
    assert volume(after, "used_bytes", pod_name, "memory") == 0
    # The NFS RPCs that carried the claim's bytes.
    rpc = {"server": nfs_share.server, "procedure": "WRITE"}
    assert (value(after, "volfs_nfs_rpc_requests_total", **rpc)
            > value(before, "volfs_nfs_rpc_requests_total", **rpc))
    assert value(after, "volfs_nfs_rpc_duration_seconds_count", **rpc) == value(
        after, "volfs_nfs_rpc_requests_total", **rpc)
    # Objects by phase.
    assert value(after, "volfs_pods", namespace="default", phase="Running") == 1
    assert value(after, "volfs_persistentvolumeclaims", namespace="default", phase="Bound") == 1
    assert value(after, "volfs_persistentvolumes", phase="Bound") == 1


def test_fuse_requests_and_errors_are_counted(module_metrics_daemon: Daemon,
                                              pod_name: str) -> None:
    daemon = module_metrics_daemon
    daemon.apply(pod_manifest(pod_name, "    - name: scratch\n      emptyDir: {}\n"))
    path = daemon.volume_path(pod_name, "scratch")
    before = scrape(daemon)
    (path / "file").write_bytes(b"x" * 4096)
    with pytest.raises(FileNotFoundError):
        os.stat(path / "missing")
    after = scrape(daemon)
    for operation in ("create", "write", "release"):
        assert (value(after, "volfs_fuse_requests_total", operation=operation)
                > value(before, "volfs_fuse_requests_total", operation=operation)), operation
    enoent = {"operation": "lookup", "errno": errno.errorcode[errno.ENOENT]}
    assert (value(after, "volfs_fuse_errors_total", **enoent)
            > value(before, "volfs_fuse_errors_total", **enoent))
    write = {"operation": "write"}
    assert value(after, "volfs_fuse_request_duration_seconds_count", **write) == value(
        after, "volfs_fuse_requests_total", **write)
    assert value(after, "volfs_fuse_request_duration_seconds_bucket", le="+Inf",
                 **write) == value(after, "volfs_fuse_requests_total", **write)
    daemon.cli("delete", "pod", pod_name)


@pytest.mark.timeout(120)
def _wait_until_stopped(pid: int) -> None:
    """Until every thread of ``pid`` shows as stopped: kill() only queues SIGSTOP, and
    the write below must reach a server that is frozen already."""
    def states() -> set[str]:
        found = set()
        for stat_file in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                found.add(stat_file.read_text().rsplit(")", 1)[1].split()[0])
        return found

    wait_until(lambda: bool(states()) and states() <= {"T", "t"}, 10,
               f"ganesha (pid {pid}) stopped by SIGSTOP")


def test_an_unanswering_nfs_server_shows_in_timeouts_and_retransmissions(
        module_metrics_daemon: Daemon, own_ganesha: Ganesha, pod_name: str) -> None:
    """The server frozen (SIGSTOP: connections are accepted, nothing is answered) under a
    soft volume's fsync: sends time out, are sent again, and the call gives up (EIO)."""
    daemon = module_metrics_daemon
    share = new_share(own_ganesha, pod_name)
    daemon.apply(pod_manifest(pod_name, share.volume("data", soft=True, timeo=10, retrans=1)))
    server_pid = int((own_ganesha.work_dir / "ganesha.pid").read_text().strip())
    path = daemon.volume_path(pod_name, "data") / "file"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"before")
            os.fsync(fd)
            before = scrape(daemon)
            os.kill(server_pid, signal.SIGSTOP)
            try:
                _wait_until_stopped(server_pid)
                os.write(fd, b"during")
                with pytest.raises(OSError) as failed:
                    os.fsync(fd)
                assert failed.value.errno == errno.EIO
            finally:
                os.kill(server_pid, signal.SIGCONT)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        after = scrape(daemon)
    finally:
        daemon.cli("delete", "pod", pod_name, check=False)

    def moved(name: str) -> float:
        total = 0.0
        for (sample, labels), count in after.items():
            if sample == name and ("server", share.server) in labels:
                total += count - before.get((sample, labels), 0.0)
        return total

    assert moved("volfs_nfs_rpc_timeouts_total") >= 1
    assert moved("volfs_nfs_rpc_retransmissions_total") >= 1
    assert moved("volfs_nfs_rpc_unanswered_total") >= 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("address", ["0.0.0.0:9473", "192.168.1.5:0", "[::]:9473"])
def test_metrics_listen_on_loopback_only(tmp_path: Path, address: str) -> None:
    result = subprocess.run(
        [VOLFS, "serve", "--root", str(tmp_path / "root"), "--state-dir",
         str(tmp_path / "state"), "--metrics", address],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "not a loopback address" in errors[0], result.stderr
    assert "metrics" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


# -- the Grafana dashboard ----------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                 "bool", "and", "or", "unless", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions
    (followed by ``(``), keywords, label names (inside ``{}`` or ``by (...)``), nor
    durations or Grafana variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges, [$__rate_interval]
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end():].lstrip()
        start = match.start()
        if rest.startswith("(") or match.group() in _PROMQL_WORDS:
            continue
        if start and (expr[start - 1].isdigit() or expr[start - 1] == "."):
            continue  # the unit of a number or duration (5m, 1e3)
        names.add(match.group())
    return names


def dashboard_expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for v in node.values() for e in dashboard_expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in dashboard_expressions(v)]
    return []


def exposed_names(text: str) -> set[str]:
    """Every sample name /metrics can carry: a histogram's _bucket, _sum and _count, a
    counter's _total, as declared by its TYPE line (even before it has a sample)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",),
                    "summary": ("_sum", "_count", "")}.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_reads_only_exposed_metrics(module_metrics_daemon: Daemon) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)
    assert len(expressions) >= 8, "the dashboard lost its panels"
    exposed = exposed_names(metrics_text(module_metrics_daemon))
    used = {name: expr for expr in expressions for name in promql_metric_names(expr)}
    assert used, "no metric name found in the dashboard's expressions"
    missing = {name: expr for name, expr in used.items() if name not in exposed}
    assert not missing, f"the dashboard reads metrics /metrics does not expose: {missing}"


def test_the_promql_reader_finds_metric_names() -> None:
    """The dashboard check's own reader: it must find names, and only names."""
    expr = ('histogram_quantile(0.99, sum by (le, operation) '
            '(rate(volfs_fuse_request_duration_seconds_bucket{operation=~"read|write"}'
            '[$__rate_interval]))) / on (pod) group_left kubelet_volume_stats_used_bytes'
            ' > 5e3 and offset_x')
    assert promql_metric_names(expr) == {"volfs_fuse_request_duration_seconds_bucket",
                                         "kubelet_volume_stats_used_bytes", "offset_x"}

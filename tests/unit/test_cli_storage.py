"""The ``volfs`` command for every kind: PersistentVolumes, claims, StorageClasses and
events beside pods, against the real control API (served on a unix socket from a
background thread) over in-memory services that follow the daemon's rules."""

from __future__ import annotations

import builtins
import copy
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml
from click.testing import CliRunner, Result
from starlette.types import ASGIApp

from tests.unit.test_cli import Daemon, MemoryPods
from volfs.api import parse_object
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound
from volfs.cli import main
from volfs.cli.applying import Target, readiness, wait_ready
from volfs.cli.client import Client
from volfs.cli.describe import describe_claim, describe_pod, events_text
from volfs.cli.kinds import PERSISTENT_VOLUME_CLAIM, POD, UnknownResource, resolve
from volfs.cli.printers import format_usage
from volfs.lifecycle.pod_containers import NOT_RUN_MESSAGE
from volfs.server import create_app
from volfs.server.kinds import (
    EVENTS,
    NAMESPACES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    STORAGE_CLASSES,
    NamespaceResource,
    PodResource,
)
from volfs.server.resources import ResourceRegistry
from volfs.server.watch import OpenWatches

Object = dict[str, Any]

SC_YAML = """\
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: volfs.io/nfs
parameters:
  server: 127.0.0.1
  share: /srv/nfs
reclaimPolicy: Retain
"""

PV_YAML = """\
apiVersion: v1
kind: PersistentVolume
metadata:
  name: nfs
  labels:
    tier: gold
spec:
  storageClassName: manual
  capacity:
    storage: 1Gi
  accessModes:
    - ReadWriteMany
  nfs:
    server: 127.0.0.1
    path: /exports/nfs
"""

PVC_YAML = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: nfs
spec:
  storageClassName: manual
  accessModes:
    - ReadWriteMany
  resources:
    requests:
      storage: 1Gi
"""

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      image: nginx
      volumeMounts:
        - name: data
          mountPath: /usr/share/nginx/html
  volumes:
    - name: data
      persistentVolumeClaim:
        claimName: nfs
"""

ALL_YAML = "---\n".join([POD_YAML, PVC_YAML, PV_YAML, SC_YAML])  # dependents first

NO_CLASS = "no persistent volumes available for this claim and no storage class is set"


def _now(delta: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects of one kind in a dict, with the daemon's rules for create, update, delete.

    ``calls`` records (verb, name); ``update_rule(stored, new)`` refuses an update by
    raising Invalid; ``in_use(namespace, name)`` names the pods that stop a delete.
    """

    def __init__(self, kind: str, namespaced: bool, status: Object | None = None) -> None:
        self.kind, self.namespaced = kind, namespaced
        self.objects: dict[tuple[str, str], Object] = {}
        self.calls: list[tuple[str, str]] = []
        self.status = status
        self.version = 0

    def key(self, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "default") if self.namespaced else "", name

    async def create(self, obj: Object) -> Object:
        (parsed,) = parse_object(obj)  # a ManifestError is a 422
        new = parsed.to_k8s()
        key = self.key(new["metadata"].get("namespace"), new["metadata"]["name"])
        self.calls.append(("create", key[1]))
        if key in self.objects:
            raise AlreadyExists(self.kind, key[0] or None, key[1])
        self.version += 1
        new["metadata"].update(uid=f"{self.kind.lower()}-{self.version}",
                               resourceVersion=str(self.version), creationTimestamp=_now(-900))
        if not self.namespaced:
            new["metadata"].pop("namespace", None)
        if self.status is not None:
            new["status"] = copy.deepcopy(self.status)
        self.objects[key] = new
        return new

    async def get(self, namespace: str | None, name: str) -> Object:
        self.calls.append(("get", name))
        try:
            return self.objects[self.key(namespace, name)]
        except KeyError:
            raise NotFound(self.kind, namespace, name) from None

    async def list(self, namespace: str | None) -> list[Object]:
        self.calls.append(("list", namespace or ""))
        return [o for (ns, _), o in self.objects.items() if namespace in (None, ns)
                or not self.namespaced]

    async def delete(self, namespace: str | None, name: str) -> Object:
        self.calls.append(("delete", name))
        key = self.key(namespace, name)
        if key not in self.objects:
            raise NotFound(self.kind, namespace, name)
        users = self.in_use(key[0], name)
        if users:
            raise Conflict(self.kind, name, f'{self.kind.lower()} "{name}" is in use by pods '
                           f"{', '.join(users)}: delete them first")
        return self.objects.pop(key)

    async def update(self, obj: Object) -> Object:
        meta = obj["metadata"]
        key = self.key(meta.get("namespace"), meta["name"])
        self.calls.append(("update", key[1]))
        stored = self.objects.get(key)
        if stored is None:
            raise NotFound(self.kind, key[0] or None, key[1])
        if meta.get("resourceVersion") not in (None, stored["metadata"]["resourceVersion"]):
            raise Conflict(self.kind, key[1], "the object has been modified")
        (parsed,) = parse_object(obj)
        new = parsed.to_k8s()
        self.update_rule(stored, new)
        self.version += 1
        new["metadata"] = {**new["metadata"], "uid": stored["metadata"]["uid"],
                           "creationTimestamp": stored["metadata"]["creationTimestamp"],
                           "resourceVersion": str(self.version)}
        if not self.namespaced:
            new["metadata"].pop("namespace", None)
        if "status" in stored:
            new["status"] = stored["status"]
        self.objects[key] = new
        return new

    def update_rule(self, stored: Object, new: Object) -> None:
        """The controller's: a PV's nfs source, a claim's spec, a class's parameters."""
        name = stored["metadata"]["name"]
        if self.kind == "PersistentVolume" and new["spec"].get("nfs") != stored["spec"]["nfs"]:
            raise Invalid(self.kind, name, [("spec.persistentvolumesource", "Forbidden: "
                                             "spec.persistentvolumesource is immutable after "
                                             "creation")])
        if (self.kind == "PersistentVolumeClaim"
                and new["spec"].get("volumeName") != stored["spec"].get("volumeName")):
            raise Invalid(self.kind, name, [("spec", "Forbidden: spec is immutable after "
                                             "creation")])
        if self.kind == "StorageClass" and new.get("parameters") != stored.get("parameters"):
            raise Invalid(self.kind, name, [("parameters", "Forbidden: updates to parameters "
                                             "are forbidden.")])

    def in_use(self, namespace: str, name: str) -> builtins.list[str]:
        return []


class Claims(Store):
    """Claims that bind to the PV ``nfs`` after ``binds_after`` reads of each (never when
    None), and that cannot be deleted while a pod names them."""

    def __init__(self, pods: MemoryPods, volumes: Store) -> None:
        super().__init__("PersistentVolumeClaim", True, {"phase": "Pending"})
        self.pods, self.volumes = pods, volumes
        self.binds_after: int | None = None
        self.reads: dict[str, int] = {}

    async def get(self, namespace: str | None, name: str) -> Object:
        obj = await super().get(namespace, name)
        self.reads[name] = self.reads.get(name, 0) + 1
        if (self.binds_after is not None and self.reads[name] >= self.binds_after
                and obj["status"]["phase"] != "Bound"):
            self.bind(obj)
        return obj

    def bind(self, obj: Object) -> None:
        pv = self.volumes.objects[("", "nfs")]
        meta = obj["metadata"]
        pv["spec"]["claimRef"] = {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                                  "name": meta["name"], "uid": meta["uid"]}
        pv["status"] = {"phase": "Bound"}
        obj["spec"]["volumeName"] = "nfs"
        meta.setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        obj["status"] = {"phase": "Bound", "accessModes": pv["spec"]["accessModes"],
                         "capacity": pv["spec"]["capacity"], "usedBytes": 3 * 1024**2}
        for pod in self.pods.pods.values():
            pod["status"] = {"phase": "Running"}

    def in_use(self, namespace: str, name: str) -> builtins.list[str]:
        return [pod["metadata"]["name"] for (ns, _), pod in self.pods.pods.items()
                if ns == namespace and any((v.get("persistentVolumeClaim") or {}).get(
                    "claimName") == name for v in pod["spec"].get("volumes", []))]


class ClaimPods(MemoryPods):
    """Pods that are Pending while a claim they name is not bound, as the daemon's are."""

    claims: Claims

    async def create_pod(self, pod: Any) -> Object:
        obj = await super().create_pod(pod)
        waiting = [v["persistentVolumeClaim"]["claimName"] for v in obj["spec"]["volumes"]
                   if "persistentVolumeClaim" in v
                   and self.claims.objects.get((obj["metadata"]["namespace"], v[
                       "persistentVolumeClaim"]["claimName"]), {}).get(
                       "status", {}).get("phase") != "Bound"]
        if waiting:
            obj["status"] = {"phase": "Pending", "conditions": [{
                "type": "VolumesReady", "status": "False", "reason": "VolumesNotReady",
                "message": f'volume data: persistentvolumeclaim "{waiting[0]}" is Pending '
                           "(not bound to a volume yet)"}]}
        return obj


class Events:
    """Events to serve (read-only), as the daemon records them."""

    def __init__(self) -> None:
        self.events: list[Object] = []

    def add(self, kind: str, name: str, reason: str, message: str, type: str = "Warning",
            namespace: str = "default", age: float = 10, count: int = 1,
            first_age: float | None = None) -> None:
        self.events.append({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{len(self.events):x}", "namespace": namespace,
                         "creationTimestamp": _now(-age)},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "reason": reason, "message": message, "type": type,
            "source": {"component": "volfs", "host": "box"},
            "firstTimestamp": _now(-(first_age if first_age is not None else age)),
            "lastTimestamp": _now(-age), "count": count})

    async def get(self, namespace: str | None, name: str) -> Object:
        for event in self.events:
            if event["metadata"]["name"] == name:
                return event
        raise NotFound("Event", namespace, name)

    async def list(self, namespace: str | None) -> list[Object]:
        return [e for e in self.events if namespace in (None, e["metadata"]["namespace"])]


class Commits:
    """The state database's change events, committed by a test from its own thread:
    ``listed`` blocks until the watches have listed (taken an event) that often."""

    def __init__(self) -> None:
        self.event: trio.Event | None = None
        self.asked = 0
        self._asked = threading.Condition()

    def next_change(self) -> trio.Event:  # in the daemon's thread
        if self.event is None or self.event.is_set():
            self.event = trio.Event()
        with self._asked:
            self.asked += 1
            self._asked.notify_all()
        return self.event

    def listed(self, times: int) -> None:
        with self._asked:
            assert self._asked.wait_for(lambda: self.asked >= times, timeout=60)


class StorageDaemon(Daemon):
    """A Daemon serving pods, PVs, claims, classes, namespaces and events; its watches
    list again when the test says a change was committed (``commit``)."""

    def __init__(self, socket_path: Path) -> None:
        super().__init__(socket_path, app=self._make_app)
        self.commits = Commits()
        self.watches = OpenWatches()
        self.service = ClaimPods()
        self.volumes = Store("PersistentVolume", False, {"phase": "Available"})
        self.claims = Claims(self.service, self.volumes)
        self.service.claims = self.claims
        self.classes = Store("StorageClass", False)
        self.events = Events()

    def _make_app(self, pods: MemoryPods) -> ASGIApp:
        registry = ResourceRegistry()
        registry.register(PODS, PodResource(pods))
        registry.register(NAMESPACES, NamespaceResource(registry))
        registry.register(EVENTS, self.events)
        registry.register(PERSISTENT_VOLUMES, self.volumes)
        registry.register(PERSISTENT_VOLUME_CLAIMS, self.claims)
        registry.register(STORAGE_CLASSES, self.classes)
        return create_app(registry, changes=self.commits.next_change, watches=self.watches)

    def in_trio(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``fn(*args)`` in the daemon's thread, as its requests are."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def commit(self) -> None:
        assert self.commits.event is not None
        trio.from_thread.run_sync(self.commits.event.set, trio_token=self._token)

    def end_watches(self) -> None:
        trio.from_thread.run_sync(self.watches.close, trio_token=self._token)


@pytest.fixture
def daemon(short_dir: Path) -> Iterator[StorageDaemon]:
    running = StorageDaemon(short_dir / "volfs.sock")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="volfs-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def volfs(daemon: Daemon, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--socket", str(daemon.socket_path)], input=stdin)


def ok(daemon: Daemon, *args: str, stdin: str | None = None) -> Result:
    result = volfs(daemon, *args, stdin=stdin)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def cells(text: str) -> list[list[str]]:
    """A table's rows, cut at the header's column starts (empty cells stay empty)."""
    lines = text.splitlines()
    starts = [0] + [match.end() for match in re.finditer(r" {2,}", lines[0])]
    rows = []
    for line in lines:
        ends = [*starts[1:], None]
        rows.append([line[a:b].strip() for a, b in zip(starts, ends, strict=True)])
    return rows


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


# --- apply ---------------------------------------------------------------------------


def test_apply_creates_every_kind_in_any_order(daemon: StorageDaemon, tmp_path: Path) -> None:
    result = ok(daemon, "apply", "-f", write(tmp_path, "all.yaml", ALL_YAML))
    assert result.stdout.splitlines() == [
        "storageclass.storage.k8s.io/fast created",
        "persistentvolume/nfs created",
        "persistentvolumeclaim/nfs created",
        "pod/web created",
    ]
    assert set(daemon.volumes.objects) == {("", "nfs")}
    assert set(daemon.classes.objects) == {("", "fast")}
    assert set(daemon.claims.objects) == {("default", "nfs")}
    assert "namespace" not in daemon.volumes.objects[("", "nfs")]["metadata"]


def test_apply_uses_the_objects_namespace(daemon: StorageDaemon) -> None:
    claim = PVC_YAML.replace("name: nfs", "name: nfs\n  namespace: team-a")
    assert ok(daemon, "apply", "-f", "-", stdin=claim).stdout == (
        "persistentvolumeclaim/nfs created\n")
    assert set(daemon.claims.objects) == {("team-a", "nfs")}


def test_apply_again_is_unchanged_with_reads_only(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    daemon.claims.bind(daemon.claims.objects[("default", "nfs")])  # what the binder adds stays
    for store in (daemon.volumes, daemon.claims, daemon.classes):
        store.calls.clear()

    again = ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)

    assert again.stdout.splitlines() == [
        "storageclass.storage.k8s.io/fast unchanged",
        "persistentvolume/nfs unchanged",
        "persistentvolumeclaim/nfs unchanged",
        "pod/web unchanged",
    ]
    for store in (daemon.volumes, daemon.claims, daemon.classes):
        assert [verb for verb, _ in store.calls] == ["create", "get"]


def test_apply_of_new_labels_is_configured_and_keeps_the_binding(
        daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    claim = daemon.claims.objects[("default", "nfs")]
    daemon.claims.bind(claim)
    version = claim["metadata"]["resourceVersion"]

    labelled = PVC_YAML.replace("name: nfs", "name: nfs\n  labels:\n    app: web")
    result = ok(daemon, "apply", "-f", "-", stdin=labelled)

    assert result.stdout == "persistentvolumeclaim/nfs configured\n"
    stored = daemon.claims.objects[("default", "nfs")]
    assert stored["metadata"]["labels"] == {"app": "web"}
    assert stored["metadata"]["resourceVersion"] != version
    assert stored["spec"]["volumeName"] == "nfs"
    assert stored["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes"}
    assert ok(daemon, "apply", "-f", "-", stdin=labelled).stdout == (
        "persistentvolumeclaim/nfs unchanged\n")


def test_apply_configures_a_volume_and_a_class(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=PV_YAML + "---\n" + SC_YAML)
    bigger = PV_YAML.replace("storage: 1Gi", "storage: 2Gi").replace("gold", "silver")
    not_default = SC_YAML.replace('"true"', '"false"')
    result = ok(daemon, "apply", "-f", "-", stdin=bigger + "---\n" + not_default)
    assert result.stdout.splitlines() == ["storageclass.storage.k8s.io/fast configured",
                                          "persistentvolume/nfs configured"]
    pv = daemon.volumes.objects[("", "nfs")]
    assert (pv["spec"]["capacity"], pv["metadata"]["labels"]) == (
        {"storage": "2Gi"}, {"tier": "silver"})
    assert daemon.classes.objects[("", "fast")]["metadata"]["annotations"] == {
        "storageclass.kubernetes.io/is-default-class": "false"}


def test_apply_of_a_forbidden_change_is_refused_with_exit_2(
        daemon: StorageDaemon, tmp_path: Path) -> None:
    ok(daemon, "apply", "-f", "-", stdin=PV_YAML + "---\n" + SC_YAML)
    moved = write(tmp_path, "pv.yaml", PV_YAML.replace("/exports/nfs", "/elsewhere"))
    result = volfs(daemon, "apply", "-f", moved)
    assert result.exit_code == 2
    assert result.stderr == (f"error: {moved}: spec.persistentvolumesource: Forbidden: "
                             "spec.persistentvolumesource is immutable after creation\n")
    assert daemon.volumes.objects[("", "nfs")]["spec"]["nfs"]["path"] == "/exports/nfs"

    other = write(tmp_path, "sc.yaml", SC_YAML.replace("/srv/nfs", "/srv/other"))
    result = volfs(daemon, "apply", "-f", other)
    assert (result.exit_code, result.stderr) == (
        2, f"error: {other}: parameters: Forbidden: updates to parameters are forbidden.\n")


def test_apply_of_a_pods_labels_is_configured_and_its_spec_still_immutable(
        daemon: StorageDaemon, tmp_path: Path) -> None:
    ok(daemon, "apply", "-f", "-", stdin=POD_YAML)
    labelled = POD_YAML.replace("name: web\nspec", "name: web\n  labels:\n    app: web\nspec")
    assert ok(daemon, "apply", "-f", "-", stdin=labelled).stdout == "pod/web configured\n"
    assert daemon.service.pods[("default", "web")]["metadata"]["labels"] == {"app": "web"}

    changed = write(tmp_path, "pod.yaml", labelled.replace("claimName: nfs", "claimName: x"))
    result = volfs(daemon, "apply", "-f", changed)
    assert (result.exit_code, result.stderr) == (
        2, f'error: {changed}: pod "web": spec is immutable once created; '
           "delete the pod first\n")


def test_apply_reports_an_invalid_object_of_each_kind(daemon: StorageDaemon) -> None:
    no_nfs = PV_YAML.replace("  nfs:\n    server: 127.0.0.1\n    path: /exports/nfs\n", "")
    result = volfs(daemon, "apply", "-f", "-", stdin=no_nfs)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: <stdin>: spec: Required value: a volume source")
    assert daemon.volumes.calls == []  # refused before anything was sent


def test_apply_goes_on_after_a_refused_object(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=PV_YAML)
    moved = PV_YAML.replace("/exports/nfs", "/elsewhere")
    result = volfs(daemon, "apply", "-f", "-", stdin=moved + "---\n" + PVC_YAML)
    assert result.exit_code == 2
    assert result.stdout == "persistentvolumeclaim/nfs created\n"
    assert result.stderr.startswith("error: <stdin>: spec.persistentvolumesource: Forbidden")


# --- apply --wait ------------------------------------------------------------------------


def test_apply_wait_returns_once_the_claim_binds_and_the_pod_runs(
        daemon: StorageDaemon) -> None:
    daemon.claims.binds_after = 4
    started = time.monotonic()
    result = ok(daemon, "apply", "--wait", "-f", "-", stdin=ALL_YAML)
    assert time.monotonic() - started < 5
    assert result.stdout.splitlines()[-1] == "pod/web created"
    assert daemon.claims.objects[("default", "nfs")]["status"]["phase"] == "Bound"
    assert daemon.service.pods[("default", "web")]["status"]["phase"] == "Running"
    assert daemon.claims.reads["nfs"] >= 4


def test_apply_wait_times_out_naming_what_waits_and_why(daemon: StorageDaemon) -> None:
    daemon.events.add("PersistentVolumeClaim", "nfs", "FailedBinding", NO_CLASS, "Normal")
    started = time.monotonic()
    result = volfs(daemon, "apply", "--wait", "--timeout", "0.5", "-f", "-",
                   stdin=POD_YAML + "---\n" + PVC_YAML)
    assert 0.5 <= time.monotonic() - started < 5
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["persistentvolumeclaim/nfs created", "pod/web created"]
    assert result.stderr.splitlines() == [
        "error: timed out after 0.5s waiting for persistentvolumeclaim/nfs to be Bound: "
        f"Pending (FailedBinding: {NO_CLASS})",
        "error: timed out after 0.5s waiting for pod/web to be Running: Pending "
        '(VolumesNotReady: volume data: persistentvolumeclaim "nfs" is Pending '
        "(not bound to a volume yet))",
    ]


def test_apply_wait_polls_often_but_not_busily(daemon: StorageDaemon) -> None:
    with Client(daemon.socket_path) as client:
        ok(daemon, "apply", "-f", "-", stdin=PVC_YAML)
        sleeps: list[float] = []
        clock = iter(range(1000))
        problems = wait_ready(client, [Target(PERSISTENT_VOLUME_CLAIM, "default", "nfs")], 3,
                              sleep=sleeps.append, clock=lambda: float(next(clock)) / 10)
    assert problems[0].startswith("timed out after 3s waiting for persistentvolumeclaim/nfs")
    assert sleeps[0] < 0.05 and max(sleeps) == 0.2


def test_apply_wait_stops_at_a_claim_that_is_lost(daemon: StorageDaemon) -> None:
    daemon.claims.status = {"phase": "Lost"}
    result = volfs(daemon, "apply", "--wait", "-f", "-", stdin=PVC_YAML)
    assert result.exit_code == 1
    assert result.stderr == ("error: persistentvolumeclaim/nfs is Lost; it will not become "
                             "Bound\n")


def test_readiness_reads_phases_and_conditions() -> None:
    pending = {"status": {"phase": "Pending", "conditions": [
        {"type": "VolumesReady", "status": "False", "reason": "VolumesNotReady",
         "message": "volume data: waits"}]}}
    assert readiness(POD, pending).describe() == "Pending (VolumesNotReady: volume data: waits)"
    assert readiness(POD, {"status": {"phase": "Running"}}).ready
    assert readiness(POD, {"status": {"phase": "Failed"}}).final
    assert readiness(PERSISTENT_VOLUME_CLAIM, {"status": {"phase": "Bound"}}).ready
    assert not readiness(PERSISTENT_VOLUME_CLAIM, {}).ready


# --- get -------------------------------------------------------------------------------


def test_get_pv_pvc_sc_tables_with_kubectls_columns(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    claim = daemon.claims.objects[("default", "nfs")]

    pvs = cells(ok(daemon, "get", "pv").stdout)
    assert pvs[0] == ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM",
                      "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"]
    assert pvs[1][:8] == ["nfs", "1Gi", "RWX", "Retain", "Available", "", "manual", "<unset>"]
    assert pvs[1][9] == "15m"

    pvcs = cells(ok(daemon, "get", "pvc").stdout)
    assert pvcs[0] == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
                       "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert pvcs[1][:6] == ["nfs", "Pending", "", "", "", "manual"]

    daemon.claims.bind(claim)
    assert cells(ok(daemon, "get", "pv").stdout)[1][4:6] == ["Bound", "default/nfs"]
    assert cells(ok(daemon, "get", "pvc", "nfs").stdout)[1][:5] == [
        "nfs", "Bound", "nfs", "1Gi", "RWX"]

    scs = cells(ok(daemon, "get", "sc").stdout)
    assert scs[0] == ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE",
                      "ALLOWVOLUMEEXPANSION", "AGE"]
    assert scs[1][:5] == ["fast (default)", "volfs.io/nfs", "Retain", "Immediate", "false"]


def test_get_wide_all_namespaces_and_selectors(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=PV_YAML + "---\n" + PVC_YAML + "---\n"
       + PVC_YAML.replace("name: nfs", "name: logs\n  namespace: team-a\n  labels:\n"
                          "    app: logs"))
    wide = cells(ok(daemon, "get", "pv", "-o", "wide").stdout)
    assert wide[0][-1] == "VOLUMEMODE" and wide[1][-1] == "Filesystem"

    everywhere = cells(ok(daemon, "get", "pvc", "-A").stdout)
    assert everywhere[0][:2] == ["NAMESPACE", "NAME"]
    assert sorted(row[:2] for row in everywhere[1:]) == [["default", "nfs"], ["team-a", "logs"]]
    assert cells(ok(daemon, "get", "pv", "-A").stdout)[0][0] == "NAME"  # cluster-scoped

    selected = ok(daemon, "get", "pvc", "-A", "-l", "app=logs").stdout.splitlines()
    assert [line.split()[:2] for line in selected[1:]] == [["team-a", "logs"]]
    assert ok(daemon, "get", "pv", "-l", "tier in (gold)").stdout.splitlines()[1].startswith(
        "nfs ")
    none = volfs(daemon, "get", "pv", "-l", "tier=silver")
    assert (none.exit_code, none.stdout, none.stderr) == (0, "", "No resources found\n")

    bad = volfs(daemon, "get", "pv", "-l", "tier in gold")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")
    both = volfs(daemon, "get", "pv", "nfs", "-l", "tier=gold")
    assert both.exit_code == 2


def test_get_json_and_yaml_of_lists_and_objects(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    for resource, kind in (("pv", "PersistentVolumeList"), ("pvc", "PersistentVolumeClaimList"),
                           ("sc", "StorageClassList"), ("ev", "EventList")):
        listed = json.loads(ok(daemon, "get", resource, "-o", "json").stdout)
        assert listed["kind"] == kind
    sc = yaml.safe_load(ok(daemon, "get", "storageclass", "fast", "-o", "yaml").stdout)
    assert (sc["apiVersion"], sc["kind"], sc["provisioner"]) == (
        "storage.k8s.io/v1", "StorageClass", "volfs.io/nfs")
    pvc = json.loads(ok(daemon, "get", "persistentvolumeclaim", "nfs", "-o", "json").stdout)
    assert pvc["metadata"]["namespace"] == "default"


def test_get_nothing_says_so_like_kubectl(daemon: StorageDaemon) -> None:
    for args, message in ((["pv"], "No resources found\n"),
                          (["sc"], "No resources found\n"),
                          (["pvc"], "No resources found in default namespace.\n"),
                          (["pvc", "-n", "team-a"], "No resources found in team-a namespace.\n"),
                          (["pvc", "-A"], "No resources found\n"),
                          (["events"], "No resources found in default namespace.\n")):
        result = volfs(daemon, "get", *args)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", message), args


def test_get_of_a_missing_object_exits_1(daemon: StorageDaemon) -> None:
    result = volfs(daemon, "get", "sc", "slow")
    assert (result.exit_code, result.stderr) == (
        1, 'error: storageclasses.storage.k8s.io "slow" not found\n')
    result = volfs(daemon, "get", "pv", "ghost", "-o", "json")
    assert (result.exit_code, result.stderr) == (1, 'error: persistentvolumes "ghost" not found\n')


def test_get_events(daemon: StorageDaemon) -> None:
    daemon.events.add("PersistentVolumeClaim", "nfs", "FailedBinding", NO_CLASS, "Normal",
                      age=1800)
    daemon.events.add("Pod", "web", "FailedMount", "volume data: waits", namespace="team-a")
    table = cells(ok(daemon, "get", "events").stdout)
    assert table[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert table[1] == ["30m", "Normal", "FailedBinding", "persistentvolumeclaim/nfs", NO_CLASS]
    everywhere = cells(ok(daemon, "get", "ev", "-A", "-o", "wide").stdout)
    assert everywhere[0][:2] == ["NAMESPACE", "LAST SEEN"]
    assert "COUNT" in everywhere[0] and "SOURCE" in everywhere[0]
    assert sorted(row[0] for row in everywhere[1:]) == ["default", "team-a"]


@pytest.mark.parametrize("kind, row", [
    ("pods", ["web", "Terminating", "1"]),
    ("pvc", ["nfs", "Terminating", "manual"]),
])
def test_get_watch_prints_a_deleted_object_as_terminating_never_as_it_lived(
        daemon: StorageDaemon, kind: str, row: list[str]) -> None:
    """``get -w`` prints the last state a DELETED event carries, which is marked as
    being deleted: STATUS Terminating, as kubectl prints it, not Running or Pending."""
    ok(daemon, "apply", "-f", "-", stdin=POD_YAML + "---\n" + PVC_YAML)
    results: list[Result] = []
    watching = threading.Thread(target=lambda: results.append(volfs(daemon, "get", kind, "-w")))
    watching.start()
    try:
        daemon.commits.listed(1)
        daemon.in_trio(daemon.service.delete_pod, "default", "web")
        if kind == "pvc":
            daemon.in_trio(daemon.claims.delete, "default", "nfs")
        daemon.commit()
        daemon.commits.listed(2)  # told, and waiting again
    finally:
        daemon.end_watches()
        watching.join()
    (result,) = results
    assert result.exit_code == 0, (result.stdout, result.stderr)
    listed, deleted = result.stdout.splitlines()[1:]
    assert "Terminating" not in listed
    assert deleted.split()[:len(row)] == row


@pytest.mark.parametrize("word, plural", [
    ("pods", "pods"), ("pod", "pods"), ("po", "pods"), ("PV", "persistentvolumes"),
    ("persistentvolume", "persistentvolumes"), ("persistentvolumes", "persistentvolumes"),
    ("pvc", "persistentvolumeclaims"), ("persistentvolumeclaim", "persistentvolumeclaims"),
    ("persistentvolumeclaims", "persistentvolumeclaims"), ("sc", "storageclasses"),
    ("storageclass", "storageclasses"), ("storageclasses", "storageclasses"),
    ("storageclasses.storage.k8s.io", "storageclasses"), ("ev", "events"),
    ("event", "events"), ("events", "events"),
])
def test_resource_aliases(word: str, plural: str) -> None:
    assert resolve(word).plural == plural


def test_unknown_resources_are_refused_with_exit_2(daemon: StorageDaemon) -> None:
    with pytest.raises(UnknownResource, match='unknown resource type "services"'):
        resolve("services")
    for args in (["get", "services"], ["describe", "events", "x"], ["delete", "ev", "x"],
                 ["describe", "svc", "x"]):
        result = volfs(daemon, *args)
        assert result.exit_code == 2, args
        assert "unknown resource type" in result.stderr


# --- describe ----------------------------------------------------------------------------


def lines_of(result: Result) -> list[str]:
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def test_describe_pvc_pending_with_its_events(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=PVC_YAML.replace("  storageClassName: manual\n", ""))
    daemon.events.add("PersistentVolumeClaim", "nfs", "FailedBinding", NO_CLASS, "Normal",
                      age=600, count=3, first_age=5 * 3600)
    daemon.events.add("Pod", "nfs", "Created", "a pod of the same name")  # not the claim's

    result = ok(daemon, "describe", "pvc", "nfs")
    lines = lines_of(result)
    assert lines[:5] == ["Name: nfs", "Namespace: default", "StorageClass:", "Status: Pending",
                         "Volume:"]
    for expected in ("Labels: <none>", "Annotations: <none>", "Capacity:", "Access Modes:",
                     "VolumeMode: Filesystem", "Used By: <none>", "Events:",
                     "Type Reason Age From Message", "---- ------ ---- ---- -------",
                     f"Normal FailedBinding 10m (x3 over 5h) volfs {NO_CLASS}"):
        assert expected in lines, (expected, result.stdout)
    assert "Used:" not in result.stdout
    assert "a pod of the same name" not in result.stdout
    assert result.stdout.index("Name:") == 0


def test_describe_pvc_bound_and_used(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    other = POD_YAML.replace("name: web", "name: api", 1)
    ok(daemon, "apply", "-f", "-", stdin=other)
    daemon.claims.bind(daemon.claims.objects[("default", "nfs")])

    lines = lines_of(ok(daemon, "describe", "persistentvolumeclaim", "nfs"))
    for expected in ("Status: Bound", "Volume: nfs", "StorageClass: manual",
                     "Annotations: pv.kubernetes.io/bind-completed: yes", "Capacity: 1Gi",
                     "Access Modes: RWX", "Used By: web", "api", "Used: 3Mi (0% of 1Gi)",
                     "Events: <none>"):
        assert expected in lines, (expected, lines)


def test_describe_pv(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    daemon.claims.bind(daemon.claims.objects[("default", "nfs")])
    daemon.events.add("PersistentVolume", "nfs", "VolumeFailedDelete", "server gone", age=720)
    daemon.events.add("PersistentVolume", "nfs", "Recycled", "scrubbed", "Normal", age=1200)

    result = ok(daemon, "describe", "pv", "nfs")
    lines = lines_of(result)
    assert lines[:12] == [
        "Name: nfs", "Labels: tier=gold", "Annotations: <none>", "StorageClass: manual",
        "Status: Bound", "Claim: default/nfs", "Reclaim Policy: Retain", "Access Modes: RWX",
        "VolumeMode: Filesystem", "Capacity: 1Gi", "Message:", "Source:"]
    assert lines[12:16] == [
        "Type: NFS (an NFS mount that lasts the lifetime of a pod)", "Server: 127.0.0.1",
        "Path: /exports/nfs", "ReadOnly: false"]
    assert result.stdout.splitlines()[12].startswith("    Type:")
    events = lines[lines.index("Events:") + 3:]
    assert events == ["Normal Recycled 20m volfs scrubbed",
                      "Warning VolumeFailedDelete 12m volfs server gone"]  # oldest first


def test_describe_sc(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=SC_YAML)
    lines = lines_of(ok(daemon, "describe", "sc", "fast"))
    assert lines == [
        "Name: fast", "IsDefaultClass: Yes",
        "Annotations: storageclass.kubernetes.io/is-default-class=true",
        "Provisioner: volfs.io/nfs", "Parameters: server=127.0.0.1,share=/srv/nfs",
        "AllowVolumeExpansion: <unset>", "MountOptions: <none>", "ReclaimPolicy: Retain",
        "VolumeBindingMode: Immediate", "Events: <none>"]


def test_describe_pod_ends_with_its_events(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=POD_YAML)
    daemon.events.add("Pod", "web", "FailedMount", "volume data: waits", age=900)
    daemon.events.add("Pod", "web", "Created", "Created pod web", "Normal", age=960)
    result = ok(daemon, "describe", "pod", "web")
    lines = lines_of(result)
    assert "Status: Pending" in lines
    assert "ClaimName: nfs" in lines
    assert lines[-4:] == ["Type Reason Age From Message", "---- ------ ---- ---- -------",
                          "Normal Created 16m volfs Created pod web",
                          "Warning FailedMount 15m volfs volume data: waits"]
    raw = result.stdout.splitlines()
    assert raw[-3].startswith("  ----     ------       ----  ----   -------")


def test_describe_pod_shows_the_status_message_as_kubectl_does() -> None:
    """A pod volfs runs no containers of says so in status.message (kubectl describe
    prints it as Message); a pod without one prints no Message line."""
    pod = {"metadata": {"name": "web"}, "spec": {},
           "status": {"phase": "Running", "message": NOT_RUN_MESSAGE}}
    lines = [" ".join(line.split()) for line in describe_pod(pod).splitlines()]
    assert lines[lines.index("Status: Running") + 1] == f"Message: {NOT_RUN_MESSAGE}"
    del pod["status"]["message"]
    assert not any(line.startswith("Message:") for line in describe_pod(pod).splitlines())


@pytest.mark.parametrize("used, limit, shown", [
    (6, 64 * 1024**2, "6 (0% of 64Mi)"),  # bytes, beside the limit they are a share of
    (12 * 1024, None, "12Ki"),
    (3 * 1024**2, 4 * 1024**2, "3Mi (75% of 4Mi)"),
    (1536, None, "1.5Ki"),
    (1024**2 - 1, None, "1023.9Ki"),  # cut, never rounded up past what is used
    (0, 1024, "0 (0% of 1Ki)"),
    (None, 1024, "<unknown>"),
])
def test_usage_is_a_quantity_with_its_share_of_the_limit(
        used: int | None, limit: int | None, shown: str) -> None:
    assert format_usage(used, limit) == shown


def test_describe_shows_usage_in_the_units_of_the_limit() -> None:
    pod = {"metadata": {"name": "web"},
           "spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}}]},
           "status": {"volumes": [{"name": "scratch", "sizeLimitBytes": 64 * 1024**2,
                                   "usedBytes": 6}]}}
    lines = [" ".join(line.split()) for line in describe_pod(pod).splitlines()]
    assert lines[lines.index("SizeLimit: 64Mi") + 2] == "Used: 6 (0% of 64Mi)"
    claim = {"metadata": {"name": "data"}, "spec": {},
             "status": {"phase": "Bound", "capacity": {"storage": "10Mi"},
                        "usedBytes": 3 * 1024**2}}
    lines = [" ".join(line.split()) for line in describe_claim(claim).splitlines()]
    assert "Used: 3Mi (30% of 10Mi)" in lines


def test_describe_of_a_missing_object_exits_1(daemon: StorageDaemon) -> None:
    result = volfs(daemon, "describe", "pvc", "ghost", "-n", "team-a")
    assert (result.exit_code, result.stderr) == (
        1, 'error: persistentvolumeclaims "ghost" not found\n')


def test_events_text_when_there_are_none() -> None:
    assert events_text([]) == "Events:  <none>"


# --- delete ------------------------------------------------------------------------------


def test_delete_each_kind_by_name(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    assert ok(daemon, "delete", "pod", "web").stdout == 'pod "web" deleted\n'
    assert ok(daemon, "delete", "pvc", "nfs").stdout == 'persistentvolumeclaim "nfs" deleted\n'
    assert ok(daemon, "delete", "pv", "nfs").stdout == 'persistentvolume "nfs" deleted\n'
    assert ok(daemon, "delete", "sc", "fast").stdout == (
        'storageclass.storage.k8s.io "fast" deleted\n')
    assert not (daemon.claims.objects or daemon.volumes.objects or daemon.classes.objects)

    again = volfs(daemon, "delete", "storageclass", "fast")
    assert (again.exit_code, again.stderr) == (
        1, 'error: storageclasses.storage.k8s.io "fast" not found\n')


def test_delete_of_a_claim_in_use_is_a_conflict(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-", stdin=ALL_YAML)
    result = volfs(daemon, "delete", "pvc", "nfs")
    assert result.exit_code == 1
    assert result.stderr == ('error: persistentvolumeclaim "nfs" is in use by pods web: '
                             "delete them first\n")
    assert ("default", "nfs") in daemon.claims.objects


def test_delete_a_claim_of_another_namespace(daemon: StorageDaemon) -> None:
    ok(daemon, "apply", "-f", "-",
       stdin=PVC_YAML.replace("name: nfs", "name: nfs\n  namespace: team-a"))
    assert volfs(daemon, "delete", "pvc", "nfs").exit_code == 1
    assert ok(daemon, "delete", "pvc", "nfs", "-n", "team-a").stdout == (
        'persistentvolumeclaim "nfs" deleted\n')


def test_delete_f_deletes_every_object_pods_first(daemon: StorageDaemon, tmp_path: Path) -> None:
    manifest = write(tmp_path, "all.yaml", SC_YAML + "---\n" + PV_YAML + "---\n" + PVC_YAML
                     + "---\n" + POD_YAML)
    ok(daemon, "apply", "-f", manifest)
    result = ok(daemon, "delete", "-f", manifest)
    assert result.stdout.splitlines() == [
        'pod "web" deleted', 'persistentvolumeclaim "nfs" deleted',
        'persistentvolume "nfs" deleted', 'storageclass.storage.k8s.io "fast" deleted']

    ok(daemon, "apply", "-f", "-", stdin=PV_YAML)
    again = volfs(daemon, "delete", "-f", manifest)
    assert again.exit_code == 1
    assert again.stdout == 'persistentvolume "nfs" deleted\n'
    assert again.stderr.splitlines() == [
        f'error: {manifest}: pods "web" not found',
        f'error: {manifest}: persistentvolumeclaims "nfs" not found',
        f'error: {manifest}: storageclasses.storage.k8s.io "fast" not found']


def test_delete_needs_a_name_or_a_file(daemon: StorageDaemon, tmp_path: Path) -> None:
    assert volfs(daemon, "delete", "pvc").exit_code == 2
    assert volfs(daemon, "delete").exit_code == 2
    manifest = write(tmp_path, "pv.yaml", PV_YAML)
    assert volfs(daemon, "delete", "pv", "nfs", "-f", manifest).exit_code == 2
    bad = volfs(daemon, "delete", "-f", write(tmp_path, "bad.yaml", "kind: [\n"))
    assert bad.exit_code == 2


"""A real kubectl against a real daemon's ``--kube-api`` listener.

kubectl is the one on PATH (``scripts/setup`` installs Debian's ``kubernetes-client``,
1.20); ``VOLFS_TEST_KUBECTL=/path/to/kubectl`` runs the same tests with another one
(they pass with 1.20 and 1.32).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.daemon import VOLFS, Daemon, DaemonError
from tests.integration.nfs import NfsShare
from tests.waiting import wait_until

KUBECTL = os.environ.get("VOLFS_TEST_KUBECTL") or shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="no kubectl (scripts/setup installs Debian's kubernetes-client)")


@dataclass
class Kube:
    """kubectl with a kubeconfig from ``volfs kubeconfig`` and a discovery cache of its own."""

    daemon: Daemon
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig),
             "--cache-dir", str(self.daemon.base / "kube-cache"), *args],
            input=input, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise DaemonError(f"kubectl {' '.join(args)} exited {result.returncode}:\n"
                              f"{result.stderr}\n--- daemon log ---\n{self.daemon.log()}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """kubectl running in the background (a watch, a wait); the caller ends it."""
        assert KUBECTL is not None
        return subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig),
             "--cache-dir", str(self.daemon.base / "kube-cache"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @property
    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return loaded


def kube_for(daemon: Daemon) -> Kube:
    path = daemon.base / "kubeconfig"
    path.write_text(daemon.cli("kubeconfig").stdout)
    path.chmod(0o600)
    return Kube(daemon, path)


@pytest.fixture(scope="module")
def kube(open_tmp: Path) -> Iterator[Kube]:
    """One daemon per worker serving the Kubernetes API on a loopback port it picks."""
    daemon = Daemon(open_tmp / f"kube-{os.getpid()}",
                    extra_args=["--kube-api", "127.0.0.1:0"]).start()
    try:
        yield kube_for(daemon)
    finally:
        daemon.stop()


def pod_yaml(name: str, *, namespace: str = "default", size: str = "64Mi",
             labels: dict[str, str] | None = None) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "containers": [{"name": "app", "image": "busybox",
                            "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]}],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": size}}],
        },
    })


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_apply_get_describe_reapply_and_delete(kube: Kube, pod_name: str) -> None:
    manifest = pod_yaml(pod_name, labels={"app": "web"})
    assert kube("apply", "-f", "-", input=manifest).stdout.strip() == f"pod/{pod_name} created"

    rows = table_rows(kube("get", "pods").stdout)
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    (row,) = [r for r in rows[1:] if r[0] == pod_name]
    assert row[1:4] == ["-", "Running", "0"]  # volfs runs none of its containers
    assert row[4][-1] in "smhd"

    pod = kube.json("get", "pod", pod_name)
    uid = pod["metadata"]["uid"]
    (volume,) = pod["status"]["volumes"]
    path = Path(volume["path"])
    assert path == (kube.daemon.root / "pods" / uid / "volumes" / "kubernetes.io~empty-dir"
                    / "scratch")
    assert path.is_dir()
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
    assert kube.daemon.pod(pod_name)["metadata"]["uid"] == uid  # the volfs CLI sees the same

    described = kube("describe", "pod", pod_name).stdout
    assert "Events:" in described
    created = [line.split() for line in described.splitlines() if " Created " in line]
    assert created and created[0][:2] == ["Normal", "Created"] and "volfs" in created[0]
    assert "EmptyDir" in described
    assert ('Message: containers not run by volfs (use volfs run, or annotate the pod '
            'volfs.io/run: "true")') in [" ".join(line.split()) for line in described.splitlines()]

    again = kube("apply", "-f", "-", input=manifest).stdout.strip()
    assert again == f"pod/{pod_name} unchanged"

    relabelled = pod_yaml(pod_name, labels={"app": "web", "tier": "front"})
    assert kube("apply", "-f", "-", input=relabelled).stdout.strip() == (
        f"pod/{pod_name} configured")
    stored = kube.daemon.pod(pod_name)
    assert stored["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert stored["metadata"]["uid"] == uid

    resized = pod_yaml(pod_name, labels={"app": "web", "tier": "front"}, size="128Mi")
    refused = kube("apply", "-f", "-", input=resized, check=False)
    assert refused.returncode != 0
    assert (f'The Pod "{pod_name}" is invalid: spec: Forbidden: pod updates may not change '
            "fields other than") in refused.stderr
    after = kube.json("get", "pod", pod_name)
    assert after["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "64Mi"
    assert after["metadata"]["uid"] == uid

    assert kube("delete", "-f", "-", input=manifest).stdout.strip() == (
        f'pod "{pod_name}" deleted')
    missing = kube.daemon.cli("get", "pod", pod_name, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr
    assert not path.exists()
    gone = kube("get", "pod", pod_name, check=False)
    assert f'pods "{pod_name}" not found' in gone.stderr

    events = kube("get", "events", "--field-selector", f"involvedObject.name={pod_name}").stdout
    reasons = [row[2] for row in table_rows(events)[1:]]
    assert reasons == ["Created", "Killing", "Deleting", "Deleted"]


def test_pods_made_by_the_volfs_cli_are_seen_by_kubectl_and_back(kube: Kube,
                                                                 pod_name: str) -> None:
    kube.daemon.apply(pod_yaml(pod_name))
    assert kube.json("get", "pod", pod_name)["metadata"]["uid"] == (
        kube.daemon.pod(pod_name)["metadata"]["uid"])
    assert kube("delete", "pod", pod_name).returncode == 0
    assert pod_name not in kube.daemon.cli("get", "pods").stdout


def test_label_and_field_selectors(kube: Kube, pod_name: str) -> None:
    namespace = f"sel-{pod_name}"
    pods = {f"{pod_name}-a": {"tier": "web", "env": "prod"},
            f"{pod_name}-b": {"tier": "db", "env": "prod"},
            f"{pod_name}-c": {"tier": "web"}}
    manifest = "---\n".join(pod_yaml(name, namespace=namespace, labels=labels)
                            for name, labels in pods.items())
    kube("apply", "-f", "-", input=manifest)

    def names(*args: str) -> list[str]:
        out = kube("get", "pods", "-n", namespace, "-o", "name", *args).stdout
        return [line.removeprefix("pod/") for line in out.split()]

    a, b, c = pods
    assert names("-l", "tier=web") == [a, c]
    assert names("-l", "tier=web,env=prod") == [a]
    assert names("-l", "env!=prod") == [c]
    assert names("-l", "tier in (db,cache)") == [b]
    assert names("-l", "tier notin (db)") == [a, c]
    assert names("-l", "!env") == [c]
    assert names("--field-selector", f"metadata.name={b}") == [b]
    assert names("--field-selector", f"metadata.name!={b}") == [a, c]
    everywhere = kube("get", "pods", "-A", "-l", "tier=db").stdout
    assert table_rows(everywhere)[0][:2] == ["NAMESPACE", "NAME"]
    assert [r[:2] for r in table_rows(everywhere)[1:]] == [[namespace, b]]
    assert namespace in [r[0] for r in table_rows(kube("get", "namespaces").stdout)]
    bad = kube("get", "pods", "-n", namespace, "--field-selector", "spec.volumes=x",
               check=False)
    assert "field label not supported: spec.volumes" in bad.stderr
    kube("delete", "-f", "-", input=manifest)
    assert names() == []


def test_discovery_api_resources_and_version(kube: Kube) -> None:
    rows = {row[0]: row for row in table_rows(kube("api-resources").stdout)[1:]}
    assert rows["pods"] == ["pods", "po", "v1", "true", "Pod"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    assert rows["events"] == ["events", "ev", "v1", "true", "Event"]
    version = json.loads(kube("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.30.0-volfs.")
    assert "default" in kube("get", "ns", "default", "-o", "name").stdout


def test_an_invalid_pod_is_refused_with_its_field(kube: Kube, pod_name: str) -> None:
    result = kube("create", "-f", "-", input=pod_yaml(pod_name, size="lots"), check=False)
    assert result.returncode != 0
    assert (f'The Pod "{pod_name}" is invalid: spec.volumes[0].emptyDir.sizeLimit'
            in result.stderr)
    assert pod_name not in kube.daemon.cli("get", "pods").stdout


def test_requests_without_the_token_are_401(kube: Kube) -> None:
    cluster = kube.config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with httpx.Client(base_url=cluster["server"], verify=context, timeout=10) as client:
        for headers in ({}, {"authorization": "Bearer not-the-token"}):
            response = client.get("/api/v1/pods", headers=headers)
            assert response.status_code == 401
            assert response.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                       "status": "Failure", "message": "Unauthorized",
                                       "reason": "Unauthorized", "code": 401}
        assert client.get("/volfs/v1/kubeconfig").status_code == 401
    refused = kube("get", "pods", "--token", "not-the-token", check=False)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_credentials_are_private_and_outlive_a_restart(tmp_path: Path,
                                                           pod_name: str) -> None:
    port = _free_port()
    daemon = Daemon(tmp_path / "volfs", extra_args=["--kube-api", f"127.0.0.1:{port}"]).start()
    try:
        kube = kube_for(daemon)
        assert kube.config["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        for name in ("kube-api.token", "kube-api.key", "kube-api.crt"):
            assert stat.S_IMODE((daemon.state_dir / name).stat().st_mode) == 0o600
        kube("apply", "-f", "-", input=pod_yaml(pod_name))
        daemon.stop(signal.SIGTERM)
        daemon.start()
        assert kube.json("get", "pod", pod_name)["metadata"]["name"] == pod_name
        assert kube_for(daemon).config == kube.config
    finally:
        daemon.stop()


def test_the_kube_api_listens_on_loopback_only(tmp_path: Path) -> None:
    result = subprocess.run(
        [VOLFS, "serve", "--root", str(tmp_path / "root"), "--state-dir",
         str(tmp_path / "state"), "--kube-api", "0.0.0.0:6443"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert not (tmp_path / "state").exists()


def test_volfs_kubeconfig_needs_a_kube_api_listener(shared_daemon: Daemon) -> None:
    result = shared_daemon.cli("kubeconfig", check=False)
    assert result.returncode == 1
    assert "--kube-api" in result.stderr


def test_persistent_volumes_claims_and_classes(kube: Kube, examples_dir: Path,
                                               nfs_share: NfsShare) -> None:
    """The example manifests through kubectl: a claim goes Pending -> Bound, columns filled."""
    kube("apply", "-f", str(examples_dir / "pvc-nfs.yaml"))
    assert kube.json("get", "pvc", "nfs")["status"]["phase"] == "Pending"
    described = kube("describe", "pvc", "nfs").stdout
    assert "Pending" in described
    assert 'storageclass.storage.k8s.io "manual" not found' in described  # its event
    pv = yaml.safe_load((examples_dir / "pv-nfs.yaml").read_text())
    pv["spec"]["nfs"].update(server=nfs_share.server, path=nfs_share.path())
    assert "persistentvolume/nfs created" in kube("apply", "-f", "-",
                                                  input=yaml.safe_dump(pv)).stdout
    assert kube.json("get", "pvc", "nfs")["status"]["phase"] == "Bound"
    table = kube("get", "pv").stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY",
                                    "STATUS"]
    row = next(line.split() for line in table[1:] if line.startswith("nfs "))
    assert row[:6] == ["nfs", "1Gi", "RWX", "Retain", "Bound", "default/nfs"]
    assert "manual" in row
    claims = kube("get", "pvc").stdout
    assert "Bound" in claims and "nfs" in claims and "1Gi" in claims

    kube("apply", "-f", str(examples_dir / "pod-web-pvc.yaml"))
    assert kube.json("get", "pod", "web-frontend")["status"]["phase"] == "Running"
    kube("delete", "-f", str(examples_dir / "pod-web-pvc.yaml"))
    kube("delete", "-f", str(examples_dir / "pvc-nfs.yaml"))
    assert kube.json("get", "pv", "nfs")["status"]["phase"] == "Released"
    kube("delete", "pv", "nfs")

    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": "volfs-nfs"}, "provisioner": "volfs.io/nfs",
          "parameters": {"server": nfs_share.server, "share": nfs_share.export},
          "mountOptions": nfs_share.mount_options}
    kube("apply", "-f", "-", input=yaml.safe_dump(sc))
    assert "volfs.io/nfs" in kube("get", "sc").stdout
    bad = dict(sc, metadata={"name": "bad"}, provisioner="example.com/other")
    refused = kube("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0 and "provisioner" in refused.stderr
    kube("delete", "sc", "volfs-nfs")


def test_kubectl_wait_and_get_watch_follow_a_claim_binding(kube: Kube, pod_name: str,
                                                           nfs_share: NfsShare) -> None:
    """Watches: kubectl wait returns when the pod's volumes are ready, get -w prints the
    claim's change to Bound, and wait --for=delete returns when the pod is gone."""
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": pod_name},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    kube("apply", "-f", "-", input=yaml.safe_dump(claim))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name},
           "spec": {"containers": [{"name": "app", "image": "busybox"}],
                    "volumes": [{"name": "data",
                                 "persistentVolumeClaim": {"claimName": pod_name}}]}}
    kube("apply", "-f", "-", input=yaml.safe_dump(pod))
    assert kube.json("get", "pod", pod_name)["status"]["phase"] == "Pending"

    waiting = kube.start("wait", "--for=condition=VolumesReady", f"pod/{pod_name}",
                         "--timeout=60s")
    watching = kube.start("get", "pvc", pod_name, "--watch")
    try:
        assert watching.stdout is not None
        first = watching.stdout.readline().split()  # the header, then the claim as it is
        assert first[:2] == ["NAME", "STATUS"], first
        assert watching.stdout.readline().split()[:2] == [pod_name, "Pending"]
        volume = {"apiVersion": "v1", "kind": "PersistentVolume",
                  "metadata": {"name": pod_name},
                  "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                           "nfs": {"server": nfs_share.server, "path": nfs_share.path()}}}
        kube("apply", "-f", "-", input=yaml.safe_dump(volume))
        assert watching.stdout.readline().split()[:3] == [pod_name, "Bound", pod_name]
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert out.strip() == f"pod/{pod_name} condition met"
    finally:
        watching.kill()
        waiting.kill()
        watching.communicate()
        waiting.communicate()

    deleted = kube.start("wait", "--for=delete", f"pod/{pod_name}", "--timeout=60s")
    try:
        kube.daemon.cli("delete", "pod", pod_name)
        out, err = deleted.communicate(timeout=60)
        assert deleted.returncode == 0, err
        assert out.strip() == f"pod/{pod_name} condition met"
    finally:
        deleted.kill()
        deleted.communicate()
    kube("delete", "pvc", pod_name)
    kube("delete", "pv", pod_name)


def owned_pods(kube: Kube, owner: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in kube.json("get", "pods")["items"]
                  if any(r.get("name") == owner and r.get("controller")
                         for r in p["metadata"].get("ownerReferences") or []))


def test_replication_controllers_with_kubectl(kube: Kube, examples_dir: Path) -> None:
    seed = str(examples_dir / "legacy-rc-emptydir.yaml")
    name = "share-apache2-controller"
    # kubectl reads an object's name from metadata.name, which v1beta1 calls "id": it
    # cannot apply (look up by name) the seed's file as written, but creates it, and
    # then manages the stored v1 controller like any other.
    assert kube("create", "-f", seed).stdout.strip() == f"replicationcontroller/{name} created"
    refused = kube("apply", "-f", seed, check=False)
    assert refused.returncode != 0 and "resource name may not be empty" in refused.stderr
    wait_until(lambda: len(owned_pods(kube, name)) == 1, 30, "the seed's replica")

    assert kube("scale", "rc", name, "--replicas=3").stdout.strip() == (
        f"replicationcontroller/{name} scaled")
    wait_until(lambda: len(owned_pods(kube, name)) == 3, 30, "three replicas")
    wide = table_rows(kube("get", "pods", "-o", "wide").stdout)
    assert wide[0][-2:] == ["CONTROLLED", "BY"]
    assert {row[-1] for row in wide[1:]} == {f"ReplicationController/{name}"}
    wait_until(lambda: table_rows(kube("get", "rc").stdout)[1][:4] == [name, "3", "3", "3"],
               30, "kubectl get rc shows three ready")

    # What kubectl writes (v1, less what the server keeps: a saved resourceVersion
    # would be a precondition the controller's status writes have outdated) applies.
    changed = yaml.safe_load(kube("get", "rc", name, "-o", "yaml").stdout)
    changed.pop("status")
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        changed["metadata"].pop(key)
    changed["spec"]["replicas"] = 2
    out = kube("apply", "-f", "-", input=yaml.safe_dump(changed)).stdout
    assert out.strip() == f"replicationcontroller/{name} configured"
    wait_until(lambda: len(owned_pods(kube, name)) == 2, 30, "scaled down by apply")
    left = owned_pods(kube, name)

    kube("delete", "rc", name, "--cascade=orphan")
    pods = {p["metadata"]["name"]: p for p in kube.json("get", "pods")["items"]}
    assert sorted(set(left) & set(pods)) == left
    assert all(not pods[n]["metadata"].get("ownerReferences") for n in left)
    for pod in left:
        kube("delete", "pod", pod)


def test_a_statefulset_with_kubectl(kube: Kube) -> None:
    manifest = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "serviceName": "web",
                 "selector": {"matchLabels": {"app": "web-sts"}},
                 "template": {"metadata": {"labels": {"app": "web-sts"}}, "spec": {
                     "containers": [{"name": "app", "image": "busybox", "volumeMounts": [
                         {"name": "scratch", "mountPath": "/scratch"}]}],
                     "volumes": [{"name": "scratch", "emptyDir": {}}]}}}})
    assert kube("apply", "-f", "-", input=manifest).stdout.strip() == (
        "statefulset.apps/web created")
    wait_until(lambda: owned_pods(kube, "web") == ["web-0", "web-1"], 30, "web-0 and web-1")
    wait_until(lambda: table_rows(kube("get", "sts").stdout)[1][:2] == ["web", "2/2"], 30,
               "kubectl get sts shows 2/2")
    kube("scale", "sts", "web", "--replicas=1")
    wait_until(lambda: owned_pods(kube, "web") == ["web-0"], 30, "scaled to web-0")
    kube("delete", "sts", "web")
    wait_until(lambda: owned_pods(kube, "web") == [], 30, "the set's pods are collected")

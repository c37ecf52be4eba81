"""ReplicationControllers and StatefulSets on a real daemon: the seed's v1beta1
controller as a controller, replicas made, replaced, scaled and collected, a claim per
StatefulSet replica on a real nfs-ganesha, and restarts (kill -9 included) that make
no duplicate and leave no pod without its claim."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.daemon import VOLFS, Daemon
from tests.integration.nfs import NfsShare
from tests.waiting import wait_until

RCS = "/api/v1/namespaces/default/replicationcontrollers"
STSS = "/apis/apps/v1/namespaces/default/statefulsets"
PODS = "/api/v1/namespaces/default/pods"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"
SCS = "/apis/storage.k8s.io/v1/storageclasses"
SEED = "share-apache2-controller"
WAIT = 30.0


def pods_of(daemon: Daemon, owner: str) -> dict[str, dict[str, Any]]:
    """The pods (not being deleted) whose controller is ``owner``, by name."""
    found = {}
    for pod in daemon.api("GET", PODS).json()["items"]:
        refs = pod["metadata"].get("ownerReferences") or []
        if (any(r.get("name") == owner and r.get("controller") for r in refs)
                and not pod["metadata"].get("deletionTimestamp")):
            found[pod["metadata"]["name"]] = pod
    return found


def all_pods(daemon: Daemon) -> list[str]:
    return sorted(p["metadata"]["name"] for p in daemon.api("GET", PODS).json()["items"])


def wait_pods(daemon: Daemon, owner: str, count: int, *, running: bool = True
              ) -> dict[str, dict[str, Any]]:
    def enough() -> bool:
        pods = pods_of(daemon, owner)
        return len(pods) == count and (not running or all(
            p["status"]["phase"] == "Running" for p in pods.values()))

    wait_until(enough, WAIT, f"{owner} has {count} running pods: {all_pods(daemon)}\n"
                             f"{daemon.log()}")
    return pods_of(daemon, owner)


def settled(daemon: Daemon, path: str, replicas: int) -> None:
    """Wait until the workload's status reports its spec seen and ``replicas`` made."""
    def done() -> bool:
        obj = daemon.api("GET", path).json()
        status = obj.get("status") or {}
        return (status.get("observedGeneration") == obj["metadata"]["generation"]
                and status.get("replicas") == replicas
                and status.get("readyReplicas") == replicas)

    wait_until(done, WAIT, f"{path} settles at {replicas} replicas:\n{daemon.log()}")


def seed(replicas: int, examples_dir: Path) -> str:
    text = (examples_dir / "legacy-rc-emptydir.yaml").read_text()
    return text.replace("replicas: 1", f"replicas: {replicas}")


def controller(name: str, replicas: int, labels: dict[str, str] | None = None
               ) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": labels, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "busybox",
                                         "volumeMounts": [{"name": "scratch",
                                                           "mountPath": "/scratch"}]}],
                         "volumes": [{"name": "scratch", "emptyDir": {}}]}}}}


# -- ReplicationController --------------------------------------------------------------


def test_the_seed_controller_scales_replaces_and_cascades(daemon: Daemon,
                                                          examples_dir: Path) -> None:
    out = daemon.cli("apply", "-f", str(examples_dir / "legacy-rc-emptydir.yaml")).stdout
    assert out.strip() == f"replicationcontroller/{SEED} created"
    stored = json.loads(daemon.cli("get", "rc", SEED, "-o", "json").stdout)
    assert stored["apiVersion"] == "v1" and stored["spec"]["selector"] == {
        "name": "share-apache2"}
    first = wait_pods(daemon, SEED, 1)
    [name] = first
    ref = first[name]["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"]) == ("ReplicationController", stored["metadata"]["uid"])
    # Two containers of each replica share its EmptyDir, as in the seed's pod.
    mounts = [m["name"] for c in first[name]["spec"]["containers"] for m in c["volumeMounts"]]
    assert mounts == ["data", "data"]
    (daemon.volume_path(name, "data") / "from-1").write_text("hello 2")
    assert (daemon.volume_path(name, "data") / "from-1").read_text() == "hello 2"

    assert daemon.apply(seed(3, examples_dir)).stdout.strip() == (
        f"replicationcontroller/{SEED} configured")
    assert len(wait_pods(daemon, SEED, 3)) == 3
    settled(daemon, f"{RCS}/{SEED}", 3)
    assert daemon.apply(seed(3, examples_dir)).stdout.strip().endswith("unchanged")
    rows = daemon.cli("get", "rc").stdout.splitlines()
    assert rows[0].split()[:4] == ["NAME", "DESIRED", "CURRENT", "READY"]
    assert rows[1].split()[:4] == [SEED, "3", "3", "3"]

    daemon.apply(seed(1, examples_dir))
    assert list(wait_pods(daemon, SEED, 1)) == [name]  # the newest go first

    daemon.cli("delete", "pod", name)
    [replacement] = wait_pods(daemon, SEED, 1)
    assert replacement != name

    out = daemon.cli("delete", "-f", str(examples_dir / "legacy-rc-emptydir.yaml")).stdout
    assert out.strip() == f'replicationcontroller "{SEED}" deleted'
    wait_until(lambda: all_pods(daemon) == [], WAIT, "the controller's pods are collected")
    assert daemon.cli("get", "rc", SEED, check=False).returncode != 0


def test_orphan_and_foreground_deletes_and_adoption(daemon: Daemon) -> None:
    assert daemon.api("POST", RCS, controller("web", 2)).status_code == 201
    made = wait_pods(daemon, "web", 2)
    orphan = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}
    assert daemon.api("DELETE", f"{RCS}/web", orphan).status_code == 200
    left = {p["metadata"]["name"]: p for p in daemon.api("GET", PODS).json()["items"]}
    assert sorted(left) == sorted(made)
    assert all(not p["metadata"].get("ownerReferences") for p in left.values())

    # Applied again, the controller takes its orphans back instead of making new pods.
    assert daemon.api("POST", RCS, controller("web", 2)).status_code == 201
    settled(daemon, f"{RCS}/web", 2)
    assert sorted(pods_of(daemon, "web")) == sorted(made) == all_pods(daemon)

    foreground = {"kind": "DeleteOptions", "apiVersion": "v1",
                  "propagationPolicy": "Foreground"}
    assert daemon.api("DELETE", f"{RCS}/web", foreground).status_code == 200
    assert all_pods(daemon) == []  # gone before the delete answered

    assert daemon.api("POST", RCS, controller("kept", 0)).status_code == 201
    bad = daemon.api("DELETE", f"{RCS}/kept", {"propagationPolicy": "Sideways"})
    assert bad.status_code == 422
    assert "Unsupported value" in bad.json()["message"]


def test_an_invalid_controller_is_refused_with_its_field(daemon: Daemon) -> None:
    body = controller("bad", 1)
    body["spec"]["selector"] = {"app": "other"}
    answer = daemon.api("POST", RCS, body)
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    text = yaml.safe_dump(dict(controller("neg", -1)))
    result = daemon.cli("apply", "-f", "-", input=text, check=False)
    assert result.returncode == 2
    assert "spec.replicas: Invalid value: -1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pods_of_a_controller_that_is_gone_are_collected(daemon: Daemon) -> None:
    pod = copy.deepcopy(controller("ghost", 1)["spec"]["template"])
    pod.update(apiVersion="v1", kind="Pod")
    pod["metadata"].update(name="ghost-1", ownerReferences=[{
        "apiVersion": "v1", "kind": "ReplicationController", "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000000", "controller": True}])
    assert daemon.api("POST", PODS, pod).status_code == 201
    wait_until(lambda: all_pods(daemon) == [], WAIT, "an orphaned owned pod is collected")


def test_concurrent_applies_make_one_controller_and_its_replicas(daemon: Daemon) -> None:
    manifest = yaml.safe_dump(controller("busy", 3))
    applies = [subprocess.Popen([VOLFS, "apply", "-f", "-"], env=daemon.env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(4)]
    outs = [proc.communicate(manifest, timeout=60) for proc in applies]
    assert all(proc.returncode == 0 for proc in applies), outs
    lines = sorted(out.strip() for out, _ in outs)
    assert lines.count("replicationcontroller/busy created") == 1, lines
    assert lines.count("replicationcontroller/busy unchanged") == 3, lines
    settled(daemon, f"{RCS}/busy", 3)
    assert len(all_pods(daemon)) == 3


@pytest.mark.timeout(180)
def test_a_controller_survives_kill_9_without_duplicates(daemon: Daemon) -> None:
    assert daemon.api("POST", RCS, controller("web", 3)).status_code == 201
    before = sorted(wait_pods(daemon, "web", 3))
    daemon.kill9()
    daemon.start()
    settled(daemon, f"{RCS}/web", 3)
    assert sorted(pods_of(daemon, "web")) == before == all_pods(daemon)

    # Killed while it scales up: the restarted controller finishes, with no extra pod.
    assert daemon.api("PUT", f"{RCS}/web/scale", {
        "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"},
        "spec": {"replicas": 6}}).status_code == 200
    daemon.kill9()
    daemon.start()
    settled(daemon, f"{RCS}/web", 6)
    assert len(all_pods(daemon)) == 6
    assert set(before) <= set(pods_of(daemon, "web"))


# -- StatefulSet on NFS -------------------------------------------------------------------


def storage_class(name: str, share: NfsShare) -> dict[str, Any]:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": "volfs.io/nfs",
            "mountOptions": share.mount_options, "reclaimPolicy": "Delete",
            "parameters": {"server": share.server, "share": share.export,
                           "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}}


def stateful_set(name: str, replicas: int, cls: str,
                 retention: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas, "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
            {"name": "db", "image": "busybox",
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
            "resources": {"requests": {"storage": "1Gi"}}}}]}
    if retention:
        spec["persistentVolumeClaimRetentionPolicy"] = retention
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": spec}


def claim_of(daemon: Daemon, pod: dict[str, Any]) -> str:
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == "data"]
    return str(volume["persistentVolumeClaim"]["claimName"])


def claims(daemon: Daemon) -> dict[str, str]:
    return {c["metadata"]["name"]: c["status"]["phase"]
            for c in daemon.api("GET", PVCS).json()["items"]}


def test_a_statefulset_keeps_each_replicas_claim_and_data(daemon: Daemon,
                                                          nfs_share: NfsShare) -> None:
    assert daemon.api("POST", SCS, storage_class("nfs", nfs_share)).status_code == 201
    assert daemon.api("POST", STSS, stateful_set("db", 2, "nfs")).status_code == 201
    pods = wait_pods(daemon, "db", 2)
    assert sorted(pods) == ["db-0", "db-1"]
    assert [claim_of(daemon, pods[n]) for n in ("db-0", "db-1")] == ["data-db-0", "data-db-1"]
    assert claims(daemon) == {"data-db-0": "Bound", "data-db-1": "Bound"}
    for name in pods:
        (daemon.volume_path(name, "data") / "who").write_text(name)
    assert (nfs_share.dir / "default" / "data-db-1" / "who").read_text() == "db-1"

    old_uid = pods["db-0"]["metadata"]["uid"]
    daemon.cli("delete", "pod", "db-0")
    wait_until(lambda: pods_of(daemon, "db").get("db-0", {}).get("metadata", {}).get(
        "uid", old_uid) != old_uid, WAIT, "db-0 comes back")
    wait_pods(daemon, "db", 2)
    assert (daemon.volume_path("db-0", "data") / "who").read_text() == "db-0"

    scale: dict[str, Any] = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                             "metadata": {"name": "db"}, "spec": {"replicas": 1}}
    assert daemon.api("PUT", f"{STSS}/db/scale", scale).status_code == 200
    assert sorted(wait_pods(daemon, "db", 1)) == ["db-0"]
    assert claims(daemon) == {"data-db-0": "Bound", "data-db-1": "Bound"}  # kept
    scale["spec"]["replicas"] = 2
    assert daemon.api("PUT", f"{STSS}/db/scale", scale).status_code == 200
    wait_pods(daemon, "db", 2)
    assert (daemon.volume_path("db-1", "data") / "who").read_text() == "db-1"

    rows = daemon.cli("get", "sts").stdout.splitlines()
    assert rows[1].split()[:2] == ["db", "2/2"]
    assert "Volume Claims:" in daemon.cli("describe", "sts", "db").stdout
    assert daemon.cli("delete", "sts", "db").returncode == 0
    wait_until(lambda: all_pods(daemon) == [], WAIT, "the set's pods are collected")
    assert claims(daemon) == {"data-db-0": "Bound", "data-db-1": "Bound"}  # Retain


def test_retention_policy_delete_removes_the_claims(daemon: Daemon,
                                                    nfs_share: NfsShare) -> None:
    assert daemon.api("POST", SCS, storage_class("nfs", nfs_share)).status_code == 201
    body = stateful_set("tmp", 2, "nfs", {"whenScaled": "Delete", "whenDeleted": "Delete"})
    assert daemon.api("POST", STSS, body).status_code == 201
    wait_pods(daemon, "tmp", 2)
    body["spec"]["replicas"] = 1
    assert daemon.api("PUT", f"{STSS}/tmp", body).status_code == 200
    wait_until(lambda: claims(daemon) == {"data-tmp-0": "Bound"}, WAIT,
               "a scaled-down replica's claim goes with it")
    assert daemon.api("DELETE", f"{STSS}/tmp").status_code == 200
    wait_until(lambda: claims(daemon) == {}, WAIT, "the set's claims go with the set")
    wait_until(lambda: not (nfs_share.dir / "default" / "data-tmp-0").exists(), WAIT,
               "the provisioned directory is deleted")


@pytest.mark.timeout(180)
def test_a_statefulset_survives_kill_9_with_every_pods_claim(daemon: Daemon,
                                                            nfs_share: NfsShare) -> None:
    assert daemon.api("POST", SCS, storage_class("nfs", nfs_share)).status_code == 201
    assert daemon.api("POST", STSS, stateful_set("kv", 3, "nfs")).status_code == 201
    daemon.kill9()  # somewhere in making the replicas, or after
    daemon.start()
    pods = wait_pods(daemon, "kv", 3)
    assert sorted(pods) == ["kv-0", "kv-1", "kv-2"] == all_pods(daemon)
    assert sorted(claims(daemon)) == ["data-kv-0", "data-kv-1", "data-kv-2"]
    (daemon.volume_path("kv-2", "data") / "kept").write_text("across a crash")
    daemon.kill9()
    daemon.start()
    settled(daemon, f"{STSS}/kv", 3)
    assert (daemon.volume_path("kv-2", "data") / "kept").read_text() == "across a crash"
    assert all_pods(daemon) == ["kv-0", "kv-1", "kv-2"]

"""Tables: columns and cells as the API server's printers make them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from volfs.server.tables import (
    DEFAULT_COLUMNS,
    EVENT_COLUMNS,
    PERSISTENT_VOLUME_CLAIM_COLUMNS,
    PERSISTENT_VOLUME_COLUMNS,
    POD_COLUMNS,
    REPLICATION_CONTROLLER_COLUMNS,
    STATEFUL_SET_COLUMNS,
    table,
)

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cells(columns: Any, obj: dict[str, Any], wide: bool = False) -> list[Any]:
    answer = table(columns, [obj], now=NOW)
    picked = [i for i, c in enumerate(answer["columnDefinitions"]) if wide or c["priority"] == 0]
    return [answer["rows"][0]["cells"][i] for i in picked]


def pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "creationTimestamp": ago(minutes=5)},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", **status}}


def test_a_table_has_the_meta_k8s_io_shape() -> None:
    obj = {"metadata": {"name": "x", "creationTimestamp": ago(seconds=30)}}
    answer = table(DEFAULT_COLUMNS, [obj], now=NOW, resource_version="7")
    assert answer["kind"] == "Table"
    assert answer["apiVersion"] == "meta.k8s.io/v1"
    assert answer["metadata"] == {"resourceVersion": "7"}
    assert answer["columnDefinitions"][0] == {
        "name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0}
    assert answer["rows"] == [{"cells": ["x", "30s"], "object": {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"]}}]
    assert table(DEFAULT_COLUMNS, [], now=NOW)["rows"] == []


def test_pod_rows_count_ready_containers_and_restarts() -> None:
    # Without containerStatuses volfs runs none of the pod's containers: nothing to count.
    assert cells(POD_COLUMNS, pod()) == ["web", "-", "Running", "0", "5m"]
    assert cells(POD_COLUMNS, pod(containerStatuses=[]))[1] == "0/2"
    running = pod(containerStatuses=[
        {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}},
        {"name": "b", "ready": False, "restartCount": 1, "state": {"running": {}}}])
    assert cells(POD_COLUMNS, running) == ["web", "1/2", "Running", "3", "5m"]
    waiting = pod(containerStatuses=[
        {"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}])
    assert cells(POD_COLUMNS, waiting)[2] == "ContainerCreating"
    ended = pod(containerStatuses=[{"name": "a", "state": {"terminated": {"exitCode": 3}}}])
    assert cells(POD_COLUMNS, ended)[2] == "ExitCode:3"
    going = pod()
    going["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells(POD_COLUMNS, going)[2] == "Terminating"
    assert cells(POD_COLUMNS, pod(podIP="10.0.0.2"), wide=True)[5:] == [
        "10.0.0.2", "<none>", "<none>", "<none>", "<none>"]
    owned = pod()
    owned["metadata"]["ownerReferences"] = [
        {"kind": "StatefulSet", "name": "db", "uid": "u", "controller": True}]
    assert cells(POD_COLUMNS, owned, wide=True)[-1] == "StatefulSet/db"


def test_workload_rows() -> None:
    rc: dict[str, Any] = {"metadata": {"name": "web", "creationTimestamp": ago(minutes=5)},
          "spec": {"replicas": 3, "selector": {"app": "web"}, "template": {"spec": {
              "containers": [{"name": "a", "image": "busybox"}]}}},
          "status": {"replicas": 2, "readyReplicas": 1}}
    assert cells(REPLICATION_CONTROLLER_COLUMNS, rc) == ["web", 3, 2, 1, "5m"]
    assert cells(REPLICATION_CONTROLLER_COLUMNS, rc, wide=True)[5:] == ["a", "busybox",
                                                                        "app=web"]
    sts = dict(rc, spec=dict(rc["spec"], selector={"matchLabels": {"app": "web"}}))
    assert cells(STATEFUL_SET_COLUMNS, sts) == ["web", "1/3", "5m"]


def test_event_rows() -> None:
    event = {"metadata": {"name": "web.1"}, "type": "Warning", "reason": "FailedMount",
             "message": "volume x: refused", "count": 2,
             "involvedObject": {"kind": "Pod", "name": "web"},
             "source": {"component": "volfs", "host": "vm"},
             "firstTimestamp": ago(minutes=3), "lastTimestamp": ago(seconds=10)}
    assert cells(EVENT_COLUMNS, event) == ["10s", "Warning", "FailedMount", "pod/web",
                                           "volume x: refused"]
    assert cells(EVENT_COLUMNS, event, wide=True)[4:6] == ["", "volfs, vm"]


def test_storage_rows_as_kubectl_shows_pv_and_pvc() -> None:
    pv = {"metadata": {"name": "pv1", "creationTimestamp": ago(hours=1)},
          "spec": {"capacity": {"storage": "5Gi"},
                   "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                   "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "nfs",
                   "claimRef": {"namespace": "default", "name": "data"}},
          "status": {"phase": "Bound"}}
    assert cells(PERSISTENT_VOLUME_COLUMNS, pv) == [
        "pv1", "5Gi", "RWO,RWX", "Retain", "Bound", "default/data", "nfs", "<unset>", "",
        "60m"]
    pvc = {"metadata": {"name": "data", "creationTimestamp": ago(hours=1)},
           "spec": {"volumeName": "pv1", "storageClassName": "nfs"},
           "status": {"phase": "Bound", "capacity": {"storage": "5Gi"},
                      "accessModes": ["ReadWriteOnce"]}}
    assert cells(PERSISTENT_VOLUME_CLAIM_COLUMNS, pvc) == [
        "data", "Bound", "pv1", "5Gi", "RWO", "nfs", "<unset>", "60m"]
    pending = {"metadata": {"name": "data"}, "spec": {}, "status": {"phase": "Pending"}}
    assert cells(PERSISTENT_VOLUME_CLAIM_COLUMNS, pending) == [
        "data", "Pending", "", "", "", "", "<unset>", "<unknown>"]
    # Being deleted (as a watch's DELETED event tells them): Terminating, as kubectl says.
    stored: list[tuple[dict[str, Any], Any, int]] = [
        (pv, PERSISTENT_VOLUME_COLUMNS, 4), (pvc, PERSISTENT_VOLUME_CLAIM_COLUMNS, 1)]
    for obj, columns, status in stored:
        obj["metadata"]["deletionTimestamp"] = ago(seconds=1)
        assert cells(columns, obj)[status] == "Terminating"

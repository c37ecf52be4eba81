"""ReplicationControllers and StatefulSets as manifests: what is refused, and the pods
and claims their templates make (volfs.api.workloads), and how the API serves their
scale subresource and discovery entries."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from volfs.api import ManifestError, parse_object
from volfs.api.workloads import (
    Workload,
    selector_matches,
    stateful_claim,
    stateful_pod,
    template_pod,
)
from volfs.server.discovery import resource_list
from volfs.server.kinds import register_workloads
from volfs.server.resources import ResourceRegistry


def controller(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "app", "image": "busybox"}]}}}}
    doc["spec"].update(spec)
    return doc


def stateful_set(**spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                     "containers": [{"name": "db", "image": "busybox", "volumeMounts": [
                         {"name": "data", "mountPath": "/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}
    doc["spec"].update(spec)
    return doc


def one(doc: dict[str, Any]) -> Workload:
    [obj] = parse_object(doc, "w.yaml")
    assert isinstance(obj, Workload)
    return obj


def error(doc: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        parse_object(doc, "w.yaml")
    return str(caught.value)


def test_a_controllers_selector_defaults_to_its_templates_labels() -> None:
    rc = one(controller())
    assert rc.to_k8s()["spec"]["selector"] == {"app": "web"}
    assert parse_object(rc.to_k8s()) == [rc]  # what is stored parses back the same


@pytest.mark.parametrize(("change", "line"), [
    ({"selector": {"app": "db"}}, 'spec.template.metadata.labels: Invalid value: {"app": '
     '"web"}: `selector` does not match template `labels`'),
    ({"replicas": -1}, "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ({"replicas": 1001}, "spec.replicas: Invalid value: 1001: must be no more than 1000"),
    ({"paused": True}, 'spec.paused: unknown field "paused"'),
    ({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
     "spec.template.spec.containers: Required value"),
])
def test_a_bad_controller_is_refused_naming_its_field(change: dict[str, Any],
                                                      line: str) -> None:
    assert error(controller(**change)) == f"w.yaml: {line}"


def test_a_controllers_pods_carry_its_labels_and_owner() -> None:
    doc = one(controller()).to_k8s()
    doc["metadata"]["uid"] = "u-1"
    pod = template_pod(doc, "web-abcde")
    assert pod["metadata"]["name"] == "web-abcde"
    assert pod["metadata"]["labels"] == {"app": "web"}
    [ref] = pod["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "ReplicationController", "web", "u-1", True)
    assert selector_matches(doc, {"app": "web", "extra": "x"})
    assert not selector_matches(doc, {"app": "db"})


def test_a_stateful_replica_has_its_own_claims() -> None:
    doc = one(stateful_set()).to_k8s()
    doc["metadata"]["uid"] = "u-2"
    pod = stateful_pod(doc, 2)
    assert pod["metadata"]["name"] == "db-2"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-2"
    assert pod["spec"]["volumes"] == [{"name": "data",
                                       "persistentVolumeClaim": {"claimName": "data-db-2"}}]
    claim = stateful_claim(doc, doc["spec"]["volumeClaimTemplates"][0], 2)
    assert claim["metadata"]["name"] == "data-db-2"
    assert claim["metadata"]["labels"] == {"app": "db"}
    assert claim["kind"] == "PersistentVolumeClaim"


@pytest.mark.parametrize(("change", "line"), [
    ({"selector": None}, "spec.selector: Required value"),
    ({"selector": {"matchLabels": {"app": "web"}}}, 'spec.template.metadata.labels: Invalid '
     'value: {"app": "db"}: `selector` does not match template `labels`'),
    ({"podManagementPolicy": "Random"}, 'spec.podManagementPolicy: Unsupported value: '
     '"Random": supported values: "OrderedReady", "Parallel"'),
    ({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Keep"}},
     'spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: "Keep": '
     'supported values: "Retain", "Delete"'),
    ({"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"]}}]},
     "spec.volumeClaimTemplates[0].spec.resources.requests.storage: Required value"),
])
def test_a_bad_stateful_set_is_refused_naming_its_field(change: dict[str, Any],
                                                        line: str) -> None:
    doc = stateful_set(**change)
    if change.get("selector", "") is None:
        del doc["spec"]["selector"]
    assert error(doc) == f"w.yaml: {line}"


def test_a_template_mounting_an_unknown_volume_is_refused() -> None:
    doc = stateful_set(volumeClaimTemplates=[])
    assert error(copy.deepcopy(doc)) == (
        'w.yaml: spec.template.spec.containers[0].volumeMounts[0].name: Not found: "data"')


def test_discovery_lists_workloads_with_their_scale_subresource() -> None:
    registry = ResourceRegistry()

    class Stores:  # registration only checks the services' methods
        controllers = stateful_sets = None

    register_workloads(registry, Stores())  # type: ignore[arg-type]
    core = resource_list(registry, "", "v1")
    assert core is not None
    entries = {r["name"]: r for r in core["resources"]}
    assert entries["replicationcontrollers"]["shortNames"] == ["rc"]
    assert entries["replicationcontrollers/scale"]["kind"] == "Scale"
    assert entries["replicationcontrollers/scale"]["group"] == "autoscaling"
    apps = resource_list(registry, "apps", "v1")
    assert apps is not None
    assert {r["name"] for r in apps["resources"]} == {"statefulsets", "statefulsets/scale"}
    legacy = resource_list(registry, "", "v1beta1")
    assert legacy is not None
    assert [r["name"] for r in legacy["resources"]] == ["replicationcontrollers"]

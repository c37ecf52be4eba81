"""The Kubernetes API in process: the registry and its generic handlers (discovery, Tables,
selectors, PATCH/PUT, Statuses), namespaces and events, and the token-guarded TLS listener.

Kinds other than pods are served by ``MemoryObjects``, a ResourceService in a dict, the
way the NFS work registers its own: one ``registry.register(DESCRIPTOR, service)``.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import ssl
import stat
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.unit.test_server import MemoryPods, assert_status, pod_body
from volfs.api.errors import AlreadyExists, Conflict, NotFound
from volfs.config import parse_kube_api
from volfs.server import create_app
from volfs.server.kinds import (
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    core_registry,
)
from volfs.server.kubeapi import (
    BearerAuth,
    bind_loopback,
    load_or_create_credentials,
    serve_kube_api,
)
from volfs.server.resources import Resource, ResourceRegistry
from volfs.server.watch import OpenWatches, changes
from volfs.state import AsyncStateDB, StateDB
from volfs.state.events import WARNING, record_event

Object = dict[str, Any]
PODS = "/api/v1/namespaces/default/pods"
CLASSES = "/apis/storage.k8s.io/v1/storageclasses"
CLAIMS = "/api/v1/namespaces/default/persistentvolumeclaims"
VOLUMES = "/api/v1/persistentvolumes"
KUBECTL_TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                 "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
SMP = {"content-type": "application/strategic-merge-patch+json"}


class MemoryObjects:
    """A ResourceService over a dict, for any kind, namespaced or not."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.objects: dict[tuple[str | None, str], Object] = {}
        self.version = 0
        self.updates = 0

    def _stamp(self, obj: Object) -> Object:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    async def create(self, obj: Object) -> Object:
        meta = obj["metadata"]
        key = (meta.get("namespace"), meta["name"])
        if key in self.objects:
            raise AlreadyExists(self.kind, key[0], key[1])
        meta.update(uid=str(uuid.uuid4()),
                    creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.objects[key] = self._stamp(copy.deepcopy(obj))
        return self.objects[key]

    async def get(self, namespace: str | None, name: str) -> Object:
        if (namespace, name) not in self.objects:
            raise NotFound(self.kind, namespace, name)
        return copy.deepcopy(self.objects[(namespace, name)])

    async def list(self, namespace: str | None) -> list[Object]:
        return [copy.deepcopy(o) for (ns, _), o in self.objects.items()
                if namespace is None or ns == namespace]

    async def delete(self, namespace: str | None, name: str) -> Object:
        if (namespace, name) not in self.objects:
            raise NotFound(self.kind, namespace, name)
        return self.objects.pop((namespace, name))

    async def update(self, obj: Object) -> Object:
        meta = obj["metadata"]
        stored = await self.get(meta.get("namespace"), meta["name"])
        if meta.get("resourceVersion") not in (None, stored["metadata"]["resourceVersion"]):
            raise Conflict(self.kind, meta["name"], "the object has been modified")
        self.updates += 1
        meta.update(uid=stored["metadata"]["uid"],
                    creationTimestamp=stored["metadata"]["creationTimestamp"])
        self.objects[(meta.get("namespace"), meta["name"])] = self._stamp(copy.deepcopy(obj))
        return self.objects[(meta.get("namespace"), meta["name"])]


class World:
    """A registry of pods (MemoryPods), storage classes and claims, plus the app over it."""

    def __init__(self, db: AsyncStateDB | None = None) -> None:
        self.pods = MemoryPods()
        self.classes = MemoryObjects("StorageClass")
        self.claims = MemoryObjects("PersistentVolumeClaim")
        self.registry = core_registry(self.pods, db)
        self.registry.register(STORAGE_CLASSES, self.classes)
        self.registry.register(PERSISTENT_VOLUME_CLAIMS, self.claims)


Scenario = Callable[[httpx.AsyncClient, World], Awaitable[None]]


def run(scenario: Scenario, world: World | None = None, **app_options: Any) -> World:
    world = world or World()

    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(world.registry, **app_options))
        async with httpx.AsyncClient(transport=transport, base_url="http://volfs") as client:
            await scenario(client, world)

    trio.run(main)
    return world


def storage_class(name: str = "nfs", **fields: Any) -> Object:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name}, "provisioner": "volfs.io/nfs", **fields}


def labelled(name: str, **labels: str) -> Object:
    body = pod_body(name)
    body["metadata"]["labels"] = labels
    return body


# -- the registry and discovery --------------------------------------------------------


def test_a_registered_kind_is_discovered_in_its_group() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        groups = (await client.get("/apis")).json()
        assert groups["kind"] == "APIGroupList"
        assert groups["groups"] == [{
            "name": "storage.k8s.io",
            "versions": [{"groupVersion": "storage.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "storage.k8s.io/v1", "version": "v1"},
        }]
        group = (await client.get("/apis/storage.k8s.io")).json()
        assert (group["kind"], group["name"]) == ("APIGroup", "storage.k8s.io")
        listed = (await client.get("/apis/storage.k8s.io/v1")).json()
        assert listed["groupVersion"] == "storage.k8s.io/v1"
        assert listed["resources"] == [{
            "name": "storageclasses", "singularName": "storageclass", "namespaced": False,
            "kind": "StorageClass", "verbs": ["create", "delete", "get", "list", "patch",
                                              "update", "watch"], "shortNames": ["sc"]}]
        core = (await client.get("/api/v1")).json()
        names = {r["name"]: r for r in core["resources"]}
        assert set(names) == {"pods", "namespaces", "persistentvolumeclaims"}  # no db: no events
        assert names["persistentvolumeclaims"]["shortNames"] == ["pvc"]
        assert names["namespaces"]["verbs"] == ["get", "list", "watch"]
        assert_status(await client.get("/apis/apps/v1"), 404, "NotFound")
        assert_status(await client.get("/apis/storage.k8s.io/v2"), 404, "NotFound")

    run(scenario)


def test_registration_refuses_clashing_names_and_verbs_the_service_cannot_serve() -> None:
    registry = ResourceRegistry()
    registry.register(STORAGE_CLASSES, MemoryObjects("StorageClass"))
    clash = Resource(name="classes", singular_name="class", kind="Class", namespaced=False,
                     verbs=("get",), group="storage.k8s.io", short_names=("sc",))
    with pytest.raises(ValueError, match="clashes"):
        registry.register(clash, MemoryObjects("Class"))

    class ReadOnly:
        async def get(self, namespace: str | None, name: str) -> Object:
            return {}

        async def list(self, namespace: str | None) -> list[Object]:
            return []

    with pytest.raises(ValueError, match="create"):
        registry.register(PERSISTENT_VOLUME_CLAIMS, ReadOnly())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown verbs"):
        Resource(name="x", singular_name="x", kind="X", namespaced=False,
                 verbs=("deletecollection",))


def test_aggregated_discovery_is_answered_with_the_plain_lists() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        for path in ("/api", "/apis"):
            response = await client.get(path, headers={"accept": AGGREGATED
                                                       + ",application/json"})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.json()["kind"] in ("APIVersions", "APIGroupList")
            only = await client.get(path, headers={"accept": AGGREGATED})
            body = assert_status(only, 406, "NotAcceptable")
            assert "application/json" in body["message"]

    run(scenario)


def test_openapi_v2_describes_no_kind_and_v3_is_not_served() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        proto = await client.get("/openapi/v2", headers={
            "accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
        assert proto.status_code == 200
        assert proto.headers["content-type"].startswith(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
        assert proto.content.startswith(b"\n\x032.0\x12")
        plain = (await client.get("/openapi/v2")).json()
        assert (plain["swagger"], plain["definitions"]) == ("2.0", {})
        assert_status(await client.get("/openapi/v3"), 404, "NotFound")

    run(scenario)


# -- a cluster-scoped kind in a named group ----------------------------------------------


def test_a_cluster_scoped_kind_is_served_at_its_groups_cluster_paths() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        body = storage_class()
        body["metadata"]["namespace"] = "ignored"  # cluster objects have none
        created = await client.post(CLASSES, json=body)
        assert created.status_code == 201, created.text
        obj = created.json()
        assert (obj["apiVersion"], obj["kind"]) == ("storage.k8s.io/v1", "StorageClass")
        assert "namespace" not in obj["metadata"]

        listed = (await client.get(CLASSES)).json()
        assert (listed["apiVersion"], listed["kind"]) == ("storage.k8s.io/v1",
                                                          "StorageClassList")
        assert [o["metadata"]["name"] for o in listed["items"]] == ["nfs"]
        assert listed["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]

        missing = assert_status(await client.get(f"{CLASSES}/gone"), 404, "NotFound")
        assert missing["message"] == 'storageclasses.storage.k8s.io "gone" not found'
        assert missing["details"] == {"name": "gone", "group": "storage.k8s.io",
                                      "kind": "storageclasses"}
        again = assert_status(await client.post(CLASSES, json=storage_class()), 409,
                              "AlreadyExists")
        assert again["message"] == 'storageclasses.storage.k8s.io "nfs" already exists'
        assert_status(await client.get("/apis/storage.k8s.io/v1/namespaces/default/"
                                       "storageclasses"), 404, "NotFound")
        deleted = await client.delete(f"{CLASSES}/nfs")
        assert deleted.json()["metadata"]["name"] == "nfs"
        assert world.classes.objects == {}

    run(scenario)


def test_a_body_of_another_kind_is_400_and_a_missing_kind_is_taken_from_the_path() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        wrong = await client.post(CLASSES, json={**storage_class(), "kind": "Pod"})
        assert "kind" in assert_status(wrong, 400, "BadRequest")["message"]
        bare = {k: v for k, v in storage_class().items() if k not in ("apiVersion", "kind")}
        created = await client.post(CLASSES, json=bare)
        assert created.status_code == 201
        assert world.classes.objects[(None, "nfs")]["kind"] == "StorageClass"

    run(scenario)


def test_generate_name_makes_a_name() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        body = storage_class()
        body["metadata"] = {"generateName": "fast-"}
        created = (await client.post(CLASSES, json=body)).json()
        name = created["metadata"]["name"]
        assert name.startswith("fast-") and len(name) == len("fast-") + 5

    run(scenario)


# -- Tables --------------------------------------------------------------------------------


def test_get_and_list_answer_kubectl_with_a_table() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(PODS, json=labelled("web", app="web"))
        response = await client.get(PODS, headers={"accept": KUBECTL_TABLE})
        assert response.status_code == 200
        assert response.headers["content-type"] == (
            "application/json;as=Table;v=v1;g=meta.k8s.io")
        table = response.json()
        assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
        columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
        assert columns[:5] == [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0),
                               ("Age", 0)]
        assert all(priority == 1 for _, priority in columns[5:])
        (row,) = table["rows"]
        assert row["cells"][:4] == ["web", "-", "Running", "0"]  # volfs runs no container
        assert row["cells"][4].endswith("s")
        assert row["object"]["kind"] == "PartialObjectMetadata"
        assert row["object"]["metadata"]["labels"] == {"app": "web"}
        assert "spec" not in row["object"]

        one = (await client.get(f"{PODS}/web?includeObject=Object",
                                headers={"accept": KUBECTL_TABLE})).json()
        assert one["rows"][0]["object"]["spec"]["volumes"][0]["name"] == "scratch"
        none = (await client.get(f"{PODS}?includeObject=None",
                                 headers={"accept": KUBECTL_TABLE})).json()
        assert "object" not in none["rows"][0]
        beta = (await client.get(PODS, headers={
            "accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"})).json()
        assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
        plain = (await client.get(PODS, headers={"accept": "application/json"})).json()
        assert plain["kind"] == "PodList"
        assert_status(await client.get(PODS, headers={"accept": "application/vnd.kubernetes"
                                                      ".protobuf"}), 406, "NotAcceptable")
        assert_status(await client.get(f"{PODS}?includeObject=All",
                                       headers={"accept": KUBECTL_TABLE}), 400, "BadRequest")

    run(scenario)


def test_a_default_storage_class_is_marked_in_its_table() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        body = storage_class(reclaimPolicy="Retain")
        body["metadata"]["annotations"] = {
            "storageclass.kubernetes.io/is-default-class": "true"}
        await client.post(CLASSES, json=body)
        table = (await client.get(CLASSES, headers={"accept": KUBECTL_TABLE})).json()
        assert [c["name"] for c in table["columnDefinitions"]] == [
            "Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode",
            "AllowVolumeExpansion", "Age"]
        assert table["rows"][0]["cells"][:5] == ["nfs (default)", "volfs.io/nfs", "Retain",
                                                 "Immediate", "false"]

    run(scenario)


# -- selectors -----------------------------------------------------------------------------


def test_label_and_field_selectors_filter_lists() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(PODS, json=labelled("a", tier="web", env="prod"))
        await client.post(PODS, json=labelled("b", tier="db", env="prod"))
        await client.post(PODS, json=labelled("c", tier="web"))

        async def names(query: str, path: str = PODS) -> list[str]:
            response = await client.get(f"{path}?{query}")
            assert response.status_code == 200, response.text
            return [p["metadata"]["name"] for p in response.json()["items"]]

        assert await names("labelSelector=tier%3Dweb") == ["a", "c"]
        assert await names("labelSelector=tier%3D%3Dweb,env") == ["a"]
        assert await names("labelSelector=env!%3Dprod") == ["c"]
        assert await names("labelSelector=tier in (db,cache)") == ["b"]
        assert await names("labelSelector=tier notin (db)") == ["a", "c"]
        assert await names("labelSelector=!env") == ["c"]
        assert await names("fieldSelector=metadata.name%3Db") == ["b"]
        assert await names("fieldSelector=metadata.name!%3Db,status.phase%3DRunning") == [
            "a", "c"]
        assert await names("fieldSelector=metadata.namespace%3Ddefault",
                           "/api/v1/pods") == ["a", "b", "c"]
        bad = await client.get(f"{PODS}?labelSelector=tier in (web")
        assert "unable to parse requirement" in assert_status(bad, 400, "BadRequest")["message"]
        unsupported = await client.get(f"{PODS}?fieldSelector=spec.volumes%3Dx")
        assert assert_status(unsupported, 400, "BadRequest")["message"] == (
            "field label not supported: spec.volumes")

    run(scenario)


# -- PATCH and PUT -------------------------------------------------------------------------


def test_label_changes_by_every_patch_type_are_kept() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(PODS, json=labelled("web", app="web"))
        smp = await client.patch(f"{PODS}/web", headers=SMP, json={
            "metadata": {"labels": {"tier": "front"}, "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Pod"}'}}})
        assert smp.status_code == 200, smp.text
        assert smp.json()["metadata"]["labels"] == {"app": "web", "tier": "front"}
        merge = await client.patch(f"{PODS}/web", json={"metadata": {"labels": {"app": None}}},
                                   headers={"content-type": "application/merge-patch+json"})
        assert merge.json()["metadata"]["labels"] == {"tier": "front"}
        jsonpatch = await client.patch(
            f"{PODS}/web", headers={"content-type": "application/json-patch+json"},
            json=[{"op": "add", "path": "/metadata/labels/x", "value": "1"}])
        assert jsonpatch.json()["metadata"]["labels"] == {"tier": "front", "x": "1"}
        stored = (await client.get(f"{PODS}/web")).json()
        assert stored["metadata"]["annotations"] == {
            "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Pod"}'}
        assert stored["metadata"]["labels"] == {"tier": "front", "x": "1"}

    run(scenario)


def test_a_patch_changing_a_pods_volumes_is_422_forbidden() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(PODS, json=pod_body("web"))
        response = await client.patch(f"{PODS}/web", headers=SMP, json={"spec": {
            "$setElementOrder/volumes": [{"name": "scratch"}],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}]}})
        body = assert_status(response, 422, "Invalid")
        assert body["message"].startswith(
            'Pod "web" is invalid: spec: Forbidden: pod updates may not change fields other '
            "than `spec.containers[*].image`")
        (cause,) = body["details"]["causes"]
        assert (cause["field"], cause["reason"]) == ("spec", "FieldValueForbidden")
        assert "spec.volumes[0].emptyDir.sizeLimit" in cause["message"]
        image = await client.patch(f"{PODS}/web", headers=SMP, json={"spec": {"containers": [
            {"name": "app", "image": "busybox:2"}]}})
        assert image.json()["spec"]["containers"][0]["image"] == "busybox:2"

    run(scenario)


def test_a_patch_that_changes_nothing_writes_nothing() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class())
        before = (await client.get(f"{CLASSES}/nfs")).json()
        same = await client.patch(f"{CLASSES}/nfs", headers=SMP,
                                  json={"provisioner": "volfs.io/nfs"})
        assert same.json() == before
        assert world.classes.updates == 0

    run(scenario)


def test_patch_refusals() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class())
        apply = await client.patch(f"{CLASSES}/nfs", content=b"kind: StorageClass",
                                   headers={"content-type": "application/apply-patch+yaml"})
        assert "application/strategic-merge-patch+json" in assert_status(
            apply, 415, "UnsupportedMediaType")["message"]
        stale = await client.patch(f"{CLASSES}/nfs", headers=SMP, json={
            "metadata": {"resourceVersion": "999"}, "provisioner": "x"})
        assert assert_status(stale, 409, "Conflict")["details"]["kind"] == "storageclasses"
        renamed = await client.patch(f"{CLASSES}/nfs", headers=SMP,
                                     json={"metadata": {"name": "other"}})
        assert "does not match the name on the URL" in assert_status(
            renamed, 400, "BadRequest")["message"]
        broken = await client.patch(
            f"{CLASSES}/nfs", headers={"content-type": "application/json-patch+json"},
            json=[{"op": "remove", "path": "/nothing"}])
        assert "does not exist" in assert_status(broken, 422, "Invalid")["message"]
        assert_status(await client.patch(f"{CLASSES}/gone", headers=SMP, json={}), 404,
                      "NotFound")
        assert_status(await client.patch(f"{CLASSES}/nfs?dryRun=All", headers=SMP, json={}),
                      400, "BadRequest")

    run(scenario)


def test_put_replaces_with_a_resource_version_precondition() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        obj = (await client.post(CLASSES, json=storage_class())).json()
        obj["reclaimPolicy"] = "Retain"
        replaced = await client.put(f"{CLASSES}/nfs", json=obj)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["reclaimPolicy"] == "Retain"
        assert_status(await client.put(f"{CLASSES}/nfs", json=obj), 409, "Conflict")
        assert_status(await client.put(f"{CLASSES}/other", json=obj), 400, "BadRequest")

    run(scenario)


def test_delete_honours_preconditions() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class())
        refused = await client.request("DELETE", f"{CLASSES}/nfs", json={
            "kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "other"}})
        assert "Precondition failed: UID in precondition: other" in assert_status(
            refused, 409, "Conflict")["message"]
        assert world.classes.objects
        done = await client.request("DELETE", f"{CLASSES}/nfs", json={
            "kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        assert done.status_code == 200
        assert not world.classes.objects

    run(scenario)


def test_dry_run_is_refused_not_ignored() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        dry = await client.post(f"{PODS}?dryRun=All", json=pod_body())
        assert_status(dry, 400, "BadRequest")
        assert world.pods.pods == {}

    run(scenario)


# -- watch ---------------------------------------------------------------------------------


class Commits:
    """A stand-in for the state database's change events, committed by the test."""

    def __init__(self) -> None:
        self.event: trio.Event | None = None
        self.asked = 0  # how often a watch took the event: once per list it made

    def next_change(self) -> trio.Event:
        self.asked += 1
        if self.event is None or self.event.is_set():
            self.event = trio.Event()
        return self.event

    def commit(self) -> None:
        assert self.event is not None
        self.event.set()

    async def listed(self, times: int) -> None:
        while self.asked < times:
            await trio.sleep(0)


def events_of(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    return [(e["type"], e["object"]["metadata"]["name"])
            for e in map(json.loads, response.text.splitlines())]


def test_a_watch_tells_what_exists_then_each_change_as_it_commits() -> None:
    commits, watches = Commits(), OpenWatches()

    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class("old"))
        answers: list[httpx.Response] = []

        async def watch() -> None:
            answers.append(await client.get(f"{CLASSES}?watch=1&timeoutSeconds=600"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await commits.listed(1)
            await client.post(CLASSES, json=storage_class("new"))
            commits.commit()
            await commits.listed(2)
            await client.delete(f"{CLASSES}/old")
            commits.commit()
            await commits.listed(3)  # told, and waiting again: end the stream
            watches.close()
        assert events_of(answers[0]) == [("ADDED", "old"), ("ADDED", "new"), ("DELETED", "old")]

    run(scenario, changes=commits.next_change, watches=watches)


def test_a_watch_from_a_lists_version_tells_only_later_changes() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class("before"))
        version = (await client.get(CLASSES)).json()["metadata"]["resourceVersion"]
        await client.post(CLASSES, json=storage_class("after"))
        watched = await client.get(f"{CLASSES}?watch=true&resourceVersion={version}"
                                   "&timeoutSeconds=1")
        assert events_of(watched) == [("ADDED", "after")]
        selected = await client.get(f"{CLASSES}?watch=true&timeoutSeconds=1"
                                    "&fieldSelector=metadata.name%3Dbefore")
        assert events_of(selected) == [("ADDED", "before")]
        assert_status(await client.get(f"{CLASSES}?watch=true&timeoutSeconds=soon"),
                      400, "BadRequest")

    run(scenario)


def test_closing_the_watches_ends_open_streams_at_once() -> None:
    """A stopping daemon closes its watches; the HTTP server need not wait them out."""
    commits, watches = Commits(), OpenWatches()

    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post(CLASSES, json=storage_class("kept"))
        answers: list[httpx.Response] = []

        async def watch() -> None:
            answers.append(await client.get(f"{CLASSES}?watch=1&timeoutSeconds=600"))

        with trio.fail_after(30):  # not the 600 s the client asked for
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await commits.listed(1)
                watches.close()
            assert events_of(answers[0]) == [("ADDED", "kept")]
            late = await client.get(f"{CLASSES}?watch=1&timeoutSeconds=600")  # ends at once
            assert late.status_code == 200

    run(scenario, changes=commits.next_change, watches=watches)


def test_a_deletion_is_told_with_the_last_state_marked_as_being_deleted() -> None:
    """kubectl get -w prints what a DELETED event carries: for every kind it is marked
    with metadata.deletionTimestamp, so a table says Terminating, never Running or Bound."""
    commits, watches = Commits(), OpenWatches()
    world = World()
    world.registry.register(PERSISTENT_VOLUMES, MemoryObjects("PersistentVolume"))
    bound = {"phase": "Bound"}
    made = {PODS: pod_body("web"), CLASSES: storage_class("nfs"),
            CLAIMS: {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": "data"}, "spec": {}, "status": bound},
            VOLUMES: {"apiVersion": "v1", "kind": "PersistentVolume",
                      "metadata": {"name": "vol"}, "spec": {}, "status": bound}}
    status_cell = {PODS: 2, CLAIMS: 1, VOLUMES: 4}
    watched = [(path, accept) for path in made for accept in ("application/json",
                                                               KUBECTL_TABLE)]

    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        for path, body in made.items():
            assert (await client.post(path, json=body)).status_code == 201
        answers: dict[tuple[str, str], httpx.Response] = {}

        async def watch(path: str, accept: str) -> None:
            answers[(path, accept)] = await client.get(f"{path}?watch=1&timeoutSeconds=600",
                                                       headers={"accept": accept})

        async with trio.open_nursery() as nursery:
            for path, accept in watched:
                nursery.start_soon(watch, path, accept)
            await commits.listed(len(watched))
            for path, body in made.items():
                assert (await client.delete(f"{path}/{body['metadata']['name']}")).is_success
            commits.commit()
            await commits.listed(2 * len(watched))
            watches.close()
        for (path, accept), answer in answers.items():
            assert answer.status_code == 200, answer.text
            added, gone = map(json.loads, answer.text.splitlines())
            assert (added["type"], gone["type"]) == ("ADDED", "DELETED")
            if accept == KUBECTL_TABLE:
                (live,), (row,) = added["object"]["rows"], gone["object"]["rows"]
                meta = row["object"]["metadata"]  # what kubectl reads beside the cells
                if path in status_cell:
                    assert live["cells"][status_cell[path]] in ("Running", "Bound")
                    assert row["cells"][status_cell[path]] == "Terminating", path
            else:
                assert "deletionTimestamp" not in added["object"]["metadata"]
                meta = gone["object"]["metadata"]
            assert datetime.fromisoformat(meta["deletionTimestamp"]), path

    run(scenario, world, changes=commits.next_change, watches=watches)


def test_a_deleted_pods_containers_are_told_as_not_ready() -> None:
    pod: Object = {"metadata": {"name": "web", "resourceVersion": "3"},
           "status": {"phase": "Running", "containerStatuses": [
               {"name": "app", "ready": True, "started": True, "state": {"running": {}}}]}}
    (event,) = changes({("default", "web"): pod}, {}, when="2026-01-02T12:00:00Z")
    assert event["type"] == "DELETED"
    assert event["object"]["metadata"]["deletionTimestamp"] == "2026-01-02T12:00:00Z"
    (status,) = event["object"]["status"]["containerStatuses"]
    assert (status["ready"], status["started"]) == (False, False)
    assert pod["status"]["containerStatuses"][0]["ready"] is True  # the known state is kept


def test_a_table_watch_sends_a_table_per_event_with_columns_first_only() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        for name in ("a", "b"):
            await client.post(CLASSES, json=storage_class(name))
        watched = await client.get(f"{CLASSES}?watch=1&timeoutSeconds=1",
                                   headers={"accept": KUBECTL_TABLE})
        assert watched.status_code == 200
        first, second = map(json.loads, watched.text.splitlines())
        assert first["type"] == second["type"] == "ADDED"
        assert first["object"]["kind"] == second["object"]["kind"] == "Table"
        assert [c["name"] for c in first["object"]["columnDefinitions"]][0] == "Name"
        assert second["object"]["columnDefinitions"] == []
        assert [r["cells"][0] for r in (first["object"]["rows"] + second["object"]["rows"])] \
            == ["a", "b"]

    run(scenario)


def test_a_yaml_body_is_accepted_and_other_media_types_are_415() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        text = "kind: StorageClass\napiVersion: storage.k8s.io/v1\nmetadata: {name: y}\n"
        created = await client.post(CLASSES, content=text.encode(),
                                    headers={"content-type": "application/yaml"})
        assert created.status_code == 201
        assert_status(await client.post(CLASSES, content=b"x",
                                         headers={"content-type": "text/plain"}),
                      415, "UnsupportedMediaType")

    run(scenario)


# -- namespaces and events -----------------------------------------------------------------


def test_namespaces_are_default_and_every_namespace_holding_objects() -> None:
    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await client.post("/api/v1/namespaces/team-a/pods", json=pod_body(namespace="team-a"))
        await client.post("/api/v1/namespaces/team-b/persistentvolumeclaims", json={
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}})
        listed = (await client.get("/api/v1/namespaces")).json()
        assert listed["kind"] == "NamespaceList"
        assert [n["metadata"]["name"] for n in listed["items"]] == ["default", "team-a",
                                                                    "team-b"]
        team = (await client.get("/api/v1/namespaces/team-a")).json()
        assert team["status"] == {"phase": "Active"}
        assert team["metadata"]["uid"] == (await client.get(
            "/api/v1/namespaces/team-a")).json()["metadata"]["uid"]
        missing = assert_status(await client.get("/api/v1/namespaces/nope"), 404, "NotFound")
        assert missing["message"] == 'namespaces "nope" not found'
        assert_status(await client.post("/api/v1/namespaces", json={
            "metadata": {"name": "x"}}), 405, "MethodNotAllowed")
        table = (await client.get("/api/v1/namespaces",
                                  headers={"accept": KUBECTL_TABLE})).json()
        assert table["rows"][0]["cells"][:2] == ["default", "Active"]

    run(scenario)


def test_recorded_events_are_served_and_selected_by_involved_object(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    state = AsyncStateDB(db)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}
    other = {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "db", "namespace": "default", "uid": "u-2"}}

    async def scenario(client: httpx.AsyncClient, world: World) -> None:
        await record_event(state, pod, "Created", "Created pod web")
        await record_event(state, pod, "FailedMount", "volume x: refused", WARNING)
        await record_event(state, other, "Created", "Created pod db")
        query = ("fieldSelector=involvedObject.name%3Dweb,involvedObject.namespace%3Ddefault,"
                 "involvedObject.kind%3DPod,involvedObject.uid%3Du-1")
        listed = (await client.get(f"/api/v1/namespaces/default/events?{query}")).json()
        assert listed["kind"] == "EventList"
        assert [(e["reason"], e["type"]) for e in listed["items"]] == [
            ("Created", "Normal"), ("FailedMount", "Warning")]
        event = listed["items"][0]
        assert event["involvedObject"]["uid"] == "u-1"
        assert event["source"]["component"] == "volfs"
        assert event["count"] == 1
        one = await client.get(f"/api/v1/namespaces/default/events/{event['metadata']['name']}")
        assert one.json()["message"] == "Created pod web"
        table = (await client.get("/api/v1/events", headers={"accept": KUBECTL_TABLE})).json()
        assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
            "Last Seen", "Type", "Reason", "Object", "Message"]
        assert table["rows"][1]["cells"][1:4] == ["Warning", "FailedMount", "pod/web"]
        assert_status(await client.post("/api/v1/namespaces/default/events", json={}), 405,
                      "MethodNotAllowed")
        namespaces = (await client.get("/api/v1/namespaces")).json()
        assert [n["metadata"]["name"] for n in namespaces["items"]] == ["default"]

    try:
        run(scenario, World(state))
    finally:
        db.close()


def test_an_event_that_cannot_be_stored_is_logged_not_raised(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    db.close()  # every write now fails
    pod = {"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u"}}
    assert trio.run(record_event, AsyncStateDB(db), pod, "Created", "hello") is None
    assert "could not record event Created for default/web" in caplog.text


# -- access: the kubeconfig path, bearer tokens, TLS on loopback ---------------------------


def test_the_kubeconfig_path_answers_only_where_a_kubeconfig_is_given() -> None:
    config = {"apiVersion": "v1", "kind": "Config"}

    async def given(client: httpx.AsyncClient, world: World) -> None:
        assert (await client.get("/volfs/v1/kubeconfig")).json() == config

    async def absent(client: httpx.AsyncClient, world: World) -> None:
        body = assert_status(await client.get("/volfs/v1/kubeconfig"), 404, "NotFound")
        assert "--kube-api" in body["message"]

    run(given, kubeconfig=lambda: config)
    run(absent)
    run(absent, kubeconfig=lambda: None)


def test_bearer_auth_answers_401_without_the_token() -> None:
    world = World()

    async def main() -> None:
        app = BearerAuth(create_app(world.registry), "s3cret")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://volfs") as client:
            for headers in ({}, {"authorization": "Bearer wrong"},
                            {"authorization": "Basic czNjcmV0"}):
                response = await client.get("/api/v1/pods", headers=headers)
                assert response.json() == {
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized",
                    "code": 401}
                assert response.status_code == 401
            ok = await client.get("/api/v1/pods", headers={"authorization": "Bearer s3cret"})
            assert ok.status_code == 200

    trio.run(main)
    with pytest.raises(ValueError):
        BearerAuth(create_app(world.registry), "")


def test_credentials_are_made_once_private_and_kept(tmp_path: Path) -> None:
    first = load_or_create_credentials(tmp_path)
    for name in ("kube-api.token", "kube-api.crt", "kube-api.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    assert len(first.token) >= 40
    again = load_or_create_credentials(tmp_path)
    assert again == first
    (tmp_path / "kube-api.crt").write_text("garbage")
    renewed = load_or_create_credentials(tmp_path)
    assert renewed.token == first.token
    assert renewed.certificate != first.certificate
    (tmp_path / "kube-api.token").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_credentials(tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:6443", ("127.0.0.1", 6443)),
    ("127.0.0.2:0", ("127.0.0.2", 0)),
    ("localhost:80", ("127.0.0.1", 80)),
    ("[::1]:6443", ("::1", 6443)),
])
def test_kube_api_addresses_are_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_kube_api(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0.0.0.0:6443", "not a loopback address"),
    ("192.168.1.5:6443", "not a loopback address"),
    ("[::]:6443", "not a loopback address"),
    ("example.com:6443", "not an IP address"),
    ("127.0.0.1", "expected HOST:PORT"),
    ("127.0.0.1:99999", "expected HOST:PORT"),
])
def test_kube_api_refuses_other_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_kube_api(text)
    host = text.rpartition(":")[0].strip("[]")
    if "loopback" in message:
        with pytest.raises(ValueError, match="loopback"):
            bind_loopback(host, 0)


def test_the_tls_listener_serves_token_holders_only(tmp_path: Path) -> None:
    credentials = load_or_create_credentials(tmp_path)
    sock = bind_loopback("127.0.0.1", 0)
    port = sock.getsockname()[1]
    world = World()
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            config = await nursery.start(serve_kube_api, create_app(world.registry), sock,
                                         credentials)
            cluster = config["clusters"][0]["cluster"]
            seen["server"] = cluster["server"]
            context = ssl.create_default_context(cadata=base64.b64decode(
                cluster["certificate-authority-data"]).decode())
            token = config["users"][0]["user"]["token"]
            async with httpx.AsyncClient(verify=context, base_url=cluster["server"]) as client:
                seen["anonymous"] = (await client.get("/api/v1/pods")).status_code
                response = await client.get("/api/v1/pods",
                                            headers={"authorization": f"Bearer {token}"})
                seen["authorized"] = (response.status_code, response.json()["kind"])
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        sock.close()
    assert seen["server"] == f"https://127.0.0.1:{port}"
    assert seen["anonymous"] == 401
    assert seen["authorized"] == (200, "PodList")

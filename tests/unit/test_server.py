"""The control API's pod paths in process (httpx's ASGI transport), and serve_unix on a
real socket. The generic Kubernetes API (registry, tables, patches, discovery) is in
test_server_kube.py."""

from __future__ import annotations

import logging
import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from volfs.api import Pod
from volfs.api.errors import AlreadyExists, Conflict, Invalid, NotFound, SetupFailed
from volfs.lifecycle.service import DeleteResult
from volfs.lifecycle.updates import pod_update_causes
from volfs.server import SocketInUse, create_app, serve_unix
from volfs.server.app import MAX_BODY_BYTES

VOLUME_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "hostPath": "kubernetes.io~host-path",
    "nfs": "kubernetes.io~nfs",
    "persistentVolumeClaim": "kubernetes.io~nfs",
}


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
        self._counter = 0

    async def create_pod(self, pod: Pod) -> dict[str, Any]:
        namespace, name = pod.metadata.namespace, pod.metadata.name
        self.calls.append(("create", namespace, name))
        if name in self.fail:
            raise self.fail[name]
        if (namespace, name) in self.pods:
            raise AlreadyExists("Pod", namespace, name)
        self._counter += 1
        uid = f"00000000-0000-0000-0000-{self._counter:012d}"
        obj = pod.to_k8s()
        obj["metadata"].update(
            uid=uid,
            resourceVersion=str(self._counter),
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        volumes = []
        for volume in obj["spec"].get("volumes", []):
            source = next(key for key in VOLUME_DIRS if key in volume)
            size = volume[source].get("sizeLimit") if source == "emptyDir" else None
            volumes.append(
                {
                    "name": volume["name"],
                    "kind": source,
                    "path": f"/var/lib/volfs/pods/{uid}/volumes/{VOLUME_DIRS[source]}/"
                    + volume["name"],
                    "medium": volume[source].get("medium", "") if source == "emptyDir" else "",
                    "sizeLimitBytes": 1024**3 if size == "1Gi" else None,
                    "usedBytes": 4096,
                }
            )
        obj["status"] = {"phase": "Running", "volumes": volumes}
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
        """PodManager's rules: resourceVersion precondition, Kubernetes' immutable spec."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
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
        self._counter += 1
        metadata = {**stored["metadata"], "labels": new["metadata"].get("labels", {}),
                    "annotations": new["metadata"].get("annotations", {}),
                    "resourceVersion": str(self._counter)}
        self.pods[(namespace, name)] = dict(stored, metadata=metadata, spec=new["spec"])
        return self.pods[(namespace, name)]


def pod_body(name: str = "web", namespace: str | None = "default", **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
            **spec,
        },
    }


Scenario = Callable[[httpx.AsyncClient, MemoryPods], Awaitable[None]]


def run_against_app(scenario: Scenario, service: MemoryPods | None = None) -> MemoryPods:
    """Run ``scenario`` under trio with a client wired to an app over ``service``."""
    service = service or MemoryPods()

    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://volfs") as client:
            await scenario(client, service)

    trio.run(main)
    return service


PODS = "/api/v1/namespaces/default/pods"


def assert_status(response: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {}
    assert body["status"] == "Failure"
    assert body["reason"] == reason
    assert body["code"] == code
    assert isinstance(body["message"], str) and "\n" not in body["message"]
    return body


def test_create_get_list_delete() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        created = await client.post(PODS, json=pod_body())
        assert created.status_code == 201
        pod = created.json()
        assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
        assert pod["metadata"]["name"] == "web"
        assert pod["metadata"]["uid"]
        assert pod["status"]["volumes"][0]["name"] == "scratch"

        fetched = await client.get(f"{PODS}/web")
        assert fetched.status_code == 200
        assert fetched.json()["metadata"]["uid"] == pod["metadata"]["uid"]

        for path in (PODS, "/api/v1/pods"):
            listed = await client.get(path)
            assert listed.status_code == 200
            body = listed.json()
            assert (body["apiVersion"], body["kind"]) == ("v1", "PodList")
            assert body["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
            assert [p["metadata"]["name"] for p in body["items"]] == ["web"]
        other = await client.get("/api/v1/namespaces/other/pods")
        assert other.json()["items"] == []

        deleted = await client.delete(f"{PODS}/web")
        assert deleted.status_code == 200
        assert deleted.json()["metadata"]["uid"] == pod["metadata"]["uid"]
        assert "warning" not in deleted.headers

    service = run_against_app(scenario)
    assert service.calls == [
        ("create", "default", "web"),
        ("get", "default", "web"),
        ("list", "default", None),
        ("list", None, None),
        ("list", "other", None),
        ("delete", "default", "web"),
    ]
    assert service.pods == {}


def test_missing_body_namespace_takes_the_paths() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        response = await client.post(
            "/api/v1/namespaces/team-a/pods", json=pod_body(namespace=None)
        )
        assert response.status_code == 201
        assert response.json()["metadata"]["namespace"] == "team-a"

    assert run_against_app(scenario).calls == [("create", "team-a", "web")]


def test_body_namespace_that_differs_from_the_path_is_400() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        response = await client.post(
            "/api/v1/namespaces/team-a/pods", json=pod_body(namespace="team-b")
        )
        body = assert_status(response, 400, "BadRequest")
        assert "namespace" in body["message"]

    assert run_against_app(scenario).calls == []


def test_get_and_delete_of_a_missing_pod_are_404() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        for response in (await client.get(f"{PODS}/ghost"), await client.delete(f"{PODS}/ghost")):
            body = assert_status(response, 404, "NotFound")
            assert body["message"] == 'pods "ghost" not found'
            assert body["details"] == {"name": "ghost", "kind": "pods"}

    run_against_app(scenario)


def test_creating_an_existing_pod_is_409() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        assert (await client.post(PODS, json=pod_body())).status_code == 201
        body = assert_status(await client.post(PODS, json=pod_body()), 409, "AlreadyExists")
        assert body["message"] == 'pods "web" already exists'
        assert body["details"] == {"name": "web", "kind": "pods"}

    run_against_app(scenario)


def test_an_invalid_manifest_is_422_with_causes_and_never_reaches_the_service() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        bad = pod_body(volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "lots"}}])
        body = assert_status(await client.post(PODS, json=bad), 422, "Invalid")
        assert body["message"].startswith('Pod "web" is invalid: ')
        assert body["details"]["name"] == "web"
        assert body["details"]["kind"] == "Pod"
        causes = body["details"]["causes"]
        assert any(c["field"] == "spec.volumes[0].emptyDir.sizeLimit" for c in causes), causes
        assert all(set(c) == {"field", "message", "reason"} for c in causes)

    assert run_against_app(scenario).calls == []


def test_a_lifecycle_invalid_is_422_with_its_causes() -> None:
    service = MemoryPods()
    service.fail["web"] = Invalid(
        "Pod", "web", [("spec.volumes[0].hostPath.path", "not under an allowed prefix")]
    )

    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        body = assert_status(await client.post(PODS, json=pod_body()), 422, "Invalid")
        assert body["message"] == (
            'Pod "web" is invalid: spec.volumes[0].hostPath.path: not under an allowed prefix'
        )
        assert body["details"]["causes"] == [
            {
                "field": "spec.volumes[0].hostPath.path",
                "message": "not under an allowed prefix",
                "reason": "FieldValueInvalid",
            }
        ]

    run_against_app(scenario, service)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"kind": "Pod", ', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'["a list"]', "must be a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(content: bytes, message: str) -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        response = await client.post(
            PODS, content=content, headers={"content-type": "application/json"}
        )
        assert message in assert_status(response, 400, "BadRequest")["message"]

    assert run_against_app(scenario).calls == []


NESTED = "[" * 5000 + "]" * 5000
TOO_DEEP = "nested more than 100 levels deep (mappings and lists; at most 100)"


@pytest.mark.parametrize("content_type, content", [
    ("application/json", f'{{"apiVersion": "v1", "kind": "Pod", "spec": {NESTED}}}'),
    ("application/yaml", f"apiVersion: v1\nkind: Pod\nspec: {NESTED}\n"),
    ("application/yaml", "apiVersion: v1\nkind: Pod\nspec:\n  " + "- " * 5000 + "x\n"),
], ids=["json", "yaml-flow", "yaml-block"])
def test_a_body_nested_thousands_deep_is_400_in_one_line(content_type: str,
                                                          content: str) -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        for method, path, kind in (("POST", PODS, content_type),
                                   ("PUT", f"{PODS}/web", content_type),
                                   ("PATCH", f"{PODS}/web", "application/merge-patch+json")):
            if kind != content_type and "json" not in content_type:
                continue  # a patch is JSON only
            response = await client.request(method, path, content=content.encode(),
                                            headers={"content-type": kind})
            message = assert_status(response, 400, "BadRequest")["message"]
            assert message.startswith("the request body is refused: "), message
            assert message.endswith(TOO_DEEP), message
        assert (await client.get("/healthz")).status_code == 200

    assert run_against_app(scenario).calls == []


def test_a_body_over_the_size_limit_is_413_unparsed() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        content = b'{"kind": "Pod", "x": "' + b"y" * MAX_BODY_BYTES + b'"}'
        response = await client.post(PODS, content=content,
                                     headers={"content-type": "application/json"})
        message = assert_status(response, 413, "RequestEntityTooLarge")["message"]
        assert message == (f"the request body is larger than {MAX_BODY_BYTES} bytes, the most "
                           "volfs takes for one object")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for start in range(0, len(content), 1 << 20):
                yield content[start:start + (1 << 20)]

        response = await client.post(PODS, content=chunks(),
                                     headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert_status(response, 413, "RequestEntityTooLarge")

    assert run_against_app(scenario).calls == []


def test_setup_failed_is_500_internal_error_with_its_one_line() -> None:
    service = MemoryPods()
    service.fail["web"] = SetupFailed("create hook 10-quota.sh failed: disk quota unavailable")

    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        body = assert_status(await client.post(PODS, json=pod_body()), 500, "InternalError")
        assert body["message"] == "create hook 10-quota.sh failed: disk quota unavailable"

    run_against_app(scenario, service)


def test_an_unexpected_exception_is_500_its_traceback_logged_once_and_the_app_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class DatabaseLocked(RuntimeError):  # a type of this test's own: first seen here
        pass

    service = MemoryPods()
    service.fail["web"] = DatabaseLocked("database is locked")

    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        for _ in range(3):
            body = assert_status(await client.post(PODS, json=pod_body()), 500,
                                 "InternalError")
            assert "database is locked" in body["message"]
        assert (await client.get("/healthz")).text == "ok"

    with caplog.at_level(logging.INFO, logger="volfs.server"):
        run_against_app(scenario, service)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3
    assert all("database is locked" in e.getMessage() for e in errors)
    # A bug: its traceback the first time, then one line that says so.
    assert [bool(e.exc_info) for e in errors] == [True, False, False]
    assert "traceback was logged before" in errors[1].getMessage()


def test_delete_warnings_go_out_as_warning_headers() -> None:
    service = MemoryPods()
    service.warnings = ['delete hook "backup" failed: exit 3', "second\nline"]

    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        assert (await client.post(PODS, json=pod_body())).status_code == 201
        response = await client.delete(f"{PODS}/web")
        assert response.status_code == 200
        assert response.headers.get_list("warning") == [
            '299 - "delete hook \\"backup\\" failed: exit 3"',
            '299 - "second line"',
        ]

    run_against_app(scenario, service)


def test_a_delete_passes_its_grace_period_on_as_kubernetes_takes_it() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        for options in ({"json": {"kind": "DeleteOptions", "apiVersion": "v1",
                                  "gracePeriodSeconds": 5}},  # kubectl's way
                        {"params": {"gracePeriodSeconds": "0"}},
                        {"params": {"gracePeriodSeconds": "-3"}},  # the API server's 1
                        {"json": {"kind": "DeleteOptions", "apiVersion": "v1"}},
                        {}):
            assert (await client.post(PODS, json=pod_body())).status_code == 201
            response = await client.request("DELETE", f"{PODS}/web", **options)
            assert response.status_code == 200, response.text
        assert service.graces == [5, 0, 1, None, None]

        assert (await client.post(PODS, json=pod_body())).status_code == 201
        for bad in (await client.delete(f"{PODS}/web", params={"gracePeriodSeconds": "soon"}),
                    await client.request("DELETE", f"{PODS}/web",
                                         json={"gracePeriodSeconds": "5"})):
            body = assert_status(bad, 400, "BadRequest")
            assert body["message"].startswith("gracePeriodSeconds: invalid value '")
        assert len(service.graces) == 5  # refused before the service was asked

    run_against_app(scenario)


def test_discovery_serves_pods() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        version = (await client.get("/version")).json()
        assert (version["major"], version["minor"]) == ("1", "30")
        assert version["gitVersion"] == "v1.30.0-volfs.0.1.0"

        api = (await client.get("/api")).json()
        assert api["kind"] == "APIVersions"
        assert api["versions"] == ["v1"]

        resources = (await client.get("/api/v1")).json()
        assert resources["kind"] == "APIResourceList"
        assert resources["groupVersion"] == "v1"
        pods = next(r for r in resources["resources"] if r["name"] == "pods")
        assert pods == {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": ["po"],
            "categories": ["all"],
        }
        healthz = await client.get("/healthz")
        assert (healthz.status_code, healthz.text) == (200, "ok")

    run_against_app(scenario)


def test_unknown_paths_and_methods_answer_with_statuses() -> None:
    async def scenario(client: httpx.AsyncClient, service: MemoryPods) -> None:
        assert_status(await client.get("/api/v1/services"), 404, "NotFound")
        assert_status(await client.get("/api/v2"), 404, "NotFound")
        assert_status(await client.get("/api/v1/namespaces/default/pods/web/log"), 404,
                      "NotFound")
        assert_status(await client.post("/api/v1/pods", json=pod_body()), 405,
                      "MethodNotAllowed")
        assert_status(await client.delete(PODS), 405, "MethodNotAllowed")
        assert_status(await client.post("/api", json={}), 405, "MethodNotAllowed")

    run_against_app(scenario)


# --- serve_unix on a real socket ---------------------------------------------------


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="volfs-test-"))
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def test_serve_unix_is_0600_answers_and_removes_its_socket(socket_dir: Path) -> None:
    socket_path = socket_dir / "volfs.sock"
    seen: dict[str, Any] = {}

    async def main() -> None:
        old_umask = os.umask(0)  # the mode must not depend on the umask
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_unix, create_app(MemoryPods()), socket_path)
                seen["mode"] = os.lstat(socket_path).st_mode
                transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
                async with httpx.AsyncClient(transport=transport, base_url="http://volfs") as c:
                    response = await c.get("/healthz")
                    seen["healthz"] = (response.status_code, response.text)
                nursery.cancel_scope.cancel()
        finally:
            os.umask(old_umask)

    trio.run(main)
    assert stat.S_ISSOCK(seen["mode"])
    assert stat.S_IMODE(seen["mode"]) == 0o600
    assert seen["healthz"] == (200, "ok")
    assert not socket_path.exists()
    assert list(socket_dir.iterdir()) == []  # no staging directory left behind


def test_serve_unix_replaces_a_dead_daemons_socket(socket_dir: Path) -> None:
    socket_path = socket_dir / "volfs.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()  # the file stays; connecting to it is refused
    assert socket_path.exists()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_unix, create_app(MemoryPods()), socket_path)
            transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://volfs") as c:
                assert (await c.get("/healthz")).text == "ok"
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert not socket_path.exists()


def test_serve_unix_refuses_a_socket_another_daemon_serves(socket_dir: Path) -> None:
    socket_path = socket_dir / "volfs.sock"

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_unix, create_app(MemoryPods()), socket_path)
            with pytest.raises(SocketInUse):
                await serve_unix(create_app(MemoryPods()), socket_path)
            assert socket_path.exists()  # the live daemon keeps its socket
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert not socket_path.exists()


def test_serve_unix_refuses_to_replace_a_file_that_is_not_a_socket(socket_dir: Path) -> None:
    socket_path = socket_dir / "volfs.sock"
    socket_path.write_text("not a socket")

    with pytest.raises(FileExistsError):
        trio.run(serve_unix, create_app(MemoryPods()), socket_path)
    assert socket_path.read_text() == "not a socket"


@pytest.mark.parametrize("content", [
    {"kind": "PodList", "items": [{"metadata": {"name": "wéb", "labels": {"a": "b\u2028"}},
                                   "spec": {"n": 1, "f": 0.5, "t": True, "z": None}}]},
    {"huge": 1 << 70},  # beyond orjson: encoded as Starlette encodes it
    [],
])
def test_answers_are_encoded_byte_for_byte_as_starlette_encodes_them(content: Any) -> None:
    from starlette.responses import JSONResponse

    from volfs.server.media import FastJSONResponse

    assert FastJSONResponse(content).body == JSONResponse(content).body

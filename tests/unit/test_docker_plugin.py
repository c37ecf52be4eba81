"""Docker's volume-plugin protocol over a fake lifecycle: mapping, references, refusals."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from volfs.api import Pod
from volfs.api.errors import AlreadyExists, Invalid, NotFound
from volfs.lifecycle.service import DeleteResult
from volfs.runtime.base import RuntimeUnavailable
from volfs.server.docker_plugin import (
    CONTENT_TYPE,
    NAMESPACE,
    DockerVolumes,
    MountRefs,
    create_plugin_app,
    pod_name_for,
)


class FakePods:
    """Pods in memory; ``refuse`` makes create raise it."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.refuse: Exception | None = None

    async def create_pod(self, pod: Pod) -> dict[str, Any]:
        if self.refuse:
            raise self.refuse
        key = (pod.metadata.namespace, pod.metadata.name)
        if key in self.pods:
            raise AlreadyExists("Pod", *key)
        obj = pod.to_k8s()
        uid = str(uuid.uuid4())
        obj["metadata"].update(uid=uid, creationTimestamp="2026-01-01T00:00:00Z")
        volume = pod.spec.volumes[0]
        obj["status"] = {"volumes": [{
            "name": volume.name, "kind": volume.source_kind(), "usedBytes": 0,
            "path": f"/volfs/pods/{uid}/volumes/kubernetes.io~x/{volume.name}"}]}
        self.pods[key] = obj
        return obj

    async def delete_pod(self, namespace: str, name: str) -> DeleteResult:
        if (namespace, name) not in self.pods:
            raise NotFound("Pod", namespace, name)
        return DeleteResult(self.pods.pop((namespace, name)))

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.pods:
            raise NotFound("Pod", namespace, name)
        return self.pods[(namespace, name)]

    async def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        return [p for (ns, _), p in self.pods.items() if namespace in (None, ns)]


Call = Callable[..., Awaitable[dict[str, Any]]]


class FakeEngine:
    """Says which containers use each volume, or that it cannot be reached."""

    def __init__(self, users: dict[str, list[str]] | None = None) -> None:
        self.users = users

    async def volume_users(self, volume: str) -> list[str]:
        if self.users is None:
            raise RuntimeUnavailable("no Docker engine answers at unix:///nowhere")
        return self.users.get(volume, [])


class FakeClaims:
    """The claims that exist, by (namespace, name)."""

    def __init__(self, *claims: tuple[str, str]) -> None:
        self.claims = set(claims)
        self.asked: list[tuple[str, str]] = []

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any]:
        self.asked.append((namespace, name))
        if (namespace, name) not in self.claims:
            raise NotFound("PersistentVolumeClaim", namespace, name)
        return {"metadata": {"namespace": namespace, "name": name}}


def with_plugin(tmp_path: Path, scenario: Callable[[Call, FakePods], Awaitable[None]],
                pods: FakePods | None = None, engine: FakeEngine | None = None,
                claims: FakeClaims | None = None) -> FakePods:
    pods = pods or FakePods()

    async def main() -> None:
        app = create_plugin_app(DockerVolumes(pods, MountRefs(tmp_path / "refs.json"),
                                              engine, claims))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://plugin") as client:

            async def call(endpoint: str, raw: bytes | None = None, **body: Any
                           ) -> dict[str, Any]:
                response = await client.post(f"/{endpoint}", content=raw if raw is not None
                                             else json.dumps(body).encode())
                assert response.headers["content-type"] == CONTENT_TYPE
                answer = response.json()
                assert (response.status_code == 200) == ("Err" not in answer), answer
                return answer  # type: ignore[no-any-return]

            await scenario(call, pods)

    trio.run(main)
    return pods


def test_handshake(tmp_path: Path) -> None:
    async def scenario(call: Call, pods: FakePods) -> None:
        assert await call("Plugin.Activate", raw=b"") == {"Implements": ["VolumeDriver"]}
        assert await call("VolumeDriver.Capabilities") == {"Capabilities": {"Scope": "local"}}
        assert await call("VolumeDriver.List") == {"Volumes": []}

    with_plugin(tmp_path, scenario)


def test_a_volume_is_a_pod_with_one_volume(tmp_path: Path) -> None:
    async def scenario(call: Call, pods: FakePods) -> None:
        assert await call("VolumeDriver.Create", Name="scratch",
                          Opts={"sizeLimit": "64Mi", "medium": "Memory"}) == {}
        obj = pods.pods[(NAMESPACE, "scratch")]
        assert obj["spec"]["volumes"] == [
            {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi", "medium": "Memory"}}]
        assert obj["metadata"]["annotations"]["volfs.io/docker-volume"] == "scratch"
        path = obj["status"]["volumes"][0]["path"]
        assert await call("VolumeDriver.Path", Name="scratch") == {"Mountpoint": path}
        assert await call("VolumeDriver.List") == {
            "Volumes": [{"Name": "scratch", "Mountpoint": path}]}
        got = (await call("VolumeDriver.Get", Name="scratch"))["Volume"]
        assert got["Status"]["options"] == {"medium": "Memory", "sizeLimit": "64Mi"}
        assert got["Status"]["pod"] == "docker-volumes/scratch"

        await call("VolumeDriver.Create", Name="logs",
                   Opts={"type": "hostPath", "path": "/srv/logs", "hostPathType": "Directory"})
        assert pods.pods[(NAMESPACE, "logs")]["spec"]["volumes"][0]["hostPath"] == {
            "path": "/srv/logs", "type": "Directory"}
        await call("VolumeDriver.Create", Name="Data_1", Opts={"claim": "data"})
        claim = pods.pods[(NAMESPACE, pod_name_for("Data_1"))]["spec"]["volumes"][0]
        assert claim["persistentVolumeClaim"]["claimName"] == "data"

    with_plugin(tmp_path, scenario)


def test_a_claim_volume_needs_its_claim_in_the_plugins_namespace(tmp_path: Path) -> None:
    claims = FakeClaims((NAMESPACE, "data"), ("default", "elsewhere"))

    async def scenario(call: Call, pods: FakePods) -> None:
        assert await call("VolumeDriver.Create", Name="x", Opts={"claim": "data"}) == {}
        for claim in ("missing", "elsewhere"):  # a claim of another namespace is not seen
            refused = await call("VolumeDriver.Create", Name=f"v-{claim}",
                                 Opts={"type": "pvc", "claim": claim})
            assert refused == {"Err": (
                f'persistentvolumeclaim "{claim}" not found in namespace docker-volumes, '
                "where volfs's Docker volumes find their claims: create it there first "
                "(metadata.namespace: docker-volumes)")}
        assert list(pods.pods) == [(NAMESPACE, "x")]
        assert await call("VolumeDriver.Create", Name="scratch") == {}  # not a claim: not asked

    with_plugin(tmp_path, scenario, claims=claims)
    assert claims.asked == [(NAMESPACE, "data"), (NAMESPACE, "missing"), (NAMESPACE, "elsewhere")]


def test_mounts_are_counted_persisted_and_block_remove(tmp_path: Path) -> None:
    async def first(call: Call, pods: FakePods) -> None:
        await call("VolumeDriver.Create", Name="v")
        path = (await call("VolumeDriver.Path", Name="v"))["Mountpoint"]
        assert await call("VolumeDriver.Mount", Name="v", ID="a") == {"Mountpoint": path}
        await call("VolumeDriver.Mount", Name="v", ID="b")
        await call("VolumeDriver.Mount", Name="v", ID="b")  # the same caller again
        await call("VolumeDriver.Unmount", Name="v", ID="a")

    pods = with_plugin(tmp_path, first)
    assert json.loads((tmp_path / "refs.json").read_text())["mounts"] == {"v": ["b"]}

    async def after_restart(call: Call, pods: FakePods) -> None:
        refused = await call("VolumeDriver.Remove", Name="v")
        assert refused["Err"].startswith("volume v is in use: mounted 1 time(s)")
        assert (await call("VolumeDriver.Get", Name="v"))["Volume"]["Status"]["mounts"] == 1
        await call("VolumeDriver.Unmount", Name="v", ID="b")
        await call("VolumeDriver.Unmount", Name="v", ID="unknown")  # harmless
        assert await call("VolumeDriver.Remove", Name="v") == {}
        assert pods.pods == {}
        assert await call("VolumeDriver.Remove", Name="v") == {}  # again: already gone

    with_plugin(tmp_path, after_restart, pods)  # a new MountRefs reads the file
    assert json.loads((tmp_path / "refs.json").read_text())["mounts"] == {}


def test_mounts_no_container_holds_are_forgotten_at_remove(tmp_path: Path) -> None:
    """An engine that crashed never unmounts: the engine, asked at removal, has the say."""
    errors: list[str] = []

    async def mount(call: Call, pods: FakePods) -> None:
        await call("VolumeDriver.Create", Name="v")
        await call("VolumeDriver.Mount", Name="v", ID="a")

    async def remove(call: Call, pods: FakePods) -> None:
        errors.append((await call("VolumeDriver.Remove", Name="v")).get("Err", ""))

    pods = with_plugin(tmp_path, mount)
    with_plugin(tmp_path, remove, pods, FakeEngine({"v": ["web", "db"]}))
    with_plugin(tmp_path, remove, pods, FakeEngine(None))  # unreachable: keep refusing
    assert errors == [
        "volume v is in use: mounted 1 time(s) (by web, db); unmount it first",
        "volume v is in use: mounted 1 time(s) (by containers of the engine); unmount it first",
    ]
    with_plugin(tmp_path, remove, pods, FakeEngine({}))
    assert errors[-1] == ""
    assert pods.pods == {}
    assert json.loads((tmp_path / "refs.json").read_text())["mounts"] == {}


def test_create_again(tmp_path: Path) -> None:
    async def scenario(call: Call, pods: FakePods) -> None:
        await call("VolumeDriver.Create", Name="v", Opts={"sizeLimit": "1Mi"})
        assert await call("VolumeDriver.Create", Name="v") == {}  # Docker forgot it: fine
        assert await call("VolumeDriver.Create", Name="v", Opts={"sizeLimit": "1Mi"}) == {}
        other = await call("VolumeDriver.Create", Name="v", Opts={"sizeLimit": "2Mi"})
        assert other["Err"] == "volume v already exists with other options (sizeLimit=1Mi)"

    with_plugin(tmp_path, scenario)


@pytest.mark.parametrize("body, message", [
    ({"Name": "v", "Opts": {"color": "blue"}},
     "unknown option color for a emptyDir volume (known: type, sizeLimit, medium)"),
    ({"Name": "v", "Opts": {"type": "hostPath"}}, "a hostPath volume needs --opt path=/host/dir"),
    ({"Name": "v", "Opts": {"type": "nfs"}}, "unknown volume type nfs"),
    ({"Name": "v", "Opts": {"sizeLimit": "lots"}}, "option sizeLimit: "),
    ({"Name": "v", "Opts": {"type": "hostPath", "path": "rel"}}, "option path: "),
    ({"Name": "v", "Opts": {"claim": ""}}, "a persistentVolumeClaim volume needs --opt claim"),
    ({"Opts": {}}, "Name is required"),
    ({"Name": "a/b"}, "invalid volume name 'a/b'"),
])
def test_refusals_are_one_line_errs(tmp_path: Path, body: dict[str, Any], message: str) -> None:
    async def scenario(call: Call, pods: FakePods) -> None:
        answer = await call("VolumeDriver.Create", **body)
        assert answer["Err"].startswith(message), answer
        assert "\n" not in answer["Err"]
        assert pods.pods == {}

    with_plugin(tmp_path, scenario)


def test_lifecycle_refusals_and_unknown_volumes(tmp_path: Path) -> None:
    pods = FakePods()
    pods.refuse = Invalid("Pod", "x", [("spec.volumes[0].hostPath.path",
                                        "pod x: volume x: hostPath /etc is not allowed")])

    async def scenario(call: Call, pods: FakePods) -> None:
        answer = await call("VolumeDriver.Create", Name="x", Opts={"type": "hostPath",
                                                                   "path": "/etc"})
        assert answer == {"Err": "hostPath /etc is not allowed"}
        for endpoint in ("Get", "Path", "Mount"):
            missing = await call(f"VolumeDriver.{endpoint}", Name="nope", ID="i")
            assert missing == {"Err": "no such volume: nope"}
        bad = await call("VolumeDriver.Get", raw=b"{not json")
        assert bad["Err"].startswith("the request body is not valid JSON")
        deep = await call("VolumeDriver.Create",
                          raw=b'{"Name": "v", "Opts": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        assert deep["Err"] == ("the request body is refused: nested more than 100 levels "
                               "deep (mappings and lists; at most 100)")

    with_plugin(tmp_path, scenario, pods)


def test_pod_names_for_docker_names() -> None:
    assert pod_name_for("scratch") == "scratch"
    assert pod_name_for("my-vol-1") == "my-vol-1"
    names = {pod_name_for(n) for n in ("A", "a_", "a.b", "a-b", "x" * 64, "_")}
    assert len(names) == 6  # distinct Docker names never share a pod
    for name in names:
        assert len(name) <= 63 and name == name.lower()

"""Hostile input, generated: whatever a client sends, the control API answers 2xx or a
4xx Kubernetes Status with a one-line message, and a refused create stores nothing.

The app is the daemon's own (``create_app`` over the real registry: PodManager with the
EmptyDir and HostPath plugins and claims, StorageController, a real state database) in
one temporary directory; only NFS shares and the container engine are stand-ins. It runs
in a trio thread of its own, which the hypothesis examples call into, so the state
accumulates across examples as it would in a daemon.

Nesting deeper than 50 levels is left out of every generator here: capping depth before
parsing is tested with its fix (the deep-nesting finding), not by these tests.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.direct.assembly import assembled
from volfs.api import ManifestError, load_manifests, parse_object
from volfs.runtime.base import ContainerState, PodPlan
from volfs.server.app import MAX_BODY_BYTES, create_app
from volfs.server.kinds import (
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    core_registry,
)
from volfs.server.storage import ClaimResource, ClassResource, VolumeResource

T = TypeVar("T")

PATHS = {
    "Pod": "/api/v1/namespaces/default/pods",
    "PersistentVolumeClaim": "/api/v1/namespaces/default/persistentvolumeclaims",
    "PersistentVolume": "/api/v1/persistentvolumes",
    "StorageClass": "/apis/storage.k8s.io/v1/storageclasses",
}


class QuietEngine:
    """A container engine that starts every pod and holds no containers."""

    async def start_pod(self, plan: PodPlan) -> None:
        return None

    async def remove_pod(self, uid: str, grace_seconds: float) -> int:
        return 0

    async def pod_states(self, uids: Any) -> dict[str, list[ContainerState]]:
        return {}


@dataclass
class Api:
    """The daemon's control API in a trio thread; ``call`` runs a coroutine there."""

    token: trio.lowlevel.TrioToken
    client: httpx.AsyncClient
    base: Path

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return trio.from_thread.run(fn, trio_token=self.token)

    def request(self, method: str, path: str, body: bytes = b"",
                content_type: str = "application/json") -> httpx.Response:
        async def send() -> httpx.Response:
            return await self.client.request(method, path, content=body,
                                             headers={"content-type": content_type})
        return self.call(send)

    def names(self, kind: str) -> list[str]:
        async def listed() -> httpx.Response:
            return await self.client.get(PATHS[kind])
        answer = self.call(listed)
        assert answer.status_code == 200, answer.text
        return sorted(item["metadata"]["name"] for item in answer.json()["items"])


@contextlib.contextmanager
def served_api(base: Path) -> Iterator[Api]:
    ready: queue.Queue[tuple[trio.lowlevel.TrioToken, httpx.AsyncClient] | BaseException] = (
        queue.Queue())
    stop: list[trio.Event] = []

    async def main() -> None:
        async with assembled(base, engine=QuietEngine()) as parts:
            storage, claims, pods = parts.storage, parts.claims, parts.pods
            registry = core_registry(pods, parts.state, datetime.datetime.now(datetime.UTC))
            registry.register(PERSISTENT_VOLUMES, VolumeResource(storage, claims.used_bytes))
            registry.register(PERSISTENT_VOLUME_CLAIMS,
                              ClaimResource(storage, claims.used_bytes, pods.claim_users))
            registry.register(STORAGE_CLASSES, ClassResource(storage))
            app = create_app(registry, changes=parts.state.next_change)
            async with trio.open_nursery() as nursery:
                await nursery.start(storage.run)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport,
                                             base_url="http://volfs") as client:
                    stop.append(trio.Event())
                    ready.put((trio.lowlevel.current_trio_token(), client))
                    await stop[0].wait()
                nursery.cancel_scope.cancel()
            await pods.close()

    def thread() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            ready.put(exc)

    runner = threading.Thread(target=thread, daemon=True)
    runner.start()
    started = ready.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    token, client = started
    try:
        yield Api(token, client, base)
    finally:
        trio.from_thread.run_sync(stop[0].set, trio_token=token)
        runner.join(timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with served_api(tmp_path_factory.mktemp("hostile")) as served:
        yield served


# -- what every answer must be ----------------------------------------------------------

def assert_clean(answer: httpx.Response) -> None:
    """2xx, or a 4xx Kubernetes Status whose message is one line, with no traceback."""
    assert answer.status_code < 500, answer.text[:2000]
    if answer.status_code < 400:
        return
    status = answer.json()
    assert status["kind"] == "Status" and status["status"] == "Failure", status
    assert status["code"] == answer.status_code
    message = status["message"]
    assert isinstance(message, str) and message, status
    assert "\n" not in message and "Traceback" not in message, message


def create_cleanly(api: Api, kind: str, body: bytes, content_type: str) -> None:
    """POST ``body``: a clean answer; refused, nothing of any kind is left stored;
    created, it is deleted again (so the next example starts from the same state)."""
    before = {k: api.names(k) for k in PATHS}
    answer = api.request("POST", PATHS[kind], body, content_type)
    assert_clean(answer)
    if answer.status_code >= 400:
        assert {k: api.names(k) for k in PATHS} == before, answer.text[:500]
        return
    made = answer.json()
    name = made["metadata"]["name"]
    assert name in api.names(made["kind"]) and name not in before[made["kind"]]
    gone = api.request("DELETE", f"{PATHS[made['kind']]}/{name}")
    assert gone.status_code == 200, gone.text[:500]


# -- generators ---------------------------------------------------------------------------

LOOK_ALIKES = [
    "web\u200b", "w\u0435b", "ｗｅｂ", "web\u00a0", "\u202eweb", "web\ufeff", "WEB", "Web",
    "we\u0301b", "\U0001f600", "default\u2024svc", "a\u2044b", "a\u2215b", "\u2025",
]
HOSTILE_NAMES = [
    "a/b", "/", "..", ".", "../etc", "a/../b", "a\x00b", "\x00", "x" * 254, "a" * 253 + "b",
    "", " ", "-a", "a-", "a_b", "a:b", "a%2Fb", "%2e%2e", "a\nb", "a\\b",
    "a.b.", *LOOK_ALIKES,
]
HOSTILE_PATHS = [
    "/", "..", "../..", "/../../etc", "/etc/passwd", "relative", "", "/a\x00b", "//",
    "/proc/self/root", "~", "/" + "x" * 5000, "/a/./b", "a/../../b",
]


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.sampled_from([2**63, -(2**63) - 1, 10**100]),
        st.floats(), st.text(max_size=20), st.sampled_from(HOSTILE_NAMES + HOSTILE_PATHS),
        st.sampled_from(["1Gi", "-1Gi", "1e999", "9" * 400 + "Ki", "0x10", "NaN", "1.5.5"]),
    )


def documents() -> st.SearchStrategy[Any]:
    """Random JSON-shaped values; max_leaves keeps nesting far below 50 (see above)."""
    return st.recursive(
        scalars(),
        lambda children: st.one_of(st.lists(children, max_size=4),
                                   st.dictionaries(st.text(max_size=10), children, max_size=4)),
        max_leaves=25,
    )


def template(kind: str, name: str, host: Path) -> dict[str, Any]:
    """A valid object of ``kind``, to be spoiled."""
    if kind == "Pod":
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1"],
                                "volumeMounts": [{"name": "scratch", "mountPath": "/data",
                                                  "subPath": "app"},
                                                 {"name": "host", "mountPath": "/host",
                                                  "readOnly": True}]}],
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                            {"name": "host",
                             "hostPath": {"path": str(host), "type": "Directory"}},
                            {"name": "claim", "persistentVolumeClaim": {"claimName": "c"}}],
            },
        }
    if kind == "PersistentVolumeClaim":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                         "resources": {"requests": {"storage": "1Gi"}}}}
    if kind == "PersistentVolume":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": "Retain",
                         "nfs": {"server": "127.0.0.1", "path": "/static"}}}
    return {"apiVersion": "storage.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "provisioner": "volfs.io/nfs", "reclaimPolicy": "Delete",
            "parameters": {"server": "127.0.0.1", "share": "/share",
                           "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}"}}


def places(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in ``doc`` (the document itself is ``()``)."""
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from places(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from places(value, (*path, index))


def spoil(doc: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> None:
    """Replace, delete or add beside the value at ``path``."""
    *parents, last = path
    holder: Any = doc
    for part in parents:
        holder = holder[part]
    if how == "delete" and isinstance(holder, dict):
        del holder[last]
    elif how == "add" and isinstance(holder[last], dict):
        holder[last]["x" + str(value)[:20]] = value
    elif how == "add" and isinstance(holder[last], list):
        holder[last].append(value)
    else:
        holder[last] = value


@st.composite
def spoilt_objects(draw: st.DrawFn, host: Path) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(PATHS)))
    name = draw(st.one_of(st.sampled_from(HOSTILE_NAMES),
                          st.from_regex(r"\A[a-z][a-z0-9-]{0,8}\Z")))
    doc = template(kind, name, host)
    for _ in range(draw(st.integers(0, 3))):
        candidates = [p for p in places(doc) if p]
        path = draw(st.sampled_from(candidates))
        value = draw(st.one_of(scalars(), documents(), st.sampled_from(HOSTILE_PATHS)))
        spoil(doc, path, draw(st.sampled_from(["replace", "delete", "add"])), value)
    return kind, doc


def encoded(doc: Any, how: str) -> tuple[bytes, str]:
    if how == "yaml":
        return yaml.safe_dump(doc, allow_unicode=True).encode(), "application/yaml"
    return json.dumps(doc, ensure_ascii=how == "ascii").encode(), "application/json"


HYPOTHESIS = settings(max_examples=200, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.function_scoped_fixture])


# -- the API ------------------------------------------------------------------------------

@HYPOTHESIS
@given(data=st.data())
def test_spoilt_objects_get_a_clean_answer_and_leave_nothing_when_refused(
        api: Api, data: st.DataObject) -> None:
    kind, doc = data.draw(spoilt_objects(api.base / "host"))
    body, content_type = encoded(doc, data.draw(st.sampled_from(["json", "ascii", "yaml"])))
    create_cleanly(api, kind, body, content_type)


@HYPOTHESIS
@given(kind=st.sampled_from(sorted(PATHS)), doc=documents(),
       how=st.sampled_from(["json", "ascii", "yaml"]))
def test_random_documents_get_a_clean_answer(api: Api, kind: str, doc: Any, how: str) -> None:
    create_cleanly(api, kind, *encoded(doc, how))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(PATHS)), body=st.binary(max_size=300) | st.text().map(
    str.encode), content_type=st.sampled_from(
    ["application/json", "application/yaml", "text/plain", "", "application/json; charset=x"]))
def test_random_bytes_get_a_clean_answer(api: Api, kind: str, body: bytes,
                                         content_type: str) -> None:
    create_cleanly(api, kind, body, content_type)


@pytest.mark.parametrize("body", [
    b"\x00" * 10, b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a\\u0000b"}}',
    b'{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": NaN}}',
    b'{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x", "annotations": '
    b'{"a": Infinity}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}',
    b'{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}, "spec": {"containers": '
    b'[{"name": "a", "image": "b"}], "terminationGracePeriodSeconds": 1e400}}',
    b'\xff\xfe{"kind": "Pod"}', b'{"kind": "Pod"' + b" " * 1000, b"[]", b"null", b'"Pod"',
])
def test_odd_json_gets_a_clean_answer(api: Api, body: bytes) -> None:
    create_cleanly(api, "Pod", body, "application/json")


@pytest.mark.parametrize("yaml_text", [
    "a: &a [*a]\nkind: Pod\napiVersion: v1\n",  # a list that holds itself
    "apiVersion: v1\nkind: Pod\nmetadata: &m {name: web, labels: *m}\n",
    # a billion laughs: aliases of aliases (nine levels: far below the nesting cap)
    "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, "
        f"*a{i-1}, *a{i-1}, *a{i-1}]\n" for i in range(1, 9)) + "kind: Pod\napiVersion: v1\n",
    "!!python/object/apply:os.system ['true']\n", "kind: !!binary aGVsbG8=\napiVersion: v1\n",
    "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n---\nkind: Pod\n",
    "? [a, b]\n: c\nkind: Pod\napiVersion: v1\n",
])
def test_hostile_yaml_gets_a_clean_answer(api: Api, yaml_text: str) -> None:
    create_cleanly(api, "Pod", yaml_text.encode(), "application/yaml")


@pytest.mark.parametrize("kind", sorted(PATHS))
@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "a" * 1_000_000])
def test_hostile_names_are_refused_and_nothing_is_stored(api: Api, kind: str,
                                                         name: str) -> None:
    before = {k: api.names(k) for k in PATHS}
    answer = api.request("POST", PATHS[kind], *encoded(template(kind, name, api.base / "host"),
                                                       "json"))
    assert_clean(answer)
    assert answer.status_code in (400, 422), answer.text[:300]
    assert len(answer.json()["message"]) < 2000  # a long name is shown shortened
    assert {k: api.names(k) for k in PATHS} == before


@pytest.mark.parametrize("size", [MAX_BODY_BYTES - 4096, MAX_BODY_BYTES + 1, 10 * 1024 * 1024])
def test_bodies_near_and_over_the_size_cap(api: Api, size: int) -> None:
    pod = template("Pod", "big", api.base / "host")
    pod["metadata"]["annotations"]["big"] = ""
    padding = size - len(json.dumps(pod).encode())
    pod["metadata"]["annotations"]["big"] = "x" * padding
    body = json.dumps(pod).encode()
    assert len(body) == size
    before = api.names("Pod")
    answer = api.request("POST", PATHS["Pod"], body)
    assert_clean(answer)
    if size > MAX_BODY_BYTES:
        assert answer.status_code == 413, answer.text[:300]
    if answer.status_code >= 400:
        assert api.names("Pod") == before
    else:
        assert api.request("DELETE", f"{PATHS['Pod']}/big").status_code == 200


# -- the manifest parser, as `volfs apply -f` calls it -------------------------------------

def assert_one_line(err: ManifestError) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text, text


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(max_size=200) | documents().map(
    lambda d: yaml.safe_dump(d, allow_unicode=True)))
def test_random_yaml_is_parsed_or_refused_in_one_line(text: str) -> None:
    try:
        load_manifests(text, "m.yaml")
    except ManifestError as err:
        assert_one_line(err)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_spoilt_documents_are_parsed_or_refused_in_one_line(data: st.DataObject) -> None:
    _, doc = data.draw(spoilt_objects(Path("/srv")))
    try:
        parse_object(doc, "m.yaml")
    except ManifestError as err:
        assert_one_line(err)
    try:
        load_manifests(yaml.safe_dump(doc, allow_unicode=True), "m.yaml")
    except ManifestError as err:
        assert_one_line(err)


def test_special_floats_in_a_document_are_refused_or_kept_finite() -> None:
    for value in (math.nan, math.inf, -math.inf):
        doc = template("Pod", "web", Path("/srv"))
        doc["spec"]["terminationGracePeriodSeconds"] = value
        with pytest.raises(ManifestError) as raised:
            parse_object(doc, "m.yaml")
        assert_one_line(raised.value)


@pytest.mark.parametrize("spoil_it", [
    lambda d: d.update(apiVersion="v1\n"), lambda d: d.update(kind="Pod\r\nX: y"),
    lambda d: d["metadata"].update({"x\n": "y"}), lambda d: d["spec"].update({"\x00": 1}),
    lambda d: d["metadata"].update(name="a\u2028b"),
])
def test_what_a_document_held_stays_on_one_line_in_the_error(
        api: Api, spoil_it: Callable[[dict[str, Any]], None]) -> None:
    doc = template("Pod", "web", Path("/srv"))
    spoil_it(doc)
    with pytest.raises(ManifestError) as raised:
        parse_object(doc, "m.yaml")
    assert_one_line(raised.value)
    create_cleanly(api, "Pod", *encoded(doc, "json"))

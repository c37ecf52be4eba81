"""Docker's volume-plugin protocol, each Docker volume backed by a volfs pod.

Docker finds the plugin by its socket, ``/run/docker/plugins/<name>.sock``, and
POSTs JSON to it (``/Plugin.Activate``, ``/VolumeDriver.Create``, ``.Remove``,
``.Mount``, ``.Unmount``, ``.Path``, ``.Get``, ``.List``, ``.Capabilities``);
every answer is JSON, a refusal ``{"Err": "one line"}`` with status 500.

A Docker volume is a pod in namespace ``docker-volumes`` with one volume, made by
the same lifecycle as every other pod, so set-up, tear-down, sizeLimit, usage and
restart survival are the ones pods have::

    docker volume create -d volfs --opt type=emptyDir --opt sizeLimit=64Mi scratch
    docker volume create -d volfs --opt type=hostPath --opt path=/srv/x logs
    docker volume create -d volfs --opt claim=data shared

The pod is named after the volume (lower-cased, with a hash suffix when Docker's
name is not a valid pod name) and annotated with the Docker name and options. A
claim volume uses a claim of that namespace (a pod sees only its own namespace's
claims); ``Create`` refuses one whose claim does not exist there.
``Mount``/``Unmount`` count references by the caller's mount ID, persisted in the
state dir, so a restart of either daemon keeps them; ``Remove`` of a volume with
references is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from volfs.api import ManifestError, Pod, parse_pod
from volfs.api.errors import Invalid, NotFound, RequestError
from volfs.api.manifests import TooDeep, decode_json
from volfs.lifecycle.recovery import DOCKER_VOLUME_ANNOTATION as VOLUME_ANNOTATION
from volfs.lifecycle.recovery import DOCKER_VOLUMES as NAMESPACE
from volfs.lifecycle.service import DeleteResult
from volfs.logs import unexpected
from volfs.runtime.base import RuntimeFailed, RuntimeUnavailable

log = logging.getLogger("volfs.server.docker")

OPTIONS_ANNOTATION = "volfs.io/docker-volume-options"
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
REFS_FILE = "docker-volume-mounts.json"

_KINDS = {"emptydir": "emptyDir", "hostpath": "hostPath",
          "persistentvolumeclaim": "persistentVolumeClaim", "pvc": "persistentVolumeClaim"}
_OPTIONS = {
    "emptyDir": ("type", "sizeLimit", "medium"),
    "hostPath": ("type", "path", "hostPathType"),
    "persistentVolumeClaim": ("type", "claim"),
}
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class VolumePods(Protocol):
    """The part of the lifecycle's PodService the plugin uses."""

    async def create_pod(self, pod: Pod) -> dict[str, Any]: ...
    async def delete_pod(self, namespace: str, name: str) -> DeleteResult: ...
    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def list_pods(self, namespace: str | None) -> list[dict[str, Any]]: ...


class VolumeUsers(Protocol):
    """The engine, asked which of its containers use a volume (DockerRuntime)."""

    async def volume_users(self, volume: str) -> list[str]: ...


class VolumeClaims(Protocol):
    """The claims a claim volume names (the storage controller); raises NotFound."""

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any]: ...


class PluginError(Exception):
    """A request the plugin refuses; ``str()`` is the one-line ``Err`` Docker shows."""


def pod_name_for(volume: str) -> str:
    """The pod (and its volume's) name for a Docker volume name.

    A name that is already a DNS-1123 label is kept; any other gets a readable
    part and a hash of the original, so distinct Docker names never share a pod.

    >>> pod_name_for("scratch"), pod_name_for("My_Data")
    ('scratch', 'my-data-4fea2b63')
    """
    if len(volume) <= 63 and _LABEL.fullmatch(volume):
        return volume
    readable = re.sub(r"[^a-z0-9-]+", "-", volume.lower()).strip("-")[:50].rstrip("-")
    digest = hashlib.sha256(volume.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else f"v-{digest}"


class MountRefs:
    """Who has each Docker volume mounted: mount IDs by volume name, kept in a file.

    Every change is written (atomically, fsync'ed) before it is acknowledged.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._refs: dict[str, list[str]] = _load_refs(path)

    def ids(self, volume: str) -> list[str]:
        return list(self._refs.get(volume, []))

    async def add(self, volume: str, mount_id: str) -> None:
        ids = self._refs.setdefault(volume, [])
        if mount_id not in ids:
            ids.append(mount_id)
            await self._save()

    async def remove(self, volume: str, mount_id: str) -> None:
        ids = self._refs.get(volume, [])
        if mount_id in ids:
            ids.remove(mount_id)
            if not ids:
                del self._refs[volume]
            await self._save()

    async def forget(self, volume: str) -> None:
        if self._refs.pop(volume, None) is not None:
            await self._save()

    async def _save(self) -> None:
        data = json.dumps({"version": 1, "mounts": self._refs}, sort_keys=True, indent=1)
        await trio.to_thread.run_sync(_write_atomically, self.path, data)


class DockerVolumes:
    """The plugin's operations on volfs pods; one at a time.

    Example::

        volumes = DockerVolumes(pod_manager, MountRefs(state_dir / REFS_FILE))
        path = await volumes.mount("scratch", "3f1e...")
    """

    def __init__(self, pods: VolumePods, refs: MountRefs,
                 engine: VolumeUsers | None = None, claims: VolumeClaims | None = None) -> None:
        self._pods = pods
        self._refs = refs
        self._engine = engine
        self._claims = claims
        self._lock = trio.Lock()

    async def create(self, name: str, options: dict[str, str]) -> None:
        _check_name(name)
        async with self._lock:
            existing = await self._find(name)
            if existing is not None:
                stored = _options(existing)
                if options and options != stored:
                    raise PluginError(f"volume {name} already exists with other options "
                                      f"({_format_options(stored)})")
                return  # Docker asks again for a volume it forgot, without options
            pod = volume_pod(name, options)
            await self._check_claim(options)
            try:
                await self._pods.create_pod(pod)
            except RequestError as exc:
                raise PluginError(_lifecycle_message(exc, pod_name_for(name))) from exc
            log.info("docker volume %s created (%s)", name, _format_options(options))

    async def _check_claim(self, options: dict[str, str]) -> None:
        """Refuse a claim volume whose claim does not exist (yet) in NAMESPACE: a pod
        may use only the claims of its own namespace, and Docker would otherwise
        learn of the missing claim at ``docker run`` only. A claim that exists but is
        not bound yet is fine: its volume waits, and Mount says what for."""
        if self._claims is None or _kind(options) != "persistentVolumeClaim":
            return
        claim = options["claim"]
        try:
            await self._claims.get_claim(NAMESPACE, claim)
        except NotFound:
            raise PluginError(
                f'persistentvolumeclaim "{claim}" not found in namespace {NAMESPACE}, where '
                f"volfs's Docker volumes find their claims: create it there first "
                f"(metadata.namespace: {NAMESPACE})") from None

    async def remove(self, name: str) -> None:
        async with self._lock:
            mounts = self._refs.ids(name)
            if mounts:
                await self._refuse_unless_stale(name, len(mounts))
            if await self._find(name) is not None:
                with contextlib.suppress(NotFound):  # removed meanwhile: as good
                    await self._pods.delete_pod(NAMESPACE, pod_name_for(name))
                log.info("docker volume %s removed", name)
            await self._refs.forget(name)

    async def _refuse_unless_stale(self, name: str, mounts: int) -> None:
        """Refuse to remove a mounted volume, unless the engine says that none of its
        containers uses it: then the mounts are stale (an engine that crashed never
        unmounts) and are forgotten, or the volume could never be removed."""
        containers: list[str] | None = None
        if self._engine is not None:
            try:
                containers = await self._engine.volume_users(name)
            except (RuntimeUnavailable, RuntimeFailed) as exc:
                log.warning("docker volume %s: cannot ask the engine who uses it: %s", name, exc)
        if containers == []:
            log.warning("docker volume %s: forgetting %d mount(s) no container of the engine "
                        "holds (the engine went away without unmounting)", name, mounts)
            await self._refs.forget(name)
            return
        by = f"by {', '.join(containers)}" if containers else "by containers of the engine"
        raise PluginError(f"volume {name} is in use: mounted {mounts} time(s) ({by}); "
                          "unmount it first")

    async def mount(self, name: str, mount_id: str) -> str:
        async with self._lock:
            pod = await self._existing(name)
            waiting = _waiting_for(pod)
            if waiting:  # a claim not bound yet: nothing to bind-mount
                raise PluginError(f"volume {name} is not ready: {waiting}")
            path = _mountpoint(pod)
            await self._refs.add(name, mount_id)
            return path

    async def unmount(self, name: str, mount_id: str) -> None:
        async with self._lock:
            await self._refs.remove(name, mount_id)

    async def path(self, name: str) -> str:
        return _mountpoint(await self._existing(name))

    async def get(self, name: str) -> dict[str, Any]:
        return self._describe(await self._existing(name))

    async def list(self) -> list[dict[str, Any]]:
        pods = await self._pods.list_pods(NAMESPACE)
        return [{"Name": _volume_name(pod), "Mountpoint": _mountpoint(pod)}
                for pod in pods if _volume_name(pod)]

    async def _existing(self, name: str) -> dict[str, Any]:
        pod = await self._find(name)
        if pod is None:
            raise PluginError(f"no such volume: {name}")
        return pod

    async def _find(self, name: str) -> dict[str, Any] | None:
        """The pod backing Docker volume ``name``, or None."""
        try:
            pod = await self._pods.get_pod(NAMESPACE, pod_name_for(name))
        except NotFound:
            return None
        if _volume_name(pod) != name:
            raise PluginError(f"volume {name}: its pod {NAMESPACE}/{pod_name_for(name)} "
                              f"belongs to volume {_volume_name(pod) or '(none)'}")
        return pod

    def _describe(self, pod: dict[str, Any]) -> dict[str, Any]:
        name = _volume_name(pod)
        volume = _volume_status(pod)
        status: dict[str, Any] = {
            "pod": f"{NAMESPACE}/{pod['metadata']['name']}",
            "podUID": pod["metadata"]["uid"],
            "kind": volume.get("kind"),
            "mounts": len(self._refs.ids(name)),
            "options": _options(pod),
        }
        for key in ("sizeLimitBytes", "usedBytes", "medium", "readOnly"):
            if volume.get(key) is not None:
                status[key] = volume[key]
        return {"Name": name, "Mountpoint": _mountpoint(pod),
                "CreatedAt": pod["metadata"].get("creationTimestamp", ""), "Status": status}


def volume_pod(name: str, options: dict[str, str]) -> Pod:
    """The pod that backs Docker volume ``name`` made with ``options``.

    Raises:
        PluginError: an unknown option, or one with a value volfs refuses.
    """
    pod_name = pod_name_for(name)
    kind = _kind(options)
    unknown = sorted(set(options) - set(_OPTIONS[kind]))
    if unknown:
        raise PluginError(f"unknown option {unknown[0]} for a {kind} volume "
                          f"(known: {', '.join(_OPTIONS[kind])})")
    source: dict[str, Any]
    if kind == "emptyDir":
        source = {k: options[k] for k in ("sizeLimit", "medium") if k in options}
    elif kind == "hostPath":
        if not options.get("path"):
            raise PluginError("a hostPath volume needs --opt path=/host/dir")
        source = {"path": options["path"]}
        if "hostPathType" in options:
            source["type"] = options["hostPathType"]
    else:
        if not options.get("claim"):
            raise PluginError("a persistentVolumeClaim volume needs --opt claim=NAME")
        source = {"claimName": options["claim"]}
    doc = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name, "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "docker"},
            "annotations": {VOLUME_ANNOTATION: name,
                            OPTIONS_ANNOTATION: json.dumps(options, sort_keys=True)},
        },
        "spec": {
            "containers": [{"name": "docker", "image": "docker-volume",
                            "volumeMounts": [{"name": pod_name, "mountPath": "/volume"}]}],
            "volumes": [{"name": pod_name, kind: source}],
        },
    }
    try:
        return parse_pod(doc, None)
    except ManifestError as exc:
        field, message = exc.causes[0] if exc.causes else ("", str(exc))
        option = str(field).rsplit(".", 1)[-1]
        option = {"claimName": "claim", "type": "hostPathType"}.get(option, option)
        raise PluginError(f"option {option}: {message}" if field else str(message)) from exc


def _kind(options: dict[str, str]) -> str:
    given = options.get("type")
    if given is None:
        return "persistentVolumeClaim" if "claim" in options else "emptyDir"
    kind = _KINDS.get(given.lower())
    if kind is None:
        raise PluginError(f"unknown volume type {given} (known: emptyDir, hostPath, "
                          "persistentVolumeClaim)")
    return kind


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise PluginError(f"invalid volume name {name!r}")


def _volume_name(pod: dict[str, Any]) -> str:
    return str(((pod.get("metadata") or {}).get("annotations") or {})
               .get(VOLUME_ANNOTATION, ""))


def _options(pod: dict[str, Any]) -> dict[str, str]:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(OPTIONS_ANNOTATION)
    try:
        options = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return options if isinstance(options, dict) else {}


def _volume_status(pod: dict[str, Any]) -> dict[str, Any]:
    volumes = (pod.get("status") or {}).get("volumes") or []
    return volumes[0] if volumes and isinstance(volumes[0], dict) else {}


def _waiting_for(pod: dict[str, Any]) -> str:
    """What a Pending volume pod waits for (its claim), or ""."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "VolumesReady" and condition.get("status") == "False":
            return str(condition.get("message") or "waiting")
    return ""


def _mountpoint(pod: dict[str, Any]) -> str:
    return str(_volume_status(pod).get("path") or "")


def _format_options(options: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "no options"


def _lifecycle_message(exc: RequestError, pod_name: str) -> str:
    """The lifecycle's refusal without the pod's field paths and names, which Docker
    users never wrote."""
    if not isinstance(exc, Invalid):
        return str(exc)
    ours = f"pod {pod_name}: volume {pod_name}: "
    return "; ".join(m.removeprefix(ours) for _, m in exc.causes)


def _load_refs(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        log.error("%s unreadable (%s): starting with no docker volume mounts", path, exc)
        return {}
    mounts = data.get("mounts") if isinstance(data, dict) else None
    if not isinstance(mounts, dict):
        return {}
    return {str(k): [str(i) for i in v] for k, v in mounts.items()
            if isinstance(v, list) and v}


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(staging, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -- the protocol ------------------------------------------------------------------------

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def create_plugin_app(volumes: DockerVolumes) -> ASGIApp:
    """The volume plugin's ASGI app: Docker's endpoints over ``volumes``.

    Example::

        app = create_plugin_app(DockerVolumes(pods, MountRefs(state_dir / REFS_FILE)))
        await serve_unix(app, Path("/run/docker/plugins/volfs.sock"))
    """

    async def activate(body: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": ["VolumeDriver"]}

    async def capabilities(body: dict[str, Any]) -> dict[str, Any]:
        return {"Capabilities": {"Scope": "local"}}

    async def create(body: dict[str, Any]) -> dict[str, Any]:
        options = body.get("Opts") or {}
        if not isinstance(options, dict):
            raise PluginError("Opts must be a mapping")
        await volumes.create(_name(body), {str(k): str(v) for k, v in options.items()})
        return {}

    async def remove(body: dict[str, Any]) -> dict[str, Any]:
        await volumes.remove(_name(body))
        return {}

    async def mount(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": await volumes.mount(_name(body), _mount_id(body))}

    async def unmount(body: dict[str, Any]) -> dict[str, Any]:
        await volumes.unmount(_name(body), _mount_id(body))
        return {}

    async def path(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": await volumes.path(_name(body))}

    async def get(body: dict[str, Any]) -> dict[str, Any]:
        return {"Volume": await volumes.get(_name(body))}

    async def list_volumes(body: dict[str, Any]) -> dict[str, Any]:
        return {"Volumes": await volumes.list()}

    endpoints: dict[str, Handler] = {
        "/Plugin.Activate": activate,
        "/VolumeDriver.Capabilities": capabilities,
        "/VolumeDriver.Create": create,
        "/VolumeDriver.Remove": remove,
        "/VolumeDriver.Mount": mount,
        "/VolumeDriver.Unmount": unmount,
        "/VolumeDriver.Path": path,
        "/VolumeDriver.Get": get,
        "/VolumeDriver.List": list_volumes,
    }
    routes = [Route(route, _endpoint(handler), methods=["POST"])
              for route, handler in endpoints.items()]
    return Starlette(routes=routes)


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route answering ``handler``'s dict, or ``{"Err": ...}`` for any failure."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            raw = await request.body()
            body = decode_json(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise PluginError("the request body must be a JSON object")
            return _answer(await handler(body))
        except PluginError as exc:
            return _answer({"Err": str(exc)}, 500)
        except TooDeep as exc:
            return _answer({"Err": f"the request body is refused: {exc}"}, 400)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _answer({"Err": f"the request body is not valid JSON: {exc}"}, 400)
        except Exception as exc:  # a bug: its traceback once, a 500 every time
            unexpected(log, "%s failed", request.url.path)
            return _answer({"Err": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    return endpoint


def _answer(content: dict[str, Any], status_code: int = 200) -> Response:
    return JSONResponse(content, status_code=status_code, media_type=CONTENT_TYPE)


def _name(body: dict[str, Any]) -> str:
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise PluginError("Name is required")
    return name


def _mount_id(body: dict[str, Any]) -> str:
    mount_id = body.get("ID")
    return mount_id if isinstance(mount_id, str) and mount_id else "-"

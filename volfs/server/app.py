"""The control API: a slice of the Kubernetes REST API, served over a unix socket.

Paths and payloads are the API server's, so anything that speaks Kubernetes
(the volfs CLI today, ``kubectl`` later) can drive the daemon:

    GET    /api/v1/pods                                 PodList, all namespaces
    GET    /api/v1/namespaces/{namespace}/pods          PodList
    POST   /api/v1/namespaces/{namespace}/pods          201 + the created Pod
    GET    /api/v1/namespaces/{namespace}/pods/{name}   the Pod
    DELETE /api/v1/namespaces/{namespace}/pods/{name}   200 + the deleted Pod
    GET    /version, /api, /apis, /api/v1, /healthz     discovery and liveness

Every refusal is a Kubernetes ``Status`` (see ``status.py``); an unexpected
exception in a handler is logged in one line and answered with a 500 Status,
never allowed to reach the HTTP server.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

import volfs
from volfs.api import ManifestError, parse_object
from volfs.lifecycle.errors import LifecycleError
from volfs.server import status as st

if TYPE_CHECKING:
    from volfs.lifecycle.service import PodService

log = logging.getLogger("volfs.server")

KUBERNETES_MAJOR, KUBERNETES_MINOR = "1", "30"
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own limit for one object

POD_RESOURCE: dict[str, Any] = {
    "name": "pods",
    "singularName": "pod",
    "namespaced": True,
    "kind": "Pod",
    "verbs": ["create", "delete", "get", "list"],
    "shortNames": ["po"],
}

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}

Handler = Callable[[Request], Awaitable[Response]]


def create_app(pods: PodService) -> ASGIApp:
    """The control API's ASGI app, answering from ``pods``.

    Example::

        app = create_app(service)
        await serve_unix(app, Path("/var/lib/volfs-state/volfs.sock"))
    """

    @_answers_with_status
    async def list_all(request: Request) -> Response:
        return _json(_pod_list(await pods.list_pods(None)))

    @_answers_with_status
    async def list_namespaced(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        return _json(_pod_list(await pods.list_pods(namespace)))

    @_answers_with_status
    async def create(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        body = await _json_body(request)
        name = _body_name(body)
        try:
            parsed = parse_object(_with_namespace(body, namespace), None)
        except ManifestError as exc:
            raise st.StatusError(st.manifest_invalid(exc, name)) from exc
        if len(parsed) != 1:
            raise st.StatusError(
                st.bad_request(f"expected one Pod in the request body, got {len(parsed)}")
            )
        created = await pods.create_pod(parsed[0])
        return _json(_as_pod(created), status_code=201)

    @_answers_with_status
    async def get(request: Request) -> Response:
        params = request.path_params
        return _json(_as_pod(await pods.get_pod(params["namespace"], params["name"])))

    @_answers_with_status
    async def delete(request: Request) -> Response:
        params = request.path_params
        result = await pods.delete_pod(params["namespace"], params["name"])
        response = _json(_as_pod(result.object))
        for text in result.warnings:
            response.raw_headers.append((b"warning", _warning_header(text)))
        return response

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/version", _version, methods=["GET"]),
        Route("/api", _api_versions, methods=["GET"]),
        Route("/apis", _api_groups, methods=["GET"]),
        Route("/api/v1", _api_resources, methods=["GET"]),
        Route("/api/v1/pods", list_all, methods=["GET"]),
        Route("/api/v1/namespaces/{namespace}/pods", list_namespaced, methods=["GET"]),
        Route("/api/v1/namespaces/{namespace}/pods", create, methods=["POST"]),
        Route("/api/v1/namespaces/{namespace}/pods/{name}", get, methods=["GET"]),
        Route("/api/v1/namespaces/{namespace}/pods/{name}", delete, methods=["DELETE"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception},
        max_body_size=MAX_BODY_BYTES,
    )


def _answers_with_status(handler: Handler) -> Handler:
    """Turn every exception ``handler`` raises into a Status response."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except st.StatusError as exc:
            return _status_response(exc.status)
        except HTTPException:
            raise  # Starlette's own (body too large): _http_exception answers it
        except (LifecycleError, ManifestError) as exc:
            answer = st.from_exception(exc)
            if answer is None:  # a LifecycleError subclass this layer does not know yet
                answer = st.internal_error(str(exc))
            return _status_response(answer)
        except Exception as exc:
            log.error(
                "%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc
            )
            log.debug("traceback of the failure above", exc_info=True)
            return _status_response(
                st.internal_error(f"internal error: {type(exc).__name__}: {exc}")
            )

    return wrapper


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise st.StatusError(st.bad_request(f"the request body is not valid JSON: {exc}")) from exc
    if not isinstance(body, dict):
        raise st.StatusError(st.bad_request("the request body must be a JSON object"))
    return body


def _body_name(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def _with_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``body`` with the path's namespace filled in; a different one is a 400.

    A ``metadata`` that is not an object is left for the parser to report.
    """
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return body
    given = metadata.get("namespace")
    if given in (None, ""):
        return {**body, "metadata": {**metadata, "namespace": namespace}}
    if given != namespace:
        raise st.StatusError(
            st.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                f"the request ({given!r} in the object, {namespace!r} in the path)"
            )
        )
    return body


def _as_pod(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", **obj}


def _pod_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": _list_resource_version(items)},
        "items": [_as_pod(item) for item in items],
    }


def _list_resource_version(items: list[dict[str, Any]]) -> str:
    """The newest ``metadata.resourceVersion`` among ``items`` ("0" for none).

    Kubernetes resource versions are opaque strings; volfs's are counters, so the
    largest numeric one names the newest state the list reflects.
    """
    newest = 0
    for item in items:
        version = item.get("metadata", {}).get("resourceVersion")
        if isinstance(version, str) and version.isdigit():
            newest = max(newest, int(version))
        elif isinstance(version, int):
            newest = max(newest, version)
    return str(newest)


def _warning_header(text: str) -> bytes:
    """An RFC 7234 warning as the API server sends it: ``299 - "text"``.

    Control characters become spaces (a header is one line); quotes and
    backslashes are escaped; the text goes out as UTF-8.
    """
    flat = "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)
    quoted = flat.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{quoted}"'.encode()


def _json(obj: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(obj, status_code=status_code)


def _status_response(status: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(status, status_code=status["code"], headers=headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method, body too large) as Statuses."""
    assert isinstance(exc, HTTPException)
    reason = {
        404: "NotFound",
        405: "MethodNotAllowed",
        413: "RequestEntityTooLarge",
    }.get(exc.status_code, "BadRequest")
    message = {
        404: "the server could not find the requested resource",
        405: f"the server does not allow this method on the requested resource "
        f"({request.method} {request.url.path})",
    }.get(exc.status_code, exc.detail)
    answer = st.status(reason, message, code=exc.status_code)
    return _status_response(answer, headers=dict(exc.headers or {}))


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _version(request: Request) -> Response:
    return _json(
        {
            "major": KUBERNETES_MAJOR,
            "minor": KUBERNETES_MINOR,
            "gitVersion": f"v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0-volfs.{volfs.__version__}",
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": "",
            "compiler": "",
            "platform": f"linux/{_GOARCH.get(platform.machine(), platform.machine())}",
        }
    )


async def _api_versions(request: Request) -> Response:
    return _json(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }
    )


async def _api_groups(request: Request) -> Response:
    return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})


async def _api_resources(request: Request) -> Response:
    return _json(
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "v1",
            "resources": [POD_RESOURCE],
        }
    )

"""The control API: a faithful subset of the Kubernetes REST API, for volfs and kubectl.

Every kind in the resource registry (``volfs.server.resources``) is served by the same
handlers, at the API server's paths::

    GET    /api/v1/{resource}                                  list (every namespace)
    GET    /api/v1/namespaces/{ns}/{resource}                  list     (labelSelector,
    POST   /api/v1/namespaces/{ns}/{resource}                  create    fieldSelector)
    GET    /api/v1/namespaces/{ns}/{resource}/{name}           get
    PUT    /api/v1/namespaces/{ns}/{resource}/{name}           update (replace)
    PATCH  /api/v1/namespaces/{ns}/{resource}/{name}           strategic merge, merge, JSON patch
    DELETE /api/v1/namespaces/{ns}/{resource}/{name}           delete
    .../api/v1/{resource}/{name}                               the same, cluster-scoped kinds
    /apis/{group}/{version}/...                                the same, named groups

    GET    /version, /api, /apis, /api/v1, /apis/{group}[/{version}]   discovery
    GET    /healthz, /livez, /readyz                                   liveness
    GET    /volfs/v1/kubeconfig        a kubeconfig for the TCP listener (unix socket only)

``get`` and ``list`` answer with a ``meta.k8s.io`` Table when the Accept header asks
for one (as ``kubectl get`` does). Every refusal is a Kubernetes ``Status`` (see
``status.py``); an unexpected exception in a handler is logged in one line and
answered with a 500 Status, never allowed to reach the HTTP server. ``?watch=1`` on a
list streams its changes (``watch.py``). A kind with replicas also serves its ``scale``
subresource (``.../{name}/scale``, an ``autoscaling/v1`` Scale: ``kubectl scale``), and a
delete honours ``propagationPolicy`` where the kind owns others. Not served:
deletecollection, other subresources,
dry runs, server-side apply (415), OpenAPI v3 and schemas (``/openapi/v2`` describes no
kind; see ``discovery.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio
import yaml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from volfs.api import ManifestError
from volfs.api.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    NoSpace,
    NotFound,
    RequestError,
    SetupFailed,
)
from volfs.api.manifests import TooDeep, decode_json, decode_yaml
from volfs.lifecycle.service import DeleteResult, PodService
from volfs.logs import unexpected
from volfs.server import discovery
from volfs.server import status as st
from volfs.server.kinds import core_registry
from volfs.server.media import FastJSONResponse, Media, negotiate
from volfs.server.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from volfs.server.resources import (
    GracefulService,
    PropagatingService,
    Registered,
    Resource,
    ResourceRegistry,
)
from volfs.server.selectors import (
    SelectorError,
    field_matcher,
    parse_field_selector,
    parse_label_selector,
)
from volfs.server.tables import table
from volfs.server.watch import DEFAULT_TIMEOUT_SECONDS, OpenWatches, version_of, watch

log = logging.getLogger("volfs.server")

MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own limit for one object
# A PATCH that loses a race with another write is applied again to the new object.
PATCH_ATTEMPTS = 5
KUBECONFIG_PATH = "/volfs/v1/kubeconfig"

_PATCH_TYPES = {
    "application/strategic-merge-patch+json": "strategic",
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
}
_GENERATED_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName

Handler = Callable[[Request], Awaitable[Response]]
Object = dict[str, Any]


def create_app(
    resources: ResourceRegistry | PodService,
    *,
    kubeconfig: Callable[[], Object | None] | None = None,
    changes: Callable[[], trio.Event] | None = None,
    watches: OpenWatches | None = None,
) -> ASGIApp:
    """The control API's ASGI app, serving every kind in ``resources``.

    ``resources`` may also be a bare PodService, served as pods and namespaces.
    ``kubeconfig`` answers ``GET /volfs/v1/kubeconfig`` (a kubeconfig for the TCP
    listener, or None when there is none); leave it out on apps anyone but root can reach.
    ``changes`` gives the event the next committed write sets (``AsyncStateDB.next_change``):
    watches list again when it fires (without it, every few seconds). ``watches``
    keeps the open watch streams, for ``close()`` to end them when the daemon stops.

    Example::

        registry = core_registry(pods, db)
        registry.register(STORAGE_CLASSES, classes)
        await serve_unix(create_app(registry), Path("/var/lib/volfs-state/volfs.sock"))
    """
    registry = (resources if isinstance(resources, ResourceRegistry)
                else core_registry(resources))
    next_change = changes or trio.Event  # an event nobody sets: watches just list again
    routes = [*_health_routes(), *_discovery_routes(registry),
              *_resource_routes(registry, next_change, watches or OpenWatches()),
              _kubeconfig_route(kubeconfig)]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception},
    )


def _health_routes() -> list[Route]:
    """What probes and kubectl ask before anything else."""
    return [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/livez", _healthz, methods=["GET"]),
        Route("/readyz", _healthz, methods=["GET"]),
        Route("/version", _version, methods=["GET"]),
        Route("/openapi/v2", _openapi_v2, methods=["GET"]),
    ]


def _discovery_routes(registry: ResourceRegistry) -> list[Route]:
    """The API server's discovery documents: which groups, versions and kinds exist."""

    def answer(found: Object | None) -> Response:
        if found is None:
            raise st.StatusError(_no_such_path())
        return _json(found)

    @_answers_with_status
    async def versions(request: Request) -> Response:
        _plain(request)
        return _json(discovery.api_versions(registry))

    @_answers_with_status
    async def groups(request: Request) -> Response:
        _plain(request)
        return _json(discovery.api_groups(registry))

    @_answers_with_status
    async def core(request: Request) -> Response:
        _plain(request)
        return answer(discovery.resource_list(registry, "", request.path_params["version"]))

    @_answers_with_status
    async def group(request: Request) -> Response:
        _plain(request)
        name = request.path_params["group"]
        if name != "v1" and name in registry.group_versions().get("", []):
            # client-go reads a core version other than v1 (the seed's v1beta1) at
            # /apis/{version}: there, it is that version's resource list.
            return answer(discovery.resource_list(registry, "", name))
        return answer(discovery.api_group(registry, name))

    @_answers_with_status
    async def group_version(request: Request) -> Response:
        _plain(request)
        params = request.path_params
        return answer(discovery.resource_list(registry, params["group"], params["version"]))

    return [
        Route("/api", versions, methods=["GET"]),
        Route("/apis", groups, methods=["GET"]),
        Route("/api/{version}", core, methods=["GET"]),
        Route("/apis/{group}", group, methods=["GET"]),
        Route("/apis/{group}/{version}", group_version, methods=["GET"]),
    ]


def _resource_routes(registry: ResourceRegistry, next_change: Callable[[], trio.Event],
                     streams: OpenWatches) -> list[Route]:
    """Every kind's objects, under the core group's path and the named groups' paths."""

    @_answers_with_status
    async def core(request: Request) -> Response:
        params = request.path_params
        return await _serve(registry, request, "", params["version"], params["path"],
                            next_change, streams)

    @_answers_with_status
    async def group(request: Request) -> Response:
        params = request.path_params
        return await _serve(registry, request, params["group"], params["version"],
                            params["path"], next_change, streams)

    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [
        Route("/api/{version}/{path:path}", core, methods=any_method),
        Route("/apis/{group}/{version}/{path:path}", group, methods=any_method),
    ]


def _kubeconfig_route(kubeconfig: Callable[[], Object | None] | None) -> Route:
    """A kubeconfig for the TCP listener (only on the root-only control socket)."""

    @_answers_with_status
    async def handler(request: Request) -> Response:
        config = kubeconfig() if kubeconfig is not None else None
        if config is None:
            raise st.StatusError(st.status(
                "NotFound", "this volfs daemon serves no Kubernetes API on TCP: start it "
                "with --kube-api 127.0.0.1:PORT (if it was started so, its log says why the "
                "port is not served)"))
        return _json(config)

    return Route(KUBECONFIG_PATH, handler, methods=["GET"])


# -- the generic resource handlers ------------------------------------------------------------


async def _serve(registry: ResourceRegistry, request: Request, group: str, version: str,
                 path: str, next_change: Callable[[], trio.Event],
                 streams: OpenWatches) -> Response:
    """Route a request under ``/api/{version}`` or ``/apis/{group}/{version}`` to its kind."""
    segments = path.strip("/").split("/") if path.strip("/") else []
    namespace: str | None = None
    if len(segments) >= 3 and segments[0] == "namespaces":
        namespace, segments = segments[1], segments[2:]
    if not segments:
        raise st.StatusError(_no_such_path())
    entry = registry.lookup(group, version, segments[0])
    name = segments[1] if len(segments) > 1 else None
    subresource = segments[2] if len(segments) == 3 else None
    if (entry is None or len(segments) > 3 or (namespace is not None
                                                and not entry.resource.namespaced)
            or (name is not None and namespace is None and entry.resource.namespaced)
            or (subresource is not None and (subresource != "scale"
                                             or not entry.resource.scalable))):
        raise st.StatusError(_no_such_path())
    method = request.method
    if subresource is not None and name is not None:
        try:
            return await _scale(request, entry, namespace, name)
        except (RequestError, ManifestError) as exc:
            raise st.StatusError(_refusal(exc, entry.resource, registry, name)) from exc
    if name is None:
        verb = {"GET": "list", "POST": "create"}.get(method)
        if method == "POST" and entry.resource.namespaced and namespace is None:
            verb = None
    else:
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if verb == "list" and request.query_params.get("watch") in ("true", "1"):
        verb = "watch"
    if verb is None or verb not in entry.resource.verbs:
        raise st.StatusError(st.method_not_allowed(method, request.url.path))
    try:
        if verb == "list":
            return await _list(request, entry, namespace)
        if verb == "watch":
            return _watch(request, entry, namespace, next_change, streams)
        assert verb == "create" or name is not None
        if verb == "create":
            return await _create(request, entry, namespace)
        assert name is not None
        if verb == "get":
            return await _get(request, entry, namespace, name)
        if verb == "delete":
            return await _delete(request, entry, namespace, name)
        if verb == "update":
            return await _update(request, entry, namespace, name)
        return await _patch(request, entry, namespace, name)
    except (RequestError, ManifestError) as exc:
        raise st.StatusError(_refusal(exc, entry.resource, registry, name)) from exc


async def _list(request: Request, entry: Registered, namespace: str | None) -> Response:
    resource = entry.resource
    media = negotiate(request.headers.get("accept"), tables=True)
    items = await _listed(entry, namespace, _selection(resource, request))
    resource_version = _newest_resource_version(items)
    if media.table_version is not None:
        return _table(resource, items, media, request, resource_version)
    return _json({
        "apiVersion": resource.group_version,
        "kind": f"{resource.kind}List",
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    })


def _selection(resource: Resource, request: Request) -> Callable[[Object], bool]:
    """The request's labelSelector and fieldSelector, as one test of an object."""
    query = request.query_params
    try:
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = field_matcher(parse_field_selector(query.get("fieldSelector", "")),
                               resource.selectable_fields())
    except SelectorError as exc:
        raise st.StatusError(st.bad_request(str(exc))) from exc
    return lambda obj: labels.matches_object(obj) and fields(obj)


async def _listed(entry: Registered, namespace: str | None,
                  selected: Callable[[Object], bool]) -> list[Object]:
    items = [_typed(entry.resource, obj) for obj in await entry.service.list(namespace)]
    return [obj for obj in items if selected(obj)]


def _watch(request: Request, entry: Registered, namespace: str | None,
           next_change: Callable[[], trio.Event], streams: OpenWatches) -> Response:
    """A watch: one JSON event a line, until timeoutSeconds (see ``watch.py``)."""
    resource = entry.resource
    media = negotiate(request.headers.get("accept"), tables=True)
    include = _include_object(request) if media.table_version is not None else "None"
    selected = _selection(resource, request)
    query = request.query_params
    timeout = query.get("timeoutSeconds", "")
    if timeout and not timeout.isdigit():
        raise st.StatusError(st.bad_request(f"timeoutSeconds: invalid value {timeout!r}"))
    seconds = float(timeout) if timeout else DEFAULT_TIMEOUT_SECONDS

    async def objects() -> list[Object]:
        return await _listed(entry, namespace, selected)

    async def lines() -> AsyncIterator[bytes]:
        columns = True
        with streams.serving(), trio.move_on_after(seconds):
            async for event in watch(objects, next_change, query.get("resourceVersion", "")):
                if media.table_version is not None:
                    # As the API server does: a Table of one row per event, the columns
                    # described in the first event only.
                    obj = event["object"]
                    event["object"] = table(resource.columns, [obj], version=media.table_version,
                                            include_object=include,
                                            resource_version=str(version_of(obj)))
                    if not columns:
                        event["object"]["columnDefinitions"] = []
                    columns = False
                yield json.dumps(event).encode() + b"\n"

    return StreamingResponse(lines(), media_type=media.content_type)


async def _get(request: Request, entry: Registered, namespace: str | None,
               name: str) -> Response:
    media = negotiate(request.headers.get("accept"), tables=True)
    obj = _typed(entry.resource, await entry.service.get(namespace, name))
    if media.table_version is not None:
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        return _table(entry.resource, [obj], media, request, version)
    return _json(obj)


async def _create(request: Request, entry: Registered, namespace: str | None) -> Response:
    resource = entry.resource
    negotiate(request.headers.get("accept"), tables=False)
    _refuse_dry_run(request)
    body = _of_kind(resource, await _body(request))
    body = _in_namespace(resource, body, namespace)
    metadata = body["metadata"]
    if not metadata.get("name") and isinstance(metadata.get("generateName"), str):
        suffix = "".join(random.choice(_GENERATED_SUFFIX) for _ in range(5))
        metadata["name"] = metadata["generateName"] + suffix
    try:
        created = await entry.service.create(body)
    except ManifestError as exc:
        name = metadata.get("name")  # anything the client sent: a name only if a string
        raise st.StatusError(st.manifest_invalid(exc, name if isinstance(name, str) else None,
                                                 resource.kind,
                                                 resource.group)) from exc
    return _json(_typed(resource, created), status_code=201)


async def _delete(request: Request, entry: Registered, namespace: str | None,
                  name: str) -> Response:
    negotiate(request.headers.get("accept"), tables=False)
    _refuse_dry_run(request)
    options = await _body(request, optional=True)
    preconditions = options.get("preconditions") if options else None
    if isinstance(preconditions, dict) and any(preconditions.values()):
        meta = (await entry.service.get(namespace, name)).get("metadata") or {}
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            wanted = preconditions.get(key)
            if wanted and wanted != meta.get(key):
                raise Conflict(entry.resource.kind, name,
                               f'Operation cannot be fulfilled on {_qualified(entry.resource)} '
                               f'"{name}": Precondition failed: {label} in precondition: '
                               f"{wanted}, {label} in object meta: {meta.get(key)}")
    grace = _grace_period(request, options)
    result: Object | DeleteResult
    if isinstance(entry.service, PropagatingService):
        result = await entry.service.delete_propagating(namespace, name,
                                                        _propagation(request, options))
    elif grace is not None and isinstance(entry.service, GracefulService):
        result = await entry.service.delete_with_grace(namespace, name, grace)
    else:  # a kind whose objects go at once ignores it, as in Kubernetes
        result = await entry.service.delete(namespace, name)
    if isinstance(result, DeleteResult):
        obj, warnings = result.object, result.warnings
    else:
        obj, warnings = result, []
    response = _json(_typed(entry.resource, obj))
    for text in warnings:
        response.raw_headers.append((b"warning", _warning_header(text)))
    return response


def _grace_period(request: Request, options: Object | None) -> int | None:
    """DeleteOptions' ``gracePeriodSeconds``, from the body or the query (the body wins,
    as kubectl sends it there); a negative one is 1, as the API server takes it."""
    value: Any = (options or {}).get("gracePeriodSeconds")
    if value is None:
        value = request.query_params.get("gracePeriodSeconds")
        if value is not None:
            try:
                value = int(value)
            except ValueError:
                raise st.StatusError(st.bad_request(
                    f"gracePeriodSeconds: invalid value {value!r}: must be an integer")) from None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise st.StatusError(st.bad_request(
            f"gracePeriodSeconds: invalid value {value!r}: must be an integer"))
    return max(value, 1) if value < 0 else value


def _propagation(request: Request, options: Object | None) -> str | None:
    """DeleteOptions' ``propagationPolicy`` (body, else query), or the older
    ``orphanDependents``; None when neither is given."""
    options = options or {}
    policy = options.get("propagationPolicy") or request.query_params.get("propagationPolicy")
    if policy is not None:
        return str(policy)
    orphan = options.get("orphanDependents", request.query_params.get("orphanDependents"))
    if orphan is None:
        return None
    return "Orphan" if orphan in (True, "true", "1") else "Background"


async def _scale(request: Request, entry: Registered, namespace: str | None,
                 name: str) -> Response:
    """The ``scale`` subresource: an ``autoscaling/v1`` Scale of the object's replicas."""
    resource, service = entry.resource, entry.service
    negotiate(request.headers.get("accept"), tables=False)
    current = _scale_of(await service.get(namespace, name))
    if request.method == "GET":
        return _json(current)
    if request.method not in ("PUT", "PATCH"):
        raise st.StatusError(st.method_not_allowed(request.method, request.url.path))
    _refuse_dry_run(request)
    if request.method == "PUT":
        wanted = await _body(request)
    else:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        patch = _decode_json(await _read_body(request))
        try:
            if _PATCH_TYPES.get(content_type) == "json":
                wanted = json_patch(current, patch)
            elif isinstance(patch, dict) and content_type in _PATCH_TYPES:
                wanted = merge_patch(current, patch)
            else:
                raise PatchError("the patch must be a JSON object of a known patch type")
        except PatchError as exc:
            raise st.StatusError(st.status("Invalid", f"the patch cannot be applied: {exc}",
                                           name=name, kind="Scale")) from exc
    replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise Invalid(resource.kind, name, [("spec.replicas", f"Invalid value: {replicas!r}: "
                                             "must be greater than or equal to 0")])
    version = (wanted.get("metadata") or {}).get("resourceVersion")
    if request.method == "PATCH" and version == current["metadata"].get("resourceVersion"):
        version = None  # carried over from the object, not a precondition of the client's
    scaled = await service.scale(namespace, name, replicas, version or None)
    return _json(_scale_of(scaled))


def _scale_of(obj: Object) -> Object:
    meta = obj.get("metadata") or {}
    selector = (obj.get("spec") or {}).get("selector") or {}
    labels = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())
                                        if isinstance(v, str))},
    }


async def _update(request: Request, entry: Registered, namespace: str | None,
                  name: str) -> Response:
    resource = entry.resource
    negotiate(request.headers.get("accept"), tables=False)
    _refuse_dry_run(request)
    body = _in_namespace(resource, _of_kind(resource, await _body(request)), namespace)
    _same_name(body, name)
    return _json(_typed(resource, await entry.service.update(body)))


async def _patch(request: Request, entry: Registered, namespace: str | None,
                 name: str) -> Response:
    resource = entry.resource
    negotiate(request.headers.get("accept"), tables=False)
    _refuse_dry_run(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    patch_type = _PATCH_TYPES.get(content_type)
    if patch_type is None:
        raise st.StatusError(st.status(
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({content_type or 'none'}) - "
            f"accepted media types include: {', '.join(_PATCH_TYPES)}"))
    patch = _decode_json(await _read_body(request))
    for attempt in range(1, PATCH_ATTEMPTS + 1):
        current = _typed(resource, await entry.service.get(namespace, name))
        try:
            if patch_type == "json":
                patched = json_patch(current, patch)
            elif not isinstance(patch, dict):
                raise PatchError("the patch must be a JSON object")
            elif patch_type == "merge":
                patched = merge_patch(current, patch)
            else:
                patched = strategic_merge_patch(current, patch, resource.patch_schema)
        except PatchError as exc:
            raise st.StatusError(st.status("Invalid", f"the patch cannot be applied: {exc}",
                                           name=name, kind=resource.kind)) from exc
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise st.StatusError(st.bad_request("the patched object has no metadata"))
        patched = _in_namespace(resource, _of_kind(resource, patched), namespace)
        _same_name(patched, name)
        if patched == current:
            return _json(current)
        current_version = current["metadata"].get("resourceVersion")
        client_precondition = patched["metadata"].get("resourceVersion") != current_version
        if not client_precondition:
            patched["metadata"]["resourceVersion"] = current_version
        try:
            return _json(_typed(resource, await entry.service.update(patched)))
        except Conflict:
            if client_precondition or attempt == PATCH_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


# -- helpers --------------------------------------------------------------------------------


def _qualified(resource: Resource) -> str:
    """``pods``, ``storageclasses.storage.k8s.io``: how messages name a kind's objects."""
    return f"{resource.name}.{resource.group}" if resource.group else resource.name


def _typed(resource: Resource, obj: Object) -> Object:
    """``obj`` with the descriptor's apiVersion and kind, first, whatever the service said."""
    rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    return {"apiVersion": resource.group_version, "kind": resource.kind, **rest}


def _of_kind(resource: Resource, body: Object) -> Object:
    """``body`` with apiVersion and kind filled in from the path when absent; others are 400."""
    body = dict(body)
    for key, expected in (("apiVersion", resource.group_version), ("kind", resource.kind)):
        given = body.get(key)
        if given in (None, ""):
            body[key] = expected
        elif given != expected:
            raise st.StatusError(st.bad_request(
                f"the {key} of the object in the request body ({given!r}) does not match "
                f"the resource's ({expected!r} for {resource.name})"))
    metadata = body.get("metadata")
    if metadata is None:
        body["metadata"] = {}
    elif not isinstance(metadata, dict):
        raise st.StatusError(st.bad_request("metadata must be an object"))
    else:
        body["metadata"] = dict(metadata)
    return body


def _in_namespace(resource: Resource, body: Object, namespace: str | None) -> Object:
    """``body`` with the path's namespace filled in; a different one is a 400.

    Cluster-scoped objects have no namespace: one in the body is dropped.
    """
    metadata = body["metadata"]
    given = metadata.get("namespace")
    if not resource.namespaced or namespace is None:
        metadata.pop("namespace", None)
    elif given in (None, ""):
        metadata["namespace"] = namespace
    elif given != namespace:
        raise st.StatusError(st.bad_request(
            "the namespace of the provided object does not match the namespace sent on "
            f"the request ({given!r} in the object, {namespace!r} in the path)"))
    return body


def _same_name(body: Object, name: str) -> None:
    given = body["metadata"].get("name")
    if given in (None, ""):
        body["metadata"]["name"] = name
    elif given != name:
        raise st.StatusError(st.bad_request(
            f"the name of the object ({given}) does not match the name on the URL ({name})"))


def _refuse_dry_run(request: Request) -> None:
    if request.query_params.get("dryRun"):
        raise st.StatusError(st.bad_request("dryRun is not supported by volfs"))


async def _body(request: Request, *, optional: bool = False) -> Object:
    """The request body as an object: JSON, or YAML when the Content-Type says so."""
    raw = await _read_body(request)
    if optional and not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        try:
            body = decode_yaml(raw)
        except TooDeep as exc:
            raise st.StatusError(st.bad_request(f"the request body is refused: {exc}")) from None
        except yaml.YAMLError as exc:
            message = str(exc).splitlines()[0]
            raise st.StatusError(st.bad_request(
                f"the request body is not valid YAML: {message}")) from exc
    elif content_type in ("", "application/json", "*/*"):
        body = _decode_json(raw)
    else:
        raise st.StatusError(st.status(
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format ({content_type}) - accepted "
            "media types include: application/json, application/yaml"))
    if not isinstance(body, dict):
        raise st.StatusError(st.bad_request("the request body must be a JSON object"))
    return body


async def _read_body(request: Request) -> bytes:
    """The request body, refused (413) past MAX_BODY_BYTES: by its Content-Length before
    any of it is read, else as soon as what arrives passes it; never parsed then."""
    length = request.headers.get("content-length", "")
    too_large = st.StatusError(st.status(
        "RequestEntityTooLarge", f"the request body is larger than {MAX_BODY_BYTES} bytes, "
        "the most volfs takes for one object", code=413))
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_json(raw: bytes) -> Any:
    """The body as JSON; refused (400) when not JSON or nested too deeply (MAX_DEPTH).

    Its size was capped before (``_read_body``: a larger body is a 413, never parsed)."""
    try:
        return decode_json(raw)
    except TooDeep as exc:
        raise st.StatusError(st.bad_request(f"the request body is refused: {exc}")) from None
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise st.StatusError(st.bad_request(f"the request body is not valid JSON: {exc}")) from exc


def _table(resource: Resource, items: list[Object], media: Media, request: Request,
           resource_version: str) -> Response:
    include = _include_object(request)
    assert media.table_version is not None
    answer = table(resource.columns, items, version=media.table_version,
                   include_object=include, resource_version=resource_version)
    return FastJSONResponse(answer, media_type=media.content_type)


def _include_object(request: Request) -> str:
    include = request.query_params.get("includeObject", "Metadata")
    if include not in ("None", "Metadata", "Object"):
        raise st.StatusError(st.bad_request(
            f'includeObject: Unsupported value: "{include}": supported values: "None", '
            '"Metadata", "Object"'))
    return include


def _newest_resource_version(items: list[Object]) -> str:
    """The newest ``metadata.resourceVersion`` among ``items`` ("0" for none).

    Kubernetes resource versions are opaque strings; volfs's are counters, so the
    largest numeric one names the newest state the list reflects.
    """
    newest = 0
    for item in items:
        version = (item.get("metadata") or {}).get("resourceVersion")
        if isinstance(version, str) and version.isdigit():
            newest = max(newest, int(version))
        elif isinstance(version, int):
            newest = max(newest, version)
    return str(newest)


def _refusal(exc: Exception, resource: Resource, registry: ResourceRegistry,
             name: str | None) -> dict[str, Any]:
    """The Status for an error a service raised, worded with the kinds' registered names."""

    def names(kind: str) -> tuple[str, str]:
        target = resource if kind == resource.kind else registry.by_kind(kind)
        return (target.name, target.group) if target else (kind.lower() + "s", "")

    if isinstance(exc, NotFound):
        return st.not_found(*names(exc.kind), name=exc.name)
    if isinstance(exc, AlreadyExists):
        return st.already_exists(*names(exc.kind), name=exc.name)
    if isinstance(exc, Conflict):
        resource_name, group = names(exc.kind)
        return st.status("Conflict", str(exc), name=exc.name, group=group, kind=resource_name)
    if isinstance(exc, Invalid):
        return st.invalid(exc.kind, exc.name, exc.causes, names(exc.kind)[1])
    if isinstance(exc, ManifestError):
        return st.manifest_invalid(exc, name, resource.kind, resource.group)
    if isinstance(exc, SetupFailed):
        return st.internal_error(str(exc))
    if isinstance(exc, NoSpace):
        return st.status("InsufficientStorage", str(exc))
    return st.internal_error(str(exc))  # a RequestError this layer does not know yet


def _answers_with_status(handler: Handler) -> Handler:
    """Turn every exception ``handler`` raises into a Status response."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except st.StatusError as exc:
            return _status_response(exc.status)
        except HTTPException:
            raise  # Starlette's own (no such path, ...): _http_exception answers it
        except Exception as exc:  # a bug: its traceback once, a 500 every time
            unexpected(log, "%s %s failed", request.method, request.url.path)
            return _status_response(
                st.internal_error(f"internal error: {type(exc).__name__}: {exc}")
            )

    return wrapper


def _plain(request: Request) -> None:
    """Discovery documents are plain JSON only (no Tables, no aggregated discovery)."""
    negotiate(request.headers.get("accept"), tables=False)


def _no_such_path() -> dict[str, Any]:
    return st.status("NotFound", "the server could not find the requested resource")


def _warning_header(text: str) -> bytes:
    """An RFC 7234 warning as the API server sends it: ``299 - "text"``.

    Control characters become spaces (a header is one line); quotes and
    backslashes are escaped; the text goes out as UTF-8.
    """
    flat = "".join(" " if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in text)
    quoted = flat.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{quoted}"'.encode()


def _json(obj: Any, status_code: int = 200) -> Response:
    return FastJSONResponse(obj, status_code=status_code)


def _status_response(status: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(status, status_code=status["code"], headers=headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, wrong method) as Statuses."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        answer = _no_such_path()
    elif exc.status_code == 405:
        answer = st.method_not_allowed(request.method, request.url.path)
    else:
        reason = {413: "RequestEntityTooLarge"}.get(exc.status_code, "BadRequest")
        answer = st.status(reason, str(exc.detail), code=exc.status_code)
    return _status_response(answer, headers=dict(exc.headers or {}))


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _version(request: Request) -> Response:
    return _json(discovery.version())


async def _openapi_v2(request: Request) -> Response:
    protobuf = "protobuf" in request.headers.get("accept", "")
    return Response(discovery.openapi_v2(protobuf),
                    media_type=discovery.OPENAPI_V2_PROTOBUF if protobuf else "application/json")

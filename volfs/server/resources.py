"""The resource registry: every kind the control API serves, behind one protocol.

A kind is two things:

* a :class:`Resource` descriptor: what discovery says about it (plural and singular
  name, kind, group/version, namespaced or not, verbs, short names), how ``kubectl get``
  prints it (its Table columns), which field selectors it offers, and how strategic
  merge patches merge its lists;
* a :class:`ResourceService`: where its objects live (create, get, list, delete, update).

The API's handlers are generic: the same code lists pods and storage classes, turns
errors into Statuses, filters by selectors, renders Tables and applies patches. Adding
a kind is one registration where the daemon wires the layers together::

    registry.register(PERSISTENT_VOLUME_CLAIMS, claims)  # claims: a ResourceService

after which ``/api/v1/namespaces/{ns}/persistentvolumeclaims[/{name}]``, discovery
(``kubectl api-resources`` shows ``pvc``), Tables, selectors, PATCH and PUT all work.
The descriptors of the kinds volfs serves or will serve are in
:mod:`volfs.server.kinds`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from volfs.lifecycle.service import DeleteResult
from volfs.server.patch import OBJECT_SCHEMA, Struct
from volfs.server.selectors import FieldGetter, path_getter
from volfs.server.tables import DEFAULT_COLUMNS, Column

__all__ = ["GracefulService", "PropagatingService", "ReadOnlyService", "Registered", "Resource",
           "ResourceRegistry", "ResourceService", "ScalableService"]

Object = dict[str, Any]

VERB_METHODS = {
    "create": "create",
    "get": "get",
    "list": "list",
    "watch": "list",
    "delete": "delete",
    "update": "update",
    "patch": "update",
}
"""Which service method each verb needs (PATCH is get, patch, then update)."""


@runtime_checkable
class ResourceService(Protocol):
    """The objects of one kind, as plain JSON-able Kubernetes dicts.

    Objects go in and come out shaped as Kubernetes serves them: ``metadata`` (``name``,
    ``namespace`` for namespaced kinds, ``uid``, ``resourceVersion``,
    ``creationTimestamp``, ``labels``, ``annotations``), ``spec``, ``status``.
    ``apiVersion`` and ``kind`` are set by the server from the descriptor, whatever the
    service returns.

    ``namespace`` is the request's namespace for a namespaced kind, and None for a
    cluster-scoped kind (or, in ``list``, for "every namespace").

    A service implements the methods its descriptor's verbs need (see
    ``VERB_METHODS``); the server never calls the others. Refusals are the lifecycle
    errors (``volfs.api.errors``), which the server turns into Statuses worded
    with the descriptor's names:

    * ``NotFound`` -> 404, ``AlreadyExists`` -> 409, ``Conflict`` -> 409,
    * ``Invalid`` (or a ``volfs.api.ManifestError``) -> 422 with ``details.causes``,
    * ``SetupFailed`` -> 500.
    """

    async def create(self, obj: Object) -> Object:
        """Make ``obj`` (its namespace already set from the path); return it as stored.

        The body has been checked to be of this kind; parsing and validating the rest is
        the service's. Raises AlreadyExists, Invalid, ManifestError, SetupFailed.
        """
        ...

    async def get(self, namespace: str | None, name: str) -> Object:
        """Raises NotFound."""
        ...

    async def list(self, namespace: str | None) -> list[Object]:
        """Every object (of one namespace, or of all when None), oldest first.

        The server filters by label and field selector; the service need not.
        """
        ...

    async def delete(self, namespace: str | None, name: str) -> Object | DeleteResult:
        """Delete and return the object (plus warnings, as a DeleteResult). Raises NotFound."""
        ...

    async def update(self, obj: Object) -> Object:
        """Replace the stored object by ``obj`` (PUT, and PATCH after the server has
        applied the patch to what ``get`` returned); return it as stored.

        ``obj["metadata"]["resourceVersion"]``, when set, is a precondition: raise
        Conflict if the stored object has another. Refuse changes the kind does not
        allow with Invalid (Kubernetes' wording: ``("spec", "Forbidden: ...")``). Fields
        the client may not set (``status``, ``uid``, ``creationTimestamp``) are kept
        from the stored object. Raises NotFound, Conflict, Invalid.
        """
        ...


@runtime_checkable
class GracefulService(Protocol):
    """A kind whose objects take time to go (pods: their containers stop), so a delete
    may say how long they get: DeleteOptions' ``gracePeriodSeconds``. The server calls
    this instead of ``delete`` when a request gives one."""

    async def delete_with_grace(self, namespace: str | None, name: str,
                                grace_seconds: int) -> Object | DeleteResult:
        """``delete``, giving the object ``grace_seconds`` (0: none) to go. Raises NotFound."""
        ...


@runtime_checkable
class PropagatingService(Protocol):
    """A kind whose objects own others (workloads own pods): a delete says what happens
    to them, DeleteOptions' ``propagationPolicy`` (``Background``, ``Foreground``,
    ``Orphan``; None when the request gives none)."""

    async def delete_propagating(self, namespace: str | None, name: str,
                                 policy: str | None) -> Object:
        """``delete``, its dependents as ``policy`` says. Raises NotFound, Invalid."""
        ...


@runtime_checkable
class ScalableService(Protocol):
    """A kind with ``spec.replicas``, served as the ``scale`` subresource."""

    async def get(self, namespace: str | None, name: str) -> Object: ...

    async def scale(self, namespace: str | None, name: str, replicas: int,
                    resource_version: str | None) -> Object:
        """Set ``spec.replicas``; return the object. Raises NotFound, Conflict, Invalid."""
        ...


@runtime_checkable
class ReadOnlyService(Protocol):
    """A kind served with only the ``get`` and ``list`` verbs (namespaces, events)."""

    async def get(self, namespace: str | None, name: str) -> Object: ...

    async def list(self, namespace: str | None) -> list[Object]: ...


@dataclass(frozen=True)
class Resource:
    """What the API needs to know to serve a kind, beyond where its objects live.

    Example::

        STORAGE_CLASSES = Resource(
            name="storageclasses", singular_name="storageclass", kind="StorageClass",
            group="storage.k8s.io", namespaced=False, short_names=("sc",),
            verbs=("create", "delete", "get", "list", "patch", "update"),
            columns=STORAGE_CLASS_COLUMNS)
    """

    name: str
    """The plural, lower case: the path segment (``pods``)."""
    singular_name: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    group: str = ""
    """``""`` for the core group (served under ``/api/v1``)."""
    version: str = "v1"
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    """``("all",)`` puts the kind in ``kubectl get all``."""
    columns: tuple[Column, ...] = DEFAULT_COLUMNS
    field_selectors: Mapping[str, FieldGetter] = field(default_factory=dict)
    """Field labels beyond ``metadata.name`` and ``metadata.namespace`` (always offered)."""
    patch_schema: Struct = OBJECT_SCHEMA
    """How a strategic merge patch merges this kind's lists."""
    scalable: bool = False
    """Serves the ``scale`` subresource (``kubectl scale``): its service is a
    :class:`ScalableService`."""

    def __post_init__(self) -> None:
        unknown = set(self.verbs) - set(VERB_METHODS)
        if unknown:
            raise ValueError(f"{self.name}: unknown verbs {sorted(unknown)}")

    @property
    def group_version(self) -> str:
        """``v1`` for the core group, ``storage.k8s.io/v1`` otherwise (the apiVersion)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> dict[str, Any]:
        """The ``APIResource`` entry of this kind in its APIResourceList."""
        entry: dict[str, Any] = {
            "name": self.name,
            "singularName": self.singular_name,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry

    def subresources(self) -> list[dict[str, Any]]:
        """The APIResource entries of its subresources (``replicationcontrollers/scale``)."""
        if not self.scalable:
            return []
        return [{"name": f"{self.name}/scale", "singularName": "", "namespaced": self.namespaced,
                 "group": "autoscaling", "version": "v1", "kind": "Scale",
                 "verbs": ["get", "patch", "update"]}]

    def selectable_fields(self) -> dict[str, FieldGetter]:
        fields: dict[str, FieldGetter] = {"metadata.name": path_getter("metadata.name")}
        if self.namespaced:
            fields["metadata.namespace"] = path_getter("metadata.namespace")
        return {**fields, **self.field_selectors}


@dataclass(frozen=True)
class Registered:
    resource: Resource
    service: Any  # a ResourceService with (at least) the methods the verbs need


class ResourceRegistry:
    """The kinds the API serves, found by (group, version, plural) and by kind.

    Registration refuses a plural, short name or kind that is already taken in the
    group version, and a service lacking a method one of the descriptor's verbs needs.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], Registered] = {}

    def register(self, resource: Resource,
                 service: ResourceService | ReadOnlyService) -> None:
        """Serve ``resource`` from ``service``.

        Raises:
            ValueError: a name clash in the group, or a verb the service cannot serve.
        """
        for other in self:
            if (other.resource.group, other.resource.version) != (resource.group,
                                                                   resource.version):
                continue  # another version of a group may serve the same kind
            taken = {other.resource.name, other.resource.singular_name,
                     *other.resource.short_names}
            names = {resource.name, resource.singular_name, *resource.short_names}
            if taken & names or other.resource.kind == resource.kind:
                raise ValueError(f"{resource.name}: clashes with the registered "
                                 f"{other.resource.name} ({sorted(taken & names) or 'kind'})")
        for verb in resource.verbs:
            method = VERB_METHODS[verb]
            if not callable(getattr(service, method, None)):
                raise ValueError(f"{resource.name}: verb {verb!r} needs the service's "
                                 f"{method}() and {type(service).__name__} has none")
        key = (resource.group, resource.version, resource.name)
        self._entries[key] = Registered(resource, service)

    def lookup(self, group: str, version: str, name: str) -> Registered | None:
        return self._entries.get((group, version, name))

    def by_kind(self, kind: str) -> Resource | None:
        return next((e.resource for e in self if e.resource.kind == kind), None)

    def group_versions(self) -> dict[str, list[str]]:
        """Every group (``""`` for core) and its versions, in registration order."""
        groups: dict[str, list[str]] = {}
        for entry in self:
            versions = groups.setdefault(entry.resource.group, [])
            if entry.resource.version not in versions:
                versions.append(entry.resource.version)
        return groups

    def resources(self, group: str, version: str) -> list[Resource]:
        return [e.resource for e in self
                if (e.resource.group, e.resource.version) == (group, version)]

    def __iter__(self) -> Iterator[Registered]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

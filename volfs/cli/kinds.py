"""The kinds the CLI knows: their names on the command line and their paths in the API.

The paths are the Kubernetes API server's, which the daemon's control API serves::

    /api/v1/namespaces/{ns}/pods[/{name}]                 namespaced, core group
    /api/v1/persistentvolumes[/{name}]                    cluster-scoped, core group
    /apis/storage.k8s.io/v1/storageclasses[/{name}]       cluster-scoped, named group

>>> resolve("pvc").collection("team-a")
'/api/v1/namespaces/team-a/persistentvolumeclaims'
>>> resolve("sc").item(None, "fast")
'/apis/storage.k8s.io/v1/storageclasses/fast'
>>> resolve("storageclass").qualified
'storageclass.storage.k8s.io'
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["EVENT", "KINDS", "PERSISTENT_VOLUME", "PERSISTENT_VOLUME_CLAIM", "POD",
           "REPLICATION_CONTROLLER", "STATEFUL_SET", "STORAGE_CLASS", "WORKLOADS", "Kind",
           "UnknownResource", "by_kind", "resolve"]


class UnknownResource(ValueError):
    """A resource word the CLI does not know (``str()`` says which and what is known)."""


@dataclass(frozen=True)
class Kind:
    kind: str
    """``PersistentVolumeClaim``: the object's ``kind``."""
    plural: str
    """``persistentvolumeclaims``: the path segment."""
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    group: str = ""
    version: str = "v1"

    @property
    def qualified(self) -> str:
        """How kubectl names one object of the kind in its messages: the singular,
        then the group for a named group (``storageclass.storage.k8s.io/fast created``)."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    @property
    def qualified_plural(self) -> str:
        """How the API server names the kind in its Status messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def words(self) -> tuple[str, ...]:
        """Every name the command line accepts for the kind."""
        names = (self.plural, self.singular, *self.short_names)
        if self.group:
            names += tuple(f"{name}.{self.group}" for name in (self.plural, self.singular))
        return names

    def collection(self, namespace: str | None) -> str:
        """The list/create path: of ``namespace``, or of every namespace when None.

        A cluster-scoped kind has one collection, whatever ``namespace`` says.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            return f"{base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{self.plural}"

    def item(self, namespace: str | None, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


POD = Kind("Pod", "pods", "pod", ("po",), namespaced=True)
PERSISTENT_VOLUME = Kind("PersistentVolume", "persistentvolumes", "persistentvolume", ("pv",),
                         namespaced=False)
PERSISTENT_VOLUME_CLAIM = Kind("PersistentVolumeClaim", "persistentvolumeclaims",
                               "persistentvolumeclaim", ("pvc",), namespaced=True)
STORAGE_CLASS = Kind("StorageClass", "storageclasses", "storageclass", ("sc",),
                     namespaced=False, group="storage.k8s.io")
EVENT = Kind("Event", "events", "event", ("ev",), namespaced=True)
REPLICATION_CONTROLLER = Kind("ReplicationController", "replicationcontrollers",
                              "replicationcontroller", ("rc",), namespaced=True)
STATEFUL_SET = Kind("StatefulSet", "statefulsets", "statefulset", ("sts",), namespaced=True,
                    group="apps")

KINDS = (POD, PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS, EVENT,
         REPLICATION_CONTROLLER, STATEFUL_SET)
WORKLOADS = (REPLICATION_CONTROLLER, STATEFUL_SET)


def resolve(word: str, allowed: tuple[Kind, ...] = KINDS) -> Kind:
    """The kind a command-line word names (``pvc``, ``PersistentVolumeClaims``, ...).

    Raises:
        UnknownResource: no kind of ``allowed`` goes by that name.
    """
    lowered = word.lower()
    for kind in allowed:
        if lowered in kind.words:
            return kind
    known = ", ".join(f"{k.plural} ({k.short_names[0]})" for k in allowed)
    raise UnknownResource(f'unknown resource type "{word}"; volfs serves {known}')


def by_kind(kind: str) -> Kind | None:
    """The descriptor of an object's ``kind`` (``Pod``), or None."""
    return next((k for k in KINDS if k.kind == kind), None)

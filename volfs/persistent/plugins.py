"""PV-source plugins: what a kind of PersistentVolume (its spec field, ``nfs``, ...) can do.

Shaped like kubelet's volume plugins: every kind can open the store that serves a
PV's bytes (:class:`PersistentSource`); the other abilities are separate
interfaces that a kind implements or not, as kubelet's provisionable, deletable
and recyclable plugins are: :class:`Provisioner` (make storage for a claim of a
StorageClass), :class:`Deleter` (remove what was provisioned), :class:`Recycler`
(empty a volume for its next claim). :class:`PersistentSources` finds the plugin
for a PV or a provisioner name, and refuses two plugins for one kind.

The binder and the pods' claim volumes talk to these interfaces only, never to NFS:
a new kind of PV is one module implementing them, registered in the daemon.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from volfs.api.errors import Cause
from volfs.api.storage import (
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    volume_source_kind,
)
from volfs.stores.base import Store
from volfs.stores.progress import Progress

Object = dict[str, Any]

# Kubernetes' annotation on a PV that a provisioner made: the provisioner's name.
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


class ClosableStore(Store, Protocol):
    """A store that holds something (a connection) until closed."""

    async def close(self) -> None: ...


class SourceRefused(Exception):
    """A PV's storage cannot be opened; ``str()`` is one line naming it (``nfs
    10.0.0.5:/export: server not responding (connection refused)``)."""


class ReclaimFailed(Exception):
    """Deleting or recycling a PV's storage failed; ``str()`` is one line."""


class PersistentSource(Protocol):
    """A kind of PersistentVolume volfs serves (kubelet's PersistentVolumePlugin)."""

    @property
    def source_kind(self) -> str:
        """The PersistentVolume spec field this plugin serves, e.g. "nfs"."""

    @property
    def kind_dir(self) -> str:
        """kubelet's directory name for the kind, e.g. "kubernetes.io~nfs"."""

    async def open_store(self, pv: PersistentVolume) -> ClosableStore:
        """The store serving ``pv``'s bytes, its capacity enforced; SourceRefused if not."""


@runtime_checkable
class Provisioner(Protocol):
    """Makes storage for a claim of a StorageClass (kubelet's ProvisionableVolumePlugin)."""

    @property
    def provisioner(self) -> str:
        """The StorageClass ``provisioner`` it answers, e.g. "volfs.io/nfs"."""

    def check_class(self, sc: StorageClass) -> list[Cause]:
        """What is wrong with a class of this provisioner (its parameters), if anything."""

    async def provision(self, claim: PersistentVolumeClaim, sc: StorageClass,
                        pv_name: str) -> Provisioned:
        """Make the storage ``pv_name`` stands for; raise OSError or ValueError if not."""


@dataclass(frozen=True)
class Provisioned:
    """What a provisioner made: the new PV's source (spec fields such as ``nfs`` and
    ``mountOptions``) and the annotations its deleter will need."""

    spec: Object
    annotations: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Deleter(Protocol):
    """Removes a PV's storage when its reclaim policy is Delete (DeletableVolumePlugin)."""

    def can_delete(self, pv: Object) -> bool:
        """Whether this plugin made ``pv`` (only what it provisioned is its to delete)."""

    async def delete(self, pv: Object, progress: Progress) -> str:
        """Delete (or archive) the storage, counting each entry removed in ``progress``;
        what was done, for the event (``/x removed``); ReclaimFailed if not."""


@runtime_checkable
class Recycler(Protocol):
    """Empties a PV for its next claim, policy Recycle (RecyclableVolumePlugin)."""

    async def recycle(self, pv: Object, progress: Progress) -> str:
        """Empty the storage, counting each entry removed in ``progress``; what was done,
        for the event (``/x emptied``); ReclaimFailed."""


class PersistentSources:
    """The PV-source plugins of one daemon, by kind and by provisioner name."""

    def __init__(self, sources: Iterable[PersistentSource]) -> None:
        self._by_kind: dict[str, PersistentSource] = {}
        self._by_provisioner: dict[str, Provisioner] = {}
        for source in sources:
            if source.source_kind in self._by_kind:
                raise ValueError(f"two plugins for PersistentVolume source "
                                 f"{source.source_kind}")
            self._by_kind[source.source_kind] = source
            if isinstance(source, Provisioner):
                if source.provisioner in self._by_provisioner:
                    raise ValueError(f"two plugins for provisioner {source.provisioner}")
                self._by_provisioner[source.provisioner] = source

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def for_volume(self, pv: PersistentVolume) -> PersistentSource:
        """The plugin serving ``pv``; SourceRefused if no plugin serves its kind."""
        kind = pv.spec.source_kind()
        source = self._by_kind.get(kind or "")
        if source is None:
            raise SourceRefused(f"no plugin serves PersistentVolume source {kind or '(none)'}")
        return source

    def provisioner(self, name: str) -> Provisioner | None:
        return self._by_provisioner.get(name)

    def provisioners(self) -> list[str]:
        return sorted(self._by_provisioner)

    def deleter(self, pv: Object) -> Deleter | None:
        """The plugin that may delete ``pv``'s storage, if any (kubelet: "no deletable
        volume plugin matched" otherwise)."""
        source = self._by_kind.get(volume_source_kind(pv.get("spec", {})) or "")
        if isinstance(source, Deleter) and source.can_delete(pv):
            return source
        return None

    def recycler(self, pv: Object) -> Recycler | None:
        source = self._by_kind.get(volume_source_kind(pv.get("spec", {})) or "")
        return source if isinstance(source, Recycler) else None

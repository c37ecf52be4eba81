"""Volumes that name a PersistentVolumeClaim: served from the PV the claim is bound to.

As kubelet does, a pod's ``persistentVolumeClaim`` volume is resolved to its bound
PersistentVolume, whose PV-source plugin (:mod:`volfs.persistent`: NFS today) opens
the store, served at ``pods/<uid>/volumes/kubernetes.io~nfs/<volume>``. Every pod
using one PV shares one store: one connection, one usage figure, one capacity
enforced for all of them. (The directory name is NFS's for every PV kind, for now:
the synthetic tree learns a volume's directory before the claim is bound.)

A claim that does not exist or is not bound yet is not an error: set-up raises
VolumeNotReady and the pod waits, Pending, until the binder binds the claim.
A ReadWriteOncePod claim serves one pod at a time; a ReadOnlyMany claim, a
``readOnly`` volume or read-only mounts are served read-only (EROFS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from volfs.api import PersistentVolume, PersistentVolumeClaim, Volume
from volfs.lifecycle.volumes import PodRef, VolumeRefused
from volfs.persistent import NFS_KIND, ClosableStore, PersistentSources, SourceRefused
from volfs.stores.base import Store
from volfs.stores.views import read_only_view


class ClaimResolver(Protocol):
    async def bound_volume(self, namespace: str, claim_name: str
                           ) -> tuple[PersistentVolumeClaim, PersistentVolume]:
        """The claim and its PV; raises VolumeNotReady if it is missing or unbound."""
        ...


@dataclass
class _Shared:
    store: ClosableStore
    users: dict[tuple[str, str], str] = field(default_factory=dict)  # (uid, volume) -> pod


@dataclass
class ClaimPlugin:
    claims: ClaimResolver
    sources: PersistentSources
    source_kind: str = "persistentVolumeClaim"
    kind_dir: str = NFS_KIND
    _shared: dict[str, _Shared] = field(default_factory=dict, repr=False)  # by PV name

    def check(self, volume: Volume) -> None:
        return None  # a missing or unbound claim makes the pod wait, not fail

    async def set_up(self, pod: PodRef, volume: Volume, read_only: bool) -> Store:
        assert volume.persistent_volume_claim is not None
        claim_name = volume.persistent_volume_claim.claim_name
        claim, pv = await self.claims.bound_volume(pod.namespace, claim_name)
        name = pv.metadata.name
        shared = self._shared.get(name)
        if "ReadWriteOncePod" in claim.spec.access_modes and shared is not None:
            others = {p for (uid, _), p in shared.users.items() if uid != pod.uid}
            if others:
                raise VolumeRefused(f'"{claim_name}" is ReadWriteOncePod and in use by pod '
                                    f'{", ".join(sorted(others))}')
        if shared is None:
            shared = _Shared(await self._open(pv))
            self._shared[name] = shared
        shared.users[(pod.uid, volume.name)] = pod.name
        modes = set(claim.spec.access_modes)
        if read_only or volume.persistent_volume_claim.read_only or modes == {"ReadOnlyMany"}:
            return read_only_view(shared.store)
        return shared.store

    async def _open(self, pv: PersistentVolume) -> ClosableStore:
        try:
            return await self.sources.for_volume(pv).open_store(pv)
        except SourceRefused as exc:
            raise VolumeRefused(f"volume {pv.metadata.name}: {exc}") from None

    async def tear_down(self, pod: PodRef, volume: Volume) -> None:
        for name, shared in list(self._shared.items()):
            if shared.users.pop((pod.uid, volume.name), None) is not None and not shared.users:
                del self._shared[name]
                await shared.store.close()  # the data stays on the server

    async def close(self) -> None:
        """Close every PV's store; the data stays on the servers."""
        shared, self._shared = list(self._shared.values()), {}
        for entry in shared:
            await entry.store.close()

    def describe(self, volume: Volume) -> dict[str, object]:
        assert volume.persistent_volume_claim is not None
        return {"claimName": volume.persistent_volume_claim.claim_name}

    def used_bytes(self, pv_name: str) -> int | None:
        """Live usage of a PV some pod serves now, or None."""
        shared = self._shared.get(pv_name)
        return shared.store.usage.used if shared is not None else None


__all__ = ["ClaimPlugin", "ClaimResolver"]

"""Inline ``nfs:`` volumes: a directory on an NFS server, served through volfs's own client.

Policy only; the bytes go through :class:`volfs.stores.nfs.NfsStore`. Set-up
checks that the server answers (within ``SET_UP_SECONDS``) and that the
directory exists; a pod whose server does not answer is refused with one line
naming the server. Tear-down closes the connection and never touches the data:
it stays on the server for the next pod.

Kubernetes gives an inline ``nfs:`` volume no ``mountOptions``: its ``path``
may carry them as URL arguments (``/export?soft&timeo=50``, or
``nfsport``/``mountport`` for a server on other ports), see
:mod:`volfs.stores.nfs.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from volfs.api import NFSVolumeSource, Volume
from volfs.lifecycle.volumes import PodRef, VolumeRefused
from volfs.persistent import NFS_KIND
from volfs.stores.base import Store
from volfs.stores.nfs import NfsStore, NfsTarget, OptionError, ServerUnreachable, open_store
from volfs.stores.nfs.share import SET_UP_SECONDS


class NfsRefused(VolumeRefused):
    """An nfs volume that cannot be served; ``str()`` is one line naming the server."""

    def __init__(self, message: str, field: str = "server") -> None:
        super().__init__(message)
        self.field = field


@dataclass
class NfsPlugin:
    set_up_seconds: float = SET_UP_SECONDS
    source_kind: str = "nfs"
    kind_dir: str = NFS_KIND
    _stores: dict[tuple[str, str], NfsStore] = field(default_factory=dict, repr=False)

    def check(self, volume: Volume) -> None:
        _target(_source(volume))

    async def set_up(self, pod: PodRef, volume: Volume, read_only: bool) -> Store:
        source = _source(volume)
        target = _target(source)
        try:
            store = await open_store(source.server, source.path,
                                     read_only=read_only or source.read_only,
                                     set_up_seconds=self.set_up_seconds)
        except ServerUnreachable as exc:
            raise NfsRefused(f"{target}: {exc}") from None
        except OSError as exc:
            raise NfsRefused(f"{target}: {exc.strerror or exc}", "path") from None
        previous = self._stores.pop((pod.uid, volume.name), None)
        if previous is not None:
            await previous.close()
        self._stores[(pod.uid, volume.name)] = store
        return store

    async def tear_down(self, pod: PodRef, volume: Volume) -> None:
        store = self._stores.pop((pod.uid, volume.name), None)
        if store is not None:
            await store.close()  # the data stays on the server

    async def close(self) -> None:
        """Close every store's connection; the data stays on the servers."""
        stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            await store.close()

    def describe(self, volume: Volume) -> dict[str, object]:
        source = _source(volume)
        return {"server": source.server, "export": source.path}


def _source(volume: Volume) -> NFSVolumeSource:
    assert volume.nfs is not None
    return volume.nfs


def _target(source: NFSVolumeSource) -> NfsTarget:
    try:
        return NfsTarget.parse(source.server, source.path)
    except OptionError as exc:
        raise NfsRefused(f"{source.server}:{source.path}: {exc}", "path") from None


__all__ = ["NFS_KIND", "NfsPlugin", "NfsRefused"]

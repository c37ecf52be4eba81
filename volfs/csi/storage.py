"""Where CSI volumes' bytes live, and how each kind is made, served and deleted.

``scratch``: a directory of its own, ``<state-dir>/csi/<id>`` (medium "") or
``<memory-dir>-csi/<id>`` (medium "Memory", tmpfs; beside the pods' memory dir, whose
every entry is a pod's), served by a LocalStore with its
capacity as the limit, as an EmptyDir with a sizeLimit is.

``nfs``: a directory on an NFS share, made and deleted by the same provisioner code
a StorageClass of ``volfs.io/nfs`` uses (:class:`volfs.persistent.NfsSource`: its
``subDir`` template, its ``onDelete``), served by volfs's NFS client with the
capacity enforced.

Either way the store is served at ``<root>/csi/<id>``, so the fs layer's limits,
usage and read-only checks apply to every write, whoever makes it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

from volfs.api.storage import PersistentVolumeClaim, StorageClass
from volfs.csi.volumes import NFS, RECORD_KIND, SCRATCH, Parameters, VolumeRecord
from volfs.fs import Filesystem
from volfs.persistent import NFS_PROVISIONER, NfsSource
from volfs.state import AsyncStateDB
from volfs.stores.base import Store
from volfs.stores.local import LocalStore
from volfs.stores.nfs import open_store
from volfs.stores.progress import Progress, remove_tree
from volfs.stores.quota import Usage, scan_usage

log = logging.getLogger(__name__)

CACHE_SECONDS = 10.0  # only volfs writes a scratch volume, as an EmptyDir
DEFAULT_SUBDIR = "csi/${pv.metadata.name}"  # the volume id: unique and safe as a name
_UNLIMITED = 2**62  # asks open_store to measure usage; the limit is set right after


class StorageFailed(Exception):
    """Storage could not be made, opened or deleted; ``str()`` is one line."""


class CsiVolumes:
    """The CSI volumes: their records (state DB), open stores, and the fs tree."""

    def __init__(self, state: AsyncStateDB, fs: Filesystem, nfs: NfsSource,
                 disk_dir: Path, memory_dir: Path, root: Path) -> None:
        """``disk_dir``, ``memory_dir``: where scratch volumes of each medium live."""
        self._state = state
        self._fs = fs
        self._nfs = nfs
        self._dirs = {"": disk_dir, "Memory": memory_dir}
        self.root = root
        self._stores: dict[str, Store] = {}

    # -- records -----------------------------------------------------------------

    async def records(self) -> list[VolumeRecord]:
        return [VolumeRecord.from_object(o) for o in await self._state.list(RECORD_KIND)]

    async def get(self, volume_id: str) -> VolumeRecord | None:
        obj = await self._state.get(RECORD_KIND, "", volume_id)
        return None if obj is None else VolumeRecord.from_object(obj)

    async def by_name(self, name: str) -> VolumeRecord | None:
        return next((r for r in await self.records() if r.name == name), None)

    async def save(self, record: VolumeRecord) -> None:
        """Commit the record (fsync'ed: it survives kill -9)."""
        await self._state.put(record.to_object())

    # -- serving -----------------------------------------------------------------

    def mount_path(self, volume_id: str) -> Path:
        return self.root / "csi" / volume_id

    def store(self, volume_id: str) -> Store | None:
        return self._stores.get(volume_id)

    async def restore(self) -> None:
        """Serve every recorded volume again (at start, before the mount appears). A
        volume whose storage cannot be opened now is logged and opened when next used."""
        self._fs.serve_csi()
        for record in await self.records():
            try:
                await self.serve(record)
            except StorageFailed as exc:
                log.warning("CSI volume %s not served yet: %s", record.volume_id, exc)

    async def make(self, record: VolumeRecord) -> Store:
        """Make the volume's storage (idempotent) and serve it."""
        if record.kind == NFS and not record.nfs_spec:
            await self._provision(record)
            await self.save(record)
        return await self.serve(record)

    async def serve(self, record: VolumeRecord) -> Store:
        """The volume's open store, opened and put at ``csi/<id>`` if it is not yet."""
        store = self._stores.get(record.volume_id)
        if store is None:
            store = await self._open(record)
            self._stores[record.volume_id] = store
            self._fs.publish_csi(record.volume_id, store)
        return store

    def set_capacity(self, record: VolumeRecord) -> None:
        """Enforce the record's capacity on its open store from the next write on."""
        store = self._stores.get(record.volume_id)
        if store is not None:
            store.usage.limit = record.capacity

    async def destroy(self, record: VolumeRecord) -> None:
        """Withdraw the volume, delete its storage (an NFS one as ``onDelete`` says) and
        its record last: a delete cut short is finished by the CO's retry."""
        self._fs.withdraw_csi(record.volume_id)
        await self._close(record.volume_id)
        progress = Progress(f"Deleting CSI volume {record.volume_id}")
        if record.kind == SCRATCH:
            path = self._dirs[record.parameters.medium] / record.volume_id
            await trio.to_thread.run_sync(remove_tree, path, progress)
        elif record.nfs_spec:
            try:
                done = await self._nfs.delete(self._pv_object(record), progress)
            except Exception as exc:  # ReclaimFailed, or an NFS error: the CO retries
                raise StorageFailed(str(exc)) from None
            log.info("CSI volume %s: %s", record.volume_id, done)
        await self._state.delete(RECORD_KIND, "", record.volume_id)

    def free_bytes(self, params: Parameters) -> int | None:
        """Free bytes where a new volume of ``params`` would live; None: not known."""
        if params.kind != SCRATCH:
            return None
        directory = self._dirs[params.medium].parent
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize

    async def close(self) -> None:
        """The daemon stops: close every store (NFS connections); data stays."""
        for volume_id in list(self._stores):
            await self._close(volume_id)

    async def _close(self, volume_id: str) -> None:
        store = self._stores.pop(volume_id, None)
        close = getattr(store, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:
                log.exception("closing CSI volume %s failed", volume_id)

    # -- the kinds -----------------------------------------------------------------

    async def _open(self, record: VolumeRecord) -> Store:
        if record.kind == SCRATCH:
            path = self._dirs[record.parameters.medium] / record.volume_id
            used = await trio.to_thread.run_sync(_make_or_measure, path)
            return LocalStore(path, Usage(limit=record.capacity, used=used),
                              cache_timeout=CACHE_SECONDS)
        nfs = record.nfs_spec.get("nfs", {})
        try:
            store = await open_store(nfs["server"], nfs["path"],
                                     record.nfs_spec.get("mountOptions", []),
                                     capacity_bytes=_UNLIMITED)
        except (OSError, ValueError) as exc:
            raise StorageFailed(f"nfs {nfs.get('server')}:{nfs.get('path')}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
        store.usage.limit = record.capacity  # measured and tracked; limited if asked
        return store

    def nfs_problem(self, params: Parameters) -> str | None:
        """What the NFS provisioner refuses in ``params`` (as it would in a StorageClass's
        parameters), in one line; None if nothing."""
        causes = self._nfs.check_class(_storage_class(params))
        return "; ".join(f"{field}: {why}" for field, why in causes) or None

    async def _provision(self, record: VolumeRecord) -> None:
        """Make the NFS directory as a ``volfs.io/nfs`` StorageClass would for a claim."""
        params = record.parameters
        sc = _storage_class(params)
        claim = PersistentVolumeClaim.model_validate({"metadata": {
            "namespace": params.claim_namespace or "default",
            "name": params.claim_name or record.volume_id}}, by_alias=True, by_name=False)
        try:
            made = await self._nfs.provision(claim, sc, record.volume_id)
        except OSError as exc:
            raise StorageFailed(f"nfs {params.nfs.get('server')}:{params.nfs.get('share')}: "
                                f"{exc.strerror or exc}") from None
        record.nfs_spec, record.nfs_annotations = made.spec, made.annotations

    def _pv_object(self, record: VolumeRecord) -> dict[str, object]:
        """The PV the NFS deleter expects (what it provisioned, by its annotations)."""
        return {"metadata": {"name": record.volume_id, "annotations": record.nfs_annotations},
                "spec": record.nfs_spec}


def _storage_class(params: Parameters) -> StorageClass:
    return StorageClass.model_validate({
        "metadata": {"name": "csi"}, "provisioner": NFS_PROVISIONER,
        "parameters": {"subDir": DEFAULT_SUBDIR, **params.nfs},
        "mountOptions": list(params.mount_options)}, by_alias=True, by_name=False)


def _make_or_measure(path: Path) -> int:
    """Create the scratch directory (0777, as an EmptyDir) or measure what it holds."""
    if path.is_dir():
        return scan_usage(str(path))
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.mkdir(exist_ok=True)
    os.chmod(path, 0o777)
    return 0

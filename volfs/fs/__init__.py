"""The FUSE side of volfs: the synthetic tree, the inode table, the Operations.

:class:`Filesystem` is what the layers above use: they publish a pod's volumes
and withdraw them; it keeps the kernel's caches honest about both. It owns the
mount too: :meth:`Filesystem.serve`, started with ``nursery.start``, mounts,
reports ready, answers the kernel until cancelled and unmounts on the way out.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pyfuse3
import trio

from volfs.fs import journal, keeper, negotiate, takeover
from volfs.fs.inodes import BackedNode, InodeTable
from volfs.fs.mount import MOUNT_OPTIONS, prepare_mount_point, unmount_lazily
from volfs.fs.operations import VolfsOperations
from volfs.fs.tree import CSI, PODS, ServedVolume, Tree
from volfs.stores.base import Store

log = logging.getLogger(__name__)

__all__ = ["Filesystem", "ServedVolume"]

# An open file reopened for the kernel must not be made, or emptied, again.
_REOPEN_STRIP = os.O_CREAT | os.O_EXCL | os.O_TRUNC


class Filesystem:
    def __init__(self, statfs_path: str, tree_gid: int = 0,
                 writeback_cache: bool = False) -> None:
        """``tree_gid``: the group given r-x on the synthetic directories (0: root's only).
        ``writeback_cache``: ask the kernel to cache writes (see VolfsOperations)."""
        self.tree = Tree()
        self.table = InodeTable()
        self.operations = VolfsOperations(self.tree, self.table, statfs_path, tree_gid,
                                          writeback_cache=writeback_cache)
        self.mounted = False
        self.mounted_at = 0.0  # when the mount served appeared (time.time())

    async def serve(self, root: Path, *, keep_in: Path | None = None,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Mount at ``root`` and answer the kernel until cancelled, then unmount.

        Ready (``task_status.started()``) once the mount is in place. A stale mount
        at ``root`` (its daemon died) is replaced; a live one is refused
        (MountPointBusy). pyfuse3 serves one mount per process.

        ``keep_in`` (a state dir; ``--keep-connection``): the connection outlives this
        process (a keeper holds it, :mod:`volfs.fs.keeper`), and a connection kept
        there by a dead daemon is served again instead of mounting anew
        (:mod:`volfs.fs.takeover`).
        """
        taken_over = await self._connect(root, keep_in)
        lease = None
        if keep_in is not None:  # from now on, the numbers the kernel gets are written down
            self._write_down(journal.NodeJournal(keep_in, fresh=not taken_over))
            lease = keeper.hold(keeper.socket_path(keep_in))
        self.mounted = True
        try:
            task_status.started()
            await pyfuse3.main()
        finally:
            self.mounted = False
            if keep_in is not None:
                keeper.drop(keeper.socket_path(keep_in))  # a clean stop ends the connection
            if lease is not None:
                lease.close()
            pyfuse3.close(unmount=True)
            if self.table.journal is not None:
                self.table.journal.close()
            if taken_over:  # libfuse did not mount it, so it does not unmount it
                unmount_lazily(root)
            log.info("%s unmounted", root)

    async def _connect(self, root: Path, keep_in: Path | None) -> bool:
        """Mount anew, or serve a kept connection (True)."""
        if keep_in is not None and await self._take_over(keep_in):
            return True
        prepare_mount_point(root)
        pyfuse3.init(self.operations, str(root), MOUNT_OPTIONS)
        self.mounted_at = time.time()
        fd = takeover.session_fd()
        init, reply = await negotiate.answer_init(fd)
        if keep_in is not None:  # recorded, and the connection handed to the keeper
            takeover.Connection(init, reply, self.mounted_at).save(keep_in)
            keeper.put(keeper.socket_path(keep_in), fd)
        return False

    async def _take_over(self, state_dir: Path) -> bool:
        """Serve the connection the keeper holds, if it holds one; False if not."""
        began = time.monotonic()
        connection = takeover.Connection.load(state_dir)
        fd = keeper.get(keeper.socket_path(state_dir))
        if fd is None:
            return False
        if connection is None:
            os.close(fd)
            raise takeover.TakeoverError(f"the keeper holds a connection but "
                                         f"{state_dir / takeover.CONNECTION_FILE} is missing")
        pyfuse3.init(self.operations, f"/dev/fd/{fd}", MOUNT_OPTIONS)
        reply = negotiate.amend(connection.init, await takeover.feed_init(fd, connection.init))
        takeover.check_reply(reply, connection.reply)
        await self._revive(journal.read(state_dir))
        takeover.resend_lost_requests(fd)
        self.mounted_at = connection.mounted_at
        log.info("serving the kept FUSE connection (mounted %s), taken over in %.0f ms",
                 time.strftime("%H:%M:%S", time.localtime(connection.mounted_at)),
                 (time.monotonic() - began) * 1000)
        return True

    def _write_down(self, node_journal: journal.NodeJournal) -> None:
        self.table.attach(node_journal)
        self.operations.journal = node_journal

    async def _revive(self, records: journal.Records) -> None:
        """Answer for the numbers the dead daemon gave the kernel: the same synthetic
        directories, the same objects (reopened by file handle), the same open files.
        What cannot be found again (gone, or an NFS volume's) is left out: the kernel
        then gets ENOENT or EBADF for it."""
        for ino, path in records.synthetic.items():
            self.table.restore_synthetic(ino, path)
        lost = 0
        for ino, (volume_path, file_handle) in records.backed.items():
            volume = self.tree.volume(volume_path)
            reopen = getattr(volume.store, "reopen", None) if volume is not None else None
            try:
                if volume is None or reopen is None:
                    raise OSError("no volume, or no way to reopen")
                self.table.restore_backed(ino, volume, reopen(file_handle))
            except OSError:
                lost += 1
        for fh, (ino, flags) in records.files.items():
            node = self.table.get(ino)
            if not isinstance(node, BackedNode):
                lost += 1
                continue
            try:
                store_fh = await node.volume.store.open(node.handle, flags & ~_REOPEN_STRIP)
            except OSError:
                lost += 1
                continue
            self.operations.restore_file(fh, node, store_fh)
        self.table.skip_to(records.last_ino + 1)
        self.operations.skip_handles(records.last_file, records.last_dir)
        log.info("revived %d inodes and %d open files of the previous daemon (%d lost)",
                 len(records.synthetic) + len(records.backed), len(records.files), lost)

    def publish_pod(self, pod_uid: str, volumes: list[ServedVolume]) -> None:
        """Make ``pods/<uid>/volumes/...`` appear (at once: nothing negative is cached)."""
        self.tree.add_pod(pod_uid, volumes)

    def withdraw_pod(self, pod_uid: str) -> list[ServedVolume]:
        """Make ``pods/<uid>`` disappear, and tell the kernel to drop what it cached of it."""
        volumes = self.tree.remove_pod(pod_uid)
        pods_node = self.table.synthetic((PODS,))
        self.table.drop_synthetic((PODS, pod_uid))
        if self.mounted:
            try:
                pyfuse3.invalidate_entry_async(pods_node.ino, pod_uid.encode(),
                                               ignore_enoent=True)
            except Exception:  # the kernel may not know the entry; nothing to drop
                log.debug("invalidating pods/%s failed", pod_uid, exc_info=True)
        return volumes

    def volumes(self, pod_uid: str) -> list[ServedVolume]:
        return self.tree.volumes(pod_uid)

    def serve_csi(self) -> None:
        """Show the ``csi/`` directory (before the mount appears: it is never cached absent)."""
        self.tree.serve_csi()

    def publish_csi(self, volume_id: str, store: Store) -> ServedVolume:
        """Make ``csi/<volume-id>`` appear, served by ``store``."""
        volume = ServedVolume.csi(volume_id, store)
        self.tree.add_csi(volume)
        return volume

    def withdraw_csi(self, volume_id: str) -> ServedVolume | None:
        """Make ``csi/<volume-id>`` disappear, and tell the kernel to drop what it cached."""
        volume = self.tree.remove_csi(volume_id)
        self._invalidate((CSI,), volume_id)
        return volume

    def _invalidate(self, parent: tuple[str, ...], name: str) -> None:
        node = self.table.synthetic(parent)
        self.table.drop_synthetic((*parent, name))
        if self.mounted:
            try:
                pyfuse3.invalidate_entry_async(node.ino, name.encode(), ignore_enoent=True)
            except Exception:  # the kernel may not know the entry; nothing to drop
                log.debug("invalidating %s/%s failed", "/".join(parent), name, exc_info=True)

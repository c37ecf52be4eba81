"""The FUSE side of volfs: the synthetic tree, the inode table, the Operations.

:class:`Filesystem` is what the layers above use: they publish a pod's volumes
and withdraw them; it keeps the kernel's caches honest about both. It owns the
mount too: :meth:`Filesystem.serve`, started with ``nursery.start``, mounts,
reports ready, answers the kernel until cancelled and unmounts on the way out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyfuse3
import trio

from volfs.fs.inodes import InodeTable
from volfs.fs.mount import MOUNT_OPTIONS, prepare_mount_point
from volfs.fs.operations import VolfsOperations
from volfs.fs.tree import PODS, ServedVolume, Tree

log = logging.getLogger(__name__)

__all__ = ["Filesystem", "ServedVolume"]


class Filesystem:
    def __init__(self, statfs_path: str, tree_gid: int = 0) -> None:
        """``tree_gid``: the group given r-x on the synthetic directories (0: root's only)."""
        self.tree = Tree()
        self.table = InodeTable()
        self.operations = VolfsOperations(self.tree, self.table, statfs_path, tree_gid)
        self.mounted = False

    async def serve(self, root: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Mount at ``root`` and answer the kernel until cancelled, then unmount.

        Ready (``task_status.started()``) once the mount is in place. A stale mount
        at ``root`` (its daemon died) is replaced; a live one is refused
        (MountPointBusy). pyfuse3 serves one mount per process.
        """
        prepare_mount_point(root)
        pyfuse3.init(self.operations, str(root), MOUNT_OPTIONS)
        self.mounted = True
        try:
            task_status.started()
            await pyfuse3.main()
        finally:
            self.mounted = False
            pyfuse3.close(unmount=True)
            log.info("%s unmounted", root)

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

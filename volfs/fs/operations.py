"""The pyfuse3 Operations of volfs: a thin router from FUSE calls to stores.

Each handler finds the inode's node in the table. A synthetic node is answered
from the tree (read-only: EROFS for any change); a backed node's call goes to
its volume's store, and whatever the store hands back is given an inode through
the table. Crossing from one volume to another (rename, link) is EXDEV, exactly
as between two mounts.

Errors cross into FUSE at one boundary (:func:`_fuse_handler`): ``OSError``
becomes its errno, anything unexpected is logged and becomes EIO, so no
exception ever reaches pyfuse3's loop.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pyfuse3
from pyfuse3 import FUSEError

from volfs.fs.attrs import entry_attributes, synthetic_attributes
from volfs.fs.handles import HandleTable, OpenFile
from volfs.fs.inodes import BackedNode, InodeTable, Node, SyntheticNode
from volfs.fs.journal import NodeJournal
from volfs.fs.tree import Tree
from volfs.logs import unexpected
from volfs.metrics import FUSE_ERRORS, FUSE_REQUESTS
from volfs.stores.base import AttrChanges, Entry, Owner, Store

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Coroutine[Any, Any, Any]])
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND
_DOTS = (b".", b"..")
CAPABILITY_XATTR = b"security.capability"  # what the kernel removes before a write


def _fuse_handler(fn: Handler) -> Handler:
    """The one place where store errors become FUSE errors, and where every request is
    counted and timed (volfs.metrics), its errors by errno."""
    series = FUSE_REQUESTS.series(fn.__name__)  # bound once: the hot path only adds
    operation = fn.__name__

    @functools.wraps(fn)
    async def handler(self: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return await fn(self, *args)
        except FUSEError as exc:
            _count_error(operation, exc.errno)
            raise
        except OSError as exc:
            _count_error(operation, exc.errno or errno.EIO)
            raise FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            unexpected(log, "%s failed", fn.__name__)
            _count_error(operation, errno.EIO)
            raise FUSEError(errno.EIO) from None
        finally:
            series.observe(time.perf_counter() - started)

    return cast(Handler, handler)


def _count_error(operation: str, code: int) -> None:
    FUSE_ERRORS.inc(operation, errno.errorcode.get(code, str(code)))


@dataclass
class _DirHandle:
    node: Node
    names: list[bytes] = field(default_factory=list)
    ino_cache: dict[bytes, int] = field(default_factory=dict)


class VolfsOperations(pyfuse3.Operations):
    # The kernel resolves "." and ".." itself; asking us would let ".." step
    # out of a volume root into its backing parent.
    supports_dot_lookup = False

    def __init__(self, tree: Tree, table: InodeTable, statfs_path: str,
                 tree_gid: int = 0, *, writeback_cache: bool = False) -> None:
        super().__init__()
        # Read by pyfuse3 when it answers the kernel's INIT: one setting for the whole
        # connection, so every volume kind is under it (see _bypasses_cache).
        self.enable_writeback_cache = writeback_cache
        self.tree = tree
        self.table = table
        self._statfs_path = statfs_path
        self._tree_gid = tree_gid  # the group of the synthetic directories (0750)
        # The numbers the kernel holds are ours, never a store's (see fs/handles.py).
        self._dirs: HandleTable[_DirHandle] = HandleTable("directory")
        self._files: HandleTable[OpenFile] = HandleTable("file")
        self._started_ns = time.time_ns()
        self.journal: NodeJournal | None = None  # --keep-connection: open files written down
        # Inodes whose security.capability the kernel just removed: the empty SETATTR
        # that follows is a writer's privilege removal, not a chown (see _drops_setid).
        self._capability_removed: set[int] = set()

    def restore_file(self, fh: int, node: BackedNode, store_fh: int) -> None:
        """A file a previous daemon opened as ``fh``, reopened (--keep-connection)."""
        self._files.restore(fh, OpenFile(node, store_fh))

    def skip_handles(self, last_file: int, last_dir: int) -> None:
        """Never give out the handle numbers a previous daemon gave (--keep-connection)."""
        self._files.skip_to(last_file + 1)
        self._dirs.skip_to(last_dir + 1)

    # -- lookups and attributes ---------------------------------------------------

    @_fuse_handler
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._lookup(parent_inode, name)

    async def _lookup(self, parent_inode: int, name: bytes) -> pyfuse3.EntryAttributes:
        if name in (b".", b".."):
            raise FUSEError(errno.ENOENT)
        parent = self._node(parent_inode)
        if isinstance(parent, SyntheticNode):
            return await self._lookup_synthetic(parent, name)
        entry = await parent.volume.store.lookup(parent.handle, name)
        return self._hand_out(parent, entry)

    async def _lookup_synthetic(self, parent: SyntheticNode,
                                name: bytes) -> pyfuse3.EntryAttributes:
        path = (*parent.path, os.fsdecode(name))
        volume = self.tree.volume(path)
        if volume is not None:
            entry = await volume.store.open_root()
            node = self.table.adopt(volume, entry)
            node.nlookup += 1
            node.parent = parent.ino
            return entry_attributes(node.ino, entry.attrs, volume.store.cache_timeout)
        if not self.tree.is_dir(path):
            raise FUSEError(errno.ENOENT)
        return self._synthetic_attrs(self.table.synthetic(path))

    def _hand_out(self, parent: BackedNode, entry: Entry) -> pyfuse3.EntryAttributes:
        """Give the kernel a (new or known) inode for ``entry``: lookup count +1."""
        node = self.table.adopt(parent.volume, entry)
        node.nlookup += 1
        node.parent = parent.ino
        return entry_attributes(node.ino, entry.attrs, parent.volume.store.cache_timeout)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            try:
                self.table.forget(ino, count)
            except Exception:  # forget must never fail; a leak beats a crash
                unexpected(log, "forget(%d, %d) failed", ino, count)

    @_fuse_handler
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._node(inode)
        if isinstance(node, SyntheticNode):
            return self._synthetic_attrs(node)
        st = await node.volume.store.getattr(node.handle)
        return entry_attributes(node.ino, st, node.volume.store.cache_timeout)

    @_fuse_handler
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self._writable(inode)
        changes = AttrChanges(
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            keep_setid=_privileged(ctx),
            drop_setid=self._drops_setid(inode, fields),
        )
        st = await node.volume.store.setattr(node.handle, changes, self._store_fh(node, fh))
        return entry_attributes(node.ino, st, node.volume.store.cache_timeout)

    @_fuse_handler
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._backed(inode)
        return await node.volume.store.readlink(node.handle)

    # -- making and removing names ------------------------------------------------

    @_fuse_handler
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._writable(parent_inode)
        if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and ctx.uid != 0:
            raise FUSEError(errno.EPERM)  # device nodes: the daemon is root, the caller is not
        entry = await parent.volume.store.mknod(parent.handle, name, mode, rdev, _owner(ctx))
        return self._hand_out(parent, entry)

    @_fuse_handler
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._writable(parent_inode)
        entry = await parent.volume.store.mkdir(parent.handle, name, mode, _owner(ctx))
        return self._hand_out(parent, entry)

    @_fuse_handler
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        parent = self._writable(parent_inode)
        entry = await parent.volume.store.symlink(parent.handle, name, target, _owner(ctx))
        return self._hand_out(parent, entry)

    @_fuse_handler
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._writable(parent_inode)
        await parent.volume.store.unlink(parent.handle, name)

    @_fuse_handler
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        parent = self._writable(parent_inode)
        await parent.volume.store.rmdir(parent.handle, name)

    @_fuse_handler
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        old, new = self._same_volume(parent_inode_old, parent_inode_new)
        await old.volume.store.rename(old.handle, name_old, new.handle, name_new, flags)

    @_fuse_handler
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node, parent = self._same_volume(inode, new_parent_inode)
        st = await node.volume.store.link(node.handle, parent.handle, new_name)
        node.nlookup += 1
        return entry_attributes(node.ino, st, node.volume.store.cache_timeout)

    # -- files -----------------------------------------------------------------------

    @_fuse_handler
    async def open(self, inode: int, flags: int,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._writable(inode) if flags & _WRITE_FLAGS else self._backed(inode)
        store = node.volume.store
        store_flags = self._store_flags(store, flags)
        store_fh = await store.open(node.handle, store_flags, keep_setid=_privileged(ctx))
        fh = self._files.add(OpenFile(node, store_fh))
        if self.journal is not None:
            self.journal.opened(fh, node.ino, store_flags)
        return pyfuse3.FileInfo(fh=fh, direct_io=self._bypasses_cache(store, flags))

    @_fuse_handler
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        parent = self._writable(parent_inode)
        store = parent.volume.store
        store_flags = self._store_flags(store, flags)
        store_fh, entry = await store.create(parent.handle, name, mode, store_flags,
                                             _owner(ctx), keep_setid=_privileged(ctx))
        attrs = self._hand_out(parent, entry)
        node = self.table.get(attrs.st_ino)
        assert isinstance(node, BackedNode)
        fh = self._files.add(OpenFile(node, store_fh))
        if self.journal is not None:
            self.journal.opened(fh, node.ino, store_flags)
        return pyfuse3.FileInfo(fh=fh, direct_io=self._bypasses_cache(store, flags)), attrs

    @_fuse_handler
    async def read(self, fh: int, off: int, size: int) -> bytes:
        file = self._files.get(fh)
        return await file.node.volume.store.read(file.store_fh, off, size)

    @_fuse_handler
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        file = self._files.get(fh)
        return await file.node.volume.store.write(file.store_fh, off, buf)

    @_fuse_handler
    async def flush(self, fh: int) -> None:
        file = self._files.get(fh)
        await file.node.volume.store.flush(file.store_fh)

    @_fuse_handler
    async def fsync(self, fh: int, datasync: bool) -> None:
        file = self._files.get(fh)
        await file.node.volume.store.fsync(file.store_fh, datasync)

    @_fuse_handler
    async def release(self, fh: int) -> None:
        file = self._files.pop(fh)
        if self.journal is not None:
            self.journal.released(fh)
        await file.node.volume.store.release(file.store_fh)

    # -- directories -----------------------------------------------------------------

    @_fuse_handler
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if isinstance(node, SyntheticNode) and not self.tree.is_dir(node.path):
            raise FUSEError(errno.ENOENT)
        # Listed at the first readdir, not here: a directory opened early (a dir_fd
        # that names are then made in) must show what is in it when it is read.
        fh = self._dirs.add(_DirHandle(node))
        if self.journal is not None:
            self.journal.dir_opened(fh)
        return fh

    async def _list(self, node: Node) -> list[bytes]:
        if isinstance(node, SyntheticNode):
            names = self.tree.children(node.path)
            if names is None:
                raise FUSEError(errno.ENOENT)
            return [os.fsencode(name) for name in names]
        return list(await node.volume.store.listdir(node.handle))

    @_fuse_handler
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._dirs.get(fh)
        if start_id == 0:  # the first read, or rewinddir(3): show what is there now
            handle.names = [*_DOTS, *await self._list(handle.node)]
        replied = 0
        for index in range(start_id, len(handle.names)):
            name = handle.names[index]
            if name in _DOTS:
                # Listed as every filesystem lists them, but counted as no lookup: the
                # kernel resolves "." and ".." itself and links no inode for them from a
                # readdirplus reply (nor forgets one later).
                if not pyfuse3.readdir_reply(token, name, self._dot(handle.node, name),
                                             index + 1):
                    return
                replied += 1
                continue
            try:
                attrs = await self._lookup(handle.node.ino, name)
            except (FUSEError, OSError) as exc:
                if exc.errno == errno.ENOENT:
                    continue  # removed since the listing was taken
                if replied:
                    return  # reply with what we have; the next call tries this one again
                raise
            if not pyfuse3.readdir_reply(token, name, attrs, index + 1):
                self._undo_lookup(attrs.st_ino)
                return
            replied += 1

    def _dot(self, node: Node, name: bytes) -> pyfuse3.EntryAttributes:
        """The entry of ``.`` (the directory) or ``..`` (its parent) in a listing: only
        the inode number and the type, which is all a listing shows of them."""
        if name == b".":
            ino = node.ino
        elif isinstance(node, SyntheticNode):
            ino = self.table.synthetic(node.path[:-1]).ino if node.path else node.ino
        else:
            ino = node.parent or node.ino
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = ino
        attrs.st_mode = stat.S_IFDIR
        return attrs

    def _undo_lookup(self, ino: int) -> None:
        """An entry the kernel did not take: give back the lookup we counted for it."""
        node = self.table.get(ino)
        if isinstance(node, BackedNode):
            node.nlookup -= 1
            self.table.drop_if_unused(node)

    @_fuse_handler
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh)

    @_fuse_handler
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # metadata changes are made with plain syscalls; the disk orders them

    @_fuse_handler
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = os.statvfs(self._statfs_path)
        data = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                     "f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(data, name, getattr(st, name))
        return data

    # -- extended attributes ----------------------------------------------------------

    @_fuse_handler
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        node = self._writable(inode)
        await node.volume.store.setxattr(node.handle, name, value)

    @_fuse_handler
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if isinstance(node, SyntheticNode):
            raise FUSEError(pyfuse3.ENOATTR)
        return await node.volume.store.getxattr(node.handle, name)

    @_fuse_handler
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        node = self._node(inode)
        if isinstance(node, SyntheticNode):
            return []
        return await node.volume.store.listxattr(node.handle)

    @_fuse_handler
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        node = self._writable(inode)
        await node.volume.store.removexattr(node.handle, name)
        if name == CAPABILITY_XATTR:
            self._capability_removed.add(inode)

    def _drops_setid(self, inode: int, fields: pyfuse3.SetattrFields) -> bool:
        """Whether a SETATTR is a chown's request to remove set-ID bits.

        With FUSE_HANDLE_KILLPRIV_V2 (fs/negotiate.py) the kernel strips "kill set-ID"
        and the mode it computed from what it sends, and leaves the removal to the
        filesystem; for ``chown(-1, -1)``, which removes set-user-ID even for root,
        nothing is left but the ctime: an empty SETATTR (ctime-only with writeback
        caching). A writer's privilege removal sends the same empty SETATTR right after
        removing the file's security.capability; that one keeps set-ID bits (a root
        writer keeps them; another writer's write removes them itself).
        """
        after_capability = inode in self._capability_removed
        self._capability_removed.discard(inode)
        return not after_capability and not (
            fields.update_mode or fields.update_uid or fields.update_gid
            or fields.update_size or fields.update_atime or fields.update_mtime)

    # -- helpers -----------------------------------------------------------------------

    def _node(self, ino: int) -> Node:
        node = self.table.get(ino)
        if node is None:
            raise FUSEError(errno.ENOENT)  # its pod is gone
        return node

    def _backed(self, ino: int) -> BackedNode:
        node = self._node(ino)
        if isinstance(node, SyntheticNode):
            raise FUSEError(errno.EISDIR)
        return node

    def _writable(self, ino: int) -> BackedNode:
        """The node, if it may be changed: not synthetic, not in a read-only volume."""
        node = self._node(ino)
        if isinstance(node, SyntheticNode) or node.volume.store.read_only:
            raise FUSEError(errno.EROFS)
        return node

    def _same_volume(self, first: int, second: int) -> tuple[BackedNode, BackedNode]:
        """Two nodes in one volume, or EXDEV (EROFS if that volume is read-only)."""
        a, b = self._node(first), self._node(second)
        if not isinstance(a, BackedNode) or not isinstance(b, BackedNode):
            raise FUSEError(errno.EXDEV)
        if a.volume is not b.volume:
            raise FUSEError(errno.EXDEV)
        if a.volume.store.read_only:
            raise FUSEError(errno.EROFS)
        return a, b

    def _bypasses_cache(self, store: Store, flags: int) -> bool:
        """Whether the kernel sends this open file's reads and writes straight to us.

        With the writeback cache, the kernel holds writes back and trusts its own idea
        of a file's size and data. Only volfs changes an EmptyDir, so that is right
        there; files that others change too (the host's, other NFS clients') bypass the
        page cache, so that their writes and ours cross at once.
        """
        if flags & os.O_DIRECT:
            return True
        return self.enable_writeback_cache and store.outside_writers

    def _store_flags(self, store: Store, flags: int) -> int:
        """The flags to open the backing file with, for a file the kernel caches.

        With the writeback cache the kernel reads the rest of a page it writes part of
        (a write-only file too) and places O_APPEND writes at its own end of file, so
        such a file is opened for reading and writing and without O_APPEND.
        """
        if not self.enable_writeback_cache or self._bypasses_cache(store, flags):
            return flags
        if flags & os.O_ACCMODE == os.O_WRONLY:
            flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
        return flags & ~os.O_APPEND

    def _store_fh(self, node: BackedNode, fh: int | None) -> int | None:
        """The store's handle for the kernel's ``fh``, if that is an open file of ``node``."""
        if fh is None:
            return None
        file = self._files.get(fh)
        return file.store_fh if file.node is node else None

    def _synthetic_attrs(self, node: SyntheticNode) -> pyfuse3.EntryAttributes:
        children = self.tree.children(node.path)
        if children is None:
            raise FUSEError(errno.ENOENT)
        return synthetic_attributes(node.ino, len(children), self._started_ns, self._tree_gid)


def _owner(ctx: pyfuse3.RequestContext) -> Owner:
    return Owner(ctx.uid, ctx.gid)


def _privileged(ctx: pyfuse3.RequestContext) -> bool:
    """Whether writes by this caller keep set-ID bits (the kernel's CAP_FSETID test,
    which a FUSE request does not carry: root stands for it, as Docker gives root
    CAP_FSETID by default)."""
    return ctx.uid == 0


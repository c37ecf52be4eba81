"""NFSv3 procedures on file handles (RFC 1813), as coroutines over :class:`RpcClient`.

A file handle is the server's opaque ``bytes``; attributes come back as
``os.stat_result`` (``st_dev`` is the server's fsid, ``st_ino`` its fileid).
Errors are ``OSError`` with the errno an NFS client would give; a server that
says "try later" (NFS3ERR_JUKEBOX) is asked again after a pause, within the
call's deadline.

Limits are checked before a call is sent, as the kernel's client checks them: a
name longer than NAME_MAX is ENAMETOOLONG. A symlink's target goes into the one
4 KiB buffer libnfs encodes a call in, so a target that does not fit there (about
3.6 KiB with a long name; the kernel's client sends up to 4095 bytes) is
ENAMETOOLONG at once too.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import trio

from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.rpc import (
    CallRefused,
    Resend,
    RpcClient,
    ServerUnreachable,
    Timeouts,
    _on_reply,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

lib = L.lib

BLKSIZE = 128 * 1024  # what stat reports as the preferred I/O size
NAME_MAX = 255  # what NFS servers' PATHCONF answers, and the kernel's client enforces
NFSTIME_MAX = 0xFFFF_FFFF  # nfstime3.seconds is a uint32

_STATUS_ERRNO = {
    1: errno.EPERM, 2: errno.ENOENT, 5: errno.EIO, 6: errno.ENXIO, 13: errno.EACCES,
    17: errno.EEXIST, 18: errno.EXDEV, 19: errno.ENODEV, 20: errno.ENOTDIR,
    21: errno.EISDIR, 22: errno.EINVAL, 27: errno.EFBIG, 28: errno.ENOSPC, 30: errno.EROFS,
    31: errno.EMLINK, 63: errno.ENAMETOOLONG, 66: errno.ENOTEMPTY, 69: errno.EDQUOT,
    70: errno.ESTALE, 71: errno.EREMOTE,
    10001: errno.ESTALE,      # BADHANDLE
    10002: errno.EIO,         # NOT_SYNC
    10003: errno.EIO,         # BAD_COOKIE
    10004: errno.EOPNOTSUPP,  # NOTSUPP
    10005: errno.EIO,         # TOOSMALL
    10006: errno.EIO,         # SERVERFAULT
    10007: errno.EPERM,       # BADTYPE: the server makes no such kind of object
}

_MODE_TYPE = {
    L.NF3REG: stat.S_IFREG, L.NF3DIR: stat.S_IFDIR, L.NF3BLK: stat.S_IFBLK,
    L.NF3CHR: stat.S_IFCHR, L.NF3LNK: stat.S_IFLNK, L.NF3SOCK: stat.S_IFSOCK,
    L.NF3FIFO: stat.S_IFIFO,
}
_NODE_TYPE = {stat.S_IFIFO: L.NF3FIFO, stat.S_IFSOCK: L.NF3SOCK, stat.S_IFCHR: L.NF3CHR,
              stat.S_IFBLK: L.NF3BLK}


class _Jukebox(Exception):
    """NFS3ERR_JUKEBOX: the server is busy; ask again shortly."""


def _keep(*objects: Any) -> list[Any]:
    """The buffers a call's arguments point into: kept alive until its reply."""
    return list(objects)


def _check(status: int) -> None:
    if status == L.NFS3_OK:
        return
    if status == L.NFS3ERR_JUKEBOX:
        raise _Jukebox()
    code = _STATUS_ERRNO.get(status, errno.EIO)
    raise OSError(code, os.strerror(code))


def stat_of(a: L.fattr3) -> os.stat_result:
    """An ``os.stat_result`` from NFSv3 attributes (fsid as st_dev, fileid as st_ino)."""
    atime = a.atime.seconds * 1_000_000_000 + a.atime.nseconds
    mtime = a.mtime.seconds * 1_000_000_000 + a.mtime.nseconds
    ctime = a.ctime.seconds * 1_000_000_000 + a.ctime.nseconds
    mode = _MODE_TYPE.get(a.type, 0) | (a.mode & 0o7777)
    return os.stat_result((
        mode, a.fileid, a.fsid, a.nlink, a.uid, a.gid, a.size,
        a.atime.seconds, a.mtime.seconds, a.ctime.seconds,
        atime / 1e9, mtime / 1e9, ctime / 1e9, atime, mtime, ctime,
        BLKSIZE, (a.used + 511) // 512, os.makedev(a.rdev.specdata1, a.rdev.specdata2),
    ))


def _post_op(p: L.post_op_attr) -> os.stat_result | None:
    return stat_of(p.attributes) if p.attributes_follow else None


def _fh_bytes(fh: L.nfs_fh3) -> bytes:
    return ctypes.string_at(fh.data_val, fh.data_len)


@dataclass(frozen=True)
class SetAttrs:
    """What a SETATTR (or a create) sets; None leaves it alone. Times in ns since the epoch."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None

    def fill(self, s: L.sattr3) -> None:
        for name in ("mode", "uid", "gid"):
            value = getattr(self, name)
            if value is not None:
                field = getattr(s, name)
                field.set_it, field.value = 1, value & (0o7777 if name == "mode" else 0xFFFFFFFF)
        if self.size is not None:
            s.size.set_it, s.size.value = 1, self.size
        for name in ("atime", "mtime"):
            value = getattr(self, f"{name}_ns")
            if value is not None:
                field = getattr(s, name)
                field.set_it = L.SET_TO_CLIENT_TIME
                field.value.seconds, field.value.nseconds = nfstime3(value)


def nfstime3(ns: int) -> tuple[int, int]:
    """A time (ns since the epoch) as NFSv3 carries it. ``seconds`` is a uint32, so a time
    before 1970 or after 2106-02-07 06:28:15 UTC cannot be sent: it is clamped to the
    nearest one that can, with no nanoseconds at either end, as Linux's NFSv3 client does
    (its superblock's time range is 0..U32_MAX, and the VFS's ``timestamp_truncate``
    clamps every time it is given to it). Never a value wrapped modulo 2^32, which would
    be another date (2^32 s read back as 1970)."""
    seconds, nanoseconds = divmod(ns, 1_000_000_000)
    if seconds <= 0:
        return 0, 0
    if seconds >= NFSTIME_MAX:
        return NFSTIME_MAX, 0
    return seconds, nanoseconds


class Made(NamedTuple):
    """What CREATE/MKDIR/SYMLINK/MKNOD answer: the new handle and attributes, if given."""

    fh: bytes | None
    attrs: os.stat_result | None
    dir_attrs: os.stat_result | None


class ReadReply(NamedTuple):
    data: bytes
    eof: bool
    attrs: os.stat_result | None


class Reply(Protocol[T_co]):
    """A call on its way, as read-ahead and write-behind see it (:class:`Started` is
    one; their tests give fakes): its reply, later."""

    async def result(self) -> T_co: ...


class Started(Generic[T]):
    """A call on its way (read-ahead, write-behind): :meth:`result` waits for the reply,
    and sends the call again, within its deadline, if its connection broke meanwhile."""

    def __init__(self, client: RpcClient, call: Any, redo: Callable[[float], Awaitable[T]],
                 deadline: float) -> None:
        self._client = client
        self._call = call
        self._redo = redo
        self._deadline = deadline
        self._outcome: tuple[T | None, BaseException | None] | None = None
        self._taking = trio.Lock()  # two reads may wait for one window of read-ahead

    @property
    def answered(self) -> bool:
        return self._outcome is not None or (self._call is not None and self._call.finished)

    async def result(self) -> T:
        if self._outcome is None:
            async with self._taking:
                if self._outcome is None:
                    try:
                        self._outcome = (await self._get(), None)
                    except (OSError, _Jukebox) as exc:
                        self._outcome = (None, exc)
        value, error = self._outcome
        if error is not None:
            raise error
        return value  # type: ignore[return-value]

    async def _get(self) -> T:
        if self._call is not None:
            try:
                value: T = await self._client.finish(self._call, self._deadline)
                return value
            except (Resend, _Jukebox):
                pass
            finally:
                self._call = None
        return await self._redo(self._deadline)


class Written(NamedTuple):
    written: int
    committed: int
    verifier: bytes
    attrs: os.stat_result | None


class DirEntry(NamedTuple):
    name: bytes
    fileid: int
    fh: bytes | None
    attrs: os.stat_result | None


class FsInfo(NamedTuple):
    rtmax: int
    wtmax: int
    dtpref: int


class Nfs3:
    """The NFSv3 procedures volfs uses, on one server (one :class:`RpcClient`)."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client

    async def _do(self, proc: str, args: ctypes.Structure, decode: Callable[[int], Any],
                  keep: Any = None, deadline: float | None = None) -> Any:
        fn = getattr(lib, f"rpc_nfs3_{proc}_async")
        ref = ctypes.byref(args)
        if deadline is None:
            deadline = trio.current_time() + self.client.timeouts.total
        pause = 0.1
        while True:
            try:
                return await self.client.call(lambda rpc, cid: fn(rpc, _on_reply, ref, cid),
                                              decode, (args, keep), deadline=deadline,
                                              procedure=proc.upper())
            except _Jukebox:
                if trio.current_time() + pause >= deadline:
                    raise OSError(errno.EIO, "server busy (NFS3ERR_JUKEBOX)") from None
                await trio.sleep(pause)
                pause = min(pause * 2, 2.0)

    @staticmethod
    def _fh(target: L.nfs_fh3, fh: bytes, keep: list[Any]) -> None:
        buf = ctypes.c_char_p(fh)
        keep.append(buf)
        target.data_len = len(fh)
        target.data_val = ctypes.cast(buf, ctypes.c_void_p)

    def _dirop(self, target: L.diropargs3, dir_fh: bytes, name: bytes, keep: list[Any]) -> None:
        if len(name) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
        self._fh(target.dir, dir_fh, keep)
        target.name = name
        keep.append(name)

    # -- attributes and names ----------------------------------------------------------

    async def null(self, deadline: float) -> None:
        await self.client.ping(deadline)

    async def getattr(self, fh: bytes) -> os.stat_result:
        args, keep = L.GETATTR3args(), _keep()
        self._fh(args.object, fh, keep)

        def decode(ptr: int) -> os.stat_result:
            res = L.GETATTR3res.from_address(ptr)
            _check(res.status)
            return stat_of(res.resok.obj_attributes)

        result: os.stat_result = await self._do("getattr", args, decode, keep)
        return result

    async def setattr(self, fh: bytes, attrs: SetAttrs) -> os.stat_result | None:
        args, keep = L.SETATTR3args(), _keep()
        self._fh(args.object, fh, keep)
        attrs.fill(args.new_attributes)

        def decode(ptr: int) -> os.stat_result | None:
            res = L.SETATTR3res.from_address(ptr)
            _check(res.status)
            return _post_op(res.resok.wcc.after)

        result: os.stat_result | None = await self._do("setattr", args, decode, keep)
        return result

    async def lookup(self, dir_fh: bytes, name: bytes) -> tuple[bytes, os.stat_result | None]:
        args, keep = L.LOOKUP3args(), _keep()
        self._dirop(args.what, dir_fh, name, keep)

        def decode(ptr: int) -> tuple[bytes, os.stat_result | None]:
            res = L.LOOKUP3res.from_address(ptr)
            _check(res.status)
            return _fh_bytes(res.resok.object), _post_op(res.resok.obj_attributes)

        result: tuple[bytes, os.stat_result | None] = await self._do("lookup", args, decode,
                                                                     keep)
        return result

    async def readlink(self, fh: bytes) -> bytes:
        args, keep = L.READLINK3args(), _keep()
        self._fh(args.symlink, fh, keep)

        def decode(ptr: int) -> bytes:
            res = L.READLINK3res.from_address(ptr)
            _check(res.status)
            return ctypes.string_at(res.resok.data) if res.resok.data else b""

        result: bytes = await self._do("readlink", args, decode, keep)
        return result

    # -- making and removing names -----------------------------------------------------

    @staticmethod
    def _made(ptr: int) -> Made:
        res = L._made3res.from_address(ptr)
        _check(res.status)
        ok = res.resok
        fh = _fh_bytes(ok.obj.handle) if ok.obj.handle_follows else None
        return Made(fh, _post_op(ok.obj_attributes), _post_op(ok.dir_wcc.after))

    async def create(self, dir_fh: bytes, name: bytes, attrs: SetAttrs,
                     exclusive: bool) -> Made:
        args, keep = L.CREATE3args(), _keep()
        self._dirop(args.where, dir_fh, name, keep)
        args.how.mode = L.GUARDED if exclusive else L.UNCHECKED
        attrs.fill(args.how.u.obj_attributes)
        result: Made = await self._do("create", args, self._made, keep)
        return result

    async def mkdir(self, dir_fh: bytes, name: bytes, attrs: SetAttrs) -> Made:
        args, keep = L.MKDIR3args(), _keep()
        self._dirop(args.where, dir_fh, name, keep)
        attrs.fill(args.attributes)
        result: Made = await self._do("mkdir", args, self._made, keep)
        return result

    async def symlink(self, dir_fh: bytes, name: bytes, target: bytes, attrs: SetAttrs) -> Made:
        args, keep = L.SYMLINK3args(), _keep(target)
        self._dirop(args.where, dir_fh, name, keep)
        attrs.fill(args.symlink.symlink_attributes)
        args.symlink.symlink_data = target
        try:
            result: Made = await self._do("symlink", args, self._made, keep)
        except CallRefused as refused:  # the target does not fit in libnfs's buffer
            raise OSError(errno.ENAMETOOLONG, f"symlink target of {len(target)} bytes: "
                                              f"{refused.strerror}") from None
        return result

    async def mknod(self, dir_fh: bytes, name: bytes, mode: int, rdev: int,
                    attrs: SetAttrs) -> Made:
        kind = _NODE_TYPE.get(stat.S_IFMT(mode))
        if kind is None:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        args, keep = L.MKNOD3args(), _keep()
        self._dirop(args.where, dir_fh, name, keep)
        args.what.type = kind
        if kind in (L.NF3CHR, L.NF3BLK):
            attrs.fill(args.what.u.device.dev_attributes)
            args.what.u.device.spec.specdata1 = os.major(rdev)
            args.what.u.device.spec.specdata2 = os.minor(rdev)
        else:
            attrs.fill(args.what.u.attributes)
        result: Made = await self._do("mknod", args, self._made, keep)
        return result

    async def remove(self, dir_fh: bytes, name: bytes) -> None:
        args, keep = L.REMOVE3args(), _keep()
        self._dirop(args.object, dir_fh, name, keep)
        await self._do("remove", args, _status_only(L._dirop3res), keep)

    async def rmdir(self, dir_fh: bytes, name: bytes) -> None:
        args, keep = L.RMDIR3args(), _keep()
        self._dirop(args.object, dir_fh, name, keep)
        await self._do("rmdir", args, _status_only(L._dirop3res), keep)

    async def rename(self, from_dir: bytes, from_name: bytes, to_dir: bytes,
                     to_name: bytes) -> None:
        args, keep = L.RENAME3args(), _keep()
        self._dirop(args.from_, from_dir, from_name, keep)
        self._dirop(args.to, to_dir, to_name, keep)
        await self._do("rename", args, _status_only(L.RENAME3res), keep)

    async def link(self, fh: bytes, dir_fh: bytes, name: bytes) -> os.stat_result | None:
        args, keep = L.LINK3args(), _keep()
        self._fh(args.file, fh, keep)
        self._dirop(args.link, dir_fh, name, keep)

        def decode(ptr: int) -> os.stat_result | None:
            res = L.LINK3res.from_address(ptr)
            _check(res.status)
            return _post_op(res.resok.file_attributes)

        result: os.stat_result | None = await self._do("link", args, decode, keep)
        return result

    async def readdir(self, dir_fh: bytes, max_count: int = 64 * 1024) -> list[DirEntry]:
        """Every entry of a directory (but "." and ".."), with handles and attributes."""
        entries: list[DirEntry] = []
        cookie, verifier = 0, b"\0" * 8
        while True:
            args, keep = L.READDIRPLUS3args(), _keep()
            self._fh(args.dir, dir_fh, keep)
            args.cookie = cookie
            args.cookieverf = verifier
            args.dircount = max_count // 4
            args.maxcount = max_count

            def decode(ptr: int) -> tuple[list[DirEntry], int, bytes, bool]:
                res = L.READDIRPLUS3res.from_address(ptr)
                _check(res.status)
                page, last = [], 0
                entry = res.resok.reply.entries
                while entry:
                    e = entry.contents
                    last = e.cookie
                    name = e.name or b""
                    if name not in (b".", b".."):
                        fh = _fh_bytes(e.name_handle.handle) if e.name_handle.handle_follows \
                            else None
                        page.append(DirEntry(name, e.fileid, fh, _post_op(e.name_attributes)))
                    entry = e.nextentry
                return page, last, bytes(res.resok.cookieverf), bool(res.resok.reply.eof)

            page, last, verifier, eof = await self._do("readdirplus", args, decode, keep)
            entries.extend(page)
            if eof or not last:
                return entries
            cookie = last

    async def fsstat(self, root_fh: bytes) -> L.FSSTAT3resok:
        args, keep = L.FSSTAT3args(), _keep()
        self._fh(args.fsroot, root_fh, keep)

        def decode(ptr: int) -> L.FSSTAT3resok:
            res = L.FSSTAT3res.from_address(ptr)
            _check(res.status)
            copy = L.FSSTAT3resok()
            ctypes.pointer(copy)[0] = res.resok
            return copy

        result: L.FSSTAT3resok = await self._do("fsstat", args, decode, keep)
        return result

    async def fsinfo(self, root_fh: bytes) -> FsInfo:
        args, keep = L.FSINFO3args(), _keep()
        self._fh(args.fsroot, root_fh, keep)

        def decode(ptr: int) -> FsInfo:
            res = L.FSINFO3res.from_address(ptr)
            _check(res.status)
            ok = res.resok
            return FsInfo(ok.rtmax, ok.wtmax, ok.dtpref)

        result: FsInfo = await self._do("fsinfo", args, decode, keep)
        return result

    # -- data ------------------------------------------------------------------------------

    def _read_call(self, fh: bytes, offset: int, count: int
                   ) -> tuple[L.READ3args, list[Any], Callable[[int], ReadReply]]:
        args, keep = L.READ3args(), _keep()
        self._fh(args.file, fh, keep)
        args.offset, args.count = offset, count

        def decode(ptr: int) -> ReadReply:
            res = L.READ3res.from_address(ptr)
            _check(res.status)
            ok = res.resok
            data = ctypes.string_at(ok.data.val, ok.data.len) if ok.data.len else b""
            return ReadReply(data, bool(ok.eof), _post_op(ok.file_attributes))

        return args, keep, decode

    async def read(self, fh: bytes, offset: int, count: int,
                   deadline: float | None = None) -> ReadReply:
        args, keep, decode = self._read_call(fh, offset, count)
        result: ReadReply = await self._do("read", args, decode, keep, deadline)
        return result

    def start_read(self, fh: bytes, offset: int, count: int) -> Started[ReadReply]:
        """READ, sent now; its reply is taken later (read-ahead)."""
        args, keep, decode = self._read_call(fh, offset, count)
        return self._start("read", args, decode, keep,
                           lambda deadline: self.read(fh, offset, count, deadline))

    def _write_call(self, fh: bytes, offset: int, data: bytes, stable: int
                    ) -> tuple[L.WRITE3args, list[Any], Callable[[int], Written]]:
        args, keep = L.WRITE3args(), _keep(data)
        self._fh(args.file, fh, keep)
        buf = ctypes.c_char_p(data)
        keep.append(buf)
        args.offset, args.count, args.stable = offset, len(data), stable
        args.data.len = len(data)
        args.data.val = ctypes.cast(buf, ctypes.c_void_p)

        def decode(ptr: int) -> Written:
            res = L.WRITE3res.from_address(ptr)
            _check(res.status)
            ok = res.resok
            return Written(ok.count, ok.committed, bytes(ok.verf), _post_op(ok.file_wcc.after))

        return args, keep, decode

    async def write(self, fh: bytes, offset: int, data: bytes, stable: int,
                    deadline: float | None = None) -> Written:
        args, keep, decode = self._write_call(fh, offset, data, stable)
        result: Written = await self._do("write", args, decode, keep, deadline)
        return result

    def start_write(self, fh: bytes, offset: int, data: bytes, stable: int) -> Started[Written]:
        """WRITE, sent now; its reply is taken later (write-behind)."""
        args, keep, decode = self._write_call(fh, offset, data, stable)
        return self._start("write", args, decode, keep,
                           lambda deadline: self.write(fh, offset, data, stable, deadline))

    def _start(self, proc: str, args: ctypes.Structure, decode: Callable[[int], T],
               keep: Any, redo: Callable[[float], Awaitable[T]]) -> Started[T]:
        fn = getattr(lib, f"rpc_nfs3_{proc}_async")
        ref = ctypes.byref(args)
        call = self.client.start(lambda rpc, cid: fn(rpc, _on_reply, ref, cid), decode,
                                 (args, keep), procedure=proc.upper())
        return Started(self.client, call, redo,
                       trio.current_time() + self.client.timeouts.total)

    async def commit(self, fh: bytes) -> bytes:
        """Make every unstable write to the file stable; the server's write verifier."""
        args, keep = L.COMMIT3args(), _keep()
        self._fh(args.file, fh, keep)

        def decode(ptr: int) -> bytes:
            res = L.COMMIT3res.from_address(ptr)
            _check(res.status)
            return bytes(res.resok.verf)

        result: bytes = await self._do("commit", args, decode, keep)
        return result


def _status_only(res_type: type[ctypes.Structure]) -> Callable[[int], None]:
    def decode(ptr: int) -> None:
        _check(res_type.from_address(ptr).status)

    return decode


_MOUNT_ERRORS = {1: "permission denied", 2: "no such export or directory", 5: "I/O error",
                 13: "access denied by the server", 20: "not a directory",
                 22: "invalid argument", 63: "name too long", 10004: "not supported",
                 10006: "server fault"}


async def mount(server: str, export: str, port: int | None, timeouts: Timeouts,
                deadline: float) -> bytes:
    """MOUNT3/MNT: the root file handle of ``export`` (a path the server exports)."""
    client = RpcClient(server, L.MOUNT_PROGRAM, L.MOUNT_V3, port, timeouts,
                       name=f"{server} mountd")
    path = export.encode()

    def decode(ptr: int) -> bytes:
        res = L.mountres3.from_address(ptr)
        if res.fhs_status != 0:
            what = _MOUNT_ERRORS.get(res.fhs_status, f"error {res.fhs_status}")
            code = res.fhs_status if res.fhs_status < 1000 else errno.EIO
            raise OSError(code, f"mount {export}: {what}")
        fh = res.mountinfo.fhandle
        return ctypes.string_at(fh.val, fh.len)

    try:
        result: bytes = await client.call(
            lambda rpc, cid: lib.rpc_mount3_mnt_async(rpc, _on_reply, path, cid),
            decode, path, deadline=deadline, procedure="MNT")
        return result
    finally:
        client.close()


__all__ = ["BLKSIZE", "DirEntry", "FsInfo", "Made", "Nfs3", "ReadReply", "ServerUnreachable",
           "SetAttrs", "Started", "Written", "mount", "stat_of"]

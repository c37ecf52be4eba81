"""The Operations handlers called directly, as the kernel would call them, over real stores.

A pod's volumes are published in a :class:`volfs.fs.Filesystem` that is never mounted;
their stores are LocalStores over temporary directories. Each test walks the synthetic
tree ``pods/<uid>/volumes/<kind>/<name>`` with ``lookup`` and then makes, writes, reads,
lists, renames and forgets, checking the replies and what reached the disk.

``readdir`` answers through ``pyfuse3.readdir_reply``, which needs the kernel's token;
here it is replaced by a recorder whose buffer may be told to fill up, so the handler's
own logic (resuming, giving back the lookups of entries not taken) is what is tested.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pyfuse3
import pytest
import trio

from volfs.fs import Filesystem, ServedVolume
from volfs.fs.inodes import BackedNode
from volfs.fs.operations import VolfsOperations
from volfs.lifecycle.hostpath import HOST_PATH_KIND
from volfs.lifecycle.volumes import EMPTY_DIR_KIND
from volfs.stores.local import DescriptorCache, Inode, LocalStore
from volfs.stores.quota import Usage, scan_usage

UID = "0c3e7f1a-5b2d-4e8f-9a6c-1d2e3f4a5b6c"
LIMIT = 10_000
ROOT = pyfuse3.ROOT_INODE


@dataclass(frozen=True)
class Caller:
    """The fields of a request the handlers read: who asks (this process's user)."""

    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    pid: int = field(default_factory=os.getpid)
    umask: int = 0o022


CTX = cast(pyfuse3.RequestContext, Caller())


@dataclass(frozen=True)
class Fields:
    """Which attributes a setattr changes (pyfuse3's own cannot be made outside the kernel)."""

    update_mode: bool = False
    update_uid: bool = False
    update_gid: bool = False
    update_size: bool = False
    update_atime: bool = False
    update_mtime: bool = False
    update_ctime: bool = False


def fields(**changed: bool) -> pyfuse3.SetattrFields:
    return cast(pyfuse3.SetattrFields, Fields(**changed))


@dataclass
class Served:
    """A pod with three volumes, published in a filesystem that is never mounted.

    ``scratch`` is an EmptyDir limited to LIMIT bytes, ``other`` an EmptyDir without a
    limit, ``host`` a read-only HostPath holding the file ``seen``.
    """

    fs: Filesystem
    dirs: dict[str, Path]

    @property
    def ops(self) -> VolfsOperations:
        return self.fs.operations

    def store(self, name: str) -> LocalStore:
        (volume,) = [v for v in self.fs.volumes(UID) if v.name == name]
        return cast(LocalStore, volume.store)

    async def walk(self, *names: str) -> int:
        """The inode at ``names`` below the root, looked up one name at a time."""
        ino = ROOT
        for name in names:
            ino = (await self.ops.lookup(ino, name.encode(), CTX)).st_ino
        return ino

    async def volume(self, name: str) -> int:
        kind = HOST_PATH_KIND if name == "host" else EMPTY_DIR_KIND
        return await self.walk("pods", UID, "volumes", kind, name)

    def nlookup(self, ino: int) -> int:
        node = self.fs.table.get(ino)
        assert isinstance(node, BackedNode), ino
        return node.nlookup


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    descriptors = DescriptorCache(capacity=64)
    dirs = {name: tmp_path / name for name in ("scratch", "other", "host")}
    for path in dirs.values():
        path.mkdir()
    (dirs["host"] / "seen").write_bytes(b"from the host")
    stores = {
        "scratch": LocalStore(dirs["scratch"], Usage(limit=LIMIT), descriptors=descriptors),
        "other": LocalStore(dirs["other"], Usage(), descriptors=descriptors),
        "host": LocalStore(dirs["host"], read_only=True, track_usage=False,
                           descriptors=descriptors),
    }
    fs = Filesystem(statfs_path=str(tmp_path))
    fs.publish_pod(UID, [
        ServedVolume(UID, HOST_PATH_KIND if name == "host" else EMPTY_DIR_KIND, name, store)
        for name, store in stores.items()])
    yield Served(fs, dirs)
    # Close what the test left: every node's descriptor, as the kernel's forgets would
    # (the table has no public way to list its nodes: only the kernel needs none).
    fs.withdraw_pod(UID)
    for node in list(fs.table._backed.values()):
        fs.table.forget(node.ino, node.nlookup)


def run(served: Served, test: Callable[[Served], Awaitable[None]]) -> None:
    async def main() -> None:
        await test(served)
    trio.run(main)


async def fuse_errno(handler: Callable[..., Awaitable[object]], *args: object) -> int:
    """The errno ``handler(*args)`` fails with (it must fail)."""
    with pytest.raises(pyfuse3.FUSEError) as raised:
        await handler(*args)
    return raised.value.errno


# -- the tree, and a file through it ---------------------------------------------------------

def test_a_file_made_through_the_tree_lands_in_its_volumes_directory(served: Served) -> None:
    async def test(s: Served) -> None:
        volume = await s.volume("scratch")
        info, attrs = await s.ops.create(volume, b"f", stat.S_IFREG | 0o640,
                                         os.O_RDWR | os.O_CREAT, CTX)
        assert await s.ops.write(info.fh, 0, b"hello ") == 6
        assert await s.ops.write(info.fh, 6, b"world") == 5
        assert await s.ops.read(info.fh, 0, 100) == b"hello world"
        await s.ops.flush(info.fh)
        await s.ops.release(info.fh)
        assert (attrs.st_uid, attrs.st_gid) == (os.getuid(), os.getgid())
        again = await s.ops.lookup(volume, b"f", CTX)
        assert again.st_ino == attrs.st_ino and again.st_size == 11
        assert (await s.ops.getattr(attrs.st_ino, CTX)).st_size == 11
        fh = (await s.ops.open(attrs.st_ino, os.O_RDONLY, CTX)).fh
        assert await s.ops.read(fh, 6, 100) == b"world"
        await s.ops.release(fh)

    run(served, test)
    path = served.dirs["scratch"] / "f"
    assert path.read_bytes() == b"hello world"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert served.store("scratch").usage.used == 11
    assert list(served.dirs["other"].iterdir()) == []


def test_the_synthetic_directories_lead_only_to_published_volumes(served: Served) -> None:
    async def test(s: Served) -> None:
        pods = await s.walk("pods")
        assert stat.S_ISDIR((await s.ops.getattr(pods, CTX)).st_mode)
        kinds = await s.walk("pods", UID, "volumes")
        for missing in ((ROOT, b"nope"), (pods, b"other-uid"), (kinds, b"kubernetes.io~nfs"),
                        (await s.walk("pods", UID, "volumes", EMPTY_DIR_KIND), b"nope")):
            assert await fuse_errno(s.ops.lookup, *missing, CTX) == errno.ENOENT
        host = await s.volume("host")
        seen = await s.ops.lookup(host, b"seen", CTX)
        fh = (await s.ops.open(seen.st_ino, os.O_RDONLY, CTX)).fh
        assert await s.ops.read(fh, 0, 100) == b"from the host"
        await s.ops.release(fh)

    run(served, test)


def test_the_synthetic_directories_are_root_only_or_the_tree_groups(served: Served) -> None:
    levels = ((), ("pods",), ("pods", UID), ("pods", UID, "volumes"),
              ("pods", UID, "volumes", EMPTY_DIR_KIND))

    async def modes(s: Served) -> set[tuple[int, int, int]]:
        seen = set()
        for names in levels:
            attrs = await s.ops.getattr(await s.walk(*names), CTX)
            seen.add((attrs.st_mode, attrs.st_uid, attrs.st_gid))
        return seen

    async def test(s: Served) -> None:
        assert await modes(s) == {(stat.S_IFDIR | 0o750, 0, 0)}
        grouped = Filesystem(statfs_path="/", tree_gid=4242)
        grouped.publish_pod(UID, s.fs.volumes(UID))
        assert await modes(Served(grouped, s.dirs)) == {(stat.S_IFDIR | 0o750, 0, 4242)}

    run(served, test)


def test_dot_dot_from_a_volume_root_does_not_step_into_its_backing_parent(
        served: Served) -> None:
    (served.dirs["scratch"].parent / "beside").write_bytes(b"not the pod's")

    async def test(s: Served) -> None:
        volume = await s.volume("scratch")
        for name in (b"..", b"."):
            assert await fuse_errno(s.ops.lookup, volume, name, CTX) == errno.ENOENT
        assert await fuse_errno(s.ops.lookup, volume, b"beside", CTX) == errno.ENOENT

    run(served, test)


# -- directories --------------------------------------------------------------------------

@dataclass
class Token:
    """What the kernel's readdir buffer took: (name, inode, next offset); ``room`` entries fit."""

    room: int = 1000
    taken: list[tuple[bytes, int, int]] = field(default_factory=list)


def _reply(token: Token, name: bytes, attrs: pyfuse3.EntryAttributes, next_id: int) -> bool:
    if len(token.taken) >= token.room:
        return False
    token.taken.append((name, attrs.st_ino, next_id))
    return True


@pytest.fixture
def kernel_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """readdir replies go to a :class:`Token` instead of the kernel's buffer."""
    monkeypatch.setattr(pyfuse3, "readdir_reply", _reply)


async def listing(s: Served, ino: int, room: int = 1000, start: int = 0) -> Token:
    token = Token(room)
    fh = await s.ops.opendir(ino, CTX)
    try:
        await s.ops.readdir(fh, start, cast(pyfuse3.ReaddirToken, token))
    finally:
        await s.ops.releasedir(fh)
    return token


DOTS = [b".", b".."]


def names(token: Token) -> list[bytes]:
    """The names a listing gave, past the ``.`` and ``..`` every listing starts with."""
    assert [n for n, _, _ in token.taken[:2]] == DOTS, token.taken
    return [n for n, _, _ in token.taken[2:]]


@pytest.mark.usefixtures("kernel_buffer")
def test_readdir_lists_the_synthetic_tree_and_what_mkdir_made(served: Served) -> None:
    async def test(s: Served) -> None:
        assert names(await listing(s, ROOT)) == [b"pods"]
        assert names(await listing(s, await s.walk("pods"))) == [UID.encode()]
        kinds = await listing(s, await s.walk("pods", UID, "volumes"))
        assert sorted(names(kinds)) == sorted(
            [EMPTY_DIR_KIND.encode(), HOST_PATH_KIND.encode()])
        empty_dirs = await listing(s, await s.walk("pods", UID, "volumes", EMPTY_DIR_KIND))
        assert names(empty_dirs) == [b"other", b"scratch"]
        volume = await s.volume("scratch")
        assert empty_dirs.taken[3][1] == volume  # the same inode as a lookup gives

        made = await s.ops.mkdir(volume, b"d", stat.S_IFDIR | 0o755, CTX)
        assert stat.S_ISDIR(made.st_mode)
        info, file = await s.ops.create(made.st_ino, b"f", 0o644, os.O_WRONLY, CTX)
        await s.ops.release(info.fh)
        inside = await listing(s, made.st_ino)
        assert inside.taken[2:] == [(b"f", file.st_ino, 3)]
        assert names(await listing(s, volume)) == [b"d"]

    run(served, test)
    assert (served.dirs["scratch"] / "d" / "f").is_file()


@pytest.mark.usefixtures("kernel_buffer")
def test_every_listing_starts_with_dot_and_dot_dot_which_hold_no_lookup(
        served: Served) -> None:
    """``.`` is the directory and ``..`` its parent, as ``ls -a`` shows on any
    filesystem; the kernel links no inode for them from a readdirplus reply (it
    resolves both itself), so they must not add to a lookup count it never forgets."""
    async def test(s: Served) -> None:
        pods = await s.walk("pods")
        assert (await listing(s, ROOT)).taken[:2] == [(b".", ROOT, 1), (b"..", ROOT, 2)]
        assert (await listing(s, pods)).taken[:2] == [(b".", pods, 1), (b"..", ROOT, 2)]
        kind_dir = await s.walk("pods", UID, "volumes", EMPTY_DIR_KIND)
        volume = await s.volume("scratch")
        made = await s.ops.mkdir(volume, b"d", stat.S_IFDIR | 0o755, CTX)
        counts = (s.nlookup(volume), s.nlookup(made.st_ino))
        backed = s.fs.table.backed_count()
        assert (await listing(s, volume)).taken == [
            (b".", volume, 1), (b"..", kind_dir, 2), (b"d", made.st_ino, 3)]
        assert (await listing(s, made.st_ino)).taken == [
            (b".", made.st_ino, 1), (b"..", volume, 2)]
        # Only "d" was handed out again; the volume (listed as "." and "..") was not.
        assert (s.nlookup(volume), s.nlookup(made.st_ino)) == (counts[0], counts[1] + 1)
        assert s.fs.table.backed_count() == backed

        # Resuming past the dots lists no dot again; a buffer full at ".." resumes there.
        token = Token(room=1)
        fh = await s.ops.opendir(volume, CTX)
        await s.ops.readdir(fh, 0, cast(pyfuse3.ReaddirToken, token))
        rest = Token()
        await s.ops.readdir(fh, token.taken[-1][2], cast(pyfuse3.ReaddirToken, rest))
        await s.ops.releasedir(fh)
        assert [n for n, _, _ in token.taken + rest.taken] == [b".", b"..", b"d"]

    run(served, test)


@pytest.mark.usefixtures("kernel_buffer")
def test_a_full_readdir_buffer_gives_back_the_lookup_and_the_next_call_resumes(
        served: Served) -> None:
    for name in ("a", "b", "c"):
        (served.dirs["other"] / name).write_bytes(b"")

    async def test(s: Served) -> None:
        volume = await s.volume("other")
        backed = s.fs.table.backed_count()
        token = Token(room=4)
        fh = await s.ops.opendir(volume, CTX)
        await s.ops.readdir(fh, 0, cast(pyfuse3.ReaddirToken, token))
        assert len(names(token)) == 2
        # The third entry was looked up, but the kernel did not take it: nothing holds it.
        assert s.fs.table.backed_count() == backed + 2
        for _, ino, _ in token.taken[2:]:
            assert s.nlookup(ino) == 1
        # The offsets are into the listing taken at the first call: a name made since
        # does not shift them (it shows after a rewind, a readdir from offset 0).
        (s.dirs["other"] / "new").write_bytes(b"")
        rest = Token()
        await s.ops.readdir(fh, token.taken[-1][2], cast(pyfuse3.ReaddirToken, rest))
        await s.ops.releasedir(fh)
        listed = names(token) + [n for n, _, _ in rest.taken]
        assert sorted(listed) == [b"a", b"b", b"c"] and len(rest.taken) == 1
        assert s.fs.table.backed_count() == backed + 3
        assert await fuse_errno(s.ops.readdir, fh, 0, cast(pyfuse3.ReaddirToken, rest)) == (
            errno.EBADF)  # released

    run(served, test)


@pytest.mark.usefixtures("kernel_buffer")
def test_a_name_removed_after_the_listing_is_skipped(served: Served) -> None:
    for name in ("a", "b"):
        (served.dirs["other"] / name).write_bytes(b"")

    async def test(s: Served) -> None:
        volume = await s.volume("other")
        token = Token(room=3)
        fh = await s.ops.opendir(volume, CTX)
        await s.ops.readdir(fh, 0, cast(pyfuse3.ReaddirToken, token))
        (first,) = names(token)
        next_id = token.taken[-1][2]
        second = b"b" if first == b"a" else b"a"
        os.unlink(s.dirs["other"] / second.decode())  # behind volfs's back
        rest = Token()
        await s.ops.readdir(fh, next_id, cast(pyfuse3.ReaddirToken, rest))
        await s.ops.releasedir(fh)
        assert rest.taken == []

    run(served, test)


# -- crossing volumes, and the read-only parts ------------------------------------------------

def test_rename_and_link_across_volumes_are_exdev(served: Served) -> None:
    async def test(s: Served) -> None:
        scratch, other = await s.volume("scratch"), await s.volume("other")
        info, attrs = await s.ops.create(scratch, b"f", 0o644, os.O_WRONLY, CTX)
        await s.ops.write(info.fh, 0, b"data")
        await s.ops.release(info.fh)
        assert await fuse_errno(s.ops.rename, scratch, b"f", other, b"f", 0, CTX) == errno.EXDEV
        assert await fuse_errno(s.ops.link, attrs.st_ino, other, b"f", CTX) == errno.EXDEV
        # From a volume into the synthetic tree (or out of it): EXDEV too, as across mounts.
        kinds = await s.walk("pods", UID, "volumes")
        assert await fuse_errno(s.ops.rename, scratch, b"f", kinds, b"f", 0, CTX) == errno.EXDEV
        assert await fuse_errno(s.ops.link, attrs.st_ino, kinds, b"f", CTX) == errno.EXDEV
        # Within one volume both work.
        await s.ops.rename(scratch, b"f", scratch, b"g", 0, CTX)
        linked = await s.ops.link(attrs.st_ino, scratch, b"h", CTX)
        assert linked.st_ino == attrs.st_ino and linked.st_nlink == 2

    run(served, test)
    assert sorted(p.name for p in served.dirs["scratch"].iterdir()) == ["g", "h"]
    assert list(served.dirs["other"].iterdir()) == []


def test_every_change_to_the_synthetic_tree_is_erofs(served: Served) -> None:
    async def test(s: Served) -> None:
        for path in ((), ("pods",), ("pods", UID), ("pods", UID, "volumes"),
                     ("pods", UID, "volumes", EMPTY_DIR_KIND)):
            ino = await s.walk(*path)
            children = s.fs.tree.children(path)
            assert children
            child = os.fsencode(children[0])  # a name that is there
            calls: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = [
                (s.ops.mkdir, (ino, b"x", stat.S_IFDIR | 0o755, CTX)),
                (s.ops.create, (ino, b"x", 0o644, os.O_WRONLY | os.O_CREAT, CTX)),
                (s.ops.mknod, (ino, b"x", stat.S_IFIFO | 0o644, 0, CTX)),
                (s.ops.symlink, (ino, b"x", b"target", CTX)),
                (s.ops.unlink, (ino, child, CTX)),
                (s.ops.rmdir, (ino, child, CTX)),
                (s.ops.setxattr, (ino, b"user.x", b"1", CTX)),
                (s.ops.removexattr, (ino, b"user.x", CTX)),
                (s.ops.setattr, (ino, pyfuse3.EntryAttributes(), fields(update_mode=True),
                                 None, CTX)),
                (s.ops.open, (ino, os.O_WRONLY, CTX)),
            ]
            for handler, args in calls:
                assert await fuse_errno(handler, *args) == errno.EROFS, (path, handler)
            assert await fuse_errno(s.ops.open, ino, os.O_RDONLY, CTX) == errno.EISDIR

    run(served, test)
    for path in served.dirs.values():
        assert sorted(p.name for p in path.iterdir()) == (["seen"] if path.name == "host"
                                                          else [])


def test_a_read_only_volume_can_be_read_but_not_changed(served: Served) -> None:
    async def test(s: Served) -> None:
        host = await s.volume("host")
        seen = (await s.ops.lookup(host, b"seen", CTX)).st_ino
        calls: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = [
            (s.ops.create, (host, b"new", 0o644, os.O_WRONLY | os.O_CREAT, CTX)),
            (s.ops.mkdir, (host, b"new", 0o755, CTX)),
            (s.ops.unlink, (host, b"seen", CTX)),
            (s.ops.rename, (host, b"seen", host, b"moved", 0, CTX)),
            (s.ops.link, (seen, host, b"again", CTX)),
            (s.ops.setxattr, (seen, b"user.x", b"1", CTX)),
            (s.ops.open, (seen, os.O_RDWR, CTX)),
            (s.ops.open, (seen, os.O_RDONLY | os.O_TRUNC, CTX)),
        ]
        for handler, args in calls:
            assert await fuse_errno(handler, *args) == errno.EROFS, handler
        fh = (await s.ops.open(seen, os.O_RDONLY, CTX)).fh
        assert await s.ops.read(fh, 5, 4) == b"the "
        await s.ops.release(fh)

    run(served, test)
    assert sorted(p.name for p in served.dirs["host"].iterdir()) == ["seen"]
    assert (served.dirs["host"] / "seen").read_bytes() == b"from the host"


# -- sizeLimit ----------------------------------------------------------------------------

def test_size_limit_is_a_short_write_then_enospc(served: Served) -> None:
    async def test(s: Served) -> None:
        volume = await s.volume("scratch")
        info, attrs = await s.ops.create(volume, b"f", 0o644, os.O_RDWR, CTX)
        assert await s.ops.write(info.fh, 0, b"a" * 6000) == 6000
        assert await s.ops.write(info.fh, 6000, b"b" * 6000) == 4000  # what fits
        assert await fuse_errno(s.ops.write, info.fh, LIMIT, b"c") == errno.ENOSPC
        assert await s.ops.write(info.fh, 0, b"d" * 10) == 10  # overwriting needs no room
        bigger = pyfuse3.EntryAttributes()
        bigger.st_size = LIMIT + 1
        assert await fuse_errno(s.ops.setattr, attrs.st_ino, bigger, fields(update_size=True),
                                info.fh, CTX) == errno.ENOSPC
        await s.ops.release(info.fh)
        # Another volume of the same pod has its own (no) limit.
        other_info, _ = await s.ops.create(await s.volume("other"), b"f", 0o644,
                                           os.O_WRONLY, CTX)
        assert await s.ops.write(other_info.fh, 0, b"x" * 2 * LIMIT) == 2 * LIMIT
        await s.ops.release(other_info.fh)

    run(served, test)
    assert (served.dirs["scratch"] / "f").stat().st_size == LIMIT
    assert served.store("scratch").usage.used == LIMIT


# -- lookup counts, forget, inodes that are gone --------------------------------------------

def test_lookup_counts_are_exact_and_the_last_forget_lets_go(served: Served) -> None:
    (served.dirs["other"] / "f").write_bytes(b"x")

    async def test(s: Served) -> None:
        volume = await s.volume("other")
        ino = (await s.ops.lookup(volume, b"f", CTX)).st_ino
        for _ in range(2):
            assert (await s.ops.lookup(volume, b"f", CTX)).st_ino == ino
        assert s.nlookup(ino) == 3
        node = s.fs.table.get(ino)
        assert isinstance(node, BackedNode)
        handle = cast(Inode, node.handle)
        await s.ops.forget([(ino, 2)])
        assert s.nlookup(ino) == 1 and handle.fd is not None
        await s.ops.forget([(ino, 1)])
        assert s.fs.table.get(ino) is None
        assert handle.fd is None  # its descriptor is closed
        assert await fuse_errno(s.ops.getattr, ino, CTX) == errno.ENOENT
        # Looked up again: a new inode number (numbers are never reused).
        again = (await s.ops.lookup(volume, b"f", CTX)).st_ino
        assert again != ino and s.nlookup(again) == 1
        await s.ops.forget([(again, 1), (123_456, 1)])  # an unknown one is ignored
        assert s.fs.table.get(again) is None

    run(served, test)


def test_unknown_inodes_and_those_of_a_withdrawn_pod_are_enoent(served: Served) -> None:
    async def test(s: Served) -> None:
        unknown = 999_999
        calls: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = [
            (s.ops.getattr, (unknown, CTX)), (s.ops.lookup, (unknown, b"x", CTX)),
            (s.ops.opendir, (unknown, CTX)), (s.ops.open, (unknown, os.O_RDONLY, CTX)),
            (s.ops.mkdir, (unknown, b"x", 0o755, CTX)), (s.ops.getxattr, (unknown, b"x", CTX)),
            (s.ops.rename, (unknown, b"x", unknown, b"y", 0, CTX)),
        ]
        for handler, args in calls:
            assert await fuse_errno(handler, *args) == errno.ENOENT, handler
        pod = await s.walk("pods", UID)
        kinds = await s.walk("pods", UID, "volumes")
        s.fs.withdraw_pod(UID)
        for ino in (pod, kinds):
            assert await fuse_errno(s.ops.getattr, ino, CTX) == errno.ENOENT
        assert await fuse_errno(s.ops.lookup, await s.walk("pods"), UID.encode(), CTX) == (
            errno.ENOENT)

    run(served, test)


# -- symlinks: stored and answered, never followed by the daemon ------------------------------

def test_the_daemon_never_follows_a_symlink_a_pod_made(served: Served, tmp_path: Path) -> None:
    """What volfs guarantees: a symlink in a volume is stored as given and read back as
    given; every handler acts on the link itself, never on where it leads. Following a
    link is the kernel's work, done for the caller in the caller's own view of the tree
    (as on any filesystem), so a link to ``/etc/passwd`` gives the caller its own
    ``/etc/passwd``, never a file the daemon opened for it."""
    outside = tmp_path / "outside"  # what the links lead to: the daemon's own files
    outside.write_bytes(b"not the pod's")
    outside.chmod(0o644)
    os.setxattr(outside, b"user.kept", b"yes")
    before = outside.stat()
    targets = {b"abs": str(outside).encode(), b"up": b"../../../../../.." + str(outside).encode(),
               b"passwd": b"/etc/passwd", b"root": b"/"}

    async def test(s: Served) -> None:
        volume = await s.volume("scratch")
        links = {}
        for name, target in targets.items():
            attrs = await s.ops.symlink(volume, name, target, CTX)
            assert stat.S_ISLNK(attrs.st_mode)
            links[name] = attrs.st_ino
        for name, ino in links.items():
            assert await s.ops.readlink(ino, CTX) == targets[name]  # verbatim
            assert stat.S_ISLNK((await s.ops.getattr(ino, CTX)).st_mode)
            assert stat.S_ISLNK((await s.ops.lookup(volume, name, CTX)).st_mode)
            # Opening a link (the kernel never asks; a hostile FUSE client might) is ELOOP.
            for flags in (os.O_RDONLY, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_APPEND):
                assert await fuse_errno(s.ops.open, ino, flags, CTX) == errno.ELOOP, flags
            # A link is no directory: nothing is looked up, made or listed through it.
            assert await fuse_errno(s.ops.lookup, ino, b"passwd", CTX) == errno.ENOTDIR
            assert await fuse_errno(s.ops.mkdir, ino, b"x", 0o755, CTX) == errno.ENOTDIR
            assert await fuse_errno(s.ops.create, ino, b"x", stat.S_IFREG | 0o644,
                                    os.O_RDWR | os.O_CREAT, CTX) == errno.ENOTDIR
            # setattr changes the link or fails; it never reaches the target.
            for changed, attr in ((fields(update_mode=True), _attrs(st_mode=0o777)),
                                  (fields(update_size=True), _attrs(st_size=0)),
                                  (fields(update_mtime=True), _attrs(st_mtime_ns=0))):
                with contextlib.suppress(pyfuse3.FUSEError):
                    await s.ops.setattr(ino, attr, changed, None, CTX)
            with contextlib.suppress(pyfuse3.FUSEError):
                await s.ops.setxattr(ino, b"user.kept", b"changed", CTX)
            # A hard link to a link is another link, not the file it names.
            linked = await s.ops.link(ino, volume, name + b".hard", CTX)
            assert stat.S_ISLNK(linked.st_mode) and linked.st_ino == ino
        await s.ops.forget([(ino, 2) for ino in links.values()])

    run(served, test)
    after = outside.stat()
    assert outside.read_bytes() == b"not the pod's"
    assert (after.st_mode, after.st_size, after.st_mtime_ns, after.st_nlink) == (
        before.st_mode, before.st_size, before.st_mtime_ns, before.st_nlink)
    assert os.getxattr(outside, b"user.kept") == b"yes"
    for name, target in targets.items():
        for entry in (name, name + b".hard"):
            assert os.readlink(served.dirs["scratch"] / entry.decode()) == target.decode()



# -- storms of creates and unlinks ------------------------------------------------------------

STORM = 600


def _descriptors_below(directory: Path) -> list[str]:
    """What this process holds open inside ``directory`` (not the directory itself)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{directory}/"):
                held.append(target)
    return held


def test_a_create_and_unlink_storm_leaves_usage_and_the_tables_exact(served: Served) -> None:
    """What the kernel sends for each ``open(O_CREAT); write; close`` (a failed lookup,
    create, write, flush, release, the parent's getattr) and each ``unlink`` (then its
    forget), many times over: usage is the bytes still stored, open or not, and every
    inode, handle and descriptor of a file gone is let go."""
    store = served.store("other")

    async def test(s: Served) -> None:
        volume = await s.volume("other")
        nodes = s.fs.table.backed_count()
        made: dict[bytes, int] = {}
        for i in range(STORM):
            name = b"f%04d" % i
            assert await fuse_errno(s.ops.lookup, volume, name, CTX) == errno.ENOENT
            info, attrs = await s.ops.create(volume, name, stat.S_IFREG | 0o644,
                                             os.O_WRONLY | os.O_CREAT, CTX)
            assert await s.ops.write(info.fh, 0, b"x" * (i % 7)) == i % 7
            await s.ops.flush(info.fh)
            await s.ops.release(info.fh)
            await s.ops.getattr(volume, CTX)
            made[name] = attrs.st_ino
        assert len(set(made.values())) == STORM  # one inode each, never shared
        assert store.usage.used == sum(i % 7 for i in range(STORM))
        # Half are unlinked while a reader holds them open: their bytes stay counted
        # until the last release, as the disk keeps them.
        held = {name: (await s.ops.open(ino, os.O_RDONLY, CTX)).fh
                for name, ino in list(made.items())[::2]}
        assert len(_descriptors_below(s.dirs["other"])) >= len(held)  # the check sees them
        for name, ino in made.items():
            await s.ops.unlink(volume, name, CTX)
            await s.ops.forget([(ino, 1)])
        assert store.usage.used == sum(i % 7 for i in range(0, STORM, 2))
        for fh in held.values():
            await s.ops.release(fh)
        assert store.usage.used == 0
        assert s.fs.table.backed_count() == nodes
        assert _descriptors_below(s.dirs["other"]) == []

    run(served, test)
    assert list(served.dirs["other"].iterdir()) == []
    assert scan_usage(str(served.dirs["other"])) == store.usage.used == 0


def _attrs(**values: int) -> pyfuse3.EntryAttributes:
    attr = pyfuse3.EntryAttributes()
    for key, value in values.items():
        setattr(attr, key, value)
    return attr

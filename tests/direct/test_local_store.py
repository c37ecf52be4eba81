"""LocalStore without a mount: its methods called directly on a temporary directory.

The fast middle layer between the unit tests and the FUSE tests: quota
accounting (what counts, when space comes back), the rules for names removed
while their file is open, and the "caller owns what it makes" rules.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volfs.stores.base import AttrChanges, Owner
from volfs.stores.local import DescriptorCache, LocalStore
from volfs.stores.quota import Usage, scan_usage
from volfs.stores.syscalls import RENAME_EXCHANGE, RENAME_NOREPLACE

T = TypeVar("T")
CALLER = Owner(os.getuid(), os.getgid())  # whoever runs the tests: no chown needs root
USER = Owner(1000, 1000)
LIMIT = 10_000


def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    async def main() -> T:
        return await fn(*args)
    return trio.run(main)


class Volume:
    """A LocalStore over a directory, and the handles it gave out (forgotten at the end)."""

    def __init__(self, base: Path, limit: int | None = LIMIT) -> None:
        self.base = base
        self.store = LocalStore(base, Usage(limit=limit))
        self.root = run(self.store.open_root).handle
        self._handles = [self.root]

    @property
    def used(self) -> int:
        return self.store.usage.used

    def lookup(self, name: str, parent: int | None = None) -> int:
        entry = run(self.store.lookup, self.root if parent is None else parent, name.encode())
        self._handles.append(entry.handle)
        return entry.handle

    def create(self, name: str, flags: int = os.O_WRONLY, mode: int = 0o644,
               owner: Owner = CALLER) -> int:
        fh, entry = run(self.store.create, self.root, name.encode(), mode, flags, owner)
        self._handles.append(entry.handle)
        return fh

    def open(self, name: str, flags: int) -> int:
        return run(self.store.open, self.lookup(name), flags)

    def write(self, fh: int, data: bytes, offset: int = 0) -> int:
        return run(self.store.write, fh, offset, data)

    def release(self, fh: int) -> None:
        run(self.store.release, fh)

    def put(self, name: str, size: int) -> None:
        """A file of ``size`` bytes, closed again."""
        fh = self.create(name)
        try:
            assert self.write(fh, b"x" * size) == size
        finally:
            self.release(fh)

    def truncate(self, name: str, size: int, fh: int | None = None) -> None:
        run(self.store.setattr, self.lookup(name), AttrChanges(size=size), fh)

    def unlink(self, name: str) -> None:
        run(self.store.unlink, self.root, name.encode())

    def rename(self, old: str, new: str, flags: int = 0) -> None:
        run(self.store.rename, self.root, old.encode(), self.root, new.encode(), flags)

    def link(self, old: str, new: str) -> None:
        run(self.store.link, self.lookup(old), self.root, new.encode())

    def on_disk(self) -> int:
        return scan_usage(str(self.base))

    def close(self) -> None:
        for fh in list(self.store._files):
            self.release(fh)
        for handle in self._handles:
            self.store.forget(handle)
        self._handles.clear()


@pytest.fixture
def vol(tmp_path: Path) -> Iterator[Volume]:
    v = Volume(tmp_path)
    yield v
    v.close()


def oserror(fn: Callable[..., object], *args: object) -> int:
    with pytest.raises(OSError) as excinfo:
        fn(*args)
    assert excinfo.value.errno is not None
    return excinfo.value.errno


# -- writes and truncation ---------------------------------------------------------------

def test_writes_stop_at_the_limit_with_a_short_write_then_enospc(vol: Volume) -> None:
    fh = vol.create("f")
    assert vol.write(fh, b"a" * 6000) == 6000
    assert vol.write(fh, b"b" * 6000, 6000) == 4000
    assert oserror(vol.write, fh, b"c", 10_000) == errno.ENOSPC
    assert vol.write(fh, b"d" * 100, 0) == 100  # overwriting needs no room
    vol.release(fh)
    assert vol.used == LIMIT == vol.on_disk()


def test_append_descriptors_are_charged_at_the_end_of_file(vol: Volume) -> None:
    vol.put("f", 9000)
    fh = vol.open("f", os.O_WRONLY | os.O_APPEND)
    assert vol.write(fh, b"a" * 600, 0) == 600  # the offset is ignored: it appends
    assert vol.write(fh, b"b" * 600, 0) == 400
    vol.release(fh)
    assert os.path.getsize(vol.base / "f") == LIMIT == vol.used


def test_holes_count_and_truncate_is_all_or_nothing(vol: Volume) -> None:
    fh = vol.create("sparse")
    assert oserror(vol.write, fh, b"x", LIMIT) == errno.ENOSPC
    assert vol.write(fh, b"x", LIMIT - 1) == 1
    vol.release(fh)
    assert vol.used == LIMIT
    vol.truncate("sparse", 10)
    assert vol.used == 10
    assert oserror(vol.truncate, "sparse", LIMIT + 1) == errno.ENOSPC
    assert os.path.getsize(vol.base / "sparse") == 10 and vol.used == 10
    fh = vol.open("sparse", os.O_RDWR)
    vol.truncate("sparse", LIMIT, fh)
    vol.release(fh)
    assert vol.used == LIMIT == vol.on_disk()


def test_a_write_after_a_hole_cannot_slip_past_the_limit(vol: Volume) -> None:
    vol.put("f", LIMIT)
    fh = vol.open("f", os.O_WRONLY)
    assert oserror(vol.write, fh, b"x" * 5000, LIMIT + 1) == errno.ENOSPC
    assert os.path.getsize(vol.base / "f") == LIMIT
    vol.truncate("f", LIMIT - 100)
    assert vol.write(fh, b"y" * 1000, LIMIT - 50) == 50  # the hole and 50 bytes fit
    assert oserror(vol.write, fh, b"z" * 1000, LIMIT + 10) == errno.ENOSPC
    vol.release(fh)
    assert os.path.getsize(vol.base / "f") == LIMIT == vol.used


def test_o_trunc_frees_the_old_contents(vol: Volume) -> None:
    vol.put("f", 8000)
    fh = vol.open("f", os.O_WRONLY | os.O_TRUNC)
    assert vol.used == 0
    assert vol.write(fh, b"y" * LIMIT) == LIMIT
    vol.release(fh)
    assert vol.used == LIMIT == vol.on_disk()


# -- names removed, with and without open files --------------------------------------------

def test_unlink_frees_at_once_when_nothing_holds_the_file(vol: Volume) -> None:
    vol.put("f", 7000)
    vol.unlink("f")
    assert vol.used == 0
    vol.put("g", LIMIT)


def test_unlinked_open_file_is_charged_until_its_last_release(vol: Volume) -> None:
    vol.put("f", 7000)
    first = vol.open("f", os.O_RDWR)
    second = vol.open("f", os.O_RDONLY)
    vol.unlink("f")
    assert vol.used == 7000
    assert vol.write(first, b"z" * 5000, 7000) == 3000  # it may still grow, to the limit
    assert vol.used == LIMIT
    vol.release(first)
    assert vol.used == LIMIT  # the other descriptor still holds it
    vol.release(second)
    assert vol.used == 0 == vol.on_disk()


def test_unlinked_open_file_truncated_before_release(vol: Volume) -> None:
    vol.put("f", 7000)
    fh = vol.open("f", os.O_RDWR)
    handle = vol.lookup("f")
    vol.unlink("f")
    run(vol.store.setattr, handle, AttrChanges(size=1000), fh)
    assert vol.used == 1000
    vol.release(fh)
    assert vol.used == 0


def test_rename_over_a_file_frees_the_replaced_one(vol: Volume) -> None:
    vol.put("a", 6000)
    vol.put("b", 4000)
    vol.rename("a", "b")
    assert vol.used == 6000 == vol.on_disk()
    vol.put("c", 4000)
    held = vol.open("c", os.O_RDONLY)
    vol.rename("b", "c")  # replaces an open file: charged until it is released
    assert vol.used == LIMIT
    vol.release(held)
    assert vol.used == 6000 == vol.on_disk()


def test_rename_noreplace_and_exchange_change_no_usage(vol: Volume) -> None:
    vol.put("a", 3000)
    vol.put("b", 4000)
    assert oserror(vol.rename, "a", "b", RENAME_NOREPLACE) == errno.EEXIST
    vol.rename("a", "b", RENAME_EXCHANGE)
    assert vol.used == 7000
    assert os.path.getsize(vol.base / "a") == 4000


def test_hard_links_are_charged_once(vol: Volume) -> None:
    vol.put("a", 6000)
    vol.link("a", "b")
    vol.link("a", "c")
    assert vol.used == 6000 == vol.on_disk()
    vol.unlink("a")
    vol.rename("b", "c")  # two names of one file: rename(2) does nothing
    assert sorted(os.listdir(vol.base)) == ["b", "c"]
    vol.unlink("b")
    assert vol.used == 6000
    vol.unlink("c")
    assert vol.used == 0


def test_directories_symlinks_and_fifos_are_not_charged(vol: Volume) -> None:
    run(vol.store.mkdir, vol.root, b"d", 0o755, CALLER)
    run(vol.store.symlink, vol.root, b"s", b"x" * 3000, CALLER)
    run(vol.store.mknod, vol.root, b"p", stat.S_IFIFO | 0o644, 0, CALLER)
    assert vol.used == 0
    run(vol.store.unlink, vol.root, b"s")
    run(vol.store.unlink, vol.root, b"p")
    run(vol.store.rmdir, vol.root, b"d")
    assert vol.used == 0


# -- ownership ------------------------------------------------------------------------------

@pytest.mark.root
def test_new_objects_belong_to_the_caller(vol: Volume) -> None:
    fh = vol.create("f", mode=0o4755, owner=USER)
    vol.release(fh)
    run(vol.store.mkdir, vol.root, b"d", 0o2750, USER)
    run(vol.store.symlink, vol.root, b"s", b"f", USER)
    for name, mode in (("f", 0o4755), ("d", 0o2750), ("s", None)):
        st = os.lstat(vol.base / name)
        assert (st.st_uid, st.st_gid) == (1000, 1000), name
        if mode is not None:  # chown(2) clears set-id bits: they are put back
            assert stat.S_IMODE(st.st_mode) == mode, name



@pytest.mark.root
def test_a_file_created_read_only_still_becomes_the_callers(vol: Volume) -> None:
    """The owner and set-id bits are set through the descriptor that made the file,
    whatever its access mode."""
    fh = vol.create("ro", flags=os.O_RDONLY, mode=0o6444, owner=USER)
    vol.release(fh)
    st = os.stat(vol.base / "ro")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o6444)
    assert vol.used == 0

@pytest.mark.root
def test_setgid_directory_gives_its_group(vol: Volume) -> None:
    run(vol.store.mkdir, vol.root, b"shared", 0o2777, CALLER)
    os.chown(vol.base / "shared", 0, 4242)
    shared = vol.lookup("shared")
    fh, entry = run(vol.store.create, shared, b"f", 0o644, os.O_WRONLY, USER)
    vol.release(fh)
    vol.store.forget(entry.handle)
    entry = run(vol.store.mkdir, shared, b"sub", 0o755, USER)
    vol.store.forget(entry.handle)
    f, sub = os.stat(vol.base / "shared/f"), os.stat(vol.base / "shared/sub")
    assert (f.st_uid, f.st_gid, sub.st_uid, sub.st_gid) == (1000, 4242, 1000, 4242)
    assert sub.st_mode & stat.S_ISGID


@pytest.mark.root
def test_create_over_an_existing_file_leaves_its_owner_and_mode(vol: Volume) -> None:
    """The kernel sends CREATE for a name it believes absent; a file made meanwhile
    (by the host, behind a HostPath) is opened, not given to the caller."""
    (vol.base / "f").write_bytes(b"q" * 5000)
    os.chown(vol.base / "f", 2000, 2000)
    os.chmod(vol.base / "f", 0o600)
    vol.store.usage.grow(5000)
    fh = vol.create("f", flags=os.O_WRONLY | os.O_TRUNC, mode=0o4777, owner=USER)
    vol.release(fh)
    st = os.stat(vol.base / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (2000, 2000, 0o600)
    assert st.st_size == 0 and vol.used == 0
    assert oserror(vol.create, "f", os.O_WRONLY | os.O_EXCL) == errno.EEXIST


# -- the accounting invariant, over random sequences -------------------------------------------

NAMES = ["a", "b", "c"]
names = st.sampled_from(NAMES)
ops = st.one_of(
    st.tuples(st.just("put"), names, st.integers(0, 6000)),
    st.tuples(st.just("write"), names, st.integers(0, 12_000), st.integers(1, 6000)),
    st.tuples(st.just("append"), names, st.integers(1, 6000)),
    st.tuples(st.just("truncate"), names, st.integers(0, 12_000)),
    st.tuples(st.just("otrunc"), names),
    st.tuples(st.just("unlink"), names),
    st.tuples(st.just("rename"), names, names,
              st.sampled_from([0, RENAME_NOREPLACE, RENAME_EXCHANGE])),
    st.tuples(st.just("link"), names, names),
    st.tuples(st.just("hold"), names),
    st.tuples(st.just("release")),
)


def _apply(vol: Volume, held: list[int], op: tuple[Any, ...]) -> None:
    match op:
        case ("put", name, size):
            fh = vol.create(name, flags=os.O_WRONLY | os.O_TRUNC)
            try:
                vol.write(fh, b"p" * size)
            finally:
                vol.release(fh)
        case ("write", name, offset, size):
            fh = vol.open(name, os.O_WRONLY)
            try:
                vol.write(fh, b"w" * size, offset)
            finally:
                vol.release(fh)
        case ("append", name, size):
            fh = vol.open(name, os.O_WRONLY | os.O_APPEND)
            try:
                vol.write(fh, b"a" * size)
            finally:
                vol.release(fh)
        case ("truncate", name, size):
            vol.truncate(name, size)
        case ("otrunc", name):
            vol.release(vol.open(name, os.O_WRONLY | os.O_TRUNC))
        case ("unlink", name):
            vol.unlink(name)
        case ("rename", old, new, flags):
            vol.rename(old, new, flags)
        case ("link", old, new):
            vol.link(old, new)
        case ("hold", name):
            held.append(vol.open(name, os.O_RDONLY))
        case ("release",):
            if held:
                vol.release(held.pop(0))


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(ops, max_size=30))
def test_usage_always_equals_the_files_on_disk_plus_open_orphans(
        tmp_path_factory: pytest.TempPathFactory, sequence: list[tuple[Any, ...]]) -> None:
    vol = Volume(tmp_path_factory.mktemp("store"))
    held: list[int] = []
    try:
        for op in [("put", "a", 3000), ("put", "b", 2000), *sequence]:
            try:
                _apply(vol, held, op)
            except OSError as exc:
                assert exc.errno in (errno.ENOENT, errno.EEXIST, errno.ENOSPC), (op, exc)
            orphans = sum({(st.st_dev, st.st_ino): st.st_size for fh in held
                           if (st := os.fstat(fh)).st_nlink == 0}.values())
            assert vol.used == vol.on_disk() + orphans, op
            assert vol.used <= LIMIT
        while held:
            vol.release(held.pop())
        assert vol.used == vol.on_disk()
    finally:
        vol.close()


# -- descriptors: at most a bounded number open, the rest reopened by file handle ------------

@pytest.mark.root
def test_idle_descriptors_are_bounded_and_reopened_by_file_handle(tmp_path: Path) -> None:
    cache = DescriptorCache(capacity=4)
    store = LocalStore(tmp_path, Usage(), descriptors=cache)
    root = run(store.open_root).handle
    handles = []
    for i in range(20):
        fh, entry = run(store.create, root, b"f%d" % i, 0o644, os.O_WRONLY, CALLER)
        run(store.write, fh, 0, b"%d" % i)
        run(store.release, fh)
        handles.append(entry.handle)
    assert len(cache) <= 4
    assert sum(h.fd is not None for h in handles) <= 4
    for i, handle in enumerate(handles):  # each reopened, the same inode as before
        assert run(store.getattr, handle).st_size == len(b"%d" % i)
        fh = run(store.open, handle, os.O_RDONLY)
        assert run(store.read, fh, 0, 10) == b"%d" % i
        run(store.release, fh)
    run(store.rename, root, b"f0", root, b"renamed", 0)
    assert run(store.getattr, handles[0]).st_nlink == 1  # a rename does not lose it
    for handle in [root, *handles]:
        store.forget(handle)
    assert len(cache) == 0


@pytest.mark.root
def test_a_deleted_inode_is_stale_never_another_one(tmp_path: Path) -> None:
    cache = DescriptorCache(capacity=2)
    store = LocalStore(tmp_path, Usage(), descriptors=cache)
    root = run(store.open_root).handle
    fh, gone = run(store.create, root, b"gone", 0o644, os.O_WRONLY, CALLER)
    run(store.release, fh)
    run(store.unlink, root, b"gone")
    others = [run(store.mkdir, root, b"d%d" % i, 0o755, CALLER).handle for i in range(4)]
    assert gone.handle.fd is None  # its descriptor was given back
    assert oserror(run, store.getattr, gone.handle) == errno.ESTALE
    for handle in [root, gone.handle, *others]:
        store.forget(handle)


def test_open_files_keep_their_descriptor_even_unlinked(tmp_path: Path) -> None:
    cache = DescriptorCache(capacity=2)
    store = LocalStore(tmp_path, Usage(limit=LIMIT), descriptors=cache)
    root = run(store.open_root).handle
    fh, entry = run(store.create, root, b"f", 0o644, os.O_RDWR, CALLER)
    run(store.write, fh, 0, b"x" * 100)
    run(store.unlink, root, b"f")
    others = [run(store.mkdir, root, b"d%d" % i, 0o755, CALLER).handle for i in range(4)]
    assert entry.handle.fd is not None
    st = run(store.setattr, entry.handle, AttrChanges(size=10), fh)
    assert (st.st_size, st.st_nlink) == (10, 0)
    run(store.release, fh)
    assert store.usage.used == 0
    for handle in [root, entry.handle, *others]:
        store.forget(handle)

"""The volume plugins called directly: EmptyDir and HostPath on temporary directories.

What set-up makes (and refuses), that set-up may be repeated (the daemon sets every
known pod up again after a restart), and what tear-down removes: an EmptyDir's data,
never a host path's.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from volfs.api import Volume
from volfs.lifecycle.hostpath import HostPathPlugin, HostPathRefused, allowed_prefixes
from volfs.lifecycle.volumes import EMPTY_DIR_KIND, EmptyDirPlugin, PluginRegistry, PodRef
from volfs.stores.base import Store
from volfs.stores.local import LocalStore

POD = PodRef("5f0c2a4e-1b3d-4c5e-8f7a-9b0c1d2e3f4a", "default", "web")


def volume(name: str, **source: Any) -> Volume:
    """A volume as a manifest gives it (not validated: some tests pass what a manifest may not)."""
    return Volume.model_validate({"name": name, **source})


def set_up(plugin: EmptyDirPlugin | HostPathPlugin, vol: Volume,
           read_only: bool = False, pod: PodRef = POD) -> LocalStore:
    async def main() -> Store:
        return await plugin.set_up(pod, vol, read_only)
    store = trio.run(main)
    assert isinstance(store, LocalStore)
    return store


def tear_down(plugin: EmptyDirPlugin | HostPathPlugin, vol: Volume, pod: PodRef = POD) -> None:
    async def main() -> None:
        await plugin.tear_down(pod, vol)
    trio.run(main)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- EmptyDir -------------------------------------------------------------------------------

@pytest.fixture
def empty_dir(tmp_path: Path) -> EmptyDirPlugin:
    (tmp_path / "disk").mkdir()
    (tmp_path / "memory").mkdir()
    return EmptyDirPlugin(tmp_path / "disk", tmp_path / "memory")


def test_empty_dir_is_made_where_kubelet_makes_it(empty_dir: EmptyDirPlugin) -> None:
    store = set_up(empty_dir, volume("scratch", emptyDir={"sizeLimit": "10Ki"}))
    path = empty_dir.disk_dir / POD.uid / EMPTY_DIR_KIND / "scratch"
    assert os.fsdecode(store.base) == str(path)
    assert mode(path) == 0o777  # everyone in the pod may write, whatever the umask
    assert mode(path.parent) == mode(path.parent.parent) == 0o700
    assert list(path.iterdir()) == []
    assert (store.usage.limit, store.usage.used) == (10 * 1024, 0)
    assert not store.read_only and store.track_usage
    memory = set_up(empty_dir, volume("fast", emptyDir={"medium": "Memory"}))
    assert os.fsdecode(memory.base) == str(
        empty_dir.memory_dir / POD.uid / EMPTY_DIR_KIND / "fast")
    assert memory.usage.limit is None


def test_empty_dir_set_up_again_keeps_and_measures_its_data(empty_dir: EmptyDirPlugin) -> None:
    scratch = volume("scratch", emptyDir={"sizeLimit": "1Mi"})
    path = Path(os.fsdecode(set_up(empty_dir, scratch).base))
    (path / "sub").mkdir()
    (path / "sub" / "f").write_bytes(b"x" * 3000)
    os.link(path / "sub" / "f", path / "hard")  # counted once
    (path / "g").write_bytes(b"y" * 500)
    again = set_up(empty_dir, scratch)
    assert os.fsdecode(again.base) == str(path)
    assert again.usage.used == 3500
    assert (path / "sub" / "f").read_bytes() == b"x" * 3000


def test_empty_dir_tear_down_removes_its_data_and_only_its_own(
        empty_dir: EmptyDirPlugin) -> None:
    one, two = volume("one", emptyDir={}), volume("two", emptyDir={})
    other_pod = PodRef("0a1b2c3d-0000-4000-8000-000000000000", "default", "other")
    paths = [Path(os.fsdecode(set_up(empty_dir, v).base)) for v in (one, two)]
    neighbour = Path(os.fsdecode(set_up(empty_dir, one, pod=other_pod).base))
    for path in (*paths, neighbour):
        (path / "f").write_bytes(b"data")
    tear_down(empty_dir, one)
    assert not paths[0].exists() and (paths[1] / "f").exists()
    tear_down(empty_dir, two)
    assert not (empty_dir.disk_dir / POD.uid).exists()  # nothing of the pod is left
    assert (neighbour / "f").read_bytes() == b"data"  # the other pod's, untouched
    tear_down(empty_dir, two)  # again, or for a volume never set up: nothing to do
    tear_down(empty_dir, volume("never", emptyDir={}))
    assert sorted(p.name for p in empty_dir.disk_dir.iterdir()) == [other_pod.uid]


# -- HostPath -------------------------------------------------------------------------------

@pytest.fixture
def host(tmp_path: Path) -> Iterator[Path]:
    """A host tree: ``rw/`` and ``ro/`` are allowed (the second read-only), ``outside/`` not."""
    for name in ("rw", "ro", "rw-not", "outside"):
        (tmp_path / name).mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"keep out")
    yield tmp_path


@pytest.fixture
def host_path(host: Path) -> HostPathPlugin:
    return HostPathPlugin(allowed_prefixes([f"{host}/rw", f"{host}/ro:ro",
                                            f"{host}/ro/writable"]))


def hp(path: Path | str, type_: str = "") -> Volume:
    return volume("data", hostPath={"path": str(path), "type": type_})


def refused(plugin: HostPathPlugin, vol: Volume) -> str:
    with pytest.raises(HostPathRefused) as raised:
        set_up(plugin, vol)
    return str(raised.value)


def test_host_paths_outside_the_allowed_prefixes_are_refused(
        host_path: HostPathPlugin, host: Path) -> None:
    (host / "rw" / "escape").symlink_to(host / "outside")
    for path in (host / "outside", host / "rw-not",  # a prefix is whole components
                 host / "rw" / "escape",  # judged where a symlink leads
                 f"{host}/rw/../outside/secret"):  # and after ".." steps back out
        assert "is not allowed" in refused(host_path, hp(path)), path
    assert "which resolves to" in refused(host_path, hp(host / "rw" / "escape"))
    assert sorted(p.name for p in (host / "outside").iterdir()) == ["secret"]


def test_no_allowed_prefix_refuses_before_touching_the_disk(host: Path) -> None:
    plugin = HostPathPlugin(allowed_prefixes([]))
    with pytest.raises(HostPathRefused, match="allows no host paths"):
        plugin.check(hp(host / "rw" / "new", "DirectoryOrCreate"))
    assert not (host / "rw" / "new").exists()


def test_the_longest_prefix_and_the_pod_decide_read_only(
        host_path: HostPathPlugin, host: Path) -> None:
    (host / "ro" / "writable").mkdir()
    assert set_up(host_path, hp(host / "ro")).read_only
    assert not set_up(host_path, hp(host / "ro" / "writable")).read_only
    assert not set_up(host_path, hp(host / "rw")).read_only
    assert set_up(host_path, hp(host / "rw"), read_only=True).read_only
    store = set_up(host_path, hp(host / "rw"))
    assert not store.track_usage and store.usage.limit is None  # host data is not limited


@pytest.mark.parametrize("type_, make, found", [
    ("Directory", None, "expected Directory, found nothing"),
    ("Directory", "file", "expected Directory, found regular file"),
    ("File", None, "expected File, found nothing"),
    ("File", "dir", "expected File, found directory"),
    ("FileOrCreate", "dir", "expected FileOrCreate, found directory"),
    ("DirectoryOrCreate", "file", "expected DirectoryOrCreate, found regular file"),
    ("Socket", "file", "expected Socket, found regular file"),
    ("CharDevice", "dir", "expected CharDevice, found directory"),
    ("BlockDevice", "socket", "expected BlockDevice, found socket"),
])
def test_kubelets_type_checks(host_path: HostPathPlugin, host: Path, type_: str,
                              make: str | None, found: str) -> None:
    path = host / "rw" / "thing"
    if make == "file":
        path.write_bytes(b"")
    elif make == "dir":
        path.mkdir()
    elif make == "socket":
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    before = sorted(p.name for p in (host / "rw").iterdir())
    assert refused(host_path, hp(path, type_)) == f"{path}: {found}"
    assert sorted(p.name for p in (host / "rw").iterdir()) == before  # nothing made


def test_the_types_that_exist_are_served(host_path: HostPathPlugin, host: Path) -> None:
    (host / "rw" / "dir").mkdir()
    (host / "rw" / "file").write_bytes(b"")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(host / "rw" / "sock"))
        for name, type_ in (("dir", "Directory"), ("file", "File"), ("sock", "Socket"),
                            ("dir", ""), ("file", ""), ("file", "FileOrCreate"),
                            ("dir", "DirectoryOrCreate")):
            store = set_up(host_path, hp(host / "rw" / name, type_))
            assert os.fsdecode(store.base) == str(host / "rw" / name)


def test_or_create_types_make_what_is_missing_and_no_more(
        host_path: HostPathPlugin, host: Path) -> None:
    old = os.umask(0o077)  # the modes are kubelet's, whatever the daemon's umask
    try:
        set_up(host_path, hp(host / "rw" / "a" / "b", "DirectoryOrCreate"))
        set_up(host_path, hp(host / "rw" / "c", ""))  # no type: a directory, as kubelet
        set_up(host_path, hp(host / "rw" / "a" / "f", "FileOrCreate"))
    finally:
        os.umask(old)
    assert mode(host / "rw" / "a") == mode(host / "rw" / "a" / "b") == 0o755
    assert (host / "rw" / "c").is_dir()
    assert (host / "rw" / "a" / "f").is_file()
    message = refused(host_path, hp(host / "rw" / "nodir" / "f", "FileOrCreate"))
    assert "does not create the parent directory" in message
    assert not (host / "rw" / "nodir").exists()


def test_set_up_again_and_tear_down_leave_host_data_alone(
        host_path: HostPathPlugin, host: Path) -> None:
    (host / "rw" / "data").mkdir()
    (host / "rw" / "data" / "f").write_bytes(b"host data")
    for type_ in ("Directory", "DirectoryOrCreate"):
        vol = hp(host / "rw" / "data", type_)
        set_up(host_path, vol)
        set_up(host_path, vol)
        tear_down(host_path, vol)
        tear_down(host_path, vol)
    assert (host / "rw" / "data" / "f").read_bytes() == b"host data"
    file_vol = hp(host / "rw" / "data" / "f", "File")
    set_up(host_path, file_vol)
    tear_down(host_path, file_vol)
    assert (host / "rw" / "data" / "f").read_bytes() == b"host data"


# -- the registry -----------------------------------------------------------------------------

def test_the_registry_finds_each_kinds_plugin_and_only_one(
        empty_dir: EmptyDirPlugin, host_path: HostPathPlugin) -> None:
    registry = PluginRegistry([empty_dir, host_path])
    assert registry.find(volume("a", emptyDir={})) is empty_dir
    assert registry.find(volume("b")) is empty_dir  # no source at all: an emptyDir
    assert registry.find(hp("/srv")) is host_path
    assert registry.find(volume("c", nfs={"server": "s", "path": "/x"})) is None
    assert registry.supported() == ["emptyDir", "hostPath"]
    with pytest.raises(ValueError, match="two plugins for volume kind emptyDir"):
        PluginRegistry([empty_dir, host_path, EmptyDirPlugin(Path("/a"), Path("/b"))])

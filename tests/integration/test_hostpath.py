"""HostPath end to end: kubelet's type checks, the allow-list, read-only, fidelity."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.waiting import wait_until

COHERENCE_WINDOW = 1.0  # seconds: the documented bound (HOST_PATH_CACHE_SECONDS)


@pytest.fixture(scope="module")
def host(open_tmp: Path) -> Path:
    """The host directory tree the module's daemon allows (and a read-only one)."""
    base = open_tmp / "host"
    (base / "rw").mkdir(parents=True)
    (base / "ro").mkdir()
    (base / "outside").mkdir()
    for d in ("rw", "ro", "outside"):
        (base / d).chmod(0o777)
    return base


@pytest.fixture(scope="module")
def hp_daemon(open_tmp: Path, host: Path) -> Iterator[Daemon]:
    daemon = Daemon(open_tmp / "hostpath-daemon",
                    extra_args=["--allow-host-path", str(host / "rw"),
                                "--allow-host-path", f"{host / 'ro'}:ro"]).start()
    yield daemon
    daemon.stop()


def hostpath_pod(name: str, path: Path | str, type_: str = "", read_only: bool = False) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: main
      image: busybox
      volumeMounts:
        - name: host
          mountPath: /host
          readOnly: {str(read_only).lower()}
  volumes:
    - name: host
      hostPath:
        path: {path}
        type: "{type_}"
"""


def serve(daemon: Daemon, name: str, path: Path | str, type_: str = "",
          read_only: bool = False) -> Path:
    daemon.apply(hostpath_pod(name, path, type_, read_only))
    return daemon.volume_path(name, "host")


def refused(daemon: Daemon, name: str, path: Path | str, type_: str = "") -> str:
    result = daemon.cli("apply", "-f", "-", input=hostpath_pod(name, path, type_), check=False)
    assert result.returncode == 2, result.stderr
    assert daemon.cli("get", "pod", name, check=False).returncode != 0  # nothing created
    return result.stderr.strip()


def make_socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


MAKERS: dict[str, Callable[[Path], object]] = {
    "dir": lambda p: p.mkdir(),
    "file": lambda p: p.write_text("x"),
    "socket": make_socket,
    "chardev": lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3)),
    "fifo": lambda p: os.mkfifo(p),
}
# type -> (the right kind of object, a wrong kind, what the error says was found)
TYPES = {
    "Directory": ("dir", "file", "regular file"),
    "DirectoryOrCreate": ("dir", "file", "regular file"),
    "File": ("file", "dir", "directory"),
    "FileOrCreate": ("file", "dir", "directory"),
    "Socket": ("socket", "file", "regular file"),
    "CharDevice": ("chardev", "dir", "directory"),
    "BlockDevice": (None, "chardev", "character device"),
}


@pytest.mark.parametrize("type_", sorted(TYPES))
def test_type_checks_like_kubelet(hp_daemon: Daemon, host: Path, pod_name: str,
                                  type_: str) -> None:
    right, wrong, found = TYPES[type_]
    base = host / "rw" / pod_name
    base.mkdir()
    # missing
    missing = base / "missing"
    if type_.endswith("OrCreate"):
        served = serve(hp_daemon, pod_name + "-m", missing, type_)
        assert missing.exists()
        assert stat.S_ISDIR(os.stat(served).st_mode) == (type_ == "DirectoryOrCreate")
        mode = stat.S_IMODE(missing.stat().st_mode)
        assert mode == (0o755 if type_ == "DirectoryOrCreate" else 0o644)
    else:
        message = refused(hp_daemon, pod_name + "-m", missing, type_)
        assert f"expected {type_}, found nothing" in message
        assert not missing.exists()
    # right kind
    if right is not None:
        good = base / "good"
        MAKERS[right](good)
        served = serve(hp_daemon, pod_name + "-r", good, type_)
        assert stat.S_IFMT(os.lstat(served).st_mode) == stat.S_IFMT(good.stat().st_mode)
    # wrong kind
    bad = base / "bad"
    MAKERS[wrong](bad)
    message = refused(hp_daemon, pod_name + "-w", bad, type_)
    assert (f"pod {pod_name}-w: volume host: hostPath {bad}: expected {type_}, "
            f"found {found}") in message


def test_empty_type_checks_nothing(hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    f = host / "rw" / f"{pod_name}.conf"
    f.write_text("setting=1\n")
    served = serve(hp_daemon, pod_name, f)
    assert served.read_text() == "setting=1\n"  # a file volume is a file
    assert stat.S_ISREG(served.stat().st_mode)


def test_file_or_create_does_not_create_parents(hp_daemon: Daemon, host: Path,
                                                pod_name: str) -> None:
    target = host / "rw" / pod_name / "sub" / "f"
    message = refused(hp_daemon, pod_name, target, "FileOrCreate")
    assert "does not create the parent" in message
    assert not (host / "rw" / pod_name).exists()


def test_allow_list_is_by_component_and_on_the_resolved_path(
        hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    sibling = Path(str(host / "rw") + "x")
    sibling.mkdir()
    assert "is not allowed" in refused(hp_daemon, pod_name, sibling, "Directory")
    escape = host / "rw" / f"{pod_name}-escape"
    escape.symlink_to(host / "outside")
    message = refused(hp_daemon, pod_name, escape, "Directory")
    assert f"which resolves to {host / 'outside'}" in message
    assert "--allow-host-path" in message


def test_default_allows_nothing_and_says_how(daemon: Daemon, tmp_path: Path) -> None:
    message = refused(daemon, "nope", tmp_path, "Directory")
    assert "allows no host paths" in message and "--allow-host-path" in message


def _mutations(root: Path) -> dict[str, Callable[[], object]]:
    f, d = root / "f", root / "d"
    return {
        "write": lambda: open(f, "r+b").write(b"x"),
        "create": lambda: open(root / "new", "w"),
        "truncate": lambda: os.truncate(f, 0),
        "chmod": lambda: os.chmod(f, 0o600),
        "chown": lambda: os.chown(f, 1, 1),
        "utimens": lambda: os.utime(f, ns=(1, 1)),
        "setxattr": lambda: os.setxattr(f, "user.k", b"v"),
        "rename": lambda: os.rename(f, root / "g"),
        "link": lambda: os.link(f, root / "h"),
        "unlink": lambda: os.unlink(f),
        "mkdir": lambda: os.mkdir(root / "e"),
        "rmdir": lambda: os.rmdir(d),
        "mknod": lambda: os.mkfifo(root / "fifo"),
        "symlink": lambda: os.symlink("f", root / "s"),
    }


@pytest.mark.parametrize("how", ["prefix-ro", "readonly-mount"])
def test_read_only_refuses_every_mutating_call(hp_daemon: Daemon, host: Path, pod_name: str,
                                               how: str) -> None:
    base = host / ("ro" if how == "prefix-ro" else "rw") / pod_name
    base.mkdir()
    (base / "f").write_bytes(b"host data")
    (base / "d").mkdir()
    served = serve(hp_daemon, pod_name, base, "Directory", read_only=how == "readonly-mount")
    assert (served / "f").read_bytes() == b"host data"
    for name, mutate in _mutations(served).items():
        with pytest.raises(OSError) as excinfo:
            mutate()
        assert excinfo.value.errno == errno.EROFS, name
    assert (base / "f").read_bytes() == b"host data"
    mounts = hp_daemon.pod(pod_name)["status"]["mounts"]
    assert [m["readOnly"] for m in mounts] == [True]


def test_files_created_by_a_user_are_owned_by_that_user_on_the_host(
        hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir(mode=0o777)
    base.chmod(0o777)
    served = serve(hp_daemon, pod_name, base, "Directory")
    # Started in the volume as root, then dropped: the tree above a volume is root's.
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    "sh", "-c", "echo hi > nobody.txt && mkdir nd"], cwd=served, check=True)
    for name in ("nobody.txt", "nd"):
        st = (base / name).stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_hard_links_are_coherent_across_both_names(hp_daemon: Daemon, host: Path,
                                                   pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    served = serve(hp_daemon, pod_name, base, "Directory")
    (served / "a").write_text("one inode")
    os.link(served / "a", served / "b")
    os.chmod(served / "a", 0o640)
    os.chown(served / "a", 123, 456)
    a, b = os.stat(served / "a"), os.stat(served / "b")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    assert (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid) == (0o640, 123, 456)
    os.unlink(served / "a")
    assert os.stat(served / "b").st_nlink == 1
    assert (base / "b").stat().st_nlink == 1


def test_path_max_and_name_max(hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    served = serve(hp_daemon, pod_name, base, "Directory")
    (served / ("n" * 255)).write_text("longest name")
    with pytest.raises(OSError) as excinfo:
        (served / ("n" * 256)).write_text("too long")
    assert excinfo.value.errno == errno.ENAMETOOLONG
    # Descend with dir fds until the full path through volfs passes PATH_MAX.
    fd = os.open(served, os.O_RDONLY | os.O_DIRECTORY)
    depth_path = len(str(served))
    try:
        while depth_path < 4096 + 500:
            os.mkdir("d" * 200, dir_fd=fd)
            nfd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            depth_path += 201
        wfd = os.open("deep", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(wfd, b"deep down")
        os.close(wfd)
        assert os.stat("deep", dir_fd=fd).st_size == 9
    finally:
        os.close(fd)
    # The same file is there on the host (find walks by fds: no PATH_MAX for it).
    found = subprocess.run(["find", str(base), "-name", "deep", "-printf", "%s"],
                           capture_output=True, text=True, check=True).stdout
    assert found == "9"


def test_host_side_changes_are_visible_within_the_window(hp_daemon: Daemon, host: Path,
                                                         pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    (base / "f").write_text("old")
    served = serve(hp_daemon, pod_name, base, "Directory")
    assert (served / "f").read_text() == "old"
    os.stat(served / "f")  # let the kernel cache it
    # The host changes, replaces and removes things behind volfs's back.
    (base / "f").write_text("new contents")
    (base / "added").write_text("+")
    (base / "f2").write_text("temp")
    os.stat(served / "f2")
    (base / "f2").unlink()
    slack = COHERENCE_WINDOW + 1.0  # the documented bound, plus scheduling slack
    wait_until(lambda: (served / "f").read_text() == "new contents", slack,
               "the host's new contents are not seen through volfs")
    wait_until(lambda: (served / "added").exists(), slack,
               "a file the host added is not seen through volfs")
    wait_until(lambda: not (served / "f2").exists(), slack,
               "a file the host removed is still seen through volfs")
    # ... and what goes through volfs is on the host at once.
    (served / "back").write_text("through volfs")
    assert (base / "back").read_text() == "through volfs"


def test_fidelity_of_metadata(hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    f = base / "f"
    f.write_text("x")
    os.chmod(f, 0o4755 | stat.S_ISGID)
    os.chown(f, 321, 654)
    os.utime(f, ns=(1_234_567_891_123_456_789, 1_111_111_111_987_654_321))
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "trusted.secret", b"t")
    (base / "sticky").mkdir()
    os.chmod(base / "sticky", 0o1777)
    os.symlink("../does/not/exist", base / "link")
    os.mkfifo(base / "fifo")
    served = serve(hp_daemon, pod_name, base, "Directory")
    st, hst = os.stat(served / "f"), os.stat(f)
    for field in ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime_ns", "st_atime_ns",
                  "st_nlink"):
        assert getattr(st, field) == getattr(hst, field), field
    assert os.getxattr(served / "f", "user.color") == b"blue"
    assert os.getxattr(served / "f", "trusted.secret") == b"t"
    assert set(os.listxattr(served / "f")) >= {"user.color", "trusted.secret"}
    assert stat.S_IMODE(os.stat(served / "sticky").st_mode) == 0o1777
    assert os.readlink(served / "link") == "../does/not/exist"  # verbatim, never resolved
    assert stat.S_ISFIFO(os.lstat(served / "fifo").st_mode)


def test_sparse_files_past_4gib_and_o_direct(hp_daemon: Daemon, host: Path,
                                             pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    served = serve(hp_daemon, pod_name, base, "Directory")
    with open(served / "sparse", "wb") as f:
        f.seek(5 * 1024**3)
        f.write(b"end")
    assert (base / "sparse").stat().st_size == 5 * 1024**3 + 3
    assert (base / "sparse").stat().st_blocks < 1024  # still sparse on the host
    with open(served / "sparse", "rb") as f:
        f.seek(5 * 1024**3)
        assert f.read() == b"end"
    fd = os.open(served / "direct", os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o644)
    try:
        import mmap
        buf = mmap.mmap(-1, 4096)
        buf.write(b"d" * 4096)
        assert os.write(fd, buf) == 4096
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 4096) == b"d" * 4096
    finally:
        os.close(fd)


def test_calls_volfs_does_not_serve_fail_cleanly(hp_daemon: Daemon, host: Path,
                                                 pod_name: str) -> None:
    base = host / "rw" / pod_name
    base.mkdir()
    served = serve(hp_daemon, pod_name, base, "Directory")
    (served / "src").write_bytes(b"copy me" * 1000)
    fd = os.open(served / "src", os.O_RDWR)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
        assert libc.fallocate(fd, 0, 0, 1 << 20) == -1  # the raw call, no glibc fallback
        assert ctypes.get_errno() in (errno.EOPNOTSUPP, errno.ENOSYS)
        assert os.lseek(fd, 0, os.SEEK_END) == 7000
    finally:
        os.close(fd)
    # copy_file_range falls back to an ordinary copy; the result must be exact.
    code = ("import os,sys\n"
            f"s=os.open({str(served / 'src')!r}, os.O_RDONLY)\n"
            f"d=os.open({str(served / 'dst')!r}, os.O_CREAT|os.O_WRONLY, 0o644)\n"
            "try:\n    n=os.copy_file_range(s, d, 7000)\n"
            "except OSError as e:\n    print('errno', e.errno); sys.exit(0)\n"
            "print('copied', n)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    if out.startswith("copied"):
        assert (base / "dst").read_bytes() == b"copy me" * 1000
    else:
        assert int(out.split()[1]) in (errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS)


def test_delete_never_touches_host_data(hp_daemon: Daemon, host: Path, pod_name: str) -> None:
    base = host / "rw" / pod_name
    served = serve(hp_daemon, pod_name, base, "DirectoryOrCreate")
    (served / "keep").write_text("mine")
    f = host / "rw" / f"{pod_name}.file"
    serve(hp_daemon, pod_name + "-f", f, "FileOrCreate")
    hp_daemon.cli("delete", "pod", pod_name)
    hp_daemon.cli("delete", "pod", pod_name + "-f")
    assert (base / "keep").read_text() == "mine"
    assert f.exists()


def test_config_file_allows_host_paths(tmp_path: Path) -> None:
    allowed = tmp_path / "from-config"
    allowed.mkdir()
    config = tmp_path / "volfs.yaml"
    config.write_text(f"allow-host-path:\n  - {allowed}:ro\nhook-timeout: 5\n")
    daemon = Daemon(tmp_path / "v", extra_args=["--config", str(config)]).start()
    try:
        served = serve(daemon, "cfg", allowed, "Directory")
        with pytest.raises(OSError) as excinfo:
            (served / "x").write_text("no")
        assert excinfo.value.errno == errno.EROFS
    finally:
        daemon.stop()


def test_unknown_config_setting_is_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "volfs.yaml"
    config.write_text("allow-hostpath: [/srv]\n")
    result = subprocess.run([str(Path(sys.executable).with_name("volfs")), "serve",
                             "--config", str(config)], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2
    assert "unknown setting 'allow-hostpath'" in result.stderr


def test_a_host_path_into_volfs_itself_is_refused_without_hanging(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "v", extra_args=["--allow-host-path", str(tmp_path)]).start()
    try:
        daemon.apply(hostpath_pod("outer", tmp_path / "data", "DirectoryOrCreate"))
        inner = daemon.volume_path("outer", "host")  # a path inside the volfs mount
        escape = tmp_path / "link-into-volfs"
        escape.symlink_to(inner)
        for path in (inner, escape):
            message = refused(daemon, "loop", path, "Directory")
            assert "lies in a volfs mount" in message
        assert os.listdir(daemon.root / "pods")  # the daemon still answers
    finally:
        daemon.stop()

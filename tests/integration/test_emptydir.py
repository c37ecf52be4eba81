"""EmptyDir end to end: a real daemon, a real FUSE mount, real processes."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, pod_manifest

SCRATCH = """\
    - name: scratch
      emptyDir: {}
"""


def test_apply_creates_an_empty_world_writable_volume(shared_daemon: Daemon,
                                                      pod_name: str) -> None:
    out = shared_daemon.apply(pod_manifest(pod_name, SCRATCH)).stdout
    assert f"pod/{pod_name} created" in out
    pod = shared_daemon.pod(pod_name)
    uid = pod["metadata"]["uid"]
    path = shared_daemon.volume_path(pod_name, "scratch")
    assert path == (shared_daemon.root / "pods" / uid / "volumes"
                    / "kubernetes.io~empty-dir" / "scratch")
    assert os.listdir(path) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o777


def test_two_processes_share_the_volume_at_once(shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    path = shared_daemon.volume_path(pod_name, "scratch")
    # A writer and a reader in separate processes, talking through one file.
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import os,sys,time\n"
         f"p={str(path / 'pipe.txt')!r}\n"
         "for _ in range(400):\n"
         "    if os.path.exists(p) and open(p).read().endswith('done\\n'): break\n"
         "    time.sleep(0.025)\n"
         "print(open(p).read(), end='')\n"],
        stdout=subprocess.PIPE, text=True)
    writer = subprocess.run(
        [sys.executable, "-c",
         f"f=open({str(path / 'pipe.txt')!r}, 'w')\n"
         "for i in range(100): f.write(f'line {i}\\n'); f.flush()\n"
         "f.write('done\\n'); f.close()\n"], check=True)
    assert writer.returncode == 0
    out, _ = reader.communicate(timeout=30)
    assert out.splitlines()[:3] == ["line 0", "line 1", "line 2"]
    assert out.endswith("done\n") and out.count("\n") == 101


def test_delete_removes_the_bytes_from_the_backing_store(shared_daemon: Daemon,
                                                         pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    (shared_daemon.volume_path(pod_name, "scratch") / "data.bin").write_bytes(b"x" * 4096)
    backing = shared_daemon.state_dir / "pods" / uid / "kubernetes.io~empty-dir" / "scratch"
    assert (backing / "data.bin").stat().st_size == 4096

    out = shared_daemon.cli("delete", "pod", pod_name).stdout
    assert f'pod "{pod_name}" deleted' in out
    assert not (shared_daemon.state_dir / "pods" / uid).exists()
    assert not (shared_daemon.root / "pods" / uid).exists()
    assert shared_daemon.cli("get", "pod", pod_name, check=False).returncode != 0


def test_memory_medium_lives_on_tmpfs_and_is_wiped(shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, """\
    - name: cache
      emptyDir:
        medium: Memory
"""))
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    (shared_daemon.volume_path(pod_name, "cache") / "f").write_text("in ram")
    in_ram = [p for p in Path("/dev/shm").glob(f"volfs-*/{uid}/*/cache/f")]
    assert len(in_ram) == 1 and in_ram[0].read_text() == "in ram"
    assert not (shared_daemon.state_dir / "pods" / uid).exists()
    shared_daemon.cli("delete", "pod", pod_name)
    assert not in_ram[0].exists()


def test_size_limit_is_enforced_with_enospc(shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, """\
    - name: small
      emptyDir:
        sizeLimit: 1Mi
"""))
    path = shared_daemon.volume_path(pod_name, "small")
    written = 0
    with pytest.raises(OSError) as excinfo, open(path / "fill", "wb", buffering=0) as f:
        while True:
            written += f.write(b"z" * 100_000)
    assert excinfo.value.errno == errno.ENOSPC
    assert written == 1024 * 1024  # every byte up to the limit, none past it
    assert (path / "fill").stat().st_size == 1024 * 1024
    used = [v for v in shared_daemon.pod(pod_name)["status"]["volumes"]
            if v["name"] == "small"][0]["usedBytes"]
    assert used == 1024 * 1024
    # Freeing space makes room again; truncating past the limit does not.
    os.truncate(path / "fill", 1000)
    with pytest.raises(OSError) as excinfo:
        os.truncate(path / "fill", 2 * 1024 * 1024)
    assert excinfo.value.errno == errno.ENOSPC
    (path / "second").write_bytes(b"y" * 500_000)


def test_non_root_caller_obeys_mode_bits_and_owns_what_it_creates(
        shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    path = shared_daemon.volume_path(pod_name, "scratch")
    private = path / "private"
    private.mkdir(mode=0o700)

    def as_user(code: str) -> subprocess.CompletedProcess[str]:
        # Started in the volume as root, then dropped: the tree above a volume is root's.
        return subprocess.run(
            ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
             sys.executable, "-c", code], cwd=path, capture_output=True, text=True,
            check=False)

    denied = as_user("open('private/x', 'w')")
    assert "PermissionError" in denied.stderr
    made = as_user("open('mine', 'w').write('hi')")
    assert made.returncode == 0, made.stderr
    st = (path / "mine").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_synthetic_levels_are_read_only(shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    for parent in (shared_daemon.root, shared_daemon.root / "pods",
                   shared_daemon.root / "pods" / uid / "volumes"):
        with pytest.raises(OSError) as excinfo:
            (parent / "intruder").mkdir()
        assert excinfo.value.errno in (errno.EROFS, errno.EPERM)


# What an unprivileged host user tries on the tree: each step's errno name, or "ok".
_PROBE = """\
import errno, os, sys
root, volume = sys.argv[1:]
def attempt(fn, *args):
    try:
        fn(*args)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"
def plant():
    with open(os.path.join(volume, "planted"), "w") as f:
        f.write("intruder")
print(attempt(os.listdir, root), attempt(os.listdir, os.path.join(root, "pods")),
      attempt(os.stat, volume), attempt(plant))
"""


def _probe(uid: int, gid: int, root: Path, volume: Path) -> str:
    """List ``<root>``, list ``pods``, reach ``volume``, write into it, as uid:gid."""
    result = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
         sys.executable, "-c", _PROBE, str(root), str(volume)],
        cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_other_host_users_cannot_reach_a_pods_volumes(shared_daemon: Daemon,
                                                       pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH))
    uid = shared_daemon.pod(pod_name)["metadata"]["uid"]
    path = shared_daemon.volume_path(pod_name, "scratch")
    assert stat.S_IMODE(path.stat().st_mode) == 0o777  # the EmptyDir itself, as kubelet's
    for level in (shared_daemon.root, shared_daemon.root / "pods",
                  shared_daemon.root / "pods" / uid, path.parent.parent, path.parent):
        st = level.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 0, 0), level
    assert _probe(65534, 65534, shared_daemon.root, path) == "EACCES EACCES EACCES EACCES"
    assert not (path / "planted").exists()
    assert uid in os.listdir(shared_daemon.root / "pods")  # root still goes everywhere
    (path / "mine").write_text("root's")


def test_the_tree_group_may_pass_through_the_tree(tmp_path: Path, pod_name: str) -> None:
    daemon = Daemon(tmp_path / "volfs", extra_args=["--tree-group", "4242"]).start()
    try:
        daemon.apply(pod_manifest(pod_name, SCRATCH))
        path = daemon.volume_path(pod_name, "scratch")
        pods = (daemon.root / "pods").stat()
        assert (stat.S_IMODE(pods.st_mode), pods.st_uid, pods.st_gid) == (0o750, 0, 4242)
        assert _probe(65534, 65534, daemon.root, path) == "EACCES EACCES EACCES EACCES"
        assert _probe(65534, 4242, daemon.root, path) == "ok ok ok ok"
        planted = (path / "planted").stat()
        assert (planted.st_uid, planted.st_gid) == (65534, 4242)
    finally:
        daemon.stop()


def test_rename_between_volumes_is_exdev(shared_daemon: Daemon, pod_name: str) -> None:
    shared_daemon.apply(pod_manifest(pod_name, SCRATCH + """\
    - name: other
      emptyDir: {}
"""))
    a = shared_daemon.volume_path(pod_name, "scratch")
    b = shared_daemon.volume_path(pod_name, "other")
    (a / "f").write_text("moving")
    for call in (os.rename, os.link):
        with pytest.raises(OSError) as excinfo:
            call(a / "f", b / "f")
        assert excinfo.value.errno == errno.EXDEV
    subprocess.run(["mv", str(a / "f"), str(b / "f")], check=True)  # mv copies instead
    assert (b / "f").read_text() == "moving" and not (a / "f").exists()

"""volfs's CSI endpoint, driven through the generated stubs over its unix socket, on a
real daemon: each RPC's answers and error codes, publishing onto real target
directories, enforced capacity, and a kill -9 between create and publish."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration.daemon import Daemon
from tests.integration.nfs import NfsShare
from volfs.csi import csi_pb2 as pb
from volfs.csi import csi_pb2_grpc as rpc

MiB = 1 << 20
Mode = pb.VolumeCapability.AccessMode
ModeValue = pb.VolumeCapability.AccessMode.Mode
Code = grpc.StatusCode


class Csi:
    """The three services' stubs on one channel."""

    def __init__(self, socket_path: Path) -> None:
        self.channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.identity = rpc.IdentityStub(self.channel)
        self.controller = rpc.ControllerStub(self.channel)
        self.node = rpc.NodeStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def capability(mode: ModeValue = Mode.SINGLE_NODE_WRITER, flags: list[str] | None = None
               ) -> pb.VolumeCapability:
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(mount_flags=flags or []),
                               access_mode=Mode(mode=mode))


def create(csi: Csi, name: str, size: int = 0, **params: str) -> pb.Volume:
    request = pb.CreateVolumeRequest(name=name, volume_capabilities=[capability()],
                                     parameters=params)
    if size:
        request.capacity_range.required_bytes = size
    return csi.controller.CreateVolume(request, timeout=30).volume


def publish(csi: Csi, volume_id: str, target: Path, readonly: bool = False,
            mode: ModeValue = Mode.SINGLE_NODE_WRITER, flags: list[str] | None = None) -> None:
    csi.node.NodePublishVolume(pb.NodePublishVolumeRequest(
        volume_id=volume_id, target_path=str(target), readonly=readonly,
        volume_capability=capability(mode, flags)), timeout=30)


def unpublish(csi: Csi, volume_id: str, target: Path) -> None:
    csi.node.NodeUnpublishVolume(pb.NodeUnpublishVolumeRequest(
        volume_id=volume_id, target_path=str(target)), timeout=30)


def code_of(call: object, request: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)  # type: ignore[operator]
    return caught.value.code()  # type: ignore[no-any-return]


def write(path: Path, size: int) -> None:
    """Write ``size`` bytes in a process of its own, as a container would."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k", f"count={size // 65536}",
                    "conv=fsync", "status=none"], check=True, capture_output=True)


@pytest.fixture
def csi_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Csi]]:
    sock = tmp_path / "csi" / "csi.sock"
    daemon = Daemon(tmp_path / "volfs", extra_args=["--csi-endpoint", f"unix://{sock}",
                                                    "--csi-node-id", "node-a"]).start()
    csi = Csi(sock)
    try:
        yield daemon, csi
    finally:
        csi.close()
        _unmount_under(tmp_path)
        daemon.stop()


def _unmount_under(base: Path) -> None:
    """Unmount the targets a failed test left published (ours only: under ``base``)."""
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    for point in reversed(points):
        if point.startswith(str(base) + "/targets"):
            subprocess.run(["umount", "-l", point], check=False)


def test_identity(csi_daemon: tuple[Daemon, Csi]) -> None:
    _, csi = csi_daemon
    info = csi.identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=10)
    assert (info.name, info.vendor_version) == ("volfs.io", "0.1.0")
    caps = csi.identity.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest(), timeout=10)
    assert [c.WhichOneof("type") for c in caps.capabilities] == ["service", "volume_expansion"]
    assert csi.identity.Probe(pb.ProbeRequest(), timeout=10).ready.value is True
    node = csi.node.NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10)
    assert (node.node_id, node.max_volumes_per_node) == ("node-a", 0)
    ctl = csi.controller.ControllerGetCapabilities(pb.ControllerGetCapabilitiesRequest())
    assert sorted(c.rpc.type for c in ctl.capabilities) == [1, 3, 4, 9]  # no PUBLISH (2)


def test_create_is_idempotent_and_checks_its_request(csi_daemon: tuple[Daemon, Csi]) -> None:
    daemon, csi = csi_daemon
    first = create(csi, "pvc-1", 4 * MiB)
    assert first.volume_id.startswith("scratch.") and first.capacity_bytes == 4 * MiB
    assert create(csi, "pvc-1", 4 * MiB).volume_id == first.volume_id
    assert (daemon.root / "csi" / first.volume_id).is_dir()
    assert oct((daemon.root / "csi").stat().st_mode & 0o777) == "0o750"
    bigger = pb.CreateVolumeRequest(name="pvc-1", volume_capabilities=[capability()],
                                    capacity_range=pb.CapacityRange(required_bytes=8 * MiB))
    assert code_of(csi.controller.CreateVolume, bigger) == Code.ALREADY_EXISTS
    no_name = pb.CreateVolumeRequest(volume_capabilities=[capability()])
    assert code_of(csi.controller.CreateVolume, no_name) == Code.INVALID_ARGUMENT
    no_caps = pb.CreateVolumeRequest(name="x")
    assert code_of(csi.controller.CreateVolume, no_caps) == Code.INVALID_ARGUMENT
    block = pb.CreateVolumeRequest(name="x", volume_capabilities=[pb.VolumeCapability(
        block=pb.VolumeCapability.BlockVolume(), access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))])
    assert code_of(csi.controller.CreateVolume, block) == Code.INVALID_ARGUMENT
    backwards = pb.CreateVolumeRequest(name="x", volume_capabilities=[capability()],
                                       capacity_range=pb.CapacityRange(required_bytes=2,
                                                                       limit_bytes=1))
    assert code_of(csi.controller.CreateVolume, backwards) == Code.OUT_OF_RANGE
    huge = pb.CreateVolumeRequest(name="x", volume_capabilities=[capability()],
                                  capacity_range=pb.CapacityRange(required_bytes=1 << 62))
    assert code_of(csi.controller.CreateVolume, huge) == Code.OUT_OF_RANGE
    bad_kind = pb.CreateVolumeRequest(name="x", volume_capabilities=[capability()],
                                      parameters={"kind": "ceph"})
    assert code_of(csi.controller.CreateVolume, bad_kind) == Code.INVALID_ARGUMENT


def test_ids_are_checked_and_delete_is_idempotent(csi_daemon: tuple[Daemon, Csi]) -> None:
    daemon, csi = csi_daemon
    volume = create(csi, "pvc-del", MiB)
    for bad in ("../../etc", "scratch.../x", "nfs." + "0" * 32):
        validate = pb.ValidateVolumeCapabilitiesRequest(volume_id=bad,
                                                        volume_capabilities=[capability()])
        assert code_of(csi.controller.ValidateVolumeCapabilities, validate) == Code.NOT_FOUND
    assert code_of(csi.controller.DeleteVolume, pb.DeleteVolumeRequest()) \
        == Code.INVALID_ARGUMENT
    csi.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume.volume_id))
    csi.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume.volume_id))
    csi.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id="../../etc"))
    assert not (daemon.state_dir / "csi" / volume.volume_id).exists()
    assert not (daemon.root / "csi" / volume.volume_id).exists()


def test_validate_list_and_capacity(csi_daemon: tuple[Daemon, Csi]) -> None:
    _, csi = csi_daemon
    ids = sorted(create(csi, f"pvc-l{i}", MiB).volume_id for i in range(3))
    ok = csi.controller.ValidateVolumeCapabilities(pb.ValidateVolumeCapabilitiesRequest(
        volume_id=ids[0], volume_capabilities=[capability()]))
    assert ok.HasField("confirmed")
    multi = csi.controller.ValidateVolumeCapabilities(pb.ValidateVolumeCapabilitiesRequest(
        volume_id=ids[0], volume_capabilities=[capability(Mode.MULTI_NODE_MULTI_WRITER)]))
    assert not multi.HasField("confirmed") and "one node" in multi.message
    page = csi.controller.ListVolumes(pb.ListVolumesRequest(max_entries=2))
    assert [e.volume.volume_id for e in page.entries] == ids[:2]
    rest = csi.controller.ListVolumes(pb.ListVolumesRequest(starting_token=page.next_token))
    assert [e.volume.volume_id for e in rest.entries] == ids[2:] and not rest.next_token
    bad = pb.ListVolumesRequest(starting_token="garbage")
    assert code_of(csi.controller.ListVolumes, bad) == Code.ABORTED
    free = csi.controller.GetCapacity(pb.GetCapacityRequest()).available_capacity
    assert free > MiB


def test_publish_enforces_capacity_and_expand_makes_room(
        csi_daemon: tuple[Daemon, Csi], tmp_path: Path) -> None:
    _, csi = csi_daemon
    volume = create(csi, "pvc-cap", 2 * MiB)
    target = tmp_path / "targets" / "cap"
    target.parent.mkdir()
    publish(csi, volume.volume_id, target)
    publish(csi, volume.volume_id, target)  # the same again: nothing to do
    write(target / "one", MiB)
    with pytest.raises(subprocess.CalledProcessError) as full:
        write(target / "two", 2 * MiB)
    assert b"No space left" in full.value.stderr
    stats = csi.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(
        volume_id=volume.volume_id, volume_path=str(target)))
    usage, inodes = stats.usage
    assert (usage.unit, usage.total, usage.used) == (pb.VolumeUsage.BYTES, 2 * MiB, 2 * MiB)
    # Inodes are the backing filesystem's (the state dir's, under tmp_path), as kubelet's.
    assert (inodes.unit, inodes.total) == (pb.VolumeUsage.INODES, os.statvfs(tmp_path).f_files)
    assert 0 < inodes.used <= inodes.total
    expanded = csi.controller.ControllerExpandVolume(pb.ControllerExpandVolumeRequest(
        volume_id=volume.volume_id, capacity_range=pb.CapacityRange(required_bytes=8 * MiB)))
    assert (expanded.capacity_bytes, expanded.node_expansion_required) == (8 * MiB, False)
    write(target / "two", 2 * MiB)  # room again, live
    usage, _ = csi.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(
        volume_id=volume.volume_id, volume_path=str(target))).usage
    assert (usage.total, usage.used, usage.available) == (8 * MiB, 3 * MiB, 5 * MiB)
    in_use = pb.DeleteVolumeRequest(volume_id=volume.volume_id)
    assert code_of(csi.controller.DeleteVolume, in_use) == Code.FAILED_PRECONDITION
    unpublish(csi, volume.volume_id, target)
    unpublish(csi, volume.volume_id, target)  # idempotent
    assert not target.exists()
    unknown = pb.NodeUnpublishVolumeRequest(volume_id="scratch." + "1" * 32,
                                            target_path=str(target))
    assert code_of(csi.node.NodeUnpublishVolume, unknown) == Code.NOT_FOUND


def test_read_only_publish_refuses_writes(csi_daemon: tuple[Daemon, Csi], tmp_path: Path
                                          ) -> None:
    _, csi = csi_daemon
    volume = create(csi, "pvc-ro", MiB)
    targets = tmp_path / "targets"
    targets.mkdir()
    publish(csi, volume.volume_id, targets / "rw")
    (targets / "rw" / "hello").write_text("hi")
    publish(csi, volume.volume_id, targets / "ro", readonly=True)
    assert (targets / "ro" / "hello").read_text() == "hi"
    with pytest.raises(OSError) as refused:
        (targets / "ro" / "new").write_text("no")
    assert refused.value.errno == errno.EROFS
    publish(csi, volume.volume_id, targets / "reader", mode=Mode.SINGLE_NODE_READER_ONLY)
    with pytest.raises(OSError) as refused:
        (targets / "reader" / "new").write_text("no")
    assert refused.value.errno == errno.EROFS
    differently = pb.NodePublishVolumeRequest(volume_id=volume.volume_id,
                                              target_path=str(targets / "ro"),
                                              volume_capability=capability())
    assert code_of(csi.node.NodePublishVolume, differently) == Code.ALREADY_EXISTS
    no_target = pb.NodePublishVolumeRequest(volume_id=volume.volume_id,
                                            volume_capability=capability())
    assert code_of(csi.node.NodePublishVolume, no_target) == Code.INVALID_ARGUMENT
    no_cap = pb.NodePublishVolumeRequest(volume_id=volume.volume_id,
                                         target_path=str(targets / "x"))
    assert code_of(csi.node.NodePublishVolume, no_cap) == Code.INVALID_ARGUMENT
    for name in ("rw", "ro", "reader"):
        unpublish(csi, volume.volume_id, targets / name)


def test_single_writer_gets_one_target(csi_daemon: tuple[Daemon, Csi], tmp_path: Path) -> None:
    _, csi = csi_daemon
    volume = create(csi, "pvc-once", MiB)
    targets = tmp_path / "targets"
    targets.mkdir()
    publish(csi, volume.volume_id, targets / "a", mode=Mode.SINGLE_NODE_SINGLE_WRITER)
    second = pb.NodePublishVolumeRequest(
        volume_id=volume.volume_id, target_path=str(targets / "b"),
        volume_capability=capability(Mode.SINGLE_NODE_SINGLE_WRITER))
    assert code_of(csi.node.NodePublishVolume, second) == Code.FAILED_PRECONDITION
    unpublish(csi, volume.volume_id, targets / "a")


def test_a_volume_survives_kill_9_between_create_and_publish(
        csi_daemon: tuple[Daemon, Csi], tmp_path: Path) -> None:
    daemon, csi = csi_daemon
    volume = create(csi, "pvc-crash", 2 * MiB, medium="Memory")
    target = tmp_path / "targets" / "crash"
    target.parent.mkdir()
    publish(csi, volume.volume_id, target)
    write(target / "kept", MiB)
    unpublish(csi, volume.volume_id, target)
    daemon.kill9()
    daemon.start()  # the stale socket is replaced
    assert create(csi, "pvc-crash", 2 * MiB, medium="Memory").volume_id == volume.volume_id
    publish(csi, volume.volume_id, target)
    assert (target / "kept").stat().st_size == MiB
    with pytest.raises(subprocess.CalledProcessError):
        write(target / "more", 2 * MiB)  # the limit and the usage came back with it
    unpublish(csi, volume.volume_id, target)
    csi.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume.volume_id))


@pytest.mark.timeout(90)
def test_nfs_volume_through_the_provisioner(csi_daemon: tuple[Daemon, Csi], tmp_path: Path,
                                            nfs_share: NfsShare) -> None:
    _, csi = csi_daemon
    params = {"kind": "nfs", "server": nfs_share.server, "share": nfs_share.export,
              "onDelete": "archive", "mountOptions": ",".join(nfs_share.mount_options)}
    volume = create(csi, "pvc-nfs", 2 * MiB, **params)
    assert volume.volume_id.startswith("nfs.")
    on_server = nfs_share.dir / "csi" / volume.volume_id
    assert on_server.is_dir()
    target = tmp_path / "targets" / "nfs"
    target.parent.mkdir()
    publish(csi, volume.volume_id, target)
    write(target / "data", MiB)
    assert (on_server / "data").stat().st_size == MiB
    with pytest.raises(subprocess.CalledProcessError):
        write(target / "more", 2 * MiB)
    usage, inodes = csi.node.NodeGetVolumeStats(pb.NodeGetVolumeStatsRequest(
        volume_id=volume.volume_id, volume_path=str(target))).usage
    assert (usage.total, usage.used) == (2 * MiB, 2 * MiB)
    assert inodes.unit == pb.VolumeUsage.INODES  # the share's, from its FSSTAT
    assert 0 < inodes.used <= inodes.total
    unpublish(csi, volume.volume_id, target)
    csi.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume.volume_id))
    assert not on_server.exists()
    assert (nfs_share.dir / "csi" / f"archived-{volume.volume_id}" / "data").exists()


def test_a_non_unix_endpoint_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("volfs")), "serve", "--root",
         str(tmp_path / "r"), "--state-dir", str(tmp_path / "s"),
         "--csi-endpoint", "tcp://127.0.0.1:10000"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "unix socket only" in result.stderr and "Traceback" not in result.stderr

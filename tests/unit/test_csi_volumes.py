"""The pure parts of the CSI driver: ids, parameters, capacity ranges, records."""

from __future__ import annotations

import grpc
import pytest

from volfs.config import parse_csi_endpoint
from volfs.csi import csi_pb2 as pb
from volfs.csi.errors import CsiError, InFlight
from volfs.csi.volumes import (
    Parameters,
    Publication,
    VolumeRecord,
    capability_problem,
    checked_id,
    fits,
    new_volume_id,
    parse_parameters,
    wanted_capacity,
)

Mode = pb.VolumeCapability.AccessMode


def code(error: pytest.ExceptionInfo[CsiError]) -> grpc.StatusCode:
    return error.value.code


def test_ids_are_volfs_own_and_nothing_else_passes() -> None:
    made = new_volume_id("scratch")
    assert checked_id(made) == made
    with pytest.raises(CsiError) as missing:
        checked_id("")
    assert code(missing) == grpc.StatusCode.INVALID_ARGUMENT
    for hostile in ("../x", "scratch.../../etc", "scratch." + "a" * 31, "scratch." + "A" * 32,
                    "nfs." + "0" * 32 + "/..", "ceph." + "0" * 32):
        with pytest.raises(CsiError) as bad:
            checked_id(hostile)
        assert code(bad) == grpc.StatusCode.NOT_FOUND


def test_parameters_choose_the_kind() -> None:
    assert parse_parameters({}) == Parameters("scratch")
    assert parse_parameters({"medium": "Memory"}).medium == "Memory"
    nfs = parse_parameters({"kind": "nfs", "server": "s", "share": "/x", "mountOptions":
                            "port=1, mountport=2", "csi.storage.k8s.io/pvc/name": "data"})
    assert (nfs.nfs, nfs.mount_options, nfs.claim_name) == (
        {"server": "s", "share": "/x"}, ("port=1", "mountport=2"), "data")
    for bad in ({"kind": "ceph"}, {"medium": "Disk"}, {"server": "s"}):
        with pytest.raises(CsiError) as refused:
            parse_parameters(bad)
        assert code(refused) == grpc.StatusCode.INVALID_ARGUMENT


def test_capacity_range() -> None:
    assert wanted_capacity(None) is None
    assert wanted_capacity(pb.CapacityRange(required_bytes=5, limit_bytes=9)) == 5
    assert wanted_capacity(pb.CapacityRange(limit_bytes=9)) == 9
    for bad in (pb.CapacityRange(required_bytes=9, limit_bytes=5),
                pb.CapacityRange(required_bytes=-1)):
        with pytest.raises(CsiError) as refused:
            wanted_capacity(bad)
        assert code(refused) == grpc.StatusCode.OUT_OF_RANGE
    assert fits(5, pb.CapacityRange(required_bytes=5, limit_bytes=5))
    assert not fits(5, pb.CapacityRange(required_bytes=6))
    assert not fits(None, pb.CapacityRange(required_bytes=1))


def test_capabilities() -> None:
    mount = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                                access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
    assert capability_problem("scratch", mount) is None
    block = pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                                access_mode=Mode(mode=Mode.SINGLE_NODE_WRITER))
    assert capability_problem("nfs", block)
    many = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                               access_mode=Mode(mode=Mode.MULTI_NODE_MULTI_WRITER))
    assert capability_problem("scratch", many) and capability_problem("nfs", many) is None


def test_record_round_trips_without_mount_flags() -> None:
    record = VolumeRecord(new_volume_id("nfs"), "pvc-1",
                          parse_parameters({"kind": "nfs", "server": "s", "share": "/x"}), 7,
                          {"nfs": {"server": "s", "path": "/x/csi/1"}}, {"a": "b"},
                          {"/t": Publication(True, "digest", Mode.SINGLE_NODE_WRITER)})
    assert VolumeRecord.from_object(record.to_object()) == record


def test_in_flight_aborts_a_second_call() -> None:
    in_flight = InFlight()
    with in_flight.hold("v"):
        with pytest.raises(CsiError) as second, in_flight.hold("v"):
            pass
        assert code(second) == grpc.StatusCode.ABORTED
    with in_flight.hold("v"):  # free again
        pass


def test_endpoint_must_be_a_unix_socket() -> None:
    assert str(parse_csi_endpoint("unix:///run/x.sock")) == "/run/x.sock"
    assert str(parse_csi_endpoint("unix:/run/x.sock")) == "/run/x.sock"
    for bad in ("tcp://127.0.0.1:1", "/run/x.sock", "unix://relative", "unix:///run/"):
        with pytest.raises(ValueError):
            parse_csi_endpoint(bad)

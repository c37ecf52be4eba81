"""The checked-in csi_pb2*.py are what protoc makes of volfs/csi/csi.proto today."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from volfs.csi import csi_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("csi_pb2.py", "csi_pb2.pyi", "csi_pb2_grpc.py")


@pytest.mark.timeout(60)
def test_generated_files_match_the_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    source = tmp_path / "volfs" / "csi"
    source.mkdir(parents=True)
    shutil.copy(REPO / "volfs" / "csi" / "csi.proto", source / "csi.proto")
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    status = protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}",
                          f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                          f"--pyi_out={tmp_path}", str(source / "csi.proto")])
    assert status == 0
    drifted = [name for name in GENERATED
               if (source / name).read_text() != (REPO / "volfs" / "csi" / name).read_text()]
    assert not drifted, f"regenerate {drifted} (see the head of volfs/csi/csi.proto)"


def test_field_numbers_are_the_specs() -> None:
    """A few numbers a CO depends on, checked against the CSI v1 spec's csi.proto."""
    def number(message: type, field: str) -> int:
        return message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined,no-any-return]

    assert number(pb.CreateVolumeRequest, "accessibility_requirements") == 7
    assert number(pb.NodePublishVolumeRequest, "target_path") == 4
    assert number(pb.NodePublishVolumeRequest, "readonly") == 6
    assert number(pb.NodePublishVolumeRequest, "volume_context") == 8
    assert number(pb.ControllerExpandVolumeRequest, "volume_capability") == 4
    assert number(pb.PluginCapability, "volume_expansion") == 2
    assert pb.VolumeCapability.AccessMode.SINGLE_NODE_SINGLE_WRITER == 6
    assert pb.ControllerServiceCapability.RPC.EXPAND_VOLUME == 9
    assert pb.DESCRIPTOR.package == "csi.v1"

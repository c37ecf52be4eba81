"""The ctypes structures of the libnfs binding against the installed C headers.

A C program compiled against ``/usr/include/nfsc`` prints the size of every
structure and the offset of every field; each must match what ctypes computed.
A mismatch would corrupt memory at the first call, so this runs in every suite.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from volfs.stores.nfs import _libnfs as L
from volfs.stores.nfs.nfs3 import SetAttrs

HEADERS = Path("/usr/include/nfsc/libnfs-raw-nfs.h")

# Our name -> the C type, and field paths where the C spelling differs from ours.
STRUCTS: dict[str, tuple[str, dict[str, str]]] = {
    "nfs_fh3": ("struct nfs_fh3", {"data_len": "data.data_len", "data_val": "data.data_val"}),
    "diropargs3": ("struct diropargs3", {}),
    "fattr3": ("struct fattr3", {}),
    "post_op_attr": ("struct post_op_attr", {"attributes": "post_op_attr_u.attributes"}),
    "wcc_data": ("struct wcc_data", {}),
    "pre_op_attr": ("struct pre_op_attr", {"attributes": "pre_op_attr_u.attributes"}),
    "post_op_fh3": ("struct post_op_fh3", {"handle": "post_op_fh3_u.handle"}),
    "sattr3": ("struct sattr3", {}),
    "sattrguard3": ("struct sattrguard3", {"obj_ctime": "sattrguard3_u.obj_ctime"}),
    "GETATTR3args": ("struct GETATTR3args", {}),
    "SETATTR3args": ("struct SETATTR3args", {}),
    "LOOKUP3args": ("struct LOOKUP3args", {}),
    "READLINK3args": ("struct READLINK3args", {}),
    "READ3args": ("struct READ3args", {}),
    "WRITE3args": ("struct WRITE3args", {"data": "data.data_len"}),
    "createhow3": ("struct createhow3", {"u": "createhow3_u"}),
    "CREATE3args": ("struct CREATE3args", {}),
    "MKDIR3args": ("struct MKDIR3args", {}),
    "SYMLINK3args": ("struct SYMLINK3args", {}),
    "mknoddata3": ("struct mknoddata3", {"u": "mknoddata3_u"}),
    "MKNOD3args": ("struct MKNOD3args", {}),
    "REMOVE3args": ("struct REMOVE3args", {}),
    "RMDIR3args": ("struct RMDIR3args", {}),
    "RENAME3args": ("struct RENAME3args", {"from_": "from"}),
    "LINK3args": ("struct LINK3args", {}),
    "READDIRPLUS3args": ("struct READDIRPLUS3args", {}),
    "FSSTAT3args": ("struct FSSTAT3args", {}),
    "FSINFO3args": ("struct FSINFO3args", {}),
    "COMMIT3args": ("struct COMMIT3args", {}),
    "GETATTR3res": ("struct GETATTR3res", {"resok": "GETATTR3res_u.resok"}),
    "SETATTR3res": ("struct SETATTR3res", {"resok": "SETATTR3res_u.resok"}),
    "LOOKUP3res": ("struct LOOKUP3res", {"resok": "LOOKUP3res_u.resok"}),
    "READLINK3res": ("struct READLINK3res", {"resok": "READLINK3res_u.resok"}),
    "READ3res": ("struct READ3res", {"resok": "READ3res_u.resok"}),
    "READ3resok": ("struct READ3resok", {"data": "data.data_len"}),
    "WRITE3res": ("struct WRITE3res", {"resok": "WRITE3res_u.resok"}),
    "WRITE3resok": ("struct WRITE3resok", {}),
    "_made3res": ("struct CREATE3res", {"resok": "CREATE3res_u.resok"}),
    "_made3resok": ("struct MKDIR3resok", {}),
    "_dirop3res": ("struct REMOVE3res", {"resok": "REMOVE3res_u.resok"}),
    "RENAME3res": ("struct RENAME3res", {"resok": "RENAME3res_u.resok"}),
    "LINK3res": ("struct LINK3res", {"resok": "LINK3res_u.resok"}),
    "entryplus3": ("struct entryplus3", {}),
    "READDIRPLUS3res": ("struct READDIRPLUS3res", {"resok": "READDIRPLUS3res_u.resok"}),
    "READDIRPLUS3resok": ("struct READDIRPLUS3resok", {}),
    "FSSTAT3res": ("struct FSSTAT3res", {"resok": "FSSTAT3res_u.resok"}),
    "FSSTAT3resok": ("struct FSSTAT3resok", {}),
    "FSINFO3res": ("struct FSINFO3res", {"resok": "FSINFO3res_u.resok"}),
    "FSINFO3resok": ("struct FSINFO3resok", {}),
    "COMMIT3res": ("struct COMMIT3res", {"resok": "COMMIT3res_u.resok"}),
    "mountres3": ("struct mountres3", {"mountinfo": "mountres3_u.mountinfo"}),
    "mountres3_ok": ("struct mountres3_ok", {"fhandle": "fhandle.fhandle3_len",
                                             "auth_flavors": "auth_flavors.auth_flavors_len"}),
}
# Sub-structures whose C spelling differs from ours, by field: checked for size only.
SIZED = {"_set_u32": "struct set_mode3", "_set_u64": "struct set_size3",
         "_set_time": "struct set_atime", "_createhow3_u": "sattr3",
         "_mknoddata3_u": "devicedata3", "_opaque": "fhandle3"}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    if shutil.which("gcc") is None or not HEADERS.exists():
        pytest.fail("gcc and libnfs-dev are needed (scripts/setup installs both)")
    lines = []
    for ours, (c_type, renames) in STRUCTS.items():
        struct = getattr(L, ours)
        lines.append(f'printf("{ours} %zu\\n", sizeof({c_type}));')
        for name, *_ in struct._fields_:
            path = renames.get(name, name)
            lines.append(f'printf("{ours}.{name} %zu\\n", offsetof({c_type}, {path}));')
    for ours, c_type in SIZED.items():
        lines.append(f'printf("{ours} %zu\\n", sizeof({c_type}));')
    source = tmp_path_factory.mktemp("layout") / "layout.c"
    source.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <stdint.h>\n"
                      "#include <sys/time.h>\n"
                      "#include <nfsc/libnfs.h>\n#include <nfsc/libnfs-raw.h>\n"
                      "#include <nfsc/libnfs-raw-nfs.h>\n#include <nfsc/libnfs-raw-mount.h>\n"
                      "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    binary = source.with_suffix("")
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True, capture_output=True)
    out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines())}


def test_every_structure_has_the_c_size_and_offsets(c_layout: dict[str, int]) -> None:
    wrong = []
    for ours in STRUCTS:
        struct = getattr(L, ours)
        if ctypes.sizeof(struct) != c_layout[ours]:
            wrong.append(f"sizeof {ours}: {ctypes.sizeof(struct)} != {c_layout[ours]}")
        for name, *_ in struct._fields_:
            offset = getattr(struct, name).offset
            if offset != c_layout[f"{ours}.{name}"]:
                wrong.append(f"{ours}.{name}: {offset} != {c_layout[f'{ours}.{name}']}")
    for ours in SIZED:
        if ctypes.sizeof(getattr(L, ours)) != c_layout[ours]:
            wrong.append(f"sizeof {ours}: {ctypes.sizeof(getattr(L, ours))} != {c_layout[ours]}")
    assert not wrong, "\n".join(wrong)


def test_every_procedure_is_exported_by_the_library() -> None:
    for proc in L.NFS3_PROCEDURES:
        assert getattr(L.lib, f"rpc_nfs3_{proc}_async").argtypes is not None


def test_times_that_nfstime3_cannot_carry_are_clamped_never_wrapped() -> None:
    last = 2**32 - 1
    for asked, sent in ((2**32 * 10**9, (last, 0)), (2**33 * 10**9 + 7, (last, 0)),
                        (last * 10**9 + 7, (last, 0)), (-1, (0, 0)), (-(10**18), (0, 0)),
                        (5, (0, 0)), (10**9 + 5, (1, 5)), ((last - 1) * 10**9 + 9, (last - 1, 9))):
        s = L.sattr3()
        SetAttrs(atime_ns=asked, mtime_ns=asked).fill(s)
        assert (s.mtime.value.seconds, s.mtime.value.nseconds) == sent, asked
        assert (s.atime.value.seconds, s.atime.value.nseconds) == sent, asked
        assert s.mtime.set_it == L.SET_TO_CLIENT_TIME

"""ctypes declarations for the parts of the system libnfs that volfs uses.

Only the raw RPC layer (``libnfs-raw.h``, ``libnfs-raw-nfs.h``,
``libnfs-raw-mount.h``) is bound: MOUNT3/MNT for an export's root handle, and
the NFSv3 procedures on file handles. The structures mirror the rpcgen
declarations of those headers field for field (``tests/unit/test_nfs_binding.py``
compiles a C program against the installed headers and checks every size and
offset below). Nothing here does I/O or keeps state: :mod:`volfs.stores.nfs.rpc`
drives these calls from the trio loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    Union,
    c_char,
    c_char_p,
    c_int,
    c_uint32,
    c_uint64,
    c_void_p,
)

SONAME = "libnfs.so.13"


def _load() -> ctypes.CDLL:
    try:
        return ctypes.CDLL(SONAME, use_errno=True)
    except OSError:
        found = ctypes.util.find_library("nfs")
        if found is None:
            raise OSError(f"{SONAME} not found: install Debian's libnfs13 (scripts/setup "
                          f"does)") from None
        return ctypes.CDLL(found, use_errno=True)


lib = _load()

# -- constants -----------------------------------------------------------------------

POLLIN, POLLOUT, POLLERR, POLLHUP = 0x001, 0x004, 0x008, 0x010

RPC_STATUS_SUCCESS, RPC_STATUS_ERROR, RPC_STATUS_CANCEL, RPC_STATUS_TIMEOUT = 0, 1, 2, 3

MOUNT_PROGRAM, MOUNT_V3 = 100005, 3
NFS_PROGRAM, NFS_V3 = 100003, 3

NF3REG, NF3DIR, NF3BLK, NF3CHR, NF3LNK, NF3SOCK, NF3FIFO = 1, 2, 3, 4, 5, 6, 7
UNSTABLE, DATA_SYNC, FILE_SYNC = 0, 1, 2
UNCHECKED, GUARDED, EXCLUSIVE = 0, 1, 2
DONT_CHANGE, SET_TO_SERVER_TIME, SET_TO_CLIENT_TIME = 0, 1, 2

NFS3_OK = 0
NFS3ERR_JUKEBOX = 10008

# -- structures (libnfs-raw-nfs.h) ------------------------------------------------------


class nfs_fh3(Structure):  # noqa: N801 - the C names, so the layout test can name them
    _fields_ = [("data_len", c_uint32), ("data_val", c_void_p)]


class diropargs3(Structure):  # noqa: N801
    _fields_ = [("dir", nfs_fh3), ("name", c_char_p)]


class specdata3(Structure):  # noqa: N801
    _fields_ = [("specdata1", c_uint32), ("specdata2", c_uint32)]


class nfstime3(Structure):  # noqa: N801
    _fields_ = [("seconds", c_uint32), ("nseconds", c_uint32)]


class fattr3(Structure):  # noqa: N801
    _fields_ = [
        ("type", c_int), ("mode", c_uint32), ("nlink", c_uint32), ("uid", c_uint32),
        ("gid", c_uint32), ("size", c_uint64), ("used", c_uint64), ("rdev", specdata3),
        ("fsid", c_uint64), ("fileid", c_uint64), ("atime", nfstime3), ("mtime", nfstime3),
        ("ctime", nfstime3),
    ]


class post_op_attr(Structure):  # noqa: N801
    _fields_ = [("attributes_follow", c_uint32), ("attributes", fattr3)]


class wcc_attr(Structure):  # noqa: N801
    _fields_ = [("size", c_uint64), ("mtime", nfstime3), ("ctime", nfstime3)]


class pre_op_attr(Structure):  # noqa: N801
    _fields_ = [("attributes_follow", c_uint32), ("attributes", wcc_attr)]


class wcc_data(Structure):  # noqa: N801
    _fields_ = [("before", pre_op_attr), ("after", post_op_attr)]


class post_op_fh3(Structure):  # noqa: N801
    _fields_ = [("handle_follows", c_uint32), ("handle", nfs_fh3)]


class _set_u32(Structure):
    _fields_ = [("set_it", c_uint32), ("value", c_uint32)]


class _set_u64(Structure):
    _fields_ = [("set_it", c_uint32), ("value", c_uint64)]


class _set_time(Structure):
    _fields_ = [("set_it", c_int), ("value", nfstime3)]


class sattr3(Structure):  # noqa: N801
    _fields_ = [("mode", _set_u32), ("uid", _set_u32), ("gid", _set_u32), ("size", _set_u64),
                ("atime", _set_time), ("mtime", _set_time)]


class sattrguard3(Structure):  # noqa: N801
    _fields_ = [("check", c_uint32), ("obj_ctime", nfstime3)]


class _opaque(Structure):
    """An XDR variable-length opaque as rpcgen lays it out: length, then pointer."""

    _fields_ = [("len", c_uint32), ("val", c_void_p)]


# Arguments

class GETATTR3args(Structure):
    _fields_ = [("object", nfs_fh3)]


class SETATTR3args(Structure):
    _fields_ = [("object", nfs_fh3), ("new_attributes", sattr3), ("guard", sattrguard3)]


class LOOKUP3args(Structure):
    _fields_ = [("what", diropargs3)]


class READLINK3args(Structure):
    _fields_ = [("symlink", nfs_fh3)]


class READ3args(Structure):
    _fields_ = [("file", nfs_fh3), ("offset", c_uint64), ("count", c_uint32)]


class WRITE3args(Structure):
    _fields_ = [("file", nfs_fh3), ("offset", c_uint64), ("count", c_uint32),
                ("stable", c_int), ("data", _opaque)]


class _createhow3_u(Union):
    _fields_ = [("obj_attributes", sattr3), ("verf", c_char * 8)]


class createhow3(Structure):  # noqa: N801
    _fields_ = [("mode", c_int), ("u", _createhow3_u)]


class CREATE3args(Structure):
    _fields_ = [("where", diropargs3), ("how", createhow3)]


class MKDIR3args(Structure):
    _fields_ = [("where", diropargs3), ("attributes", sattr3)]


class symlinkdata3(Structure):  # noqa: N801
    _fields_ = [("symlink_attributes", sattr3), ("symlink_data", c_char_p)]


class SYMLINK3args(Structure):
    _fields_ = [("where", diropargs3), ("symlink", symlinkdata3)]


class devicedata3(Structure):  # noqa: N801
    _fields_ = [("dev_attributes", sattr3), ("spec", specdata3)]


class _mknoddata3_u(Union):
    _fields_ = [("device", devicedata3), ("attributes", sattr3)]


class mknoddata3(Structure):  # noqa: N801
    _fields_ = [("type", c_int), ("u", _mknoddata3_u)]


class MKNOD3args(Structure):
    _fields_ = [("where", diropargs3), ("what", mknoddata3)]


class REMOVE3args(Structure):
    _fields_ = [("object", diropargs3)]


class RMDIR3args(Structure):
    _fields_ = [("object", diropargs3)]


class RENAME3args(Structure):
    _fields_ = [("from_", diropargs3), ("to", diropargs3)]


class LINK3args(Structure):
    _fields_ = [("file", nfs_fh3), ("link", diropargs3)]


class READDIRPLUS3args(Structure):
    _fields_ = [("dir", nfs_fh3), ("cookie", c_uint64), ("cookieverf", c_char * 8),
                ("dircount", c_uint32), ("maxcount", c_uint32)]


class FSSTAT3args(Structure):
    _fields_ = [("fsroot", nfs_fh3)]


class FSINFO3args(Structure):
    _fields_ = [("fsroot", nfs_fh3)]


class COMMIT3args(Structure):
    _fields_ = [("file", nfs_fh3), ("offset", c_uint64), ("count", c_uint32)]


# Results: a status, then the ok or fail arm. Where the fail arm is a prefix of the ok
# arm's layout (or unused), only the ok arm is declared.

class GETATTR3resok(Structure):
    _fields_ = [("obj_attributes", fattr3)]


class GETATTR3res(Structure):
    _fields_ = [("status", c_int), ("resok", GETATTR3resok)]


class _wcc_only(Structure):
    _fields_ = [("wcc", wcc_data)]


class SETATTR3res(Structure):
    _fields_ = [("status", c_int), ("resok", _wcc_only)]


class LOOKUP3resok(Structure):
    _fields_ = [("object", nfs_fh3), ("obj_attributes", post_op_attr),
                ("dir_attributes", post_op_attr)]


class LOOKUP3res(Structure):
    _fields_ = [("status", c_int), ("resok", LOOKUP3resok)]


class READLINK3resok(Structure):
    _fields_ = [("symlink_attributes", post_op_attr), ("data", c_void_p)]


class READLINK3res(Structure):
    _fields_ = [("status", c_int), ("resok", READLINK3resok)]


class READ3resok(Structure):
    _fields_ = [("file_attributes", post_op_attr), ("count", c_uint32), ("eof", c_uint32),
                ("data", _opaque)]


class READ3res(Structure):
    _fields_ = [("status", c_int), ("resok", READ3resok)]


class WRITE3resok(Structure):
    _fields_ = [("file_wcc", wcc_data), ("count", c_uint32), ("committed", c_int),
                ("verf", c_char * 8)]


class WRITE3res(Structure):
    _fields_ = [("status", c_int), ("resok", WRITE3resok)]


class _made3resok(Structure):
    """CREATE3resok, MKDIR3resok, SYMLINK3resok and MKNOD3resok share this layout."""

    _fields_ = [("obj", post_op_fh3), ("obj_attributes", post_op_attr),
                ("dir_wcc", wcc_data)]


class _made3res(Structure):
    _fields_ = [("status", c_int), ("resok", _made3resok)]


class _dirop3res(Structure):
    """REMOVE3res and RMDIR3res: a status and the directory's wcc data."""

    _fields_ = [("status", c_int), ("resok", _wcc_only)]


class RENAME3resok(Structure):
    _fields_ = [("fromdir_wcc", wcc_data), ("todir_wcc", wcc_data)]


class RENAME3res(Structure):
    _fields_ = [("status", c_int), ("resok", RENAME3resok)]


class LINK3resok(Structure):
    _fields_ = [("file_attributes", post_op_attr), ("linkdir_wcc", wcc_data)]


class LINK3res(Structure):
    _fields_ = [("status", c_int), ("resok", LINK3resok)]


class entryplus3(Structure):  # noqa: N801
    pass


entryplus3._fields_ = [("fileid", c_uint64), ("name", c_char_p), ("cookie", c_uint64),
                       ("name_attributes", post_op_attr), ("name_handle", post_op_fh3),
                       ("nextentry", POINTER(entryplus3))]


class dirlistplus3(Structure):  # noqa: N801
    _fields_ = [("entries", POINTER(entryplus3)), ("eof", c_uint32)]


class READDIRPLUS3resok(Structure):
    _fields_ = [("dir_attributes", post_op_attr), ("cookieverf", c_char * 8),
                ("reply", dirlistplus3)]


class READDIRPLUS3res(Structure):
    _fields_ = [("status", c_int), ("resok", READDIRPLUS3resok)]


class FSSTAT3resok(Structure):
    _fields_ = [("obj_attributes", post_op_attr), ("tbytes", c_uint64), ("fbytes", c_uint64),
                ("abytes", c_uint64), ("tfiles", c_uint64), ("ffiles", c_uint64),
                ("afiles", c_uint64), ("invarsec", c_uint32)]


class FSSTAT3res(Structure):
    _fields_ = [("status", c_int), ("resok", FSSTAT3resok)]


class FSINFO3resok(Structure):
    _fields_ = [("obj_attributes", post_op_attr), ("rtmax", c_uint32), ("rtpref", c_uint32),
                ("rtmult", c_uint32), ("wtmax", c_uint32), ("wtpref", c_uint32),
                ("wtmult", c_uint32), ("dtpref", c_uint32), ("maxfilesize", c_uint64),
                ("time_delta", nfstime3), ("properties", c_uint32)]


class FSINFO3res(Structure):
    _fields_ = [("status", c_int), ("resok", FSINFO3resok)]


class COMMIT3resok(Structure):
    _fields_ = [("file_wcc", wcc_data), ("verf", c_char * 8)]


class COMMIT3res(Structure):
    _fields_ = [("status", c_int), ("resok", COMMIT3resok)]


# -- structures (libnfs-raw-mount.h) ----------------------------------------------------

class mountres3_ok(Structure):  # noqa: N801
    _fields_ = [("fhandle", _opaque), ("auth_flavors", _opaque)]


class mountres3(Structure):  # noqa: N801
    _fields_ = [("fhs_status", c_int), ("mountinfo", mountres3_ok)]


# -- functions ---------------------------------------------------------------------------

rpc_cb = CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_void_p)


def _fn(name: str, restype: object, *argtypes: object) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_fn("rpc_init_context", c_void_p)
_fn("rpc_destroy_context", None, c_void_p)
_fn("rpc_get_fd", c_int, c_void_p)
_fn("rpc_which_events", c_int, c_void_p)
_fn("rpc_service", c_int, c_void_p, c_int)
_fn("rpc_queue_length", c_int, c_void_p)
_fn("rpc_get_error", c_char_p, c_void_p)
_fn("rpc_set_uid", None, c_void_p, c_int)
_fn("rpc_set_gid", None, c_void_p, c_int)
_fn("rpc_connect_port_async", c_int, c_void_p, c_char_p, c_int, c_int, c_int, rpc_cb, c_void_p)
_fn("rpc_connect_program_async", c_int, c_void_p, c_char_p, c_int, c_int, rpc_cb, c_void_p)
_fn("rpc_mount3_mnt_async", c_int, c_void_p, rpc_cb, c_char_p, c_void_p)
_fn("rpc_mount3_null_async", c_int, c_void_p, rpc_cb, c_void_p)
_fn("rpc_nfs3_null_async", c_int, c_void_p, rpc_cb, c_void_p)

NFS3_PROCEDURES = {
    "getattr": GETATTR3args, "setattr": SETATTR3args, "lookup": LOOKUP3args,
    "readlink": READLINK3args, "read": READ3args, "write": WRITE3args,
    "create": CREATE3args, "mkdir": MKDIR3args, "symlink": SYMLINK3args,
    "mknod": MKNOD3args, "remove": REMOVE3args, "rmdir": RMDIR3args,
    "rename": RENAME3args, "link": LINK3args, "readdirplus": READDIRPLUS3args,
    "fsstat": FSSTAT3args, "fsinfo": FSINFO3args, "commit": COMMIT3args,
}
for _proc, _args in NFS3_PROCEDURES.items():
    _fn(f"rpc_nfs3_{_proc}_async", c_int, c_void_p, rpc_cb, POINTER(_args), c_void_p)

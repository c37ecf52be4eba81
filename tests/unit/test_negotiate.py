"""The INIT answer volfs sends: libfuse's, plus FUSE_HANDLE_KILLPRIV_V2 where offered."""

from __future__ import annotations

import struct

from volfs.fs.negotiate import FUSE_HANDLE_KILLPRIV_V2, amend

ASYNC_READ = 1 << 0
WRITEBACK_CACHE = 1 << 16


def _init(flags: int) -> bytes:
    header = struct.pack("<IIQQIIII", 104, 26, 2, 0, 0, 0, 0, 0)
    return header + struct.pack("<IIII", 7, 41, 131072, flags) + bytes(48)


def _reply(flags: int, error: int = 0) -> bytes:
    body = struct.pack("<IIII", 7, 38, 131072, flags) + bytes(48)
    return struct.pack("<IiQ", 16 + len(body), error, 2) + body


def _flags(reply: bytes) -> int:
    return struct.unpack_from("<I", reply, 28)[0]


def test_the_flag_is_added_when_the_kernel_offers_it() -> None:
    reply = _reply(ASYNC_READ | WRITEBACK_CACHE)
    amended = amend(_init(ASYNC_READ | WRITEBACK_CACHE | FUSE_HANDLE_KILLPRIV_V2), reply)
    assert _flags(amended) == ASYNC_READ | WRITEBACK_CACHE | FUSE_HANDLE_KILLPRIV_V2
    assert len(amended) == len(reply)
    assert amended[:28] == reply[:28] and amended[32:] == reply[32:]  # nothing else moves


def test_nothing_is_added_that_the_kernel_does_not_offer() -> None:
    reply = _reply(ASYNC_READ)
    assert amend(_init(ASYNC_READ), reply) == reply


def test_a_refusal_is_passed_on_as_it_is() -> None:
    refusal = struct.pack("<IiQ", 16, -71, 2)  # EPROTO, no body
    assert amend(_init(FUSE_HANDLE_KILLPRIV_V2), refusal) == refusal

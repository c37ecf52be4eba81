"""The one exception the CSI services raise: a gRPC status code and a one-line message.

The message goes back to the CO as the status' details and is logged: it never holds a
request's secrets or mount flags.
"""

from __future__ import annotations

import grpc


class CsiError(Exception):
    """An RPC's failure, as the spec's error tables name it (``code``) and why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def required(what: str) -> CsiError:
    """A REQUIRED field missing from the request."""
    return CsiError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is required")


def not_found(volume_id: str) -> CsiError:
    return CsiError(grpc.StatusCode.NOT_FOUND, f"no volume {volume_id}")


class InFlight:
    """The ids (volume ids, CreateVolume names) an operation is working on now.

    The spec's ``ABORTED``: a second call for the same id while one is in flight is
    refused at once rather than queued, so the CO retries it once the first is done.
    Used from the trio loop only (one thread), so a set is lock enough.
    """

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def hold(self, *keys: str) -> _Held:
        return _Held(self._busy, keys)


class _Held:
    def __init__(self, busy: set[str], keys: tuple[str, ...]) -> None:
        self._busy = busy
        self._keys = keys

    def __enter__(self) -> None:
        for key in self._keys:
            if key in self._busy:
                raise CsiError(grpc.StatusCode.ABORTED,
                               f"an operation on {key[:80]!r} is in progress; retry")
        self._busy.update(self._keys)

    def __exit__(self, *_exc: object) -> None:
        self._busy.difference_update(self._keys)

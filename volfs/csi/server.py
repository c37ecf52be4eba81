"""The CSI endpoint: grpcio's server on a unix socket, bridged to the daemon's trio loop.

Why the sync server and a thread bridge: grpcio offers a thread-pool server and an
asyncio one (``grpc.aio``). The daemon runs on trio, and an asyncio loop cannot share a
thread with it; a second loop in another thread would own the gRPC side and still have
to cross over to trio for every volume, store and database call. So the thread-pool
server takes each RPC in one of its threads, and the handler runs on the trio loop with
``trio.from_thread.run(..., trio_token=...)``: every CSI call sees the volumes, stores,
mount and state database exactly as the rest of the daemon does, from one loop, with no
locks of their own. A handler's :class:`CsiError` becomes the RPC's status; anything
else is a bug, logged once with its traceback, and INTERNAL to the CO. Requests are
never logged (they carry secrets and mount flags).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import trio

from volfs.csi import csi_pb2_grpc as rpc
from volfs.csi.errors import CsiError

log = logging.getLogger(__name__)

WORKERS = 8  # RPCs served at once; the rest queue in grpcio
STOP_GRACE_SECONDS = 2.0

Handler = Callable[[Any], Awaitable[Any]]


class _Bridge:
    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token

    def call(self, name: str, handler: Handler, request: Any, context: grpc.ServicerContext
             ) -> Any:
        """In a gRPC thread: run ``handler(request)`` on the trio loop, and answer."""
        try:
            return trio.from_thread.run(handler, request, trio_token=self._token)
        except CsiError as exc:
            log.info("CSI %s: %s: %s", name, exc.code.name, exc.message)
            context.abort(exc.code, exc.message)
        except (trio.RunFinishedError, trio.Cancelled):
            context.abort(grpc.StatusCode.UNAVAILABLE, "volfs is stopping")
        except Exception:
            log.exception("CSI %s failed", name)
            context.abort(grpc.StatusCode.INTERNAL, f"{name} failed; see the volfs log")


def _servicer(base: type, service: object, bridge: _Bridge) -> Any:
    """An instance of the generated ``base`` whose RPCs call ``service``'s methods of
    the same names (those it lacks stay UNIMPLEMENTED, as the base answers)."""
    methods = {}
    for name in dir(base):
        handler = getattr(service, name, None)
        if name.startswith("_") or handler is None:
            continue

        def method(self: object, request: Any, context: grpc.ServicerContext,
                   name: str = name, handler: Handler = handler) -> Any:
            return bridge.call(name, handler, request, context)

        methods[name] = method
    return type(base.__name__, (base,), methods)()


async def serve_csi(socket_path: Path, identity: object, controller: object, node: object,
                    *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the three CSI services on ``socket_path`` until cancelled.

    The socket must not exist (the daemon removes a stale one first). Ready
    (``task_status.started()``) once it accepts connections; on the way out, calls in
    flight get STOP_GRACE_SECONDS to finish and the socket is removed.
    """
    bridge = _Bridge(trio.lowlevel.current_trio_token())
    server = grpc.server(ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="csi"))
    rpc.add_IdentityServicer_to_server(_servicer(rpc.IdentityServicer, identity, bridge), server)
    rpc.add_ControllerServicer_to_server(
        _servicer(rpc.ControllerServicer, controller, bridge), server)
    rpc.add_NodeServicer_to_server(_servicer(rpc.NodeServicer, node, bridge), server)
    try:
        server.add_insecure_port(f"unix:{socket_path}")
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {socket_path}: {exc}") from None
    server.start()
    try:
        socket_path.chmod(0o600)  # the CO's sidecars run as root, and nobody else may ask
        task_status.started()
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            # A handler waiting on the loop still gets it: the loop runs while we wait.
            await trio.to_thread.run_sync(lambda: server.stop(STOP_GRACE_SECONDS).wait())
        socket_path.unlink(missing_ok=True)

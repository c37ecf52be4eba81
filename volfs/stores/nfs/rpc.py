"""ONC RPC over libnfs, driven by the trio loop: never a blocking call, many calls in flight.

libnfs's raw layer queues a call and returns at once; the reply arrives through a
C callback when ``rpc_service`` is told the socket is ready. :class:`RpcClient`
plugs that into trio without a thread or a background task: the caller that
waits for a reply *leads*, waiting on the socket with ``trio.lowlevel`` and
servicing it, while every other caller sleeps on its own event; when the leader's
reply has come it hands the socket to the next caller still waiting. Nothing
watches the socket when nobody waits for anything, so a client owns no task and
needs no nursery.

Every call has a deadline (:class:`Timeouts`). A connection that breaks or a
call unanswered for ``attempt`` seconds throws the connection away (its other
calls fail over to a new one); calls are sent again on a new connection until
the deadline, then fail with EIO (or ETIMEDOUT). Nothing waits without end.

Only the connection's own failures cost a connection. A call libnfs will not
queue (its arguments do not encode) or one the server rejects while the
connection lives fails at once with :class:`CallRefused`: sending it again would
fail the same way, and dropping a healthy connection for it would make the
server open and tear down connections as fast as we can ask. A connection that
dies young makes the next one wait (backing off up to a second), so nothing can
turn into a storm of connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from volfs.logs import fields, unexpected
from volfs.metrics import NFS_RETRANSMISSIONS, NFS_RPCS, NFS_TIMEOUTS, NFS_UNANSWERED, Series
from volfs.stores.nfs import _libnfs as L

log = logging.getLogger(__name__)

# A connection that dies sooner than this after it was made was not healthy: the next
# one waits (see RpcClient._fail), so a fault that kills every connection cannot
# make the client open them as fast as the server accepts them.
_YOUNG_SECONDS = 1.0
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0

# The background pump (read-ahead, write-behind: nobody waits yet) lets data gather this
# long between two services, so a 1 MiB reply is a few wake-ups, not one per segment.
_LAZY_SECONDS = 0.0002

lib = L.lib


@dataclass(frozen=True)
class Timeouts:
    """How long calls wait: a bound for everything, never infinity.

    ``attempt``: seconds one send may go unanswered before the connection is
    made again and the call re-sent (NFS's ``timeo``). ``total``: seconds after
    which the call fails with ``errno`` (soft: ``timeo x (retrans + 1)``; hard:
    longer, but still bounded).
    """

    attempt: float = 60.0
    total: float = 180.0
    errno: int = errno.EIO


class ServerUnreachable(OSError):
    """The server did not answer before the deadline (an OSError: EIO, or ETIMEDOUT for
    ``softerr``); ``str()`` is ``server not responding (<reason>)``."""

    def __init__(self, reason: str, code: int = errno.EIO) -> None:
        super().__init__(code, reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"server not responding ({self.reason})"


class CallRefused(OSError):
    """libnfs would not send the call, or the server rejected it, on a healthy
    connection: the call's own fault; sending it again would fail the same way."""


class _Lost(Exception):
    """The call's connection broke before its reply came: it may be sent again."""


class Resend(Exception):
    """A call started with :meth:`RpcClient.start` lost its connection: send it again."""


class _Call:
    """One call in flight: what to decode its reply with, and where the outcome goes."""

    __slots__ = ("conn", "decode", "keep", "finished", "result", "error", "wake", "cid", "sent",
                 "procedure")

    def __init__(self, conn: _Connection | None, decode: Callable[[int], Any] | None,
                 keep: Any, procedure: str = "") -> None:
        self.conn = conn
        self.procedure = procedure  # for the metrics: GETATTR, READ, ...
        self.cid = 0
        self.sent = trio.current_time()
        self.decode = decode
        self.keep = keep  # buffers the C side points into, alive until the reply
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.wake = trio.Event()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.result, self.error = result, error
        self.keep = None
        self.wake.set()


# Calls by the id handed to libnfs as private_data; one C callback serves them all.
_calls: dict[int, _Call] = {}
_ids = itertools.count(1)


def _reply(rpc: int, status: int, data: int | None, private: int | None) -> None:
    call = _calls.pop(private or 0, None)
    if call is None:
        return  # a call we gave up on; its connection is gone or going
    if call.conn is not None:
        call.conn.calls.discard(private or 0)
    try:
        if status == L.RPC_STATUS_SUCCESS:
            call.finish(call.decode(data or 0) if call.decode else None)
        elif status == L.RPC_STATUS_ERROR:
            text = ctypes.string_at(data).decode(errors="replace") if data else "rpc error"
            call.finish(error=_Lost(text))
        else:
            call.finish(error=_Lost("cancelled" if status == L.RPC_STATUS_CANCEL else "timeout"))
    except BaseException as exc:  # noqa: BLE001 - nothing may escape into C
        call.finish(error=exc)


_on_reply = L.rpc_cb(_reply)


class _Connection:
    """One libnfs RPC context: one TCP connection, thrown away when it breaks."""

    __slots__ = ("rpc", "ready", "dead", "calls", "made")

    def __init__(self) -> None:
        rpc = lib.rpc_init_context()
        if not rpc:
            raise OSError(errno.ENOMEM, "rpc_init_context failed")
        self.rpc: int = rpc
        self.ready = False
        self.dead = False
        self.calls: set[int] = set()
        self.made = trio.current_time()

    def error(self) -> str:
        text = lib.rpc_get_error(self.rpc)
        return text.decode(errors="replace") if text else "connection failed"


Submit = Callable[[int, int], int]  # (rpc context, call id) -> libnfs return code


class RpcClient:
    """Calls to one RPC program of one server, over a connection made on demand.

    ``port`` None asks the server's portmapper (port 111) where the program is.
    """

    def __init__(self, server: str, program: int, version: int, port: int | None,
                 timeouts: Timeouts, name: str = "") -> None:
        self.server = server
        self.program = program
        self.version = version
        self.port = port
        self.timeouts = timeouts
        self.name = name or f"{server} program {program}"
        self._conn: _Connection | None = None
        self._connect_lock = trio.Lock()
        self._pumping = False
        self._background = False
        self._background_scope: trio.CancelScope | None = None
        self._waiters: dict[_Call, None] = {}
        self._retry_at = 0.0
        self._backoff = _BACKOFF_FIRST
        self.connections_made = 0  # for tests and diagnostics
        self._closed = False
        self.last_error = ""
        self._timings: dict[str, Series] = {}  # by procedure (volfs.metrics)
        self._unreachable = False  # the last connection attempt failed (and was logged)

    # -- public ---------------------------------------------------------------------

    async def call(self, submit: Submit, decode: Callable[[int], Any] | None, keep: Any = None,
                   *, deadline: float | None = None, procedure: str = "NULL") -> Any:
        """Send a call (again after a broken connection) until it is answered or the deadline.

        ``submit(rpc, call_id)`` queues the call with libnfs (returns its rc);
        ``decode(res_ptr)`` turns the reply into a value or raises OSError; it
        runs inside the C callback, while the reply's memory is valid.
        ``procedure`` names the call in the metrics (GETATTR, READ, ...).
        """
        started = trio.current_time()
        try:
            return await self._call(submit, decode, keep, deadline, procedure)
        except ServerUnreachable:
            NFS_UNANSWERED.inc(self.server, procedure)
            raise
        finally:
            self._timing(procedure).observe(trio.current_time() - started)

    async def _call(self, submit: Submit, decode: Callable[[int], Any] | None, keep: Any,
                    deadline: float | None, procedure: str) -> Any:
        if deadline is None:
            deadline = trio.current_time() + self.timeouts.total
        sends = 0
        while True:
            conn = await self._connected(deadline)
            if sends:
                NFS_RETRANSMISSIONS.inc(self.server, procedure)
            sends += 1
            call = self._send(conn, submit, decode, keep, procedure)
            await self._settle(call, deadline)
            if not isinstance(call.error, _Lost):
                if call.error is not None:
                    raise call.error
                return call.result
            if not conn.dead:  # answered with an error while the connection lives
                raise CallRefused(errno.EIO, f"the server rejected the call: {call.error}")
            self.last_error = str(call.error)
            if trio.current_time() >= deadline:
                raise ServerUnreachable(self.last_error, self.timeouts.errno)

    def start(self, submit: Submit, decode: Callable[[int], Any] | None,
              keep: Any = None, procedure: str = "NULL") -> _Call | None:
        """Queue a call now and return without waiting (None: no connection is up).

        The reply is taken with :meth:`finish`; until then it arrives whenever
        some caller of this client waits for anything.
        """
        conn = self._conn
        if conn is None or not conn.ready or conn.dead:
            return None
        try:
            call = self._send(conn, submit, decode, keep, procedure)
        except CallRefused:
            return None  # sent again, and refused again, by the caller's own call()
        self._hand_over()  # nobody may be waiting: its reply must still be read
        return call

    async def finish(self, call: _Call, deadline: float) -> Any:
        """The reply to a started call. Resend if its connection broke: the caller sends it
        again (with :meth:`call`); an unanswered call drops the connection, as in call()."""
        await self._settle(call, deadline)
        if isinstance(call.error, _Lost):
            self.last_error = str(call.error)
            NFS_RETRANSMISSIONS.inc(self.server, call.procedure)  # the caller's call() times it
            raise Resend(self.last_error)
        self._timing(call.procedure).observe(trio.current_time() - call.sent)
        if call.error is not None:
            raise call.error
        return call.result

    def _timing(self, procedure: str) -> Series:
        found = self._timings.get(procedure)
        if found is None:
            found = self._timings[procedure] = NFS_RPCS.series(self.server, procedure)
        return found

    def _send(self, conn: _Connection, submit: Submit, decode: Callable[[int], Any] | None,
              keep: Any, procedure: str) -> _Call:
        """Queue a call on ``conn``; CallRefused if libnfs will not (it could not encode
        the arguments): the connection is not at fault and stays."""
        call = _Call(conn, decode, keep, procedure)
        call.cid = next(_ids)
        _calls[call.cid] = call
        conn.calls.add(call.cid)
        if submit(conn.rpc, call.cid) != 0:
            _calls.pop(call.cid, None)
            conn.calls.discard(call.cid)
            reason = conn.error()
            log.debug("%s: call not sent: %s", self.name, reason)
            raise CallRefused(errno.EINVAL, reason)
        self._kick(conn)
        return call

    async def _settle(self, call: _Call, deadline: float) -> None:
        """Wait for the reply; unanswered for ``attempt`` seconds (or at the deadline), the
        connection is dropped and the call fails with _Lost."""
        with trio.move_on_at(min(deadline, call.sent + self.timeouts.attempt)):
            await self._wait(call)
        if not call.finished:
            NFS_TIMEOUTS.inc(self.server, call.procedure)
            _calls.pop(call.cid, None)
            call.finish(error=_Lost("timed out"))
            if call.conn is not None:
                self._fail(call.conn, "timed out")

    async def ping(self, deadline: float) -> None:
        """Connect (if need be) and make the program's NULL call."""
        await self.call(lambda rpc, cid: lib.rpc_nfs3_null_async(rpc, _on_reply, cid)
                        if self.program == L.NFS_PROGRAM
                        else lib.rpc_mount3_null_async(rpc, _on_reply, cid),
                        None, deadline=deadline)

    def close(self) -> None:
        """Drop the connection; calls still waiting fail. The client may be used again."""
        if self._conn is not None:
            self._fail(self._conn, "closed")
        if self._background_scope is not None:
            self._background_scope.cancel()

    # -- connections ------------------------------------------------------------------

    async def _connected(self, deadline: float) -> _Connection:
        while True:
            conn = self._conn
            if conn is not None and conn.ready and not conn.dead:
                return conn
            async with self._connect_lock:
                conn = self._conn
                if conn is not None and conn.ready and not conn.dead:
                    return conn
                now = trio.current_time()
                if now < self._retry_at:  # the last attempt failed just now: do not hammer
                    if self._retry_at >= deadline:
                        raise ServerUnreachable(self.last_error, self.timeouts.errno)
                    await trio.sleep_until(self._retry_at)
                try:
                    conn = await self._connect(deadline)
                except ServerUnreachable as exc:
                    self._note_unreachable(exc.reason)
                    self.last_error = exc.reason
                    self._retry_at = trio.current_time() + self._backoff
                    self._backoff = min(self._backoff * 2, 1.0)
                    if self._retry_at >= deadline:
                        raise ServerUnreachable(exc.reason, self.timeouts.errno) from None
                    continue
                if self._unreachable:
                    self._unreachable = False
                    log.info("%s: server reachable again", self.name,
                             extra=fields(server=self.server, rpc=self.name))
                return conn

    def _note_unreachable(self, reason: str) -> None:
        """Log the first failure to reach the server, not each retry."""
        if not self._unreachable:
            self._unreachable = True
            log.warning("%s: server unreachable: %s", self.name, _plain(reason),
                        extra=fields(server=self.server, rpc=self.name))

    async def _connect(self, deadline: float) -> _Connection:
        conn = _Connection()
        self._conn = conn
        self.connections_made += 1
        call = _Call(conn, None, None)
        cid = call.cid = next(_ids)
        _calls[cid] = call
        conn.calls.add(cid)
        host = self.server.encode()
        if self.port is None:
            rc = lib.rpc_connect_program_async(conn.rpc, host, self.program, self.version,
                                               _on_reply, cid)
        else:
            rc = lib.rpc_connect_port_async(conn.rpc, host, self.port, self.program,
                                            self.version, _on_reply, cid)
        if rc != 0:
            reason = conn.error()
            _calls.pop(cid, None)
            self._fail(conn, reason)
            raise ServerUnreachable(_plain(reason))
        with trio.move_on_at(min(deadline, trio.current_time() + self.timeouts.attempt)):
            await self._wait(call)
        if not call.finished:
            _calls.pop(cid, None)
            self._fail(conn, "connect timed out")
            raise ServerUnreachable("connection timed out")
        if call.error is not None:
            self._fail(conn, str(call.error))
            raise ServerUnreachable(_plain(str(call.error)))
        conn.ready = True
        return conn

    def _fail(self, conn: _Connection, reason: str) -> None:
        """Throw a connection away: its calls fail with _Lost (and may be sent again)."""
        if conn.dead:
            return
        conn.dead = True
        if self._conn is conn:
            self._conn = None
        log.debug("%s: connection dropped: %s", self.name, reason)
        now = trio.current_time()
        if conn.ready and now - conn.made < _YOUNG_SECONDS and reason != "closed":
            self._retry_at = max(self._retry_at, now + self._backoff)  # died young: wait
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        elif conn.ready:
            self._backoff = _BACKOFF_FIRST
        fd = lib.rpc_get_fd(conn.rpc)
        if fd >= 0:
            trio.lowlevel.notify_closing(fd)  # wakes a leader waiting on it
        lib.rpc_destroy_context(conn.rpc)  # cancels what libnfs still holds
        for cid in list(conn.calls):
            call = _calls.pop(cid, None)
            if call is not None:
                call.finish(error=_Lost(reason))
        conn.calls.clear()

    # -- driving the socket ----------------------------------------------------------------

    def _kick(self, conn: _Connection) -> None:
        """Send what was just queued, if the socket takes it now (it usually does)."""
        if (conn.ready and not conn.dead and lib.rpc_which_events(conn.rpc) & L.POLLOUT
                and lib.rpc_service(conn.rpc, L.POLLOUT) < 0):
            self._fail(conn, conn.error())

    async def _wait(self, call: _Call) -> None:
        self._waiters[call] = None
        try:
            while not call.finished:
                if not self._pumping:
                    await self._pump(lambda: call.finished)
                else:
                    call.wake = trio.Event()
                    if not call.finished:
                        await call.wake.wait()
        finally:
            del self._waiters[call]
            self._hand_over()

    async def _pump(self, done: Callable[[], bool], lazy: bool = False) -> None:
        """Lead: service the socket until ``done()``. One leader at a time (the flag is
        tested and set with no checkpoint between)."""
        self._pumping = True
        try:
            while not done():
                conn = self._conn
                if conn is None or conn.dead:
                    return  # nothing to service: its calls were failed with it
                fd = lib.rpc_get_fd(conn.rpc)
                if fd < 0:
                    self._fail(conn, conn.error())
                    continue
                try:
                    if lib.rpc_which_events(conn.rpc) & L.POLLOUT:
                        revents = await _readable_or_writable(fd)
                    else:
                        await trio.lowlevel.wait_readable(fd)
                        revents = L.POLLIN
                except trio.ClosedResourceError:
                    continue
                if conn.dead:
                    continue
                if lib.rpc_service(conn.rpc, revents) < 0:
                    self._fail(conn, conn.error())
                elif lazy and not self._waiters:
                    await trio.sleep(_LAZY_SECONDS)  # let more of a large reply arrive
        finally:
            self._pumping = False

    def _hand_over(self) -> None:
        """Nobody leads: wake a caller still waiting to lead, or, if calls that nobody
        waits for (read-ahead, write-behind) are out, service them in the background."""
        if self._pumping:
            return
        for other in self._waiters:
            if not other.finished:
                other.wake.set()
                return
        if self._busy() and not self._background:
            self._background = True
            _start_background(self._pump_in_background, f"volfs nfs pump {self.name}")

    def _busy(self) -> bool:
        conn = self._conn
        return conn is not None and conn.ready and not conn.dead and bool(conn.calls)

    async def _pump_in_background(self) -> None:
        """Service the socket while calls are out and nobody else does; then end.

        Owned by the client: it ends when no call is out, when the connection is
        dropped, or when :meth:`close` cancels it.
        """
        try:
            if self._pumping:
                return
            with trio.CancelScope() as scope:
                self._background_scope = scope
                await self._pump(lambda: not self._busy(), lazy=True)
        except Exception:  # noqa: BLE001 - a background task must not raise
            unexpected(log, "%s: servicing the connection failed", self.name,
                       extra=fields(server=self.server, rpc=self.name))
        finally:
            self._background = False
            self._background_scope = None
            self._hand_over()


# The nursery that owns the clients' background pumps: the daemon's (see
# :func:`background_tasks`). Outside one (a script, a test of the client alone) the
# pumps are trio system tasks, which the run cancels when it ends.
_BACKGROUND: trio.lowlevel.RunVar[trio.Nursery | None] = trio.lowlevel.RunVar(
    "volfs_nfs_background", default=None)


@contextlib.asynccontextmanager
async def background_tasks() -> AsyncIterator[None]:
    """Own the NFS clients' background work for as long as the block runs.

    Enter it before any NFS volume is opened and leave it after every one is closed
    (the daemon does, in its exit stack): a pump still running then is cancelled.
    """
    async with trio.open_nursery() as nursery:
        _BACKGROUND.set(nursery)
        try:
            yield
        finally:
            _BACKGROUND.set(None)
            nursery.cancel_scope.cancel()


def _start_background(task: Callable[[], Awaitable[None]], name: str) -> None:
    nursery = _BACKGROUND.get()
    if nursery is not None:
        nursery.start_soon(task, name=name)
    else:
        trio.lowlevel.spawn_system_task(task, name=name)


async def _readable_or_writable(fd: int) -> int:
    """Wait until ``fd`` can be read or written; the POLL* bits of what it can."""
    revents = 0

    async def wait(waiter: Callable[[int], Any], bit: int, scope: trio.CancelScope) -> None:
        nonlocal revents
        await waiter(fd)
        revents |= bit
        scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, trio.lowlevel.wait_readable, L.POLLIN, nursery.cancel_scope)
        nursery.start_soon(wait, trio.lowlevel.wait_writable, L.POLLOUT, nursery.cancel_scope)
    return revents


def _plain(reason: str) -> str:
    """libnfs's connect errors in the words users know (``connection refused``)."""
    for code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
                 errno.ECONNRESET):
        if f"({code})" in reason or os.strerror(code) in reason:
            return os.strerror(code).lower()
    return reason


def deadline_in(seconds: float) -> float:
    return trio.current_time() + seconds if math.isfinite(seconds) else math.inf

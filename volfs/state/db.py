"""The state database: every object volfs has acknowledged, in SQLite.

One table holds every kind of object as its Kubernetes JSON, the way an API
server's storage does, so a new kind (PersistentVolume, StorageClass, ...) is a
new ``kind`` value, not a new table. A global counter gives each write its
``metadata.resourceVersion``.

Schema::

    objects(kind, namespace, name)  primary key; namespace is "" for cluster objects
        uid               unique, stable for the object's life
        resource_version  the counter's value at the last write
        body              the object as JSON (metadata, spec, status)
    counters(name, value)  "resourceVersion" -> last value handed out

Writes commit (WAL, synchronous=FULL: fsync'ed) before they return, so what a
client was told survives ``kill -9`` and power loss alike. The class is
synchronous; the daemon calls it through :class:`AsyncStateDB`, which runs each
call in a worker thread, one at a time.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import trio

from volfs.api.errors import NoSpace

T = TypeVar("T")
Object = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL UNIQUE,
    resource_version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class StateDB:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def put(self, obj: Object) -> Object:
        """Insert or replace ``obj``; returns it with its new resourceVersion."""
        meta = obj["metadata"]
        with self._transaction():
            version = self._next_version()
            meta["resourceVersion"] = str(version)
            self._conn.execute(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)",
                (obj["kind"], meta.get("namespace", ""), meta["name"], meta["uid"], version,
                 json.dumps(obj)),
            )
        return obj

    def write(self, puts: list[Object], deletes: list[tuple[str, str, str]]) -> None:
        """Several changes in one transaction: all of them are stored, or none.

        ``deletes`` are ``(kind, namespace, name)``. Each put object gets the new
        resourceVersion (one per transaction, as the objects change together).
        """
        with self._transaction():
            version = self._next_version()
            for kind, namespace, name in deletes:
                self._conn.execute(
                    "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                    (kind, namespace, name))
            for obj in puts:
                meta = obj["metadata"]
                meta["resourceVersion"] = str(version)
                self._conn.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)",
                    (obj["kind"], meta.get("namespace", ""), meta["name"], meta["uid"],
                     version, json.dumps(obj)))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._transaction():
            self._next_version()
            self._conn.execute(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
                (kind, namespace, name),
            )

    def get(self, kind: str, namespace: str, name: str) -> Object | None:
        row = self._conn.execute(
            "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (kind, namespace, name),
        ).fetchone()
        return _decoded(row[0]) if row else None

    def list(self, kind: str, namespace: str | None = None) -> list[Object]:
        if namespace is None:
            rows = self._conn.execute(
                "SELECT body FROM objects WHERE kind = ? ORDER BY resource_version", (kind,))
        else:
            rows = self._conn.execute(
                "SELECT body FROM objects WHERE kind = ? AND namespace = ? "
                "ORDER BY resource_version", (kind, namespace))
        return [_decoded(body) for (body,) in rows]

    def resource_version(self) -> str:
        row = self._conn.execute(
            "SELECT value FROM counters WHERE name = 'resourceVersion'").fetchone()
        return str(row[0] if row else 0)

    def _next_version(self) -> int:
        self._conn.execute(
            "INSERT INTO counters VALUES ('resourceVersion', 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1")
        return int(self._conn.execute(
            "SELECT value FROM counters WHERE name = 'resourceVersion'").fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._path)


def _decoded(body: str) -> Object:
    """A stored body as an object. orjson reads a list of every pod several times faster
    than ``json``; what it refuses and ``json`` wrote (NaN, an integer beyond 64 bits)
    is read by ``json``, so every stored body still reads back."""
    try:
        return orjson.loads(body)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return json.loads(body)  # type: ignore[no-any-return]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block (or the COMMIT) raised.

    A full disk (SQLITE_FULL, in the block or at COMMIT) becomes :class:`NoSpace`,
    after the rollback: SQLite may leave the transaction open after that error, and an
    open transaction would refuse every later write, long after space was freed.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: BaseException | None, _tb: object) -> None:
        if exc is None:
            try:
                self._conn.execute("COMMIT")
                return
            except sqlite3.Error as commit_failed:
                exc = commit_failed
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
        if (isinstance(exc, sqlite3.OperationalError)
                and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL):
            raise NoSpace(f"no space left on the filesystem of the state database "
                          f"{self._path}: nothing was changed (free some space there)"
                          ) from exc
        if exc_type is None:
            raise exc


class AsyncStateDB:
    """StateDB for the event loop: each call in a worker thread, one at a time.

    ``next_change()`` is an event set when the next write has committed: watchers
    take it *before* they read, so no write falls between their read and their wait.
    """

    def __init__(self, db: StateDB) -> None:
        self._db = db
        self._limiter = trio.CapacityLimiter(1)
        self._changed = trio.Event()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def next_change(self) -> trio.Event:
        return self._changed

    def _committed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put(self, obj: Object) -> Object:
        try:
            return await self.call(self._db.put, obj)
        finally:
            self._committed()

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.call(self._db.delete, kind, namespace, name)
        finally:
            self._committed()

    async def write(self, puts: list[Object], deletes: list[tuple[str, str, str]]) -> None:
        try:
            await self.call(self._db.write, puts, deletes)
        finally:
            self._committed()

    async def get(self, kind: str, namespace: str, name: str) -> Object | None:
        return await self.call(self._db.get, kind, namespace, name)

    async def list(self, kind: str, namespace: str | None = None) -> list[Object]:
        return await self.call(self._db.list, kind, namespace)

    async def resource_version(self) -> str:
        return await self.call(self._db.resource_version)

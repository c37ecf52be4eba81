"""The daemon's parts below the mount, assembled over temporary directories: a real
state database, storage controller and pod manager (EmptyDir, HostPath and claims on
local "NFS shares"), as volfs/daemon.py wires them, without FUSE or a socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.shares import LocalShares
from volfs.controllers.storage import StorageController
from volfs.fs import Filesystem
from volfs.lifecycle.claims import ClaimPlugin
from volfs.lifecycle.hooks import HookRunner
from volfs.lifecycle.hostpath import HostPathPlugin, allowed_prefixes
from volfs.lifecycle.pods import PodManager
from volfs.lifecycle.volumes import EmptyDirPlugin, PluginRegistry
from volfs.persistent import NfsSource, PersistentSources
from volfs.state import AsyncStateDB, StateDB
from volfs.state.events import EventRecorder


@dataclass
class Assembled:
    state: AsyncStateDB
    storage: StorageController
    claims: ClaimPlugin
    pods: PodManager


@contextlib.asynccontextmanager
async def assembled(base: Path, *, engine: Any = None) -> AsyncIterator[Assembled]:
    """The parts over ``base``; hostPath volumes are allowed under ``base/host``."""
    for sub in ("disk", "memory", "host", "hooks/on-create.d", "hooks/on-delete.d", "nfs"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    db = StateDB(base / "state.db")
    try:
        state = AsyncStateDB(db)
        sources = PersistentSources([NfsSource(LocalShares(base / "nfs"))])
        storage = StorageController(state, sources, EventRecorder(state))
        claims = ClaimPlugin(storage, sources)
        pods = PodManager(
            state, Filesystem(statfs_path=str(base)),
            PluginRegistry([EmptyDirPlugin(base / "disk", base / "memory"),
                            HostPathPlugin(allowed_prefixes([str(base / "host")])), claims]),
            HookRunner(base / "hooks", base / "root", timeout=30.0), base / "root",
            engine, binder=storage)
        storage.tell_when_bound(pods)
        yield Assembled(state, storage, claims, pods)
    finally:
        db.close()

"""NFS shares as local directories: a stand-in for ``volfs.stores.nfs.NfsShares`` (the
NFS plugin's ShareOps) in tests that run the controller without an NFS server. The
NFS-backed ones are exercised by the integration tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from volfs.stores.progress import Progress, remove_tree


class LocalShares:
    """Each ``server:share`` is a directory under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def _dir(self, *parts: str) -> Path:
        return self.base.joinpath(*(p.strip("/") for p in parts if p))

    async def make_dir(self, server: str, share: str, sub_dir: str, opts: list[str]) -> None:
        self._dir(server, share, sub_dir).mkdir(parents=True, exist_ok=True)

    async def remove_dir(self, server: str, share: str, sub_dir: str, opts: list[str],
                         progress: Progress | None = None) -> None:
        remove_tree(self._dir(server, share, sub_dir), progress or Progress("Removing"))

    async def rename_dir(self, server: str, share: str, sub_dir: str, new: str,
                         opts: list[str]) -> None:
        self._dir(server, share, sub_dir).rename(self._dir(server, share, new))

    async def scrub_dir(self, server: str, path: str, opts: list[str],
                        progress: Progress | None = None) -> None:
        for child in self._dir(server, path).iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
            if progress is not None:
                progress.add()

"""User hooks: executables run when a pod is created or deleted.

``<state-dir>/hooks/on-create.d/`` and ``on-delete.d/`` hold executables, run in
name order with the pod as JSON on stdin and ``POD_UID``, ``POD_NAME``,
``POD_NAMESPACE``, ``VOLFS_ROOT`` in the environment, each with a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

ON_CREATE = "on-create.d"
ON_DELETE = "on-delete.d"


class HookFailed(Exception):
    """A hook exited non-zero, timed out or could not start; ``str()`` is one line."""


@dataclass(frozen=True)
class HookRunner:
    hooks_dir: Path
    volfs_root: Path
    timeout: float

    def hooks(self, stage: str) -> list[Path]:
        """The executables of one stage, in name order (others are ignored, with a warning)."""
        directory = self.hooks_dir / stage
        if not directory.is_dir():
            return []
        found = []
        for path in sorted(directory.iterdir()):
            if path.is_file() and os.access(path, os.X_OK):
                found.append(path)
            elif not path.name.startswith("."):
                log.warning("hook %s is not an executable file; skipped", path)
        return found

    async def run_stage(self, stage: str, pod: dict[str, Any]) -> None:
        """Run every hook of ``stage``; the first failure raises HookFailed."""
        for hook in self.hooks(stage):
            await self.run_one(hook, pod)

    async def run_stage_reporting(self, stage: str, pod: dict[str, Any]) -> list[str]:
        """Run every hook of ``stage`` whatever happens; return one line per failure."""
        failures = []
        for hook in self.hooks(stage):
            try:
                await self.run_one(hook, pod)
            except HookFailed as exc:
                failures.append(str(exc))
        return failures

    async def run_one(self, hook: Path, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        env = dict(os.environ, POD_UID=meta["uid"], POD_NAME=meta["name"],
                   POD_NAMESPACE=meta.get("namespace", "default"),
                   VOLFS_ROOT=str(self.volfs_root))
        label = f"{hook.parent.name}/{hook.name}"
        try:
            with trio.fail_after(self.timeout):
                result = await trio.run_process(
                    [str(hook)], stdin=json.dumps(pod).encode(), capture_stdout=True,
                    capture_stderr=True, check=False, env=env)
        except trio.TooSlowError:
            raise HookFailed(f"hook {label} timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise HookFailed(f"hook {label} could not start: {exc.strerror}") from None
        if result.returncode != 0:
            raise HookFailed(f"hook {label} failed ({_describe(result)}): "
                             f"{_one_line(result.stderr)}")


def _describe(result: subprocess.CompletedProcess[bytes]) -> str:
    code = result.returncode
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _one_line(output: bytes) -> str:
    text = " ".join(output.decode(errors="replace").split())
    return text[:500] or "(no output on stderr)"

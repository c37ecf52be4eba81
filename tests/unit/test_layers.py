"""The import graph follows the layers the README draws: a package imports only
packages below it (or itself), never one above."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "volfs"

# Top first, as in the README's Development section.
LAYERS = ["cli", "daemon", "server", "csi", "workloads", "lifecycle", "runtime", "controllers",
          "persistent", "state", "fs", "stores", "api", "metrics", "config", "ganesha",
          "notify", "logs"]


def _imports(path: Path) -> set[str]:
    """The volfs packages (second name of ``volfs.x.y``) that a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "volfs" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_package_is_on_the_map() -> None:
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" or (p / "__init__.py").exists())
                and p.name != "__init__.py"}
    assert packages - {"__main__"} == set(LAYERS)


def test_no_package_imports_one_above_it() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        layer = relative.parts[0].removesuffix(".py")
        if layer == "__init__":
            continue
        for imported in _imports(path):
            if LAYERS.index(imported) < LAYERS.index(layer):
                upward.append(f"{relative} imports volfs.{imported}")
    assert not upward, upward


def test_serve_imports_no_module_it_needs_only_later_or_on_request() -> None:
    """What ``volfs serve`` imports before its mount delays every start: the CLI's HTTP
    client, the CSI driver's gRPC, the Docker SDK and the --kube-api listener's
    cryptography are imported where they are first needed. In a fresh interpreter."""
    import subprocess
    import sys

    later = ["httpx", "grpc", "google.protobuf", "docker", "cryptography"]
    code = ("import sys, volfs.cli.commands, volfs.daemon\n"
            f"print([m for m in {later!r} if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"

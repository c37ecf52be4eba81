"""The workloads of `scripts/bench local`: each one round on one target, as samples.

A workload's ``run`` does its untimed preparation, times only what users wait for, and
cleans up after itself, so rounds and targets can come in any order. The daemon's CPU
time (user + system, psutil) is read just around the timed part.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from scripts.benchlib.stack import Target

MiB = 1 << 20
READ_FILE = "bench-read.bin"


@dataclass(frozen=True)
class Sizes:
    write_4k: int  # bytes
    write_1m: int
    files: int  # creates and unlinks
    read_file: int  # bytes of the file the read rows read
    random_reads: int  # per job
    entries: int  # in the readdir+stat directory
    mmap: int  # bytes
    tree: int  # small files in the cp -r / tar -x tree


FULL = Sizes(write_4k=64 * MiB, write_1m=256 * MiB, files=10_000, read_file=256 * MiB,
             random_reads=4000, entries=100_000, mmap=64 * MiB, tree=2000)
QUICK = Sizes(write_4k=4 * MiB, write_1m=8 * MiB, files=500, read_file=8 * MiB,
              random_reads=200, entries=4000, mmap=4 * MiB, tree=100)


@dataclass
class Sample:
    row: str
    value: float
    ops: int
    cpu: float | None  # the FUSE daemon's CPU seconds during the timed part


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    unit: str
    higher_is_better: bool


ROWS = [
    Row("write-4k", "4 KiB sequential writes (fio psync, no fsync)", "MiB/s", True),
    Row("write-1m-fsync", "1 MiB sequential writes, fsync at the end (fio psync)", "MiB/s",
        True),
    Row("create", "file creates (open O_CREAT|O_EXCL + close, C loop)", "files/s", True),
    Row("unlink", "unlinks of the files just created (C loop)", "files/s", True),
    Row("randread-cold", "4 KiB random reads, page cache dropped (fio psync, 1 job)",
        "µs/read", False),
    Row("randread-4jobs", "4 KiB random reads, page cache dropped, 4 jobs", "reads/s", True),
    Row("seqread-cold", "1 MiB sequential read, page cache dropped (fio psync)", "MiB/s",
        True),
    Row("readdir-stat", "readdir + lstat of every entry of one big directory (C loop)",
        "entries/s", True),
    Row("mmap-write", "4 KiB writes into a shared mmap, msync at the end (fio mmap)",
        "MiB/s", True),
    Row("cp-r", "cp -r of a tree of small files (1-64 KiB) from tmpfs", "files/s", True),
    Row("tar-x", "tar -x of the same tree", "files/s", True),
]


class Workloads:
    """Every workload, bound to the helper binary, the sizes and the shared tree."""

    def __init__(self, sizes: Sizes, scratch: Path) -> None:
        self.sizes = sizes
        self.scratch = scratch
        self.files_tool = _compile_files_tool(scratch)
        self.tree, self.tarball = _small_tree(scratch, sizes.tree)

    def for_row(self, key: str) -> Callable[[Target], list[Sample]]:
        """The workload that yields ``key`` (create and unlink come from one, as do cp and tar)."""
        return {"write-4k": self.write_4k, "write-1m-fsync": self.write_1m_fsync,
                "create": self.create_unlink, "unlink": self.create_unlink,
                "randread-cold": self.randread_cold, "randread-4jobs": self.randread_4jobs,
                "seqread-cold": self.seqread_cold, "readdir-stat": self.readdir_stat,
                "mmap-write": self.mmap_write, "cp-r": self.small_files,
                "tar-x": self.small_files}[key]

    # -- writes --------------------------------------------------------------------------

    def write_4k(self, target: Target) -> list[Sample]:
        size = self.sizes.write_4k
        with _cpu(target) as cpu:
            out = _fio(target.path, "--filename=w.bin", "--rw=write", "--bs=4k",
                       f"--size={size}")
        (target.path / "w.bin").unlink()
        return [Sample("write-4k", _job(out)["write"]["bw_bytes"] / MiB, size // 4096,
                       cpu())]

    def write_1m_fsync(self, target: Target) -> list[Sample]:
        size = self.sizes.write_1m
        with _cpu(target) as cpu:
            started = time.perf_counter()
            _fio(target.path, "--filename=w.bin", "--rw=write", "--bs=1M", f"--size={size}",
                 "--end_fsync=1")
            seconds = time.perf_counter() - started  # fio's bandwidth leaves the fsync out
        (target.path / "w.bin").unlink()
        return [Sample("write-1m-fsync", size / MiB / seconds, size // MiB, cpu())]

    def mmap_write(self, target: Target) -> list[Sample]:
        size = self.sizes.mmap
        with _cpu(target) as cpu:
            started = time.perf_counter()
            _fio(target.path, "--filename=w.bin", "--ioengine=mmap", "--rw=write", "--bs=4k",
                 f"--size={size}", "--end_fsync=1")
            seconds = time.perf_counter() - started
        (target.path / "w.bin").unlink()
        return [Sample("mmap-write", size / MiB / seconds, size // 4096, cpu())]

    # -- metadata ------------------------------------------------------------------------

    def create_unlink(self, target: Target) -> list[Sample]:
        n = self.sizes.files
        where = target.path / "creates"
        where.mkdir()
        with _cpu(target) as create_cpu:
            created = self._files("create", where, n)
        with _cpu(target) as unlink_cpu:
            unlinked = self._files("unlink", where, n)
        where.rmdir()
        return [Sample("create", n / created, n, create_cpu()),
                Sample("unlink", n / unlinked, n, unlink_cpu())]

    def readdir_stat(self, target: Target) -> list[Sample]:
        """Entries made once per target, in its backing directory (not timed, and fast:
        through volfs 100k creates take minutes); each round lists them through the mount
        with the kernel's caches as the previous round left them."""
        name = "readdir"
        made = target.backing / name
        if not made.exists():
            made.mkdir()
            self._files("create", made, self.sizes.entries)
        with _cpu(target) as cpu:
            seconds, count = self._run_files("lsstat", target.path / name)
        return [Sample("readdir-stat", count / seconds, count, cpu())]

    def _files(self, mode: str, where: Path, n: int) -> float:
        return self._run_files(mode, where, str(n))[0]

    def _run_files(self, mode: str, where: Path, *args: str) -> tuple[float, int]:
        out = subprocess.run([str(self.files_tool), mode, str(where), *args], check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[0]), int(out[1])

    # -- reads ---------------------------------------------------------------------------

    def randread_cold(self, target: Target) -> list[Sample]:
        n = self.sizes.random_reads
        self._cold_read_file(target)
        with _cpu(target) as cpu:
            out = _fio(target.path, "--rw=randread", "--bs=4k", *self._read_args(),
                       "--norandommap", f"--number_ios={n}")
        return [Sample("randread-cold", _job(out)["read"]["lat_ns"]["mean"] / 1000, n, cpu())]

    def randread_4jobs(self, target: Target) -> list[Sample]:
        n = self.sizes.random_reads
        self._cold_read_file(target)
        with _cpu(target) as cpu:
            out = _fio(target.path, "--rw=randread", "--bs=4k", *self._read_args(),
                       "--norandommap", f"--number_ios={n}", "--numjobs=4",
                       "--group_reporting")
        return [Sample("randread-4jobs", _job(out)["read"]["iops"], 4 * n, cpu())]

    def seqread_cold(self, target: Target) -> list[Sample]:
        size = self.sizes.read_file
        self._cold_read_file(target)
        with _cpu(target) as cpu:
            out = _fio(target.path, "--rw=read", "--bs=1M", *self._read_args())
        return [Sample("seqread-cold", _job(out)["read"]["bw_bytes"] / MiB, size // MiB, cpu())]

    def _read_args(self) -> list[str]:
        # invalidate=1 (fio's default, said anyway): fio drops the file's cached pages,
        # through the mount, before the job
        return [f"--filename={READ_FILE}", f"--size={self.sizes.read_file}", "--invalidate=1"]

    def _cold_read_file(self, target: Target) -> None:
        """The read rows' file, written once through the mount and synced; its pages in
        the backing filesystem dropped before every round (a FUSE daemon reads from there)."""
        path = target.path / READ_FILE
        if not path.exists():
            with open(path, "wb") as f:
                for _ in range(self.sizes.read_file // MiB):
                    f.write(os.urandom(MiB))
                f.flush()
                os.fsync(f.fileno())
        backing = os.open(target.backing / READ_FILE, os.O_RDONLY)
        try:
            os.fsync(backing)
            os.posix_fadvise(backing, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(backing)

    # -- how users copy ------------------------------------------------------------------

    def small_files(self, target: Target) -> list[Sample]:
        files = self.sizes.tree
        samples = []
        for row, command in (("cp-r", ["cp", "-r", str(self.tree), "DEST"]),
                             ("tar-x", ["tar", "-xf", str(self.tarball), "-C", "DEST"])):
            dest = target.path / "copy"
            if row == "tar-x":
                dest.mkdir()
            with _cpu(target) as cpu:
                started = time.perf_counter()
                subprocess.run([str(dest) if arg == "DEST" else arg for arg in command],
                               check=True)
                seconds = time.perf_counter() - started
            shutil.rmtree(dest)
            samples.append(Sample(row, files / seconds, files, cpu()))
        return samples


@contextmanager
def _cpu(target: Target) -> Iterator[Callable[[], float | None]]:
    """The daemon's CPU seconds spent inside the block, read after it (None: native)."""
    if target.pid is None:
        yield lambda: None
        return
    process = psutil.Process(target.pid)
    before = process.cpu_times()
    spent: list[float] = []
    yield lambda: spent[0] if spent else None
    after = process.cpu_times()
    spent.append(after.user + after.system - before.user - before.system)


def _fio(directory: Path, *args: str) -> Any:
    result = subprocess.run(
        ["fio", "--output-format=json", "--name=w", f"--directory={directory}",
         "--ioengine=psync", "--fallocate=none",
         "--clocksource=clock_gettime",  # the default calibrates for ~0.25 s at every start
         *args],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"fio {' '.join(args)} in {directory}: "
                           f"{(result.stderr or result.stdout).strip()[-300:]}")
    return json.loads(result.stdout[result.stdout.index("{"):])  # fio may warn before it


def _job(out: Any) -> Any:
    """The (first, or with group_reporting the only) job of fio's JSON report."""
    return out["jobs"][0]


def _compile_files_tool(scratch: Path) -> Path:
    tool = scratch / "files"
    subprocess.run(["cc", "-O2", "-o", str(tool), str(Path(__file__).with_name("files.c"))],
                   check=True)
    return tool


def _small_tree(scratch: Path, files: int) -> tuple[Path, Path]:
    """``files`` files of 1-64 KiB in 20 directories, and a tarball of them (one seed)."""
    rng = random.Random(0)
    tree = scratch / "tree"
    for n in range(files):
        path = tree / f"d{n % 20}" / f"f{n}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(1, 65) * 1024))
    tarball = scratch / "tree.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(tree), "."], check=True)
    return tree, tarball

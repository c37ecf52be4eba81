"""`scripts/bench local`: volfs's local volumes against native, bindfs, mergerfs and the floor.

Rounds are interleaved (round 1 on every target, then round 2, ...) so that a busy
spell of a shared machine spreads over all targets instead of hitting one; each
figure is the median of the rounds, with their range, and every ratio divides two
medians of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from scripts.benchlib.stack import REPO, WRITEBACK, Stack, StackError
from scripts.benchlib.workloads import FULL, QUICK, ROWS, Row, Sample, Workloads

TARGETS = ["native", "bindfs", "mergerfs", "floor", "volfs-emptydir", "volfs-emptydir-limit",
           "volfs-hostpath", WRITEBACK]
BASELINES = ["native", "bindfs", "mergerfs", "floor"]
ROW_KEYS = [row.key for row in ROWS]


def add_local(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (4k-entry directory, MiBs not 100s): under 2 min")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every row on every target (median and range; default 3)")
    parser.add_argument("--only", type=_keys(ROW_KEYS), default=ROW_KEYS,
                        metavar="ROW,...", help=f"rows to run: {', '.join(ROW_KEYS)}")
    parser.add_argument("--targets", type=_keys(TARGETS), default=TARGETS, metavar="T,...",
                        help=f"targets besides native: {', '.join(TARGETS[1:])}")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write every figure, round and ratio to FILE")


def _keys(known: list[str]) -> Any:
    def parse(text: str) -> list[str]:
        wanted = [key.strip() for key in text.split(",") if key.strip()]
        unknown = [key for key in wanted if key not in known]
        if unknown or not wanted:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
        return wanted
    return parse


def bench_local(args: argparse.Namespace) -> int:
    """4 KiB and 1 MiB writes, creates, unlinks, cold reads, readdir, mmap, cp -r and tar -x
    through volfs's EmptyDir and HostPath volumes, against native, bindfs, mergerfs and a
    do-nothing pyfuse3 filesystem on the same disk and tmpfs sources.
    """
    if args.rounds < 1:
        print("bench local: --rounds must be at least 1", file=sys.stderr)
        return 2
    # The daemons run this checkout's code, as the benchmark itself does.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                             os.environ.get("PYTHONPATH")]))
    signal.signal(signal.SIGTERM, _interrupt)  # a kill unmounts as Ctrl-C does
    started = time.time()
    stack = None
    try:
        stack = Stack.open(["native", *args.targets])
        results = _run(stack, args)
    except StackError as exc:
        print(f"bench local: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench local: interrupted; unmounting", file=sys.stderr)
        return 130
    finally:
        if stack is not None:
            stack.close()
    report = _report(stack, args, results, started)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(stack: Stack, args: argparse.Namespace) -> dict[str, dict[tuple[str, str], list[Sample]]]:
    """{row: {(source, target): samples}}, each workload's rounds on every target in turn."""
    sizes = QUICK if args.quick else FULL
    workloads = Workloads(sizes, stack.sources["tmpfs"])
    print(f"bench local: {'quick' if args.quick else 'full'} sizes {sizes}, {args.rounds} "
          f"rounds, in {stack.base}", flush=True)
    for note in stack.notes:
        print(f"  {note}")
    results: dict[str, dict[tuple[str, str], list[Sample]]] = {}
    done: set[object] = set()
    for key in args.only:
        run = workloads.for_row(key)
        if run in done:  # create/unlink and cp-r/tar-x come from one workload
            continue
        done.add(run)
        began = time.monotonic()
        for _ in range(args.rounds):
            for target in stack.targets:
                for sample in run(target):
                    results.setdefault(sample.row, {}).setdefault(
                        (target.source, target.name), []).append(sample)
        print(f"  {key}: {time.monotonic() - began:.1f} s", flush=True)
    return {row: results[row] for row in ROW_KEYS if row in results}


def _report(stack: Stack, args: argparse.Namespace,
            results: dict[str, dict[tuple[str, str], list[Sample]]], started: float
            ) -> dict[str, Any]:
    rows = {row.key: row for row in ROWS}
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "command": " ".join(["scripts/bench", *sys.argv[1:]]),
        "host": f"{platform.node()} {platform.release()} {os.cpu_count()} cpus",
        "rounds": args.rounds, "quick": args.quick,
        "sources": {name: str(path) for name, path in stack.sources.items()},
        "notes": stack.notes, "rows": {}}
    for key, by_target in results.items():
        row = rows[key]
        table = _table(row, by_target)
        report["rows"][key] = {"title": row.title, "unit": row.unit,
                               "higher_is_better": row.higher_is_better, "results": table}
        _print_table(row, table)
    return report


def _table(row: Row, by_target: dict[tuple[str, str], list[Sample]]
           ) -> dict[str, dict[str, Any]]:
    """{source: {target: figures}}, ratios against the same source's baselines."""
    table: dict[str, dict[str, Any]] = {}
    for (source, name), samples in by_target.items():
        values = [s.value for s in samples]
        cpu = [s.cpu / s.ops * 1e6 for s in samples if s.cpu is not None]
        table.setdefault(source, {})[name] = {
            "values": values, "median": statistics.median(values),
            "min": min(values), "max": max(values), "ops": samples[0].ops,
            "cpu_us_per_op": cpu, "cpu_us_per_op_median": statistics.median(cpu) if cpu else None}
    for targets in table.values():
        for figures in targets.values():
            figures["ratios"] = {base: figures["median"] / targets[base]["median"]
                                 for base in BASELINES
                                 if base in targets and targets[base]["median"] > 0}
    return table


def _print_table(row: Row, table: dict[str, dict[str, Any]]) -> None:
    better = "higher" if row.higher_is_better else "lower"
    print(f"\n{row.key}: {row.title}; {row.unit}, {better} is better; ratios are this "
          f"target's median over the baseline's")
    header = (f"  {'source':<6} {'target':<21}{'median':>10} {'range':>19}"
              + "".join(f"{'/' + base:>10}" for base in BASELINES) + f"{'cpu µs/op':>11}")
    print(header)
    for source, targets in table.items():
        for name, fig in targets.items():
            ratios = "".join(f"{fig['ratios'][b]:>10.2f}" if b in fig["ratios"] else f"{'-':>10}"
                             for b in BASELINES)
            cpu = fig["cpu_us_per_op_median"]
            print(f"  {source:<6} {name:<21}{_num(fig['median']):>10} "
                  f"{_num(fig['min']) + '-' + _num(fig['max']):>19}{ratios}"
                  f"{'-' if cpu is None else f'{cpu:.1f}':>11}")


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


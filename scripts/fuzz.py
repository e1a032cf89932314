"""The long hostile-input run: a corpus of over 1,000 entries, one `dicomml index`, then every load.

Builds ``dicomml.testing.hostile.build_corpus(scale=...)`` in a temporary
folder, runs ``dicomml index`` on it once (a subprocess, its process tree's
memory sampled), checks that every entry is an instance or an error row, then
loads every usable series and every file alone in killable worker processes
(:mod:`dicomml.executor`), so that a crash or a hang is counted, not suffered.
Prints one JSON summary and one markdown table.

    python scripts/fuzz.py --scale 10 --seed 18
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dicomml
from dicomml.errors import DicomMLError
from dicomml.executor import Processes, run
from dicomml.paths import local_path
from dicomml.testing import data_root
from dicomml.testing.hostile import build_corpus, entries


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def _index(tree: Path, out: Path, workers: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "dicomml.cli.main",
        "index",
        str(tree),
        "-o",
        str(out),
        "--workers",
        str(workers),
        "--timeout",
        "20",
        "--quiet",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    return {
        "returncode": proc.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_tree_mib": round(peak[0] / 2**20),
        "stderr": stderr[-2000:],
    }


def _load(kind: str, items: Sequence[str], started: Callable[[int], None]) -> list[str]:
    """Load each item (a series key of the manifest, or a file); the outcome's type name."""
    out = []
    for i, item in enumerate(items):
        started(i)
        try:
            if kind == "file":
                dicomml.load_files([item], on_irregular="keep")
            else:
                manifest, key = item.split("\0")
                dicomml.load_series(manifest, key)
            out.append("volume")
        except DicomMLError as exc:
            out.append(f"typed:{type(exc).__name__}")
        except BaseException as exc:  # noqa: BLE001 - what this run counts
            out.append(f"UNTYPED:{type(exc).__name__}: {str(exc)[:200]}")
    return out


def _load_all(kind: str, items: list[str], workers: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    batches = [(kind, items[i : i + 8]) for i in range(0, len(items), 8)]
    for outcome in run(_load, batches, Processes(workers, timeout_s=120)):
        outcomes.update(outcome.result or [])
        outcomes.update(f"{f.kind.upper()}: {f.message[:200]}" for f in outcome.failures)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bombs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomml-fuzz-") as tmp:
        tree, out = Path(tmp) / "tree", Path(tmp) / "manifest"
        started = time.perf_counter()
        counts = build_corpus(data_root(), tree, scale=args.scale, seed=args.seed, bombs=args.bombs)
        built = time.perf_counter() - started
        indexed = _index(tree, out, args.workers)
        m = dicomml.Manifest(out)
        instances, errors = m.instances, m.errors
        seen = {local_path(p) for p in instances.path} | {local_path(p) for p in errors.path}
        expected = entries(tree)
        series = m.series
        usable = [f"{out}\0{key}" for key in series[series.usable].series_key]
        files = sorted(p for p in seen if os.path.isfile(p) and not os.path.basename(p).startswith("fifo"))
        started = time.perf_counter()
        series_outcomes = _load_all("series", usable, args.workers)
        file_outcomes = _load_all("file", files, args.workers)
        loaded = time.perf_counter() - started
    bad = [k for k in list(series_outcomes) + list(file_outcomes) if k.startswith(("UNTYPED", "TIMEOUT", "CRASHED"))]
    summary = {
        "entries": sum(counts.values()),
        "categories": len(counts),
        "per_category": counts,
        "build_seconds": round(built, 1),
        "index": indexed,
        "instance_rows": len(instances),
        "error_rows": len(errors),
        "error_types": dict(Counter(errors.error_type)),
        "unaccounted": len(expected - seen),
        "series": len(series),
        "usable_series": len(usable),
        "series_loads": dict(series_outcomes),
        "file_loads": dict(file_outcomes),
        "load_seconds": round(loaded, 1),
        "untyped_killed_or_hung": bad,
    }
    print(json.dumps(summary, indent=1))
    print()
    print(
        "| entries | categories | instance rows | error rows | unaccounted | index exit | index wall s "
        "| index peak MiB (process tree) | usable series | series loads: volume / typed | files: volume / typed "
        "| untyped, killed, hung |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    volume_s = series_outcomes.get("volume", 0)
    volume_f = file_outcomes.get("volume", 0)
    print(
        f"| {summary['entries']} | {len(counts)} | {len(instances)} | {len(errors)} | {summary['unaccounted']} "
        f"| {indexed['returncode']} | {indexed['seconds']} | {indexed['peak_tree_mib']} | {len(usable)} "
        f"| {volume_s} / {sum(series_outcomes.values()) - volume_s} | {volume_f} / {sum(file_outcomes.values()) - volume_f} "
        f"| {len(bad)} |"
    )
    sys.exit(1 if bad or indexed["returncode"] or summary["unaccounted"] else 0)


if __name__ == "__main__":
    main()

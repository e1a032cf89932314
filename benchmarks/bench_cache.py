"""dicomml's cache + Datasets vs MONAI PersistentDataset / CacheDataset and np.load floors (issue 6).

One run, same data: a synthetic CT cohort (default 20 series of 512x512x~120,
0.7 x 0.7 x 2.5 mm) written as DICOM and indexed; pipeline RAS, 1.5 mm, window
-1000..400 HU scaled to [0, 1]. Every contender runs in a fresh subprocess
(peak RSS is its own, workers included), and contenders alternate phase by
phase, repeated (median), so load changes on a shared machine hit them
alike. Printed: first epoch (fills the cache) and warm second epoch (the
second of two in one process) samples/s with DataLoader num_workers 0 and
2, a cold second epoch (every
cache file's pages evicted with posix_fadvise(DONTNEED)), bytes on disk,
96^3 random patches/s, and the time to the first batch from a fresh
interpreter (import, open the manifest and a warm cache, one batch through a
DataLoader), with ``import torch`` alone as the bound under it; dicomml's
modules are byte-compiled first, as installed peers' are.

Usage::

    python benchmarks/bench_cache.py                      # full size
    python benchmarks/bench_cache.py --series 3 --rows 128 --slices 40 --patches 30 --rounds 1   # quick
    python benchmarks/bench_cache.py --skip-fill --phases patches --chunks 64 32   # patches from two chunkings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import table

WINDOW = (-1000.0, 400.0)
SPACING = 1.5
PATCH = (96, 96, 96)
#: The cached arrays' inner chunk edge of the default config (``deterministic.chunks``).
CHUNK = 64


def _config(chunk: int = CHUNK) -> Any:
    from dicomml.config import AtLoad, Deterministic, PipelineConfig, WindowSpec

    low, high = WINDOW
    return PipelineConfig(
        "bench",
        Deterministic(orientation="RAS", spacing=(SPACING,) * 3, dtype="int16", chunks=(chunk,) * 3),
        AtLoad(windows=(WindowSpec((low + high) / 2, high - low, "bench"),)),
    )


# -- cohort ----------------------------------------------------------------------


def _phantom(rows: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """Stored CT values (HU + 1024): body, lungs, spine, noise."""
    y, x = np.mgrid[:rows, :rows] / rows - 0.5
    body = (y / 0.36) ** 2 + (x / 0.45) ** 2 < 1
    lungs = ((y + 0.02) / 0.2) ** 2 + ((np.abs(x) - 0.17) / 0.12) ** 2 < 1
    spine = ((y - 0.25) / 0.05) ** 2 + (x / 0.05) ** 2 < 1
    hu = np.full((rows, rows), -1000.0)
    hu[body] = 40
    hu[lungs] = -850
    hu[spine] = 700
    out = np.empty((slices, rows, rows), np.uint16)
    for k in range(slices):
        out[k] = np.clip(hu + rng.normal(0, 12, hu.shape) + 1024, 0, 4095)
    return out


def _prepare(work: Path, n_series: int, rows: int, slices: int) -> None:
    from dicomml.dicom.synthetic import write_series
    from dicomml.indexer import index

    stamp = work / "cohort.json"
    want = {"series": n_series, "rows": rows, "slices": slices}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    for s in range(n_series):
        n = slices + int(rng.integers(-10, 11)) if slices > 20 else slices
        write_series(work / "dicom" / f"S{s:03d}", _phantom(rows, n, rng), spacing=2.5, pixel_spacing=(0.7, 0.7))
    index(str(work / "dicom"), str(work / "manifest"), workers=2, progress=False)
    stamp.write_text(json.dumps(want))


# -- helpers run inside the contender's process -------------------------------------


def _epoch(dataset: Any, workers: int, collate: Any = None) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=collate)
    start = time.perf_counter()
    n = sum(1 for _ in loader)
    assert n == len(dataset)
    return time.perf_counter() - start


def _evict(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _monai_transforms() -> Any:
    from monai.data import PydicomReader
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd

    return Compose(
        [
            LoadImaged("image", reader=PydicomReader()),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(SPACING,) * 3, mode="bilinear"),
            ScaleIntensityRanged("image", a_min=WINDOW[0], a_max=WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
        ]
    )


def _monai_items(work: Path) -> list[dict[str, str]]:
    return [{"image": str(p.resolve())} for p in sorted((work / "dicom").iterdir())]  # PersistentDataset hashes the path


# -- one phase of one contender, in its own process ------------------------------------


def _chunk(contender: str) -> int:
    """The inner chunk edge of a dicomml contender (``dicomml@32``: 32^3 chunks; plain ``dicomml``: :data:`CHUNK`)."""
    return int(contender.partition("@")[2] or CHUNK)


def _dicomml_cache(work: Path, chunk: int) -> Path:
    return work / f"cache_dicomml_{chunk}"


def _dicomml_series(work: Path, cache_only: bool, chunk: int = CHUNK) -> Any:
    from dicomml.data import SeriesDataset

    return SeriesDataset(work / "manifest", _config(chunk), _dicomml_cache(work, chunk), cache_only=cache_only)


def _persistent(work: Path) -> Any:
    from monai.data import PersistentDataset

    return PersistentDataset(_monai_items(work), _monai_transforms(), cache_dir=work / "cache_persistent")


class _NpyVolumes:
    """The np.load floor: the same preprocessed float32 arrays, one .npy each."""

    def __init__(self, work: Path) -> None:
        self.files = sorted((work / "npy").glob("*.npy"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        import torch

        return {"image": torch.from_numpy(np.load(self.files[i]))}


class _NpyPatches(_NpyVolumes):
    """The np.load(mmap_mode="r") patch floor."""

    def __init__(self, work: Path, per: int) -> None:
        super().__init__(work)
        self.per = per

    def __len__(self) -> int:
        return len(self.files) * self.per

    def __getitem__(self, i: int) -> Any:
        import torch

        rng = np.random.default_rng(i)
        arr = np.load(self.files[i // self.per], mmap_mode="r")
        start = [int(rng.integers(0, max(s - p, 0) + 1)) for s, p in zip(arr.shape[-3:], PATCH)]
        box = (slice(None),) + tuple(slice(b, b + p) for b, p in zip(start, PATCH))
        return {"image": torch.from_numpy(np.array(arr[box]))}


def _phase(contender: str, phase: str, work: Path, n_patches: int) -> float | dict[str, float]:
    """samples/s of one phase: fill_wN (first epoch, empty cache), warm_wN, cold_w0, patches.

    ``warm_wN`` times the second of two epochs over the warm cache in one
    process, as in a training run (the first is not timed). CacheDataset's
    ``warm`` phase builds its in-memory cache once (its first epoch, not
    timed), then times a warm epoch with 0 and one with 2 workers: both
    rates, so that it can run inside the interleaved rounds. ``cold_w0`` is
    the first epoch of a fresh process after evicting the cache's pages
    (dicomml keeps its shards mapped between epochs, and mapped pages are
    not evicted).
    """
    if phase == "ttfb":  # before any import: the torch bound imports torch alone
        return _first_batch(contender, work)
    from dicomml.data import PatchDataset, collate

    workers = int(phase[-1]) if phase[-2:] in ("w0", "w2") else 0
    chunk = _chunk(contender)
    contender = contender.partition("@")[0]
    folder = {"dicomml": _dicomml_cache(work, chunk), "PersistentDataset": work / "cache_persistent", "np.load": work / "npy"}
    if contender == "CacheDataset":  # in memory: its "first epoch" is the cache build plus one pass
        from monai.data import CacheDataset

        start = time.perf_counter()
        ds = CacheDataset(_monai_items(work), _monai_transforms(), num_workers=2 if phase == "warm" else max(workers, 1), progress=False)
        if phase == "warm":
            return {f"warm_w{n}": len(ds) / _epoch(ds, n) for n in (0, 2)}
        return len(ds) / (time.perf_counter() - start + _epoch(ds, workers))
    if phase.startswith("fill"):
        shutil.rmtree(folder[contender], ignore_errors=True)
    if phase == "cold_w0":
        _evict(folder[contender])
    if contender == "dicomml":
        if phase == "patches":
            per = max(1, n_patches // len(_dicomml_series(work, True, chunk)))
            ds = PatchDataset(
                work / "manifest", _config(chunk), folder[contender], patch_size=PATCH, samples_per_volume=per, cache_only=True
            )
        else:
            ds = _dicomml_series(work, not phase.startswith("fill"), chunk)
    elif contender == "PersistentDataset":
        ds = _persistent(work)
        if phase == "patches":
            from monai.data import Dataset
            from monai.transforms import RandSpatialCropd

            crop = RandSpatialCropd("image", roi_size=PATCH, random_size=False)
            crop.set_random_state(0)
            volumes, per = ds, max(1, n_patches // len(ds))
            ds = Dataset([i for i in range(len(volumes)) for _ in range(per)], transform=lambda i: crop(volumes[i]))
    else:
        ds = _NpyPatches(work, max(1, n_patches // len(_NpyVolumes(work)))) if phase == "patches" else _NpyVolumes(work)
    batch = collate if contender == "dicomml" else None
    if phase.startswith("warm"):  # a training run's second epoch: the first (untimed) ran in this process
        _epoch(ds, workers, batch)
    return len(ds) / _epoch(ds, workers, batch)


def _first_batch(contender: str, work: Path) -> float:
    """One batch through a DataLoader (0 workers) from a warm cache; the caller times the process."""
    if contender == "torch":  # the bound: import torch alone
        import torch  # noqa: F401

        return 0.0
    from torch.utils.data import DataLoader

    if contender.startswith("dicomml"):
        from dicomml.data import collate

        loader = DataLoader(_dicomml_series(work, True, _chunk(contender)), batch_size=1, collate_fn=collate)
    else:
        loader = DataLoader(_persistent(work), batch_size=1)
    next(iter(loader))
    return 0.0


def _write_npy(work: Path) -> None:
    """The same preprocessed arrays (dicomml's float32 output) as .npy, for the np.load floors."""
    shutil.rmtree(work / "npy", ignore_errors=True)
    (work / "npy").mkdir()
    ds = _dicomml_series(work, cache_only=True)
    for i in range(len(ds)):
        np.save(work / "npy" / f"{i:03d}.npy", ds[i]["image"].numpy())


PHASES = ("fill", "warm", "cold", "patches", "ttfb")
PEERS = ("PersistentDataset", "CacheDataset", "np.load", "torch")


def _child(contender: str, phase: str, work: Path, n_patches: int) -> None:
    rate = _phase(contender, phase, work, n_patches)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("RESULT " + json.dumps({"rate": rate, "peak_rss_mb": max(own, kids) / 1024}), flush=True)  # rate: a dict for several phases
    if phase == "ttfb":
        os._exit(0)  # no interpreter teardown: the first batch is what is timed


def _run(contender: str, phase: str, work: Path, n_patches: int) -> dict[str, Any]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", contender, phase, "--workdir", str(work), "--patches", str(n_patches)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{contender} {phase} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    return {**result, "rate": wall} if phase == "ttfb" else result  # the time to first batch: the whole process, start to exit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--patches", type=int, default=200, help="96^3 patches per contender and round")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the warm, cold and patch phases (median)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomml-bench-cache"))
    parser.add_argument("--skip-fill", action="store_true", help="reuse the caches of an earlier run in --workdir (no first-epoch figures)")
    parser.add_argument(
        "--chunks",
        type=int,
        nargs="+",
        default=[CHUNK],
        help="inner chunk edge (voxels) of dicomml's cache; several: one dicomml contender each",
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="run only these phases (caches a skipped fill needs are filled untimed)",
    )
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "PHASE"))
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.workdir, args.patches)
        return
    t = time.perf_counter()
    _prepare(args.workdir, args.series, args.rows, args.slices)
    print(f"cohort: {args.series} series of {args.rows}x{args.rows}x~{args.slices} CT in {args.workdir} ({time.perf_counter() - t:.0f} s)")
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ours = [f"dicomml@{chunk}" for chunk in args.chunks]
    phases = set(args.phases) - ({"fill"} if args.skip_fill else set())

    def run(contender: str, phase: str) -> None:
        result = _run(contender, phase, args.workdir, args.patches)
        rates = result["rate"] if isinstance(result["rate"], dict) else {phase: result["rate"]}
        for name, rate in rates.items():
            runs.setdefault((contender, name), []).append({**result, "rate": rate})

    # the DICOM files in the page cache first: else the first contender of the first epoch reads them from disk
    for path in (args.workdir / "dicom").rglob("*.dcm"):
        path.read_bytes()
    # contenders alternate phase by phase, so a change in the shared machine's load hits them alike
    for phase in ("fill_w0", "fill_w2") if "fill" in phases else ():
        for contender in (*ours, "PersistentDataset", "CacheDataset"):
            run(contender, phase)
    folders = {name: _dicomml_cache(args.workdir, _chunk(name)) for name in ours}
    folders |= {"PersistentDataset": args.workdir / "cache_persistent", "np.load": args.workdir / "npy"}
    for contender in (*ours, "PersistentDataset"):
        if not folders[contender].exists():  # a skipped fill: the cache made untimed
            _run(contender, "fill_w2", args.workdir, args.patches)
    _write_npy(args.workdir)
    if "ttfb" in phases:
        table.compile_dicomml()
    for _ in range(args.rounds):
        for phase in ("warm_w0", "warm_w2", "cold_w0", "patches"):
            if phase.partition("_")[0] not in phases:
                continue
            for contender in (*ours, "PersistentDataset", "np.load"):
                run(contender, phase)
            if phase == "warm_w0":  # both of its warm epochs, between the others' w0 and w2 ones
                run("CacheDataset", "warm")
        for contender in (*ours, "PersistentDataset", "torch") if "ttfb" in phases else ():
            run(contender, "ttfb")
    results: dict[str, dict[str, Any]] = {name: {"peak_rss_mb": 0.0} for name in (*ours, *PEERS)}
    for (contender, phase), values in runs.items():
        r = results[contender]
        r[phase] = float(np.median([v["rate"] for v in values]))
        r["peak_rss_mb"] = max(r["peak_rss_mb"], *(v["peak_rss_mb"] for v in values))
    for contender, folder in folders.items():
        results[contender]["bytes"] = _bytes(folder)
    _report(results, ours, args.rounds)


#: Each dicomml measure's peers and targets: (phase, peer, target, at most).
CHECKS = (
    ("fill_w0", "PersistentDataset", 4.0, False),
    ("fill_w2", "PersistentDataset", 4.0, False),
    ("warm_w0", "PersistentDataset", 1.0, False),
    ("warm_w2", "PersistentDataset", None, False),
    ("warm_w0", "CacheDataset", 1.0, False),
    ("warm_w2", "CacheDataset", 1.0, False),
    ("warm_w0", "np.load", None, False),
    ("cold_w0", "PersistentDataset", 2.0, False),
    ("cold_w0", "np.load", None, False),
    ("patches", "PersistentDataset", 3.0, False),
    ("patches", "np.load", 0.5, False),
    ("bytes", "PersistentDataset", 0.3, True),
    ("peak_rss_mb", "CacheDataset", None, False),
    ("ttfb", "PersistentDataset", 1.0, True),
    ("ttfb", "torch", None, False),
)
MEASURES = {
    "fill_w0": "first epoch, w0 (samples/s)",
    "fill_w2": "first epoch, w2 (samples/s)",
    "warm_w0": "warm 2nd epoch, w0 (samples/s)",
    "warm_w2": "warm 2nd epoch, w2 (samples/s)",
    "cold_w0": "cold 2nd epoch, w0 (samples/s)",
    "patches": "96³ patches (samples/s)",
    "bytes": "bytes on disk (MB)",
    "peak_rss_mb": "peak RSS (MB)",
    "ttfb": "time to first batch (s)",
}
PEER_NAMES = {"np.load": "`np.load`", "torch": "`import torch` alone"}


def _name(contender: str) -> str:
    return f"dicomml {_chunk(contender)}³" if contender.startswith("dicomml") else contender


def _report(results: dict[str, dict[str, Any]], ours: list[str], rounds: int) -> None:
    cols = ["fill_w0", "fill_w2", "warm_w0", "warm_w2", "cold_w0", "patches"]
    print(f"\nsamples/s (warm, cold, patches: median of {rounds} interleaved rounds; machine shared)")
    print(f"{'':<18}" + "".join(f"{c:>10}" for c in cols) + f"{'disk MB':>10}{'peak RSS MB':>13}")
    for name in (*ours, *PEERS[:3]):
        r = results[name]
        cells = "".join(f"{r[c]:>10.2f}" if c in r else f"{'-':>10}" for c in cols)
        disk = f"{r['bytes'] / 1e6:>10.1f}" if "bytes" in r else f"{'-':>10}"
        print(f"{_name(name):<18}{cells}{disk}{r['peak_rss_mb']:>13.0f}")
    if "ttfb" in results["torch"]:
        own = ", ".join(f"{_name(name)} {results[name]['ttfb']:.2f} s" for name in ours)
        print(
            f"\ntime to first batch, fresh interpreter (median of {rounds}): {own}, PersistentDataset {results['PersistentDataset']['ttfb']:.2f} s,"
        )
        worst = max(results[name]["ttfb"] for name in ours)
        print(f"  import torch alone {results['torch']['ttfb']:.2f} s (target <= 1 s in all: {'met' if worst <= 1 else 'MISSED'})")
    scale = {"bytes": 1e-6}
    fmt = {"bytes": ".1f", "peak_rss_mb": ".0f"}
    rows = []
    for name in ours:
        d = results[name]
        for measure, peer, target, at_most in CHECKS:
            if measure not in d or not results[peer].get(measure):  # a peer that ran none of the phases has a peak RSS of 0
                continue
            mine, theirs = (v * scale.get(measure, 1.0) for v in (d[measure], results[peer][measure]))
            form = fmt.get(measure, ".2f")
            rows.append(
                (
                    f"{MEASURES[measure]}, {_chunk(name)}³ chunks",
                    f"{mine:{form}}",
                    PEER_NAMES.get(peer, peer),
                    f"{theirs:{form}}",
                    *table.ratio(d[measure] / results[peer][measure], target, at_most=at_most),
                )
            )
    table.print_table(
        f"Cache and Datasets: median of {rounds} interleaved rounds (warm, cold, patches)",
        ("measure", "dicomml", "peer", "peer's", "dicomml / peer", "target"),
        rows,
    )


if __name__ == "__main__":
    main()

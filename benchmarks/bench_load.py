"""Load a shuffled synthetic CT series to a float32 array in canonical orientation.

One run, the same files, each contender in a fresh subprocess (so that peak
RSS is its own): dicomml, MONAI ``LoadImage(reader="PydicomReader")`` +
``Orientation``, SimpleITK ``ImageSeriesReader``, a plain pydicom +
``np.stack`` floor and a raw-bytes floor (no DICOM parsing). Prints the best
of ``--repeat`` times, ratios against dicomml and peak RSS above each
process's baseline (after imports), as a multiple of the output array; for
dicomml also the peak of Python allocations (tracemalloc, numpy's included)
in one more load, as a multiple of the output.

The targets' ratios come from one more subprocess per data set that runs
dicomml, plain pydicom and the raw-bytes floor in turn, round after round
(``--rounds``), and takes each one's best: on a machine shared with other jobs
the three then see the same load. Many small slices (``--small``, 64x64) are
compared with plain pydicom, the large series with the raw-bytes floor.

Usage::

    python benchmarks/bench_load.py                      # 512x512x300, then 3000 x 64x64
    python benchmarks/bench_load.py --size 128 --slices 40 --small 300   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import table

CONTENDERS = ("dicomml", "monai", "simpleitk", "pydicom_stack", "raw_bytes")
#: Imported before the baseline RSS is taken, so that library code is not counted as data.
IMPORTS = {
    "dicomml": ("dicomml.assemble", "nibabel.orientations", "pydicom.pixels"),
    "monai": ("monai.transforms", "pydicom.pixels"),
    "simpleitk": ("SimpleITK",),
    "pydicom_stack": ("pydicom.pixels",),
    "raw_bytes": ("pydicom",),
}


def _files(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).glob("*.dcm"))


def _run_dicomml(folder: str) -> np.ndarray:
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    from dicomml import load_files

    volume = load_files(_files(folder), dtype=np.float32)
    # Canonical (RAS) orientation as numpy views: flips and a transpose, no copy.
    transform = ornt_transform(io_orientation(volume.affine), axcodes2ornt("RAS"))
    return apply_orientation(volume.array, transform)


def _run_monai(folder: str) -> np.ndarray:
    from monai.transforms import LoadImage, Orientation

    image = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)(folder)
    return Orientation(axcodes="RAS")(image).numpy()


def _run_simpleitk(folder: str) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = sitk.DICOMOrient(reader.Execute(), "LPS")  # ITK's canonical order: (S, P, L) array = RAS index axes reversed
    return sitk.GetArrayViewFromImage(image).astype(np.float32)


def _run_pydicom_stack(folder: str) -> np.ndarray:
    import pydicom

    datasets = [pydicom.dcmread(f) for f in _files(folder)]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    stack = np.stack([ds.pixel_array for ds in datasets]).astype(np.float32)
    stack *= float(datasets[0].RescaleSlope)
    stack += float(datasets[0].RescaleIntercept)
    return stack


def _run_raw_bytes(folder: str) -> np.ndarray:
    """Floor: read each file's bytes and convert its trailing pixel data to float32 (no parsing, no sort)."""
    import pydicom

    files = _files(folder)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    count = int(first.Rows) * int(first.Columns)
    out = np.empty((len(files), count), np.float32)
    for i, name in enumerate(files):
        data = Path(name).read_bytes()
        pixels = np.frombuffer(data, dtype="<u2", count=count, offset=len(data) - 2 * count)
        np.subtract(pixels, np.float32(1024), out=out[i])
    return out


def _child(contender: str, folder: str, repeat: int) -> None:
    import importlib

    import psutil

    for module in IMPORTS[contender]:
        importlib.import_module(module)
    run = globals()[f"_run_{contender}"]
    baseline = psutil.Process().memory_info().rss
    best = np.inf
    nbytes = 0
    for _ in range(repeat):
        start = time.perf_counter()
        array = run(folder)
        best = min(best, time.perf_counter() - start)
        nbytes, shape, dtype = array.nbytes, array.shape, str(array.dtype)
        del array
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    traced = None
    if contender == "dicomml":  # once more, counting every allocation (numpy reports its buffers to tracemalloc)
        tracemalloc.start()
        run(folder)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        json.dumps(
            {
                "seconds": best,
                "peak_above_baseline": peak - baseline,
                "traced_peak": traced,
                "nbytes": nbytes,
                "shape": shape,
                "dtype": dtype,
            }
        )
    )


def _interleaved(folder: str, contenders: list[str], rounds: int) -> None:
    """Best seconds of each contender over ``rounds`` rounds that run them in turn, in this one process."""
    import importlib

    for contender in contenders:
        for module in IMPORTS[contender]:
            importlib.import_module(module)
    best = dict.fromkeys(contenders, np.inf)
    for _ in range(rounds):
        for contender in contenders:
            start = time.perf_counter()
            globals()[f"_run_{contender}"](folder)
            best[contender] = min(best[contender], time.perf_counter() - start)
    print(json.dumps(best))


def _measure(contender: str, folder: str, repeat: int) -> dict:
    return _subprocess(["--child", contender, folder, "--repeat", str(repeat)])


def _measure_interleaved(folder: str, contenders: list[str], rounds: int) -> dict:
    return _subprocess(["--interleave", folder, *contenders, "--rounds", str(rounds)])


def _subprocess(arguments: list[str]) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, __file__, *arguments],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(folder: Path, size: int, slices: int) -> None:
    from dicomml.dicom.synthetic import write_series

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4096, size=(slices, size, size), dtype=np.uint16)
    write_series(folder, volume, spacing=1.25, shuffle=1, pixel_spacing=(0.7, 0.7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--small", type=int, default=3000, help="number of 64x64 slices for the slices/s figure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the interleaved comparisons")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "FOLDER"))
    parser.add_argument("--interleave", nargs="+", metavar="FOLDER CONTENDER")
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.repeat)
        return
    if args.interleave:
        _interleaved(args.interleave[0], args.interleave[1:], args.rounds)
        return
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        big = Path(tmp) / "big"
        _write(big, args.size, args.slices)
        print(
            f"{args.slices} shuffled CT slices of {args.size}x{args.size} -> float32, canonical orientation "
            f"(best of {args.repeat}; {os.cpu_count()} cores)"
        )
        results = {name: _measure(name, str(big), args.repeat) for name in CONTENDERS}
        ours = results["dicomml"].get("seconds")
        print(f"{'contender':<15}{'seconds':>9}{'vs dicomml':>12}{'peak RSS MB':>13}{'x output':>10}")
        for name, r in results.items():
            if "error" in r:
                print(f"{name:<15} failed: {r['error']}")
                continue
            ratio = r["seconds"] / ours if ours else float("nan")
            print(
                f"{name:<15}{r['seconds']:>9.3f}{ratio:>11.2f}x{r['peak_above_baseline'] / 2**20:>13.0f}"
                f"{r['peak_above_baseline'] / r['nbytes']:>10.2f}"
            )
        traced = results["dicomml"].get("traced_peak")
        if traced:
            print(f"dicomml tracemalloc peak {traced / 2**20:.0f} MB = {traced / results['dicomml']['nbytes']:.2f}x the output")
        big_rounds = _measure_interleaved(str(big), ["dicomml", "pydicom_stack", "raw_bytes"], args.rounds)
        print(f"interleaved, best of {args.rounds} rounds: " + ", ".join(f"{k} {v:.3f} s" for k, v in big_rounds.items() if k != "error"))
        small = Path(tmp) / "small"
        _write(small, 64, args.small)
        small_rounds = _measure_interleaved(str(small), ["dicomml", "pydicom_stack"], args.rounds)
        print(f"\n{args.small} slices of 64x64, interleaved, best of {args.rounds} rounds:")
        for name, seconds in small_rounds.items():
            if name != "error":
                print(f"{name:<15}{seconds:>9.3f} s  {args.small / seconds:>9.0f} slices/s")
    targets = {"monai": 4.0, "simpleitk": 1.5, "pydicom_stack": 1.0}
    labels = {
        "dicomml": "dicomml `load_files(dtype=np.float32)` + RAS as views",
        "monai": 'MONAI `LoadImage(reader="PydicomReader")` + `Orientation`',
        "simpleitk": "SimpleITK `ImageSeriesReader` + `DICOMOrient`",
        "pydicom_stack": "plain pydicom + `np.stack` (floor)",
        "raw_bytes": "raw bytes -> float32, no parsing (floor)",
    }
    rows = [
        (
            labels[name],
            f"{r['seconds']:.3f}",
            *table.ratio(r["seconds"] / ours, targets.get(name)),
            f"{r['peak_above_baseline'] / 2**20:.0f}",
            " ".join(table.ratio(r["peak_above_baseline"] / r["nbytes"], 1.1, at_most=True))
            if name == "dicomml"
            else f"{r['peak_above_baseline'] / r['nbytes']:.2f}",
        )
        for name, r in results.items()
        if "seconds" in r and ours
    ]
    if traced:
        rows.append(
            (
                "dicomml tracemalloc peak / output array",
                None,
                None,
                None,
                f"{traced / 2**20:.0f}",
                " ".join(table.ratio(traced / results["dicomml"]["nbytes"], 1.1, at_most=True)),
            )
        )
    if "error" not in big_rounds:
        rows.append(
            (
                f"dicomml / raw-bytes floor, interleaved (best of {args.rounds})",
                f"{big_rounds['dicomml']:.3f} / {big_rounds['raw_bytes']:.3f}",
                *table.ratio(big_rounds["dicomml"] / big_rounds["raw_bytes"], 2.5, at_most=True, of="the floor"),
                None,
                None,
            )
        )
        rows.append(
            (
                f"plain pydicom / dicomml, interleaved (best of {args.rounds})",
                f"{big_rounds['pydicom_stack']:.3f} / {big_rounds['dicomml']:.3f}",
                *table.ratio(big_rounds["pydicom_stack"] / big_rounds["dicomml"]),
                None,
                None,
            )
        )
    if "error" not in small_rounds:
        rows.append(
            (
                f"{args.small} slices of 64x64: plain pydicom / dicomml, interleaved (best of {args.rounds})",
                f"{small_rounds['pydicom_stack']:.3f} / {small_rounds['dicomml']:.3f}",
                *table.ratio(small_rounds["pydicom_stack"] / small_rounds["dicomml"], 1.5),
                None,
                None,
            )
        )
    table.print_table(
        f"Loading {args.slices} shuffled {args.size}x{args.size} CT slices to float32, canonical orientation (best of {args.repeat})",
        ("contender", "seconds", "contender / dicomml", "target", "peak RSS MB", "x output array"),
        rows,
    )


if __name__ == "__main__":
    main()

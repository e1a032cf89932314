"""Benchmark: `dicomml index` against a plain pydicom loop, on one synthetic CT tree.

Writes a tree of N files (default 20,000): the header of a real GE CT slice
from the corpus (211 elements, private groups included) with new UIDs,
positions and a 32x32 image, in series of 200; then runs each
contender in a fresh subprocess and prints files/s, the ratio to the plain
loop, and the peak RSS of each (largest process, from ``getrusage`` of the
children). Contenders:

- ``pydicom loop``: a script that imports pydicom, walks the tree with
  ``os.walk`` and calls ``pydicom.dcmread(path, stop_before_pixels=True)`` on
  every file, one process (the baseline of issue 2);
- ``dicomml index``: a script that imports dicomml and calls
  ``dicomml.index(tree, out, workers=W)``;
- ``dicomml rerun``: the same call again on the unchanged tree;
- ``CLI rerun``: ``dicomml index TREE -o OUT`` once more (the console
  command's own imports and argument parsing included).

The loop and the first index are compared as whole processes, from
interpreter start to exit, timed by their parent: each pays its own imports
(pydicom for the loop; dicomml's reader, pyarrow, pandas, DuckDB for the
index) and its own walk of the tree, which is what a user running the
script or ``dicomml index`` waits for. (Timing only the loop's calls would
leave out the loop's imports and walk while the index's stay inside its
call.) The rerun target compares the ``dicomml.index`` call alone, first run
against rerun, both timed inside their processes after the same
``import dicomml.indexer.run`` (the module of ``dicomml.index``); the CLI
rerun is its process, for reference. dicomml's modules are byte-compiled
first, as installed peers' are.

Usage: ``python benchmarks/bench_index.py [--header real|small] [--files N] [--workers W] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
import table
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomml.testing import data_file

SLICES_PER_SERIES = 200

#: Issue 23's targets of the first index against the plain loop, on 2 workers, per header kind.
TARGETS = {"real": 4.0, "small": 2.0}
DEFAULT_FILES = {"real": 20_000, "small": 6_000}


#: A real scanner's CT header (GE Discovery MI, 211 elements with private groups) from the corpus.
TEMPLATE = "rt-utils/tests/mock_data/ct_1.dcm"


def _template(header: str) -> Dataset:
    """The corpus CT header (``real``) or a small one of a few dozen tags (``small``), with a 32x32 image."""
    if header == "small":
        return _small_header()
    ds = pydicom.dcmread(data_file(TEMPLATE))
    ds.Rows = ds.Columns = 32
    del ds.PixelData
    return ds


def _small_header() -> Dataset:
    """A CT slice header of the tags a converter writes and an indexer needs, no private groups."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.StudyDate, ds.StudyTime, ds.SeriesNumber = "20240101", "120000", 1
    ds.PatientName, ds.PatientSex = "Bench^Small", "O"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Manufacturer, ds.KVP = "SYNTHETIC", "120"
    ds.SliceThickness, ds.SpacingBetweenSlices = "1.0", "1.0"
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 32
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    return ds


def write_tree(root: Path, n_files: int, header: str = "real") -> None:
    """``n_files`` CT slices in series of 200, one folder per series."""
    template = _template(header)
    pixels = np.zeros((32, 32), np.int16).tobytes()
    study = generate_uid()
    for i in range(n_files):
        series_index, slice_index = divmod(i, SLICES_PER_SERIES)
        if slice_index == 0:
            series_uid, frame_uid = generate_uid(), generate_uid()
            folder = root / f"patient{series_index // 5:03d}" / f"series{series_index:04d}"
            folder.mkdir(parents=True, exist_ok=True)
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_uid
        ds.SOPInstanceUID = generate_uid()
        ds.PatientID = f"PID{series_index // 5:06d}"
        ds.InstanceNumber = slice_index + 1
        z = -300.0 + slice_index * 1.0
        ds.ImagePositionPatient = [-175.0, -175.0, z]
        ds.SliceLocation = str(z)
        ds.add_new(0x7FE00010, "OW", pixels)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"IM{slice_index:05d}.dcm", enforce_file_format=True)


# Each child prints: files, then wall and CPU seconds (its own and its workers') of its timed part.
_CPU = """
import resource
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
"""

# The loop's timed part is the loop; its imports and walk count in its process's figures.
_PLAIN = (
    _CPU
    + """
import os, sys, time, pydicom
paths = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
c, t = cpu(), time.perf_counter()
for p in paths:
    pydicom.dcmread(p, stop_before_pixels=True)
print(len(paths), time.perf_counter() - t, cpu() - c)
"""
)

_INDEX_CALL = """
c, t = cpu(), time.perf_counter()
m = dicomml.index(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), salt="bench", progress=False)
print(m.meta["counts"]["instances"], time.perf_counter() - t, cpu() - c)
"""

# The timed part is the call, after the imports `dicomml.index` itself needs (the rerun target
# compares calls); the imports count in the process's figures.
_DICOMML = _CPU + "\nimport sys, time, dicomml, dicomml.indexer.run\n" + _INDEX_CALL

# For reference: every library the run uses imported before the timing, as the loop's call has
# pydicom (pyarrow imports pandas at its first table).
_WARM = _CPU + "\nimport sys, time, dicomml, dicomml.indexer.scan, dicomml.indexer.series, pandas\n" + _INDEX_CALL

# The console command as `dicomml index` runs it (its process figures are the ones reported).
_CLI = """
import sys
from dicomml.cli.main import main
tree, out, workers = sys.argv[1:4]
sys.argv = ["dicomml", "index", tree, "-o", out, "--salt", "bench", "--quiet", "--workers", workers]
try:
    main()
finally:
    print(0, 0, 0)
"""


# Runs one contender as its child, from interpreter start to exit, and prints the child's own line,
# then the child's wall seconds, CPU seconds and peak RSS of its whole process tree (RUSAGE_CHILDREN
# is a running maximum per process, so each contender's figures are its own).
_FRESH = """
import resource, subprocess, sys, time
t = time.perf_counter()
out = subprocess.run([sys.executable, "-c", *sys.argv[1:]], check=True, capture_output=True, text=True).stdout
wall = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(*out.split()[-3:], wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


class Result(NamedTuple):
    """One contender: files, its timed part (wall and CPU s), its whole process (wall and CPU s), peak RSS MiB."""

    files: int
    call_s: float
    call_cpu: float
    process_s: float
    process_cpu: float
    rss_mib: float


def _run(code: str, *args: str) -> Result:
    out = subprocess.run([sys.executable, "-c", _FRESH, code, *args], check=True, capture_output=True, text=True).stdout
    n, call_s, call_cpu, process_s, process_cpu, rss_kib = out.split()
    return Result(int(n), float(call_s), float(call_cpu), float(process_s), float(process_cpu), int(rss_kib) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header", choices=sorted(TARGETS), default="real", help="the corpus GE CT header or a small one")
    parser.add_argument("--files", type=int, default=None, help="files in the tree [20,000 real, 6,000 small]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the tree (default: a temp folder)")
    args = parser.parse_args()
    files = args.files or DEFAULT_FILES[args.header]
    target = TARGETS[args.header]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "tree"
        if not root.exists():
            t = time.perf_counter()
            write_tree(root, files, args.header)
            print(f"wrote {files} files in {time.perf_counter() - t:.1f} s to {root}")
        out = Path(tmp) / "manifest"
        table.compile_dicomml()
        results = {
            "pydicom loop": _run(_PLAIN, str(root)),
            "dicomml index": _run(_DICOMML, str(root), str(out), str(args.workers)),
            "dicomml rerun": _run(_DICOMML, str(root), str(out), str(args.workers)),
            "CLI rerun": _run(_CLI, str(root), str(out), str(args.workers)),
            "index, warm": _run(_WARM, str(root), str(Path(tmp) / "warm"), str(args.workers)),
        }
    loop, first, rerun, cli, warm = (results[k] for k in ("pydicom loop", "dicomml index", "dicomml rerun", "CLI rerun", "index, warm"))
    files = loop.files
    print(f"{'contender':<16}{'files':>8}{'process s':>11}{'call s':>9}{'process CPU s':>15}{'call CPU s':>12}{'peak RSS MiB':>14}")
    for name, r in results.items():
        print(f"{name:<16}{r.files:>8}{r.process_s:>11.3f}{r.call_s:>9.3f}{r.process_cpu:>15.2f}{r.call_cpu:>12.2f}{r.rss_mib:>14.0f}")
    print(f"index vs plain loop, whole processes (wall): {loop.process_s / first.process_s:.2f}x (target >= {target}x on 2 cores)")
    print(f"index vs plain loop, timed parts (wall): {loop.call_s / first.call_s:.2f}x")
    print(f"index vs plain loop, libraries imported before both timed parts (wall): {loop.call_s / warm.call_s:.2f}x")
    print(f"index vs plain loop, whole processes (CPU per file): {loop.process_cpu / first.process_cpu:.2f}x less CPU per file")
    print(f"rerun vs first index, calls (wall): {first.call_s / rerun.call_s:.1f}x faster (target >= 50x)")
    print(f"CLI rerun, whole process (wall): {cli.process_s:.3f} s")
    print(json.dumps({k: v._asdict() for k, v in results.items()}))
    rows = (
        ("`pydicom.dcmread(stop_before_pixels=True)` loop script, 1 process", "process", loop, ("1.00x", "")),
        (
            f"`dicomml.index(workers={args.workers})` script, first run",
            "process",
            first,
            table.ratio(loop.process_s / first.process_s, target, of="the loop"),
        ),
        ("the loop alone (pydicom imported, files listed)", "call", loop, ("1.00x", "")),
        (
            "`dicomml.index`, first run, its libraries imported",
            "call",
            warm,
            table.ratio(loop.call_s / warm.call_s, of="the loop alone"),
        ),
        ("`dicomml.index`, first run", "call", first, ("1.00x", "")),
        ("`dicomml.index`, rerun on the unchanged tree", "call", rerun, table.ratio(first.call_s / rerun.call_s, 50, of="the first call")),
        ("`dicomml index` CLI rerun", "process", cli, table.ratio(first.call_s / cli.process_s, of="the first call")),
    )
    table.print_table(
        f"Indexing {files:,} {args.header} headers",
        ("contender", "timed", "wall s", "files/s", "speed-up", "target", "CPU ms/file", "peak RSS MiB"),
        [
            (
                label,
                "interpreter start to exit" if timed == "process" else "the call",
                f"{(r.process_s if timed == 'process' else r.call_s):.3f}",
                f"{files / (r.process_s if timed == 'process' else r.call_s):,.0f}",
                *cells,
                f"{1000 * (r.process_cpu if timed == 'process' else r.call_cpu) / files:.3f}",
                f"{r.rss_mib:.0f}",
            )
            for label, timed, r, cells in rows
        ],
    )


if __name__ == "__main__":
    main()

"""Benchmark: `dicomml index` against a plain pydicom loop, on one synthetic CT tree.

Writes a tree of N files (default 20,000): the header of a real GE CT slice
from the corpus (211 elements, private groups included) with new UIDs,
positions and a 32x32 image, in series of 200; then runs each
contender in a fresh subprocess and prints files/s, the ratio to the plain
loop, and the peak RSS of each (largest process, from ``getrusage`` of the
children). Contenders:

- ``pydicom loop``: ``pydicom.dcmread(path, stop_before_pixels=True)`` on every
  file, one process (the baseline of issue 2);
- ``dicomml index``: ``dicomml.index(tree, out, workers=W)``;
- ``dicomml rerun``: the same call again on the unchanged tree;
- ``CLI rerun``: ``dicomml index TREE -o OUT`` once more, timed from outside,
  interpreter start and imports included (reported apart; the 50x target is
  for the Python call).

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


# Each child prints: files, wall seconds, CPU seconds (its own and its workers') of the timed part.
_CPU = """
import resource
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
"""

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

_DICOMML = (
    _CPU
    + """
import sys, time, dicomml, dicomml.indexer  # imports outside the timing, as pydicom's are
c, t = cpu(), time.perf_counter()
m = dicomml.index(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), salt="bench", progress=False)
print(m.meta["counts"]["instances"], time.perf_counter() - t, cpu() - c)
"""
)


# The console command, timed whole from its parent: interpreter start, imports, the run.
_CLI = (
    _CPU
    + """
import subprocess, sys, time
c, t = cpu(), time.perf_counter()
argv = [sys.executable, "-c", "from dicomml.cli.main import main; main()", "index", sys.argv[1], "-o", sys.argv[2]]
subprocess.run([*argv, "--salt", "bench", "--quiet", "--workers", sys.argv[3]], check=True, capture_output=True)
print(0, time.perf_counter() - t, cpu() - c)
"""
)


# Runs one contender as its child and prints the peak RSS of its whole process tree, so
# each contender's figure is its own (RUSAGE_CHILDREN is a running maximum per process).
_FRESH = """
import resource, subprocess, sys
out = subprocess.run([sys.executable, "-c", *sys.argv[1:]], check=True, capture_output=True, text=True).stdout
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(out.split()[-3], out.split()[-2], out.split()[-1], usage.ru_maxrss)
"""


def _run(code: str, *args: str) -> tuple[int, float, float, float]:
    """(files, wall seconds of the call, CPU seconds of the call in all its processes, peak RSS MiB)."""
    out = subprocess.run([sys.executable, "-c", _FRESH, code, *args], check=True, capture_output=True, text=True).stdout
    n, seconds, cpu, rss_kib = out.split()
    return int(n), float(seconds), float(cpu), int(rss_kib) / 1024


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
        results = {
            "pydicom loop": _run(_PLAIN, str(root)),
            "dicomml index": _run(_DICOMML, str(root), str(out), str(args.workers)),
            "dicomml rerun": _run(_DICOMML, str(root), str(out), str(args.workers)),
            "CLI rerun": _run(_CLI, str(root), str(out), str(args.workers)),
        }
    results["CLI rerun"] = (results["dicomml rerun"][0], *results["CLI rerun"][1:])
    base_files, base_s, base_cpu, _ = results["pydicom loop"]
    print(f"{'contender':<16}{'files':>8}{'wall s':>9}{'files/s':>10}{'vs loop':>9}{'CPU s':>8}{'CPU ms/file':>13}{'peak RSS MiB':>14}")
    for name, (n, seconds, cpu, rss) in results.items():
        print(
            f"{name:<16}{n:>8}{seconds:>9.3f}{base_files / seconds:>10.0f}{base_s / seconds:>8.2f}x"
            f"{cpu:>8.2f}{1000 * cpu / base_files:>13.3f}{rss:>14.0f}"
        )
    _, first, first_cpu, _ = results["dicomml index"]
    rerun = results["dicomml rerun"][1]
    print(f"index vs plain loop (wall): {base_s / first:.2f}x (target >= {target}x on 2 cores)")
    print(f"index vs plain loop (CPU per file): {base_cpu / first_cpu:.2f}x less CPU per file")
    print(f"rerun vs first index (wall): {first / rerun:.1f}x faster (target >= 50x)")
    print(
        f"CLI rerun, interpreter start included (wall): {results['CLI rerun'][1]:.3f} s, {first / results['CLI rerun'][1]:.1f}x faster than the first index"
    )
    print(json.dumps({k: {"wall_s": v[1], "cpu_s": v[2], "peak_rss_mib": round(v[3])} for k, v in results.items()}))
    speedups = (
        ("`pydicom.dcmread(stop_before_pixels=True)` loop, 1 process", "pydicom loop", ("1.00x", "")),
        (f"`dicomml.index(workers={args.workers})`, first run", "dicomml index", table.ratio(base_s / first, target, of="the loop")),
        ("`dicomml.index`, rerun on the unchanged tree", "dicomml rerun", table.ratio(first / rerun, 50, of="the first index")),
        (
            "`dicomml index` CLI rerun, interpreter start included",
            "CLI rerun",
            table.ratio(first / results["CLI rerun"][1], of="the first index"),
        ),
    )
    table.print_table(
        f"Indexing {base_files:,} {args.header} headers",
        ("contender", "wall s", "files/s", "speed-up", "target", "CPU ms/file", "peak RSS MiB"),
        [
            (
                label,
                f"{results[key][1]:.3f}",
                f"{base_files / results[key][1]:,.0f}",
                *cells,
                f"{1000 * results[key][2] / base_files:.3f}",
                f"{results[key][3]:.0f}",
            )
            for label, key, cells in speedups
        ],
    )


if __name__ == "__main__":
    main()

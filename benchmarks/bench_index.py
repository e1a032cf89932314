"""Benchmark: `dicomml index` against a plain pydicom loop, on one synthetic CT tree.

Writes a tree of N files (default 20,000; realistic CT headers of ~130
elements with private tags and sequences, small pixel data), then runs each
contender in a fresh subprocess and prints files/s, the ratio to the plain
loop, and the peak RSS of each (largest process, from ``getrusage`` of the
children). Contenders:

- ``pydicom loop``: ``pydicom.dcmread(path, stop_before_pixels=True)`` on every
  file, one process (the baseline of issue 2);
- ``dicomml index``: ``dicomml.index(tree, out, workers=W)``;
- ``dicomml rerun``: the same call again on the unchanged tree.

Usage: ``python benchmarks/bench_index.py [--files N] [--workers W] [--dir DIR]``
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
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SLICES_PER_SERIES = 200


def _template() -> Dataset:
    """A CT header with the modules and private groups a scanner writes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240101", "101010.123"
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101010.123"
    ds.AccessionNumber = "ACC123456"
    ds.Modality = "CT"
    ds.Manufacturer = "SIEMENS"
    ds.InstitutionName = "Example Hospital"
    ds.InstitutionAddress = "1 Example Street, Example City"
    ds.ReferringPhysicianName = "Doe^Jane"
    ds.StationName = "CTAWP00001"
    ds.StudyDescription = "CT CHEST WITH CONTRAST"
    ds.ProcedureCodeSequence = Sequence([Dataset()])
    ds.ProcedureCodeSequence[0].CodeValue = "CTCHEST"
    ds.ProcedureCodeSequence[0].CodingSchemeDesignator = "L"
    ds.ProcedureCodeSequence[0].CodeMeaning = "CT Chest"
    ds.SeriesDescription = "Thorax 1.0 B31f"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PerformingPhysicianName = "Roe^Richard"
    ds.OperatorsName = "Tech^One"
    ds.ManufacturerModelName = "SOMATOM Definition AS+"
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = CTImageStorage
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = generate_uid()
    ds.DerivationDescription = ""
    ds.PatientName = "Example^Patient"
    ds.PatientID = "PID000001"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.PatientAge = "064Y"
    ds.PatientSize, ds.PatientWeight = "1.70", "65"
    ds.ContrastBolusAgent = "IOMERON 400"
    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL_CT"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.DeviceSerialNumber = "12345"
    ds.SoftwareVersions = "syngo CT 2012B"
    ds.ProtocolName = "Thorax_Routine"
    ds.ReconstructionDiameter = "350"
    ds.DistanceSourceToDetector, ds.DistanceSourceToPatient = "1085.6", "595"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime, ds.XRayTubeCurrent, ds.Exposure = "500", "200", "100"
    ds.FilterType = "FLAT"
    ds.GeneratorPower = "24"
    ds.FocalSpots = "1.2"
    ds.ConvolutionKernel = "B31f"
    ds.PatientPosition = "HFS"
    ds.SingleCollimationWidth, ds.TotalCollimationWidth = 0.6, 38.4
    ds.TableSpeed, ds.TableFeedPerRotation, ds.SpiralPitchFactor = 46.0, 46.0, 1.2
    ds.ExposureModulationType = "XYZ_EC"
    ds.CTDIvol = 8.5
    ds.StudyID = "1"
    ds.SeriesNumber = "2"
    ds.AcquisitionNumber = "2"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = "0"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 32
    ds.PixelSpacing = [0.683594, 0.683594]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1200"]
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenterWidthExplanation = ["WINDOW1", "WINDOW2"]
    ds.RequestedProcedureDescription = "CT CHEST"
    ds.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True).add_new(0x10, "DS", "1.0")
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x08, "CS", "IMAGE NUM 4")
    block.add_new(0x10, "OB", bytes(3000))
    ds.private_block(0x0029, "SIEMENS MEDCOM HEADER2", create=True).add_new(0x60, "LO", "COMPRESSION SIEMENS")
    return ds


def write_tree(root: Path, n_files: int) -> None:
    """``n_files`` CT slices in series of 200, one folder per series."""
    template = _template()
    pixels = np.zeros((32, 32), np.uint16).tobytes()
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
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
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

_PLAIN = _CPU + """
import os, sys, time, pydicom
paths = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
c, t = cpu(), time.perf_counter()
for p in paths:
    pydicom.dcmread(p, stop_before_pixels=True)
print(len(paths), time.perf_counter() - t, cpu() - c)
"""

_DICOMML = _CPU + """
import sys, time, dicomml, dicomml.index  # imports outside the timing, as pydicom's are
c, t = cpu(), time.perf_counter()
m = dicomml.index(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), salt="bench", progress=False)
print(m.meta["counts"]["instances"], time.perf_counter() - t, cpu() - c)
"""


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
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the tree (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "tree"
        if not root.exists():
            t = time.perf_counter()
            write_tree(root, args.files)
            print(f"wrote {args.files} files in {time.perf_counter() - t:.1f} s to {root}")
        out = Path(tmp) / "manifest"
        results = {
            "pydicom loop": _run(_PLAIN, str(root)),
            "dicomml index": _run(_DICOMML, str(root), str(out), str(args.workers)),
            "dicomml rerun": _run(_DICOMML, str(root), str(out), str(args.workers)),
        }
    base_files, base_s, base_cpu, _ = results["pydicom loop"]
    print(f"{'contender':<16}{'files':>8}{'wall s':>9}{'files/s':>10}{'vs loop':>9}{'CPU s':>8}{'CPU ms/file':>13}{'peak RSS MiB':>14}")
    for name, (n, seconds, cpu, rss) in results.items():
        print(
            f"{name:<16}{n:>8}{seconds:>9.3f}{base_files / seconds:>10.0f}{base_s / seconds:>8.2f}x"
            f"{cpu:>8.2f}{1000 * cpu / base_files:>13.3f}{rss:>14.0f}"
        )
    _, first, first_cpu, _ = results["dicomml index"]
    rerun = results["dicomml rerun"][1]
    print(f"index vs plain loop (wall): {base_s / first:.2f}x (target >= 2.5x on 2 cores)")
    print(f"index vs plain loop (CPU per file): {base_cpu / first_cpu:.2f}x less CPU per file")
    print(f"rerun vs first index (wall): {first / rerun:.1f}x faster (target >= 50x)")
    print(json.dumps({k: {"wall_s": v[1], "cpu_s": v[2], "peak_rss_mib": round(v[3])} for k, v in results.items()}))


if __name__ == "__main__":
    main()

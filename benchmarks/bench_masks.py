"""Benchmark: a 100-segment DICOM SEG on a 512x512x300 CT decoded to a label map.

dicomml (``seg_to_grid`` onto the CT's grid) against highdicom's own volume
decoding (``segread(...).get_volume(combine_segments=True)``), in one run, on
the same file. Each contender runs in a fresh subprocess, which reports its
seconds and its own peak RSS; the parent checks that both label
maps are the same voxels on the same grid (after nibabel's axis alignment).

The synthetic data (CT headers and pixels with pydicom, the SEG with
highdicom: 100 non-overlapping ellipsoids, BINARY, empty frames omitted) is
written once into ``--workdir`` and reused.

Usage::

    python benchmarks/bench_masks.py                 # 512x512x300, 100 segments
    python benchmarks/bench_masks.py --size 128 --slices 60 --segments 20   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import table


def _ellipsoids(shape: tuple[int, int, int], count: int, seed: int) -> np.ndarray:
    """A label map of ``count`` non-overlapping random ellipsoids (labels 1..count)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    scale = min(shape[1], shape[2]) / 512
    placed = 0
    while placed < count:
        radii = rng.uniform([4, 8 * scale, 8 * scale], [min(20, shape[0] / 4), 40 * scale, 40 * scale])
        centre = rng.uniform(radii, np.array(shape) - radii)
        lo = np.maximum(np.floor(centre - radii).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radii).astype(int) + 1, shape)
        grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        box = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        if np.any(box[inside]):
            continue
        placed += 1
        box[inside] = placed
    return labels


def prepare(workdir: Path, size: int, slices: int, segments: int) -> tuple[Path, list[Path]]:
    """Write (or reuse) the CT series and the SEG; return the SEG path and the CT files."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from dicomml.dicom.synthetic import write_series

    folder = workdir / f"ct_{size}x{size}x{slices}_{segments}seg"
    seg_path = folder / "seg.dcm"
    ct_folder = folder / "ct"
    if seg_path.is_file():
        return seg_path, sorted(ct_folder.glob("*.dcm"))
    pixels = np.zeros((slices, size, size), np.int16)
    extra = {
        "PatientName": "Bench^Masks", "PatientBirthDate": "19700101", "PatientSex": "O", "StudyID": "1",
        "StudyDate": "20260101", "StudyTime": "120000", "AccessionNumber": "1", "ReferringPhysicianName": "",
        "SeriesNumber": 1, "Manufacturer": "dicomml bench",
    }
    spacing = 0.7 * 512 / size
    uid = f"2.25.{np.random.default_rng(size * slices + segments).integers(10**17, 10**18)}"  # short: +".1" fits
    ct = write_series(ct_folder, pixels, spacing=1.0, pixel_spacing=(spacing, spacing), series_uid=uid, extra=extra)
    labels = _ellipsoids((slices, size, size), segments, seed=0)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]  # position order = labels' slice order
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=f"structure {i}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i in range(1, segments + 1)
    ]
    started = time.perf_counter()
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="dicomml bench",
        manufacturer_model_name="bench_masks",
        software_versions="0",
        device_serial_number="0",
    )
    seg.save_as(seg_path)
    print(f"wrote {seg_path} ({int(seg.NumberOfFrames)} frames, {seg_path.stat().st_size / 1e6:.0f} MB) "
          f"with highdicom in {time.perf_counter() - started:.1f} s", flush=True)
    return seg_path, ct


def reference_grid(ct: list[Path]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The CT's grid (affine to RAS+ mm, (slice, row, column) shape) from its headers."""
    import pydicom

    from dicomml.geometry import analyze_stack, dicom_affine

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    affine = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing,
                          positions[stack.order[0]], stack.step)
    return affine, (stack.n_positions, int(headers[0].Rows), int(headers[0].Columns))


def run_contender(name: str, seg_path: Path, grid: Path, out: Path) -> None:
    """Child process: decode, time it (imports excluded), save the label map and its affine."""
    import highdicom as hd

    from dicomml.geometry import LPS_TO_RAS
    from dicomml.seg import seg_to_grid
    from dicomml.volume import Volume

    saved = np.load(grid)
    reference = Volume(np.broadcast_to(np.int16(0), tuple(int(s) for s in saved["shape"])), saved["affine"])
    started = time.perf_counter()
    if name == "dicomml":
        mask = seg_to_grid(seg_path, reference)
        array, affine = mask.array, mask.affine
    else:
        volume = hd.seg.segread(seg_path).get_volume(combine_segments=True)
        array, affine = volume.array, LPS_TO_RAS @ volume.affine
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this fresh process only (KiB on Linux)
    np.savez(out, array=array, affine=affine)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


def _child(name: str, seg_path: Path, grid: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--contender", name, "--seg", str(seg_path), "--grid", str(grid), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_voxels(ours: np.ndarray, affine: np.ndarray, theirs: np.ndarray, their_affine: np.ndarray) -> bool:
    """Whether highdicom's volume (the SEG's extent, its axis order) holds our labels where it lies on our grid."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    turn = ornt_transform(io_orientation(their_affine), io_orientation(affine))
    aligned = apply_orientation(theirs, turn)
    aligned_affine = their_affine @ inv_ornt_aff(turn, theirs.shape)
    start = np.linalg.solve(affine, aligned_affine[:, 3])[:3]
    if not np.allclose(aligned_affine[:3, :3], affine[:3, :3], atol=1e-4) or not np.allclose(start, np.rint(start), atol=1e-3):
        return False
    lo = np.rint(start).astype(int)
    window = tuple(slice(a, a + n) for a, n in zip(lo, aligned.shape))
    return bool(np.array_equal(ours[window], aligned) and np.count_nonzero(ours) == np.count_nonzero(aligned))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--segments", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender (best time reported)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dicomml-bench-masks")
    parser.add_argument("--contender", choices=["dicomml", "highdicom"], help=argparse.SUPPRESS)
    parser.add_argument("--seg", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--grid", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        run_contender(args.contender, args.seg, args.grid, args.out)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    seg_path, ct = prepare(args.workdir, args.size, args.slices, args.segments)
    affine, shape = reference_grid(ct)
    grid = args.workdir / "grid.npz"
    np.savez(grid, affine=affine, shape=np.array(shape))
    results = {}
    for name in ["highdicom", "dicomml"]:
        runs = [_child(name, seg_path, grid, args.workdir / f"{name}.npz") for _ in range(args.repeat)]
        results[name] = {"seconds": min(r["seconds"] for r in runs), "peak_rss_mb": runs[-1]["peak_rss_mb"]}
        print(f"{name:10s} {results[name]['seconds']:7.2f} s   peak RSS {results[name]['peak_rss_mb']:7.0f} MB",
              flush=True)
    ours, theirs = np.load(args.workdir / "dicomml.npz"), np.load(args.workdir / "highdicom.npz")
    same = _same_voxels(ours["array"], ours["affine"], theirs["array"], theirs["affine"])
    print(f"label maps {'identical' if same else 'DIFFER'} on the CT grid {shape}; "
          f"{int(np.count_nonzero(ours['array']))} labelled voxels, {len(np.unique(ours['array'])) - 1} segments")
    ratio = results["highdicom"]["seconds"] / results["dicomml"]["seconds"]
    print(f"ratio highdicom/dicomml: {ratio:.2f}x  (target: dicomml <= 10 s and no slower than highdicom)")
    ours_s = results["dicomml"]["seconds"]
    table.print_table(
        f"Decoding a BINARY SEG of {args.segments} segments to a label map on a {args.size}x{args.size}x{args.slices} CT "
        f"(best of {args.repeat}; label maps {'identical' if same else 'DIFFER'})",
        ("contender", "seconds", "peak RSS MB", "highdicom / dicomml", "target"),
        [
            ("dicomml `load_mask` core (`seg_to_grid`)", f"{ours_s:.2f}", f"{results['dicomml']['peak_rss_mb']:.0f}", "1.00x",
             f"<= 10 s: {'met' if ours_s <= 10 else 'MISSED'}"),
            ("highdicom `segread(...).get_volume(combine_segments=True)`", f"{results['highdicom']['seconds']:.2f}",
             f"{results['highdicom']['peak_rss_mb']:.0f}", *table.ratio(ratio, 1.0)),
        ],
    )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Benchmark: 100 segments on a 512x512x300 CT, decoded, written and rasterized.

Three contests, in one run, on the same data:

- **decode**: a 100-segment DICOM SEG to a label map; dicomml (``seg_to_grid``
  onto the CT's grid) against highdicom's own volume decoding
  (``segread(...).get_volume(combine_segments=True)``); target >= 2x.
- **write**: the same label map to a BINARY SEG; ``dicomml.write_seg`` against
  highdicom's ``Segmentation`` called directly on the same array and headers
  (both read the CT headers and save the file; neither passes ``workers``,
  which only parallelizes compression); target >= 1x.
- **rtstruct**: an RTSTRUCT of the same 100 structures rasterized onto the CT;
  dicomml's ``rtstruct_to_grid`` against rt-utils' ``get_roi_mask_by_name``
  for every ROI (rt-utils' series loading is timed apart); target >= 3x.

Each contender runs in a fresh subprocess, which reports its seconds and its
own peak RSS; the parent checks that the outputs agree (same label-map
voxels; the two SEGs decode to the same masks; the rasterized masks agree
with Dice >= 0.97 per ROI).

The synthetic data (CT headers and pixels with pydicom, the SEG with
highdicom: 100 non-overlapping ellipsoids, BINARY, empty frames omitted; the
RTSTRUCT with dicomml) is written once into ``--workdir`` and reused.

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


def _descriptions(segments: int) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=f"structure {i}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i in range(1, segments + 1)
    ]


def prepare(workdir: Path, size: int, slices: int, segments: int) -> tuple[Path, list[Path]]:
    """Write (or reuse) the CT series, the SEG, the label map and the RTSTRUCT; return the SEG path and the CT files."""
    import highdicom as hd
    import pydicom

    from dicomml.dicom.synthetic import write_series

    folder = workdir / f"ct_{size}x{size}x{slices}_{segments}seg"
    seg_path = folder / "seg.dcm"
    ct_folder = folder / "ct"
    if (folder / "rtstruct.dcm").is_file():
        return seg_path, sorted(ct_folder.glob("*.dcm"))
    pixels = np.zeros((slices, size, size), np.int16)
    extra = {
        "PatientName": "Bench^Masks",
        "PatientBirthDate": "19700101",
        "PatientSex": "O",
        "StudyID": "1",
        "StudyDate": "20260101",
        "StudyTime": "120000",
        "AccessionNumber": "1",
        "ReferringPhysicianName": "",
        "SeriesNumber": 1,
        "Manufacturer": "dicomml bench",
    }
    spacing = 0.7 * 512 / size
    uid = f"2.25.{np.random.default_rng(size * slices + segments).integers(10**17, 10**18)}"  # short: +".1" fits
    ct = write_series(ct_folder, pixels, spacing=1.0, pixel_spacing=(spacing, spacing), series_uid=uid, extra=extra)
    labels = _ellipsoids((slices, size, size), segments, seed=0)
    np.save(folder / "labels.npy", labels)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]  # position order = labels' slice order
    descriptions = _descriptions(segments)
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
    print(
        f"wrote {seg_path} ({int(seg.NumberOfFrames)} frames, {seg_path.stat().st_size / 1e6:.0f} MB) "
        f"with highdicom in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    import dicomml

    affine, _ = reference_grid(ct)
    started = time.perf_counter()
    names = {f"structure {i}": i for i in range(1, segments + 1)}
    dicomml.write_rtstruct(labels, ct, names, folder / "rtstruct.dcm", affine=affine)
    print(f"wrote {folder / 'rtstruct.dcm'} with dicomml in {time.perf_counter() - started:.1f} s", flush=True)
    return seg_path, ct


def reference_grid(ct: list[Path]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The CT's grid (affine to RAS+ mm, (slice, row, column) shape) from its headers."""
    import pydicom

    from dicomml.geometry import analyze_stack, dicom_affine

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=float)
    stack = analyze_stack(positions, headers[0].ImageOrientationPatient)
    affine = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing, positions[stack.order[0]], stack.step)
    return affine, (stack.n_positions, int(headers[0].Rows), int(headers[0].Columns))


def run_contender(name: str, seg_path: Path, grid: Path, out: Path) -> None:
    """Child process: run one contender, time it (imports excluded), save what the parent checks."""
    import highdicom as hd
    import pydicom

    from dicomml.geometry import LPS_TO_RAS
    from dicomml.seg import rtstruct_to_grid, seg_to_grid, write_seg  # imported here, not in the timed part
    from dicomml.volume import Volume

    saved = np.load(grid)
    reference = Volume(np.broadcast_to(np.int16(0), tuple(int(s) for s in saved["shape"])), saved["affine"])
    folder = seg_path.parent
    ct = sorted((folder / "ct").glob("*.dcm"))
    extra: dict[str, float] = {}
    result: dict[str, np.ndarray] = {}
    task, contender = name.split(":")
    if task == "write":
        labels = np.load(folder / "labels.npy")
        count = int(labels.max())
    started = time.perf_counter()
    if name == "decode:dicomml":
        mask = seg_to_grid(seg_path, reference)
        result = {"array": mask.array, "affine": mask.affine}
    elif name == "decode:highdicom":
        volume = hd.seg.segread(seg_path).get_volume(combine_segments=True)
        result = {"array": volume.array, "affine": LPS_TO_RAS @ volume.affine}
    elif name == "write:dicomml":
        names = {f"structure {i}": i for i in range(1, count + 1)}
        write_seg(labels, ct, names, out.with_suffix(".dcm"), affine=saved["affine"])
    elif name == "write:highdicom":
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]
        sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # the label map's slice order
        hd.seg.Segmentation(
            source_images=sources,
            pixel_array=labels,
            segmentation_type="BINARY",
            segment_descriptions=_descriptions(count),
            series_instance_uid=hd.UID(),
            series_number=2,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="dicomml bench",
            manufacturer_model_name="bench_masks",
            software_versions="0",
            device_serial_number="0",
        ).save_as(out.with_suffix(".dcm"))
    elif name == "rtstruct:dicomml":
        result = {"array": rtstruct_to_grid(folder / "rtstruct.dcm", reference).array}  # the ROIs do not overlap
    else:
        from rt_utils import RTStructBuilder

        rt = RTStructBuilder.create_from(str(folder / "ct"), str(folder / "rtstruct.dcm"))
        extra["load_seconds"] = time.perf_counter() - started
        order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in rt.series_data])
        labels = np.zeros(reference.spatial_shape, np.uint8)
        spent = 0.0
        for number, roi in enumerate(rt.get_roi_names(), start=1):
            started = time.perf_counter()
            mask = rt.get_roi_mask_by_name(roi)
            spent += time.perf_counter() - started
            labels[np.moveaxis(mask, -1, 0)[order]] = number  # into one label map, untimed: 100 masks would not fit
        result = {"array": labels}
        started = time.perf_counter() - spent
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this fresh process only (KiB on Linux)
    if result:
        np.savez(out, **result)
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, **extra}))


def _child(name: str, seg_path: Path, grid: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--contender", name, "--seg", str(seg_path), "--grid", str(grid), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
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
    parser.add_argument(
        "--tasks", default="decode,write,rtstruct", help="contests to run (the others' last outputs in --workdir are still checked)"
    )
    parser.add_argument("--contender", help=argparse.SUPPRESS)
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
    contests = {"decode": ("highdicom", "dicomml"), "write": ("highdicom", "dicomml"), "rtstruct": ("rt-utils", "dicomml")}
    results: dict[str, dict[str, float]] = {}
    for task, contenders in contests.items():
        if task not in args.tasks.split(","):
            continue
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.repeat):  # contenders alternate, so a change in the machine's load hits both
            for contender in contenders:
                name = f"{task}:{contender}"
                runs.setdefault(name, []).append(_child(name, seg_path, grid, args.workdir / name.replace(":", "_")))
                print(f"{name:18s} {runs[name][-1]['seconds']:7.2f} s   peak RSS {runs[name][-1]['peak_rss_mb']:7.0f} MB", flush=True)
        for name, done in runs.items():
            results[name] = {**done[-1], "seconds": min(r["seconds"] for r in done)}
    ok = _check(args.workdir, shape)
    rows = []
    targets = {"decode": 2.0, "write": 1.0, "rtstruct": 3.0}
    for task, (peer, _) in contests.items():
        if f"{task}:{peer}" in results:
            theirs, ours_s = results[f"{task}:{peer}"]["seconds"], results[f"{task}:dicomml"]["seconds"]
            rows.append((task, peer, f"{theirs:.2f}", f"{ours_s:.2f}", *table.ratio(theirs / ours_s, targets[task])))
    load = results.get("rtstruct:rt-utils", {}).get("load_seconds", float("nan"))
    table.print_table(
        f"{args.segments} segments on a {args.size}x{args.size}x{args.slices} CT: decode, write, RTSTRUCT rasterization "
        f"(best of {args.repeat}; outputs {'agree' if ok else 'DIFFER'}; rt-utils' series loading, not counted: {load:.2f} s)",
        ("task", "peer", "peer s", "dicomml s", "peer / dicomml", "target"),
        rows,
    )
    if not ok:
        sys.exit(1)


def _check(workdir: Path, shape: tuple[int, int, int]) -> bool:
    """Whether every pair of contenders gave the same result; prints what it checked."""
    import highdicom as hd

    ours, theirs = np.load(workdir / "decode_dicomml.npz"), np.load(workdir / "decode_highdicom.npz")
    same = _same_voxels(ours["array"], ours["affine"], theirs["array"], theirs["affine"])
    print(
        f"decode: label maps {'identical' if same else 'DIFFER'} on the CT grid {shape}; "
        f"{int(np.count_nonzero(ours['array']))} labelled voxels, {len(np.unique(ours['array'])) - 1} segments"
    )
    a, b = hd.seg.segread(workdir / "write_dicomml.dcm"), hd.seg.segread(workdir / "write_highdicom.dcm")
    written = bool(np.array_equal(a.get_volume(combine_segments=True).array, b.get_volume(combine_segments=True).array))
    print(f"write: the two SEGs decode to {'the same' if written else 'DIFFERENT'} label maps")
    ours, theirs = np.load(workdir / "rtstruct_dicomml.npz")["array"], np.load(workdir / "rtstruct_rt-utils.npz")["array"]
    count = int(max(ours.max(), theirs.max())) + 1
    both = np.bincount(ours.ravel()[ours.ravel() == theirs.ravel()], minlength=count)[1:]
    overlap = 2 * both / np.maximum(np.bincount(ours.ravel(), minlength=count)[1:] + np.bincount(theirs.ravel(), minlength=count)[1:], 1)
    print(f"rtstruct: Dice per ROI between the rasterizers: min {overlap.min():.4f}, mean {overlap.mean():.4f}")
    return same and written and bool(overlap.min() >= 0.97)


if __name__ == "__main__":
    main()

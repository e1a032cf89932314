"""2D images into 512x512 letterboxed float tensors: dicomml vs a plain pydicom loop and MONAI (issue 21).

One run, same data: a cohort of DX radiographs (uncompressed uint16, 12 bits
stored, a window in the header) and JPEG 2000 lossless mammograms, written
with pydicom and indexed. Lossless encoding of a 5000x4000 image is the slow
part of writing, so ``--distinct-mg`` (10) mammograms are encoded and the
other files repeat their codestreams, each file with its own UIDs, instance
number, laterality and view: every file is still read and decoded whole by
every contender, and no contender caches across files. Contenders, image by
image in rotating order, DX and MG spread evenly through the epoch (so load
changes on the shared machine and the page cache hit them alike):

- plain loop: ``dcmread`` + ``apply_modality_lut`` + ``apply_voi_lut``, scaled
  to [0, 1], area-resized and padded to 512x512 with torch;
- MONAI: ``LoadImage(PydicomReader)`` + ``EnsureChannelFirst`` +
  ``Resize(512, size_mode="longest", mode="area")`` + ``SpatialPad(512)``
  (rescale only: MONAI applies no VOI LUT);
- dicomml first epoch: ``ImageDataset`` over the manifest with an empty cache
  (computes and writes every entry), exact decode; and the same with
  ``reduced_decode=True`` (JPEG 2000 decoded at a coarser wavelet level);
- dicomml first epoch as a user runs it: a ``DataLoader`` with
  ``--workers`` worker processes (2 by default) over another empty cache,
  exact decode, timed in wall time after the interleaved phase. This row is
  N PROCESSES AGAINST THE SEQUENTIAL plain loop (whose wall rate from the
  interleaved phase it is divided by): it measures what a user's first epoch
  takes, not the work per core (the CPU columns do that);
- cached epoch: ``ImageDataset(cache_only=True)`` vs an ``np.load`` floor of
  the same float32 arrays saved as .npy, image by image in rotating order;
  the median of the rounds' rates. The Dataset is the one whose first pass
  over the full cache wrote the floor's arrays, so each round is a later
  epoch of one Dataset, as a training loop keeps it (it remembers the entries
  it opened and reads no publish marker again). Also timed, without a
  target: a new Dataset per round, an epoch that reads every entry's marker
  (a fresh process, or DataLoader workers that are not persistent).

Targets: first epoch >= 2x the plain loop; cached epoch >= 1x the np.load floor.
Every contender runs as it does by default in one process: torch with its
default intra-op threads (the cores), pydicom's default JPEG 2000 plugin
(GDCM, which the plain loop and MONAI's reader use) decoding a frame on
several threads, and dicomml decoding a grey JPEG 2000 frame with
imagecodecs' OpenJPEG on torch's intra-op thread count (dicomml skips GDCM,
which aborts the process on some corrupt codestreams). The interleaved
first-epoch rates are given in wall time and in process CPU time: CPU
seconds per image measure the work itself, wall time also holds the extra
cores and, on a shared machine, the waits for one. ``--skip`` leaves rows
out (``reduced_decode``, ``loader``) to fit a full-size run in time.

Usage::

    python benchmarks/bench_2d.py --workdir /tmp/b2d --progress 100   # issue size: 2000 DX + 300 MG (~35 GB, about an hour)
    python benchmarks/bench_2d.py --dx 40 --mg 6                        # a few minutes
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SIZE = (512, 512)


def _content(rows: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth body-like field of 12-bit values with an elliptic denser region."""
    y, x = np.mgrid[:rows, :columns].astype(np.float32)
    y /= rows
    x /= columns
    base = 1500 + 800 * np.sin(3 * x) * np.cos(2 * y) + 1200 * (((x - 0.3) ** 2 + (y - 0.5) ** 2) < 0.15)
    return base + rng.normal(0, 25, base.shape).astype(np.float32)


def write_cohort(folder: Path, n_dx: int, n_mg: int, dx_shape: tuple[int, int], mg_shape: tuple[int, int], distinct_mg: int = 10) -> None:
    """Write the cohort: every DX its own pixels; the mammograms ``distinct_mg`` encoded images (lossless
    encoding is the slow part of writing), each later file a copy of one of their codestreams with its own
    UIDs, instance number, laterality and view (every file is still read and decoded whole)."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless, generate_uid

    from dicomml.imaging2d.synthetic import write_image2d

    rng = np.random.default_rng(0)
    dx = _content(*dx_shape, rng)
    for i in range(n_dx):
        pixels = np.roll(dx, (i * 37) % dx_shape[0], axis=0).clip(0, 4095).astype(np.uint16)
        write_image2d(
            folder / "dx" / f"{i:05d}.dcm",
            pixels,
            modality="DX",
            bits_stored=12,
            extra={
                "ImagerPixelSpacing": [0.139, 0.139],
                "ViewPosition": "PA",
                "RescaleSlope": 1,
                "RescaleIntercept": 0,
                "WindowCenter": 2048,
                "WindowWidth": 4096,
                "PatientOrientation": ["L", "F"],
                "InstanceNumber": i + 1,
            },
        )
    mg = _content(*mg_shape, rng)
    for i in range(n_mg):
        path = folder / "mg" / f"{i:05d}.dcm"
        side, view = "LR"[i % 2], "CC" if i % 4 < 2 else "MLO"
        if i >= distinct_mg:  # a copy of an encoded one, as another instance
            ds = pydicom.dcmread(folder / "mg" / f"{i % distinct_mg:05d}.dcm")
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID, ds.InstanceNumber, ds.ImageLaterality, ds.ViewPosition = generate_uid(), i + 1, side, view
            ds.save_as(path, enforce_file_format=True)
            continue
        pixels = np.roll(mg, (i * 53) % mg_shape[1], axis=1)
        pixels = (pixels + 300 * np.sin(np.arange(mg_shape[0], dtype=np.float32) * (i + 1) / 700)[:, None]).clip(0, 4095).astype(np.uint16)
        write_image2d(
            path,
            pixels,
            modality="MG",
            bits_stored=12,
            transfer_syntax=JPEG2000Lossless,
            extra={
                "ImagerPixelSpacing": [0.07, 0.07],
                "EstimatedRadiographicMagnificationFactor": 1.08,
                "ImageLaterality": side,
                "ViewPosition": view,
                "WindowCenter": 2048,
                "WindowWidth": 4096,
                "InstanceNumber": i + 1,
            },
        )


def plain_loop(path: str) -> Any:
    import pydicom
    import torch
    import torch.nn.functional as F
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    arr = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    x = torch.from_numpy((arr / (2.0**ds.BitsStored - 1)).astype(np.float32))[None, None]
    factor = min(SIZE[0] / x.shape[-2], SIZE[1] / x.shape[-1])
    shape = (round(x.shape[-2] * factor), round(x.shape[-1] * factor))
    small = F.interpolate(x, size=shape, mode="area")[0]
    top, left = (SIZE[0] - shape[0]) // 2, (SIZE[1] - shape[1]) // 2
    return F.pad(small, (left, SIZE[1] - shape[1] - left, top, SIZE[0] - shape[0] - top))


def monai_pipeline() -> Any:
    from monai.data import PydicomReader
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, Resize, SpatialPad

    return Compose(
        [
            LoadImage(reader=PydicomReader(), image_only=True),
            EnsureChannelFirst(),
            Resize(spatial_size=max(SIZE), size_mode="longest", mode="area"),
            SpatialPad(SIZE),
        ]
    )


def _image(sample: dict[str, Any]) -> Any:
    return sample["image"]


def loader_epoch(work: Path, config: Any, workers: int) -> float:
    """Images/s (wall) of dicomml's first epoch through a DataLoader with ``workers`` processes, into an empty cache."""
    from torch.utils.data import DataLoader

    from dicomml.imaging2d import ImageDataset

    dataset = ImageDataset(work / "manifest", work / "cache-loader", config)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_image)
    start = time.perf_counter()
    for image in loader:
        assert tuple(image.shape[-2:]) == SIZE, image.shape
    return len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dx", type=int, default=2000, help="DX radiographs")
    parser.add_argument("--mg", type=int, default=300, help="JPEG 2000 mammograms")
    parser.add_argument("--dx-shape", type=int, nargs=2, default=(3000, 2500))
    parser.add_argument("--mg-shape", type=int, nargs=2, default=(5000, 4000))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the cached phase (median)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the user-style first epoch")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dicomml-bench-2d"))
    parser.add_argument("--keep", action="store_true", help="reuse a cohort already in --workdir")
    parser.add_argument("--distinct-mg", type=int, default=10, help="mammograms encoded; the others repeat their codestreams")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["reduced_decode", "loader"], help="rows left out (to fit a full-size run in time)"
    )
    parser.add_argument("--progress", type=int, default=0, help="print the elapsed time every N images of the first epoch")
    parser.add_argument(
        "--deadline", type=float, default=0, help="end the interleaved first epoch after this many seconds (rates of the images done)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torch

    import dicomml
    from dicomml.imaging2d import ImageConfig, ImageDataset

    work = args.workdir
    t = time.perf_counter()
    if not (args.keep and (work / "manifest").exists()):
        shutil.rmtree(work, ignore_errors=True)
        write_cohort(work / "source", args.dx, args.mg, tuple(args.dx_shape), tuple(args.mg_shape), args.distinct_mg)
        dicomml.index(work / "source", work / "manifest", workers=1, progress=False)
    shutil.rmtree(work / "cache", ignore_errors=True)
    shutil.rmtree(work / "cache-loader", ignore_errors=True)
    shutil.rmtree(work / "npy", ignore_errors=True)
    disk = sum(p.stat().st_size for p in (work / "source").rglob("*.dcm")) / 1e9
    print(
        f"cohort: {args.dx} DX {args.dx_shape[0]}x{args.dx_shape[1]} uint16 + {args.mg} MG {args.mg_shape[0]}x{args.mg_shape[1]} "
        f"JPEG 2000 lossless, {disk:.1f} GB in {work} ({time.perf_counter() - t:.0f} s to write and index)"
    )

    exact = ImageDataset(work / "manifest", work / "cache", ImageConfig(size=SIZE))
    reduced = ImageDataset(work / "manifest", work / "cache", ImageConfig(size=SIZE, reduced_decode=True))
    monai = monai_pipeline()
    paths = [str(p) for p in exact.rows.path]
    kinds = list(exact.rows.modality)
    contenders = {
        "plain loop": lambda i: plain_loop(paths[i]),
        "MONAI": lambda i: monai(paths[i]),
        "dicomml": lambda i: exact[i]["image"],
        "dicomml reduced_decode": lambda i: reduced[i]["image"],
    }
    if "reduced_decode" in args.skip:
        del contenders["dicomml reduced_decode"]
    seconds: dict[str, dict[str, float]] = {name: {"DX": 0.0, "MG": 0.0} for name in contenders}
    cpu_seconds: dict[str, dict[str, float]] = {name: {"DX": 0.0, "MG": 0.0} for name in contenders}
    names = list(contenders)
    counts = {"DX": kinds.count("DX"), "MG": kinds.count("MG")}
    # DX and MG spread evenly through the epoch (the n-th of a kind at n / its count), so load changes hit both alike
    seen = dict.fromkeys(counts, 0)
    position = []
    for kind in kinds:
        position.append((seen[kind] + 0.5) / counts[kind])
        seen[kind] += 1
    order = sorted(range(len(paths)), key=position.__getitem__)
    started = time.perf_counter()
    done = dict.fromkeys(counts, 0)
    for step, i in enumerate(order):
        if args.progress and step and step % args.progress == 0:
            print(f"  first epoch: {step} of {len(paths)} images in {time.perf_counter() - started:.0f} s", flush=True)
        if args.deadline and time.perf_counter() - started > args.deadline:
            print(f"first epoch ended by --deadline after {step} of {len(paths)} images: {done['DX']} DX + {done['MG']} MG (rates below)")
            break
        done[kinds[i]] += 1
        for name in names[step % len(names) :] + names[: step % len(names)]:
            start, cpu_start = time.perf_counter(), time.process_time()
            out = contenders[name](i)
            seconds[name][kinds[i]] += time.perf_counter() - start
            cpu_seconds[name][kinds[i]] += time.process_time() - cpu_start
            assert tuple(out.shape[-2:]) == SIZE, (name, out.shape)
    finished = sorted(order[: sum(done.values())])  # the images the first epoch cached (all unless --deadline cut it)
    cut = len(finished) < len(paths)
    loader_rate = float("nan") if "loader" in args.skip or cut else loader_epoch(work, ImageConfig(size=SIZE), args.workers)

    # The np.load floor: the same float32 arrays dicomml's cached epoch returns, one .npy per image.
    (work / "npy").mkdir()
    cached = ImageDataset(work / "manifest", work / "cache", ImageConfig(size=SIZE), cache_only=True)
    for i in finished:
        np.save(work / "npy" / f"{i:06d}.npy", cached[i]["image"].numpy())
    npys = sorted((work / "npy").glob("*.npy"))
    rounds: dict[str, list[float]] = {"dicomml cached": [], "dicomml cached, new Dataset": [], "np.load floor": []}
    for r in range(args.rounds):
        fresh = ImageDataset(
            work / "manifest", work / "cache", ImageConfig(size=SIZE), cache_only=True
        )  # as the floor's file list, made before the clock
        readers = {
            "dicomml cached": lambda i: cached[finished[i]]["image"],
            "dicomml cached, new Dataset": lambda i, ds=fresh: ds[finished[i]]["image"],
            "np.load floor": lambda i: torch.from_numpy(np.load(npys[i])),
        }
        names = list(readers)
        spent = dict.fromkeys(readers, 0.0)
        for i in range(len(npys)):
            for name in names[(i + r) % len(names) :] + names[: (i + r) % len(names)]:
                start = time.perf_counter()
                readers[name](i)
                spent[name] += time.perf_counter() - start
        for name in readers:
            rounds[name].append(len(npys) / spent[name])

    def rate(name: str, kind: str | None = None) -> float:
        if name not in seconds:  # a skipped row
            return float("nan")
        total = sum(seconds[name].values()) if kind is None else seconds[name][kind]
        n = sum(done.values()) if kind is None else done[kind]
        return n / total if total else float("nan")

    def cpu_rate(name: str) -> float:
        total = sum(cpu_seconds[name].values())
        return sum(done.values()) / total if total else float("nan")

    def cpu_per_image(name: str, kind: str) -> float:
        return cpu_seconds[name][kind] / done[kind] if done[kind] else float("nan")

    print(
        "\n| contender | DX images/s | MG images/s | all images/s | vs plain loop "
        "| CPU s per DX / MG | all images per CPU s | vs plain loop (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in contenders:
        print(
            f"| {name} first epoch | {rate(name, 'DX'):.2f} | {rate(name, 'MG'):.3f} | {rate(name):.2f} | {rate(name) / rate('plain loop'):.2f}x "
            f"| {cpu_per_image(name, 'DX'):.2f} / {cpu_per_image(name, 'MG'):.2f} "
            f"| {cpu_rate(name):.2f} | {cpu_rate(name) / cpu_rate('plain loop'):.2f}x |"
        )
    cached_rate, floor_rate = statistics.median(rounds["dicomml cached"]), statistics.median(rounds["np.load floor"])
    if loader_rate == loader_rate:
        print(
            f"| dicomml first epoch, DataLoader {args.workers} workers ({args.workers} processes vs the sequential loop) "
            f"| | | {loader_rate:.2f} | {loader_rate / rate('plain loop'):.2f}x | | | |"
        )
    fresh_rate = statistics.median(rounds["dicomml cached, new Dataset"])
    print(f"| dicomml cached epoch | | | {cached_rate:.1f} | | | | |")
    print(f"| dicomml cached epoch, new Dataset (markers read) | | | {fresh_rate:.1f} | | | | |")
    print(f"| np.load floor (same arrays) | | | {floor_rate:.1f} | | | | |")
    print()
    checks = [
        ("first epoch vs plain loop (target >= 2x)", rate("dicomml") / rate("plain loop"), 2.0),
        ("first epoch vs plain loop, CPU time (target >= 2x)", cpu_rate("dicomml") / cpu_rate("plain loop"), 2.0),
        ("first epoch, reduced_decode, vs plain loop (target >= 2x)", rate("dicomml reduced_decode") / rate("plain loop"), 2.0),
        (f"first epoch, DataLoader {args.workers} workers vs sequential plain loop (>= 2x)", loader_rate / rate("plain loop"), 2.0),
        ("first epoch vs MONAI", rate("dicomml") / rate("MONAI"), None),
        (f"cached epoch vs np.load floor (target >= 1x, median of {args.rounds})", cached_rate / floor_rate, 1.0),
        ("cached epoch of a new Dataset vs np.load floor", fresh_rate / floor_rate, None),
    ]
    for label, ratio, target in checks:
        if ratio != ratio:  # a skipped row
            continue
        verdict = "" if target is None else ("  met" if ratio >= target else "  NOT met")
        print(f"{label:<74} {ratio:6.2f}x{verdict}")


if __name__ == "__main__":
    main()

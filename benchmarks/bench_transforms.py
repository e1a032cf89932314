"""Resample a CT-sized volume to 1 mm (trilinear): dicomml vs MONAI Spacing vs SimpleITK vs bare torch.

Each contender runs in its own fresh subprocess on the same synthetic volume
(float32, DICOM (slice, row, column) order, axial affine), so one does not
pollute another's peak memory. Reported per contender: best-of-``--repeat``
seconds for the resample alone, the process' peak RSS, and the peak above the
RSS it had just before resampling (input already built). Two last subprocesses
alternate contenders in one process, so their ratios are not blurred by other
load on a shared machine: dicomml and the bare torch floor; and dicomml's
orient + resample to RAS, the floor on the same voxels and MONAI
``Orientation`` + ``Spacing``, each followed by the batch a DataLoader would
collate from it (``torch.stack`` of two outputs, the round's outputs in turn,
``--collate-repeat`` times), the contenders' order turning each round. ``--geometry sagittal``
makes the input an oblique sagittal MR (10 degrees off the planes) instead of
an axial CT. On ``--device cuda``
the torch-based contenders run on the GPU and report peak GPU memory too;
SimpleITK stays on the CPU.

Usage::

    python benchmarks/bench_transforms.py                      # 512x512x300, CPU
    python benchmarks/bench_transforms.py --size 256,256,150   # quicker
    python benchmarks/bench_transforms.py --device cuda
    python benchmarks/bench_transforms.py --geometry sagittal --only interleaved_RAS
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import table

CONTENDERS = (
    "dicomml",
    "dicomml_fused_RAS",
    "monai_spacing",
    "monai_orientation_spacing",
    "simpleitk",
    "torch_interpolate",
    "interleaved",
    "interleaved_RAS",
)


def _input(args: argparse.Namespace):
    import torch

    from dicomml.geometry import dicom_affine

    cols, rows, slices = args.size
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((1, slices, rows, cols), generator=generator) * 2000 - 1000
    if args.geometry == "axial":
        affine = dicom_affine([1, 0, 0, 0, 1, 0], [args.spacing[1], args.spacing[0]], [-180.0, -180.0, -300.0], [0, 0, args.spacing[2]])
    else:  # sagittal MR tilted about the left-right axis: rows run A->P, columns S->I, slices R->L
        c, s = np.cos(np.radians(10.0)), np.sin(np.radians(10.0))
        affine = dicom_affine([0, c, s, 0, s, -c], [args.spacing[1], args.spacing[0]], [-90.0, -180.0, 180.0], [args.spacing[2], 0, 0])
    return x, affine


def _rss_mb() -> float:
    """Current resident set size (Linux /proc, so no psutil is needed on a bare GPU machine)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _prepare(name: str, args: argparse.Namespace) -> tuple[Callable[[], object], tuple[int, ...]]:
    """Build the input and return (the call to time, the output spatial shape)."""
    import torch

    from dicomml.transforms import Resample
    from dicomml.transforms.functional import spacing_grid

    x, affine = _input(args)
    device = torch.device(args.device)
    target_affine, target_shape = spacing_grid(affine, x.shape[1:], 1.0)
    if name in ("dicomml", "dicomml_fused_RAS"):
        resample = Resample(spacing=1.0, axcodes="RAS" if name.endswith("RAS") else None)
        sample = {"image": x.to(device), "affine": affine}
        return lambda: resample(sample)["image"], target_shape
    if name == "torch_interpolate":
        batch = x.to(device)[None]
        return lambda: torch.nn.functional.interpolate(batch, size=target_shape, mode="trilinear", align_corners=False), target_shape
    if name == "monai_spacing":
        from monai.data import MetaTensor
        from monai.transforms import Spacing

        image = MetaTensor(x.to(device), affine=torch.from_numpy(affine))
        spacing = Spacing(pixdim=(1.0, 1.0, 1.0), mode="bilinear")
        return lambda: spacing(image), target_shape
    if name == "monai_orientation_spacing":
        from monai.data import MetaTensor
        from monai.transforms import Compose, Orientation, Spacing

        image = MetaTensor(x.to(device), affine=torch.from_numpy(affine))
        both = Compose([Orientation(axcodes="RAS"), Spacing(pixdim=(1.0, 1.0, 1.0), mode="bilinear")])
        return lambda: both(image), target_shape
    if name == "simpleitk":
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(x[0].numpy().transpose(2, 1, 0).copy())  # sitk x = array axis 0
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
        image.SetSpacing(np.linalg.norm(lps[:3, :3], axis=0).tolist())
        image.SetOrigin(lps[:3, 3].tolist())
        image.SetDirection((lps[:3, :3] / np.linalg.norm(lps[:3, :3], axis=0)).flatten().tolist())
        out_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ target_affine
        resampler = sitk.ResampleImageFilter()
        resampler.SetSize([int(v) for v in target_shape])
        resampler.SetOutputSpacing([1.0, 1.0, 1.0])
        resampler.SetOutputOrigin(out_lps[:3, 3].tolist())
        resampler.SetOutputDirection((out_lps[:3, :3] / np.linalg.norm(out_lps[:3, :3], axis=0)).flatten().tolist())
        resampler.SetInterpolator(sitk.sitkLinear)
        return lambda: resampler.Execute(image), target_shape
    raise SystemExit(f"unknown contender {name}")


def _interleaved(name: str, args: argparse.Namespace) -> None:
    """Contenders alternated in one process: their ratios without machine drift.

    ``interleaved``: dicomml and the bare floor. ``interleaved_RAS``: dicomml's
    fused orient + resample to RAS, the floor on the same voxels and MONAI's
    Orientation + Spacing, each round's outputs then collated into batches of
    two, the contenders in turn, ``--collate-repeat`` times.
    """
    import torch

    ras = name == "interleaved_RAS"
    keys = ("dicomml", "floor", "monai") if ras else ("dicomml", "floor")
    names = {"dicomml": "dicomml_fused_RAS" if ras else "dicomml", "floor": "torch_interpolate", "monai": "monai_orientation_spacing"}
    calls = {key: _prepare(names[key], args)[0] for key in keys}

    def timed(call: Callable[[], object]) -> tuple[object, float]:
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = call()
        if args.device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    times: dict[str, list[float]] = {k: [] for k in keys}
    times.update({f"{k}_batch": [] for k in keys} if ras else {})
    for turn in range(args.repeat + 2):
        # each contender takes its turn first: none always follows the same one (MONAI's large frees, say)
        order = keys[turn % len(keys) :] + keys[: turn % len(keys)]
        outs = {}
        for key in order:
            out, seconds = timed(calls[key])
            times[key].append(seconds)
            outs[key] = torch.as_tensor(out) if ras else None
            del out
        # the DataLoader's default_collate of two samples is torch.stack: a short step, mostly faulting
        # its fresh batch, so the round's outputs are collated in turn several times (paired, same moment)
        for again in range(args.collate_repeat if ras else 0):
            for key in order[again % len(keys) :] + order[: again % len(keys)]:
                batch, seconds = timed(lambda image=outs[key]: torch.stack([image, image]))
                times[f"{key}_batch"].append(seconds)
                del batch
        del outs
    if ras:  # each collate after dicomml over the floor's of the same pass
        times["batch_ratio"] = [a / b for a, b in zip(times["dicomml_batch"], times["floor_batch"])]
    result = {k: sorted(v) for k, v in times.items()}
    print("RESULT " + json.dumps({"name": name, **result}))


def _worker(name: str, args: argparse.Namespace) -> None:
    import torch

    if name.startswith("interleaved"):
        _interleaved(name, args)
        return

    call, shape = _prepare(name, args)
    cuda = args.device == "cuda" and name != "simpleitk"
    before = _rss_mb()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "name": name,
        "seconds": min(times),
        "peak_rss_mb": peak,
        "rss_above_input_mb": peak - before,
        "out_shape": list(shape),
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    print("RESULT " + json.dumps(result))


def _run(name: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--size",
        ",".join(map(str, args.size)),
        "--spacing",
        ",".join(map(str, args.spacing)),
        "--device",
        args.device,
        "--repeat",
        str(args.repeat),
        "--geometry",
        args.geometry,
        "--collate-repeat",
        str(args.collate_repeat),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "error": f"over --timeout {args.timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        return {"name": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1][len("RESULT ") :])


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--size", type=lambda s: [int(v) for v in s.split(",")], default=[512, 512, 300], help="columns,rows,slices (default 512,512,300)"
    )
    parser.add_argument(
        "--spacing", type=_floats, default=[0.7, 0.7, 1.25], help="input column,row,slice spacing in mm (default 0.7,0.7,1.25)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--geometry", choices=("axial", "sagittal"), default="axial", help="input orientation: axial CT (default) or oblique sagittal MR"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--collate-repeat", type=int, default=10, help="interleaved_RAS: passes collating each round's outputs in turn (default 10)"
    )
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per contender subprocess")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args)
        return
    import torch

    print(
        f"resample {args.size[0]}x{args.size[1]}x{args.size[2]} float32 at {args.spacing} mm to 1 mm, trilinear, "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, best of {args.repeat}"
    )
    results = {r["name"]: r for r in (_run(n, args) for n in args.only.split(","))}
    for r in results.values():
        if r["name"].startswith("interleaved") and "error" not in r:
            continue
        if "error" in r:
            print(f"  {r['name']:<20} failed: {r['error']}")
            continue
        gpu = f"  gpu peak {r['gpu_peak_mb']:8.0f} MB" if r["gpu_peak_mb"] is not None else ""
        print(
            f"  {r['name']:<20} {r['seconds']:8.3f} s   peak RSS {r['peak_rss_mb']:8.0f} MB "
            f"(+{r['rss_above_input_mb']:6.0f} MB over input)   out {tuple(r['out_shape'])}{gpu}"
        )
    ras = results.get("interleaved_RAS", {})
    ras_rows = _ras_rows(ras) if "dicomml" in ras else []
    ours = results.get("dicomml", {})
    if "seconds" not in ours:
        ours = results.get("dicomml_fused_RAS", {})
    if "seconds" not in ours:
        if ras_rows:
            _print_table(args, ras_rows)
        return
    for name, label in (
        ("monai_spacing", "MONAI Spacing / dicomml (speed-up, target >= 6)"),
        ("simpleitk", "SimpleITK / dicomml (speed-up)"),
        ("torch_interpolate", "bare torch interpolate / dicomml (target >= 1/1.1 = 0.91)"),
    ):
        if "seconds" in results.get(name, {}):
            print(f"  ratio {label}: {results[name]['seconds'] / ours['seconds']:.2f}")
    mixed = results.get("interleaved", {})
    if "dicomml" in mixed:
        best = mixed["floor"][0] / mixed["dicomml"][0]
        median = float(np.median(mixed["floor"]) / np.median(mixed["dicomml"]))
        print(
            f"  ratio bare torch / dicomml, interleaved in one process ({len(mixed['floor'])} each): best {best:.2f}, median {median:.2f}"
        )
    if "seconds" in results.get("monai_spacing", {}):
        print(
            f"  ratio dicomml / MONAI peak RSS (target <= 0.33): {ours['peak_rss_mb'] / results['monai_spacing']['peak_rss_mb']:.2f}"
            f"; over input: {ours['rss_above_input_mb'] / max(1.0, results['monai_spacing']['rss_above_input_mb']):.2f}"
        )
        if ours["gpu_peak_mb"] is not None and results["monai_spacing"]["gpu_peak_mb"]:
            print(f"  ratio dicomml / MONAI peak GPU memory: {ours['gpu_peak_mb'] / results['monai_spacing']['gpu_peak_mb']:.2f}")
    labels = {
        "dicomml": "dicomml `Resample(spacing=1.0)`",
        "dicomml_fused_RAS": 'dicomml `Resample(spacing=1.0, axcodes="RAS")` from DICOM order',
        "monai_spacing": "MONAI `Spacing`",
        "monai_orientation_spacing": 'MONAI `Orientation("RAS")` + `Spacing`',
        "simpleitk": "SimpleITK `Resample`",
        "torch_interpolate": "bare `torch.nn.functional.interpolate`",
    }
    targets = {"monai_spacing": 6.0, "torch_interpolate": 1 / 1.1}
    rows = [
        (
            labels[name],
            f"{r['seconds']:.3f} s",
            f"{r['peak_rss_mb']:.0f}",
            "" if r["gpu_peak_mb"] is None else f"{r['gpu_peak_mb']:.0f}",
            *table.ratio(r["seconds"] / ours["seconds"], targets.get(name)),
        )
        for name, r in results.items()
        if name in labels and "seconds" in r
    ]
    if "dicomml" in mixed:
        rows.append(
            (
                "bare torch / dicomml, interleaved in one process (best)",
                "",
                "",
                "",
                *table.ratio(mixed["floor"][0] / mixed["dicomml"][0], targets["torch_interpolate"]),
            )
        )
    if "seconds" in results.get("monai_spacing", {}):
        rows.append(
            (
                "dicomml / MONAI peak RSS",
                "",
                "",
                "",
                *table.ratio(ours["peak_rss_mb"] / results["monai_spacing"]["peak_rss_mb"], 0.33, at_most=True),
            )
        )
    _print_table(args, rows + ras_rows)


def _ras_rows(mixed: dict) -> list[tuple]:
    """Table rows of ``interleaved_RAS`` (best of each contender; the collate the median of paired ratios), medians printed above."""
    best = {k: v[0] for k, v in mixed.items() if k != "name"}
    median = {k: float(np.median(v)) for k, v in mixed.items() if k != "name"}
    for key in ("dicomml", "floor", "monai", "dicomml_batch", "floor_batch", "monai_batch"):
        print(f"  interleaved_RAS {key:<14} best {best[key]:8.3f} s   median {median[key]:8.3f} s   ({len(mixed[key])} timed)")
    ratios = mixed["batch_ratio"]
    print(
        f"  collate after dicomml / after the floor: ratio of bests {best['dicomml_batch'] / best['floor_batch']:.3f}, "
        f"median of {len(ratios)} paired {median['batch_ratio']:.3f} (quartiles {np.percentile(ratios, 25):.3f}-{np.percentile(ratios, 75):.3f})"
    )
    return [
        (
            "orient + resample to RAS / bare interpolate on the same voxels, interleaved (best)",
            f"{best['dicomml']:.3f} s",
            "",
            "",
            *table.ratio(best["dicomml"] / best["floor"], 1.3, at_most=True, of="the floor"),
        ),
        (
            "MONAI `Orientation` + `Spacing` / dicomml orient + resample, interleaved (best)",
            f"{best['monai']:.3f} s",
            "",
            "",
            *table.ratio(best["monai"] / best["dicomml"], 8.0),
        ),
        (
            f"collate of 2 after dicomml / after bare interpolate, median of {len(ratios)} paired in turn",
            f"{median['dicomml_batch']:.3f} s",
            "",
            "",
            *table.ratio(median["batch_ratio"], 1.0, at_most=True, of="the floor's"),
        ),
    ]


def _print_table(args: argparse.Namespace, rows: list[tuple]) -> None:
    import torch

    table.print_table(
        f"Resampling a {args.size[0]}x{args.size[1]}x{args.size[2]} float32 {args.geometry} volume at {args.spacing} mm to 1 mm, "
        f"trilinear, on {args.device} (torch {torch.__version__}, best of {args.repeat})",
        ("contender", "time", "peak RSS MB", "peak GPU MB", "contender / dicomml", "target"),
        rows,
    )


if __name__ == "__main__":
    main()

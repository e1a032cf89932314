#!/usr/bin/env bash
# CUDA check of dicomml.transforms, for a lent GPU machine (about 2 minutes on an H100/H200;
# every step and benchmark contender has a timeout, about 5 minutes at worst).
#
# Needs only what that machine has: python3 with torch (CUDA build) and numpy. It installs
# nothing. dicomml itself also imports nibabel and pyyaml (pure Python): when the machine lacks
# them, copies carried from this checkout's .venv are used (device tool: carry
# .venv/lib/python3.11/site-packages/nibabel, .../yaml and .../packaging, about 17 MB).
# MONAI and SimpleITK are only benchmark contenders. Whatever is missing is printed, and the
# steps that need it are skipped.
#
#   bash scripts/gpu_check.sh                  # from the repository root (or anywhere)
#   GPU_CHECK_DEVICE=cpu bash scripts/gpu_check.sh --quick   # dry run of the script logic on a CPU
#
# Steps: 1. environment; 2. CUDA vs CPU agreement of every resampling path, masks, random affine,
# windows (PASS/FAIL lines, exit status 1 on a FAIL); 3. the CUDA test of tests/transforms when
# pytest and the corpus (DICOMML_TEST_DATA or ../shared/data) are there; 4. the 512x512x300 to 1 mm
# benchmark on CUDA, then on this machine's CPU.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
SIZE="512,512,300"
[ "${1:-}" = "--quick" ] && SIZE="128,128,64"
status=0

echo "== 1. environment"
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then
    echo "  $PY cannot import torch and numpy: nothing to run"; exit 2
fi
CARRIED="$(mktemp -d)"
trap 'rm -rf "$CARRIED"' EXIT
for module in nibabel yaml packaging; do
    "$PY" -c "import $module" 2>/dev/null && continue
    for found in .venv/lib/python3*/site-packages/"$module"; do
        [ -d "$found" ] || continue
        ln -s "$PWD/$found" "$CARRIED/$module" && echo "  $module: not installed, using the carried $found"
        break
    done
done
export PYTHONPATH="$PYTHONPATH:$CARRIED"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "  nvidia-smi: not available"
"$PY" - <<'EOF'
import importlib
for name in ("numpy", "torch", "nibabel", "yaml", "monai", "SimpleITK", "pytest", "pydicom"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:10} {getattr(module, '__version__', 'present')}")
    except Exception as exc:  # report, never install
        print(f"  {name:10} MISSING ({type(exc).__name__}: {exc})")
import torch
print(f"  cuda available: {torch.cuda.is_available()}" + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to torch: nothing to check"; exit 2
fi
if ! "$PY" -c "import dicomml.transforms" 2>/dev/null; then
    echo "dicomml.transforms cannot be imported here (see MISSING above; it needs nibabel and pyyaml):"
    "$PY" -c "import dicomml.transforms" 2>&1 | tail -1
    echo "== 4. bare torch floor only"
    timeout 60 "$PY" benchmarks/bench_transforms.py --device "$DEVICE" --size "$SIZE" --only torch_interpolate --timeout 50
    exit 1
fi

echo "== 2. $DEVICE vs CPU agreement"
GPU_CHECK_DEVICE="$DEVICE" timeout 45 "$PY" - <<'EOF' || status=1
import os, sys, time
import numpy as np
import torch
from dicomml.geometry import dicom_affine
from dicomml.transforms import Compose, HeaderWindow, Mask, Orient, RandomAffine, RandomFlip, Resample, ZNormalize
from dicomml.transforms.functional import resample_image, resample_mask

device = torch.device(os.environ["GPU_CHECK_DEVICE"])
failed = []

def check(name, ok, detail):
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
    if not ok:
        failed.append(name)

g = torch.Generator().manual_seed(0)
image = torch.rand((1, 96, 160, 160), generator=g) * 2000 - 1000
labels = Mask((image > 600).to(torch.uint8) + (image > 900).to(torch.uint8))
affine = dicom_affine([0.98481, 0.17365, 0, -0.17365, 0.98481, 0], [0.7, 0.75], [-100, -120, -50], [0, 0, 1.5])
sample = {"image": image, "mask": labels, "affine": affine, "meta": {"window_center": [40, 400], "window_width": [80, 1800]}}
on_device = {**sample, "image": image.to(device), "mask": Mask(labels.to(device))}
pipelines = {
    "Resample 1 mm (fused trilinear kernel)": Resample(spacing=1.0),
    "Orient RAS + Resample 1.2 mm (one pass)": Compose([Orient("RAS"), Resample(spacing=1.2)]),
    "Resample centers (grid_sample path)": Resample(spacing=(1.1, 0.9, 1.3), align="centers"),
    "RandomAffine seed 3 (oblique grid_sample)": RandomAffine(degrees=20, scale=0.1, translate=5, seed=3),
    "RandomFlip + HeaderWindow (2 windows) + ZNormalize": Compose([RandomFlip(p=1.0), HeaderWindow(index=None), ZNormalize()]),
}
for name, transform in pipelines.items():
    if isinstance(transform, RandomAffine):
        cpu, gpu = transform(sample), RandomAffine(degrees=20, scale=0.1, translate=5, seed=3)(on_device)
    else:
        cpu, gpu = transform(sample), transform(on_device)
    diff = float((gpu["image"].cpu() - cpu["image"]).abs().max())
    scale = float(cpu["image"].abs().max())
    same_mask = float((gpu["mask"].cpu() == cpu["mask"]).float().mean())
    ok = gpu["image"].device.type == device.type and diff <= 1e-4 * scale + 1e-5 and same_mask > 0.999
    ok = ok and np.allclose(np.asarray(gpu["affine"]), np.asarray(cpu["affine"]))
    check(name, ok, f"image max |diff| {diff:.2e} (of {scale:.0f}), mask agreement {same_mask:.5f}, shape {tuple(gpu['image'].shape)}")

big = torch.rand((1, 300, 512, 512), generator=g).to(device)
a = dicom_affine([1, 0, 0, 0, 1, 0], [0.7, 0.7], [0, 0, 0], [0, 0, 1.25])
resample = Resample(spacing=1.0)
for _ in range(2):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = resample({"image": big, "affine": a})["image"]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
check("512x512x300 to 1 mm on device", out.device.type == device.type, f"{seconds:.4f} s, out {tuple(out.shape)}")
sys.exit(1 if failed else 0)
EOF

echo "== 3. tests/transforms on CUDA (needs pytest and the corpus)"
if "$PY" -c "import pytest, monai, SimpleITK, pydicom, pandas" 2>/dev/null && { [ -n "${DICOMML_TEST_DATA:-}" ] || [ -f ../shared/data/INDEX.csv ]; }; then
    timeout 30 "$PY" -m pytest -q -p no:cacheprovider tests/transforms/test_resample.py -k cuda || status=1
else
    echo "  skipped: pytest/monai/SimpleITK/pydicom/pandas or the corpus is not here (step 2 covers the same paths)"
fi

echo "== 4. benchmark: $SIZE to 1 mm, on $DEVICE, then on this machine's CPU"
timeout 100 "$PY" benchmarks/bench_transforms.py --device "$DEVICE" --size "$SIZE" --repeat 5 --timeout 30 || status=1
timeout 120 "$PY" benchmarks/bench_transforms.py --device cpu --size "$SIZE" --repeat 2 --timeout 30 || status=1
exit $status

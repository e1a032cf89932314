#!/usr/bin/env bash
# End-to-end CUDA check of preprocessing, for a lent GPU machine: `dicomml preprocess --device cuda`
# on a Dask worker against a CPU run, and preprocess_one(device="cuda") of a CT with its SEG
# against the default (the `-k cuda` tests of tests/pipeline and tests/distributed).
#
# That machine's python3 (3.12) has torch, numpy, pandas, pyarrow, pyyaml, click, lightning... but
# not pydicom, Dask, DuckDB, Zarr and the rest, and it cannot fetch anything. So, in two steps:
#
#   bash scripts/gpu_e2e.sh fetch   # here: wheels of the missing packages, at the versions in .venv,
#                                   # into gpu_wheels/ (48 MB), and the corpus folders the tests
#                                   # read into gpu_data/ (2.6 MB); both git-ignored
#   bash scripts/gpu_e2e.sh run     # there, with gpu_wheels and gpu_data carried: installs the
#                                   # wheels under /tmp/site, then runs the tests
#
# With the device tool: run(command="bash scripts/gpu_e2e.sh run", carry=["gpu_wheels", "gpu_data"]).
# GPU_E2E_PYTHON (3.12) is the Python version the wheels are for. scripts/gpu_check.sh checks the
# transforms themselves and needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."
MISSING=(crc32c dask distributed donfig duckdb google-crc32c highdicom importlib-metadata importlib-resources
    lazy-importer locket monai nibabel numcodecs partd pydicom pyjpegls pynrrd tblib tornado tzdata zarr zict)
TESTS=(tests/pipeline/test_compute.py tests/distributed/test_preprocess.py)

case "${1:-}" in
fetch)
    pins=$(.venv/bin/python -c 'import sys, importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "${MISSING[@]}")
    rm -rf gpu_wheels gpu_data
    # shellcheck disable=SC2086
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_E2E_PYTHON:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d gpu_wheels $pins
    source="${DICOMML_TEST_DATA:-../shared/data}"
    # INDEX.csv marks the corpus root; the folders are those of the tests' cohort fixture
    folders=$(cd tests/distributed && ../../.venv/bin/python -c 'from conftest import CORPUS_FOLDERS; print(*CORPUS_FOLDERS)')
    for item in INDEX.csv $folders; do
        mkdir -p "gpu_data/$(dirname "$item")" && cp -r "$source/$item" "gpu_data/$item"
    done
    du -sh gpu_wheels gpu_data
    ;;
run)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site gpu_wheels/*.whl
    export PYTHONPATH="/tmp/site:$PWD" DICOMML_TEST_DATA="$PWD/gpu_data"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
    python3 -c 'import torch; print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())'
    python3 -m pytest -q -p no:cacheprovider -rs "${TESTS[@]}" -k cuda
    ;;
*)
    echo "usage: bash scripts/gpu_e2e.sh fetch|run" >&2
    exit 2
    ;;
esac

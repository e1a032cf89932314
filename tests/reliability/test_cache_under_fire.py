"""The cache under fire: eight racing writer processes, and a corrupted chunk on disk.

Every check goes through the real CLI (``dicomml cache verify`` in a fresh
interpreter) and real preprocessing of the sample study, on a real Zarr store.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.config import PRESET_DIR, PipelineConfig
from dicomml.sample import write_sample_study

WRITERS = 8
ENTRIES = 50
_CLI = [sys.executable, "-c", "from dicomml.cli.main import main; main()"]
CT_1MM = PRESET_DIR / "ct_1mm.yaml"


def _entry(writer: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The image and affine that writer ``writer`` puts under its ``n``-th key (distinct for every pair)."""
    rng = np.random.default_rng(writer * 1000 + n)
    image = rng.integers(-1024, 3071, size=(6 + n % 3, 7, 5), dtype=np.int16)
    affine = np.diag([0.5 + writer, 1.0 + n, 2.0, 1.0])
    return image, affine


def _write_many(root: str, writer: int, barrier) -> None:
    cache = Cache(root)
    barrier.wait()
    for n in range(ENTRIES):
        image, affine = _entry(writer, n)
        cache.put(f"w{writer}-e{n:02d}", image, affine, meta={"writer": writer, "n": n}, chunks=(4, 4, 4))


def _verify(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`dicomml cache verify [OPTIONS] ROOT` in a fresh interpreter."""
    return subprocess.run([*_CLI, "cache", "verify", *options, str(root)], capture_output=True, text=True, timeout=120)


def test_eight_processes_writing_fifty_entries_each_all_verify_and_read_back(tmp_path):
    root = tmp_path / "cache"
    Cache(root)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_write_many, args=(str(root), w, barrier)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    result = _verify(root)
    assert result.returncode == 0, result.stderr
    assert f"{WRITERS * ENTRIES} of {WRITERS * ENTRIES} entries verified" in result.stdout

    cache = Cache(root)
    assert len(cache.keys()) == WRITERS * ENTRIES
    for w in range(WRITERS):
        for n in range(ENTRIES):
            entry = cache.open(f"w{w}-e{n:02d}")
            image, affine = _entry(w, n)
            got = entry.read()
            assert got.dtype == image.dtype
            np.testing.assert_array_equal(got, image)
            np.testing.assert_array_equal(entry.affine, affine)
            assert entry.meta == {"writer": w, "n": n}
    assert list((root / "tmp").iterdir()) == []  # no marker left half-written


@pytest.fixture(scope="module")
def sample_manifest(tmp_path_factory: pytest.TempPathFactory) -> dicomml.Manifest:
    """Manifest of the sample study (an axial CT, its SEG, a sagittal MR)."""
    root = tmp_path_factory.mktemp("sample")
    write_sample_study(root / "study")
    return dicomml.index([root / "study"], root / "manifest", workers=1, progress=False)


def _shard_file(cache_root: Path, key: str) -> Path:
    """The one shard file of the ``image`` array of entry ``key``."""
    data = Cache(cache_root).open(key)._path
    shards = [p for p in Path(data, "image").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(shards) == 1, shards
    return shards[0]


def test_corrupted_chunk_is_found_by_verify_and_repaired_by_a_rerun(tmp_path, sample_manifest):
    config = PipelineConfig.from_yaml(CT_1MM)
    root = tmp_path / "cache"
    first = dicomml.preprocess(sample_manifest, config, root, workers=0, where="modality = 'CT'", progress=False)
    assert first.counts == {"done": 1, "skipped": 0, "failed": 0}
    (key,) = Cache(root).keys()
    original = Cache(root).open(key).read()

    shard = _shard_file(root, key)
    raw = bytearray(shard.read_bytes())
    middle = len(raw) // 3  # inside the compressed chunks, before the shard index at the end
    raw[middle : middle + 16] = bytes(b ^ 0xFF for b in raw[middle : middle + 16])
    shard.write_bytes(bytes(raw))

    failed = _verify(root)
    assert failed.returncode != 0
    assert key in failed.stderr
    assert "0 of 1 entries verified" in failed.stdout

    deleted = _verify(root, "--delete")
    assert deleted.returncode != 0 and key in deleted.stderr
    assert "failed ones unpublished" in deleted.stdout
    assert Cache(root).keys() == []

    rerun = dicomml.preprocess(sample_manifest, config, root, workers=0, where="modality = 'CT'", progress=False)
    table = rerun.table.set_index("cache_key")
    assert table.loc[key, "status"] == "done"  # recomputed, not skipped

    healthy = _verify(root)
    assert healthy.returncode == 0, healthy.stderr
    assert "1 of 1 entries verified" in healthy.stdout
    repaired = Cache(root).open(key).read()
    assert repaired.dtype == original.dtype
    assert repaired.tobytes() == original.tobytes()

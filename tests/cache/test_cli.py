"""``dicomml cache info|verify|gc`` on a real store, through the installed entry point."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from dicomml.cache import Cache
from dicomml.testing.cache import corrupt_chunk


def _dicomml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from dicomml.cli.main import main; main()", *args], capture_output=True, text=True)


def test_info_verify_gc(tmp_path):
    cache = Cache(tmp_path / "c")
    image = np.arange(40 * 50 * 60, dtype=np.int16).reshape(40, 50, 60)
    for key in ("a", "b", "gone"):
        cache.put(key, image, np.eye(4), chunks=(16, 16, 16))
    cache.delete("gone")

    info = _dicomml("cache", "info", str(tmp_path / "c"))
    assert info.returncode == 0 and "entries: 2" in info.stdout and "unreferenced_bytes: 0" not in info.stdout
    used = int(next(line for line in info.stdout.splitlines() if line.startswith("bytes:")).split()[1])
    assert f"bytes: {used} ({used / 1000:.1f} kB)" in info.stdout  # the raw count for scripts, a size for people

    ok = _dicomml("cache", "verify", str(tmp_path / "c"))
    assert ok.returncode == 0 and "2 of 2 entries verified" in ok.stdout

    corrupt_chunk(cache, "b")
    bad = _dicomml("cache", "verify", str(tmp_path / "c"))
    assert bad.returncode == 1
    assert "entry b array image: chunk (0, 0, 0) checksum mismatch" in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("dicomml: error:") and "1 corrupted entries: b" in bad.stderr

    fixed = _dicomml("cache", "verify", "--delete", str(tmp_path / "c"))
    assert fixed.returncode == 1 and Cache(tmp_path / "c").keys() == ["a"]

    gc = _dicomml("cache", "gc", "--grace", "0", str(tmp_path / "c"))
    assert gc.returncode == 0 and "2 paths removed" in gc.stdout
    assert Cache(tmp_path / "c").info()["unreferenced_bytes"] == 0
    assert _dicomml("cache", "verify", str(tmp_path / "c")).returncode == 0


def test_info_and_verify_refuse_a_path_without_a_cache(tmp_path):
    """A typo must fail a CI check, not pass it on an empty cache made on the spot."""
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a cache")
    expected = {
        tmp_path / "typo": "does not exist",
        tmp_path / "other": "is not a dicomml cache (no zarr.json)",
    }
    for sub in ("info", "verify", "gc"):
        for path, reason in expected.items():
            result = _dicomml("cache", sub, str(path))
            assert result.returncode == 1, (sub, path, result.stdout)
            assert result.stderr == f"dicomml: error: {path}: {reason}; check the path\n"
    assert not (tmp_path / "typo").exists()
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]

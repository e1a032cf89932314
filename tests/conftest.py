"""Fixtures shared by all tests: the real-DICOM corpus and its INDEX.csv; the manifests and configs of the data and pipeline tests."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

import dicomml
from dicomml.config import PRESET_DIR, PipelineConfig
from dicomml.sample import write_sample_study
from dicomml.testing import data_root

_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or ``$DICOMML_TEST_DATA``): real DICOM, read-only."""
    return data_root()


@pytest.fixture(scope="session")
def corpus_index(data_dir: Path) -> pd.DataFrame:
    """INDEX.csv of the corpus: one row per series (per file for SEG/RTSTRUCT)."""
    return pd.read_csv(data_dir / "INDEX.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """The sample study (CT + SEG + MR written with pydicom/highdicom), indexed."""
    root = tmp_path_factory.mktemp("study")
    info = write_sample_study(root / "dicom")
    return info, dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)


@pytest.fixture(scope="session")
def dcmqi_manifest(tmp_path_factory, data_dir):
    """dcmqi's ct-3slice CT and its liver SEG from the real corpus, indexed (files read in place)."""
    root = tmp_path_factory.mktemp("dcmqi")
    sources = [str(data_dir / "dcmqi/data/segmentations/ct-3slice"), str(data_dir / "dcmqi/data/segmentations/liver.dcm")]
    return dicomml.index(sources, str(root / "manifest"), workers=1, progress=False)


@pytest.fixture(scope="session")
def make_config():
    """``make_config(name, deterministic={...}, at_load={...})``: a shipped config with keys replaced."""

    def make(name: str, **changes) -> PipelineConfig:
        base = PipelineConfig.from_yaml(PRESET_DIR / f"{name}.yaml").to_dict()
        for section in ("deterministic", "at_load"):
            base[section].update(changes.pop(section, {}))
        base.update(changes)
        return PipelineConfig.from_dict(base)

    return make


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """A folder, and the function that makes it read-only (what was written stays readable): a tmpfs remounted
    ``ro`` as root, where removing a missing file fails with EROFS, not ENOENT; else a folder without write permission."""
    folder = tmp_path / "mnt"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder, lambda: _chmod_read_only(folder)
        _chmod_writable(folder)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:  # a container without mount rights; root ignores permission bits, so nothing is read-only
        pytest.skip(f"root cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def honouring_modes() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """Run Python code in a child process that a file of mode 000 refuses (as root: without CAP_DAC_OVERRIDE)."""

    def run(code: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                preexec_fn=_drop_file_read_override if os.geteuid() == 0 else None,
            )
        except subprocess.SubprocessError as exc:  # the prctl failed: this root may not drop capabilities
            pytest.skip(f"cannot drop the right to read any file here ({exc})")

    return run


def _drop_file_read_override() -> None:  # runs in the child before exec: root without these honours a file's mode
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _chmod_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)


def _chmod_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)

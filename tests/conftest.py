"""Fixtures shared by all tests: the real-DICOM corpus and its INDEX.csv; the manifests and configs of the data and pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import dicomml
from dicomml.config import PRESET_DIR, PipelineConfig
from dicomml.sample import write_sample_study
from dicomml.testing import data_root


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

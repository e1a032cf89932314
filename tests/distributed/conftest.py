"""A small real cohort for the preprocessing tests, indexed once per session.

The sample study (CT with a DICOM SEG, sagittal MR) plus corpus series: the
dcmqi CTs with their SEGs, and a Siemens sagittal MR whose two volumes form a
4D series. Under a config that selects b = 1000 volumes (:func:`fails_4d`) that
series fails, as a real series does whose volumes carry no b-value.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import dicomml
from dicomml.config import PRESET_DIR, PipelineConfig
from dicomml.sample import write_sample_study

#: Corpus folders of the cohort, relative to the corpus root.
CORPUS_FOLDERS = ("dcmqi/data/segmentations", "dcm_qa/In/Orientation/sag")


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dicomml.Manifest:
    """Manifest of the sample study and a few corpus series (6 image series, 1 of them 4D)."""
    root = tmp_path_factory.mktemp("cohort")
    write_sample_study(root / "sample")
    sources = [root / "sample", *(data_dir / f for f in CORPUS_FOLDERS)]
    return dicomml.index(sources, root / "manifest", workers=1, progress=False)


@pytest.fixture(scope="session")
def ct_1mm() -> PipelineConfig:
    """The shipped preset dicomml/configs/ct_1mm.yaml."""
    return PipelineConfig.from_yaml(PRESET_DIR / "ct_1mm.yaml")


@pytest.fixture(scope="session")
def with_b1000():
    """``with_b1000(config)``: ``config`` keeping only the b = 1000 volumes of 4D series (the 4D MR has none, so it fails)."""

    def keep_b1000(config: PipelineConfig) -> PipelineConfig:
        data = config.to_dict()
        data["deterministic"]["volumes"] = {"by": "b_value", "values": [1000]}
        return PipelineConfig.from_dict(data)

    return keep_b1000


@pytest.fixture(scope="session")
def fails_4d(ct_1mm: PipelineConfig, with_b1000) -> PipelineConfig:
    """ct_1mm keeping only b = 1000 volumes: the 3D series pass as they are, the 4D MR fails (it has no b-values)."""
    return with_b1000(ct_1mm)


@pytest.fixture(scope="session")
def ct_seg() -> PipelineConfig:
    """The shipped preset dicomml/configs/ct_seg.yaml (image + every SEG segment)."""
    return PipelineConfig.from_yaml(PRESET_DIR / "ct_seg.yaml")


@pytest.fixture(scope="session")
def four_d_key(cohort: dicomml.Manifest) -> str:
    """The series key of the 4D sagittal MR (it fails under :func:`fails_4d`)."""
    rows = cohort.sql("SELECT series_key FROM series WHERE usable AND n_volumes > 1")
    assert len(rows) == 1, rows
    return str(rows["series_key"].iloc[0])

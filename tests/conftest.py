"""Fixtures shared by all tests: the real-DICOM corpus and its INDEX.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dicomml.testing import data_root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` (or ``$DICOMML_TEST_DATA``): real DICOM, read-only."""
    return data_root()


@pytest.fixture(scope="session")
def corpus_index(data_dir: Path) -> pd.DataFrame:
    """INDEX.csv of the corpus: one row per series (per file for SEG/RTSTRUCT)."""
    return pd.read_csv(data_dir / "INDEX.csv", dtype=str, keep_default_na=False)

"""Fixtures of the indexer tests: the real corpus indexed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

import dicomml
from dicomml.indexer import Manifest

SALT = "dicomml tests"


@pytest.fixture(scope="session")
def salt() -> str:
    """The salt the indexer tests pass explicitly (the user's salt file is never touched)."""
    return SALT


@pytest.fixture(scope="session")
def corpus_manifest(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The whole real corpus, indexed with two worker processes."""
    out = tmp_path_factory.mktemp("corpus") / "manifest"
    return dicomml.index(data_dir, out, workers=2, salt=SALT, progress=False)

"""Real servers on 127.0.0.1 holding the same corpus files: Orthanc (DICOMweb) and a moto S3 bucket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dicomml
from dicomml.testing.servers import FaultProxy, gcs_bucket, orthanc, s3_bucket

# gcsfs asks a bucket's layout over gRPC, which the GCS emulator does not serve (60 s lost a call); read when gcsfs is imported
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

#: Corpus folders served: a CT with its SEG, and a Siemens JPEG-lossless mosaic (its CSA header is bulk data).
FOLDERS = (
    "dcmqi/data/segmentations/24x38x3/image",
    "dcmqi/data/segmentations/24x38x3/seg",
    "dcm_qa/In/Orientation/axmb/AxAsc36mb2a",
)
BUCKET = "cohort"


@pytest.fixture(scope="session")
def corpus_files(data_dir: Path) -> dict[str, Path]:
    """Object key -> corpus file, for every file of :data:`FOLDERS`."""
    return {f"{folder}/{p.name}": p for folder in FOLDERS for p in sorted((data_dir / folder).iterdir()) if p.is_file()}


@pytest.fixture(scope="session")
def local_manifest(corpus_files: dict[str, Path], data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dicomml.Manifest:
    return dicomml.index([str(data_dir / f) for f in FOLDERS], tmp_path_factory.mktemp("local") / "m", workers=1, progress=False)


@pytest.fixture(scope="session")
def orthanc_root(corpus_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with orthanc(tmp_path_factory.mktemp("orthanc"), corpus_files.values()) as root:
        yield root


@pytest.fixture(scope="session")
def s3_endpoint(corpus_files: dict[str, Path]) -> Iterator[str]:
    with s3_bucket(BUCKET, {key: path.read_bytes() for key, path in corpus_files.items()}) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def gcs_endpoint(corpus_files: dict[str, Path]) -> Iterator[str]:
    with gcs_bucket(BUCKET, {key: path.read_bytes() for key, path in corpus_files.items()}) as endpoint:
        yield endpoint


@pytest.fixture
def orthanc_proxy(orthanc_root: str) -> Iterator[FaultProxy]:
    with FaultProxy(orthanc_root) as proxy:
        yield proxy


@pytest.fixture
def s3_proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint) as proxy:
        yield proxy

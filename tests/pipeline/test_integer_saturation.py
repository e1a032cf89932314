"""Unsigned pixels above the cache dtype's range saturate (rounded and clipped, as documented), never wrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.uid import generate_uid

import dicomml
from dicomml.config import PipelineConfig
from dicomml.dicom.synthetic import write_slice
from dicomml.transforms.functional.spatial import resample_image

BRIGHT = 40_000  # above int16's 32767: MR stored as uint16 without a rescale


@pytest.fixture(scope="module")
def bright_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two uint16 MR series of one study (same frame of reference), every pixel 40,000 but one 7."""
    root = tmp_path_factory.mktemp("bright")
    study, frame = generate_uid(), generate_uid()
    for name, number in (("a", 1), ("b", 2)):
        series = generate_uid()
        for k in range(4):
            pixels = np.full((8, 8), BRIGHT, np.uint16)
            pixels[0, 0] = 7
            extra = {"StudyInstanceUID": study, "FrameOfReferenceUID": frame, "PatientID": "P", "SeriesNumber": number}
            write_slice(
                root / f"{name}{k}.dcm",
                pixels,
                position=(0.0, 0.0, 2.0 * k),
                series_uid=series,
                instance=k + 1,
                modality="MR",
                rescale=None,
                extra={**extra, "SeriesDescription": name},
            )
    dicomml.index(root, root / "manifest", workers=1, progress=False)
    return root


def test_series_dataset_saturates_uint16_in_int16(bright_study: Path) -> None:
    manifest = dicomml.Manifest(bright_study / "manifest")
    image = dicomml.SeriesDataset(manifest, PipelineConfig.from_dict({"name": "p"}), str(bright_study / "cache"))[0]["image"]
    assert image.dtype == torch.int16
    assert int(image.max()) == 32767 and int(image.min()) == 7


def test_study_roles_saturate_uint16_in_int16(bright_study: Path) -> None:
    config = {
        "name": "s",
        "roles": {"a": {"where": "series_description = 'a'"}, "b": {"where": "series_description = 'b'"}},
        "reference": "a",
    }
    image = dicomml.StudyDataset(bright_study / "manifest", config, str(bright_study / "study-cache"))[0]["image"]
    for channel in image:  # the reference role (pipeline cast) and the other (resampled onto its grid)
        assert int(channel.max()) == 32767 and int(channel.min()) >= 0


@pytest.mark.parametrize(("source", "target", "expected"), [(torch.uint16, torch.int16, 32767), (torch.int32, torch.uint8, 255)])
def test_resample_image_saturates_integer_narrowing(source: torch.dtype, target: torch.dtype, expected: int) -> None:
    x = torch.full((1, 2, 3, 4), BRIGHT, dtype=torch.int32).to(source)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])  # a relayout: no interpolation, the input dtype goes straight to the target
    flipped[0, 3] = 1.0
    out = resample_image(x, np.eye(4), flipped, (2, 3, 4), dtype=target)
    assert out.dtype == target and int(out.max()) == expected and int(out.min()) == expected

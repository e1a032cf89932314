"""A small synthetic cohort of MR studies, indexed: the manifest the role rules are tested on."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import dicomml
from dicomml.testing.studies import SeriesGrid, write_study

SMALL = {"shape": (8, 16, 16), "spacing": (4.0, 4.0, 4.0)}
#: Sagittal: rows run head to feet, columns anterior to posterior.
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    """Three studies: A has t1, two t2 (ambiguous) and flair; B lacks flair; C lacks t1 (the reference)."""
    root = tmp_path_factory.mktemp("cohort")
    write_study(
        root / "dicom/A",
        [
            SeriesGrid("t1", number=1, **SMALL),
            SeriesGrid("t2_old", number=2, acquisition_time="091000", **SMALL),
            SeriesGrid("t2_new", number=3, acquisition_time="092000", orientation=SAGITTAL, **SMALL),
            SeriesGrid("flair", number=4, **SMALL),
        ],
        study_uid="1.2.826.0.1.3680043.8.498.1",
    )
    write_study(
        root / "dicom/B",
        [SeriesGrid("t1", number=1, **SMALL), SeriesGrid("t2", number=2, **SMALL)],
        study_uid="1.2.826.0.1.3680043.8.498.2",
    )
    write_study(
        root / "dicom/C",
        [SeriesGrid("t2", number=1, **SMALL), SeriesGrid("flair", number=2, **SMALL)],
        study_uid="1.2.826.0.1.3680043.8.498.3",
    )
    return dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)


@pytest.fixture(scope="session")
def roles_config():
    """``roles_config(**changes)``: the cohort's study config (t1 the reference, t2, flair), keys replaced;
    ``role_NAME={...}`` updates one role."""
    return _roles_config


def _roles_config(**changes):
    from dicomml.study import StudyConfig

    data = {
        "name": "brain",
        "roles": {
            "t1": {"where": "series_description = 't1'"},
            "t2": {"where": "series_description LIKE 't2%'"},
            "flair": {"where": "series_description = 'flair'"},
        },
        "reference": "t1",
    }
    for key, value in changes.items():
        if key.startswith("role_"):
            data["roles"][key[5:]].update(value)
        else:
            data[key] = value
    return StudyConfig.from_dict(data)


@pytest.fixture(scope="session")
def sitk_image():
    """``sitk_image(array, affine)``: a SimpleITK image of ``array`` (i, j, k) placed by its RAS+ affine."""
    return _sitk_image


def _sitk_image(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image of ``array`` (i, j, k) placed by its RAS+ ``affine`` (SimpleITK is LPS+, index x = i)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((np.diag([-1.0, -1, 1]) @ affine[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin((np.diag([-1.0, -1, 1]) @ affine[:3, 3]).tolist())
    return image

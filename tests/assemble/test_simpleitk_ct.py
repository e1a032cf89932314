"""Every regular CT series of the corpus agrees with SimpleITK's ImageSeriesReader (GDCM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dicomml.assemble import load_files
from dicomml.geometry import LPS_TO_RAS
from dicomml.testing import data_root


def _ct_rows():
    index = pd.read_csv(data_root() / "INDEX.csv", dtype=str, keep_default_na=False)
    ct = index[(index.modality == "CT") & (index.sop_class == "CT Image Storage")]
    # The dicom2nifti "failing" CTs (tilt, gap, not a volume) are irregular on purpose: SimpleITK
    # stacks them as if regular; test_dcm2niix_reference and test_load cover them.
    ct = ct[~ct.folder.str.startswith("dicom2nifti/tests/data/failing")]
    return [pytest.param(row.to_dict(), id=f"{row.folder}/{row.files}") for _, row in ct.iterrows()]


def _sitk_affine(image: sitk.Image) -> np.ndarray:
    """RAS+ affine of SimpleITK's array order (slice, row, column) = GetArrayFromImage's (k, j, i)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = (direction * np.array(image.GetSpacing()))[:, ::-1]
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


@pytest.mark.parametrize("row", _ct_rows())
def test_ct_matches_simpleitk(row):
    folder = data_root() / row["folder"]
    if row["files"]:
        files = [str(folder / row["files"])]
    else:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), row["series_instance_uid"]))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    image = reader.Execute()
    expected = sitk.GetArrayFromImage(image)
    volume = load_files(files[::-1])  # our own order must not matter
    assert volume.array.shape == expected.shape
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, expected)
    if len(files) > 1:  # SimpleITK invents the slice step of a single slice (1 mm)
        np.testing.assert_allclose(volume.affine, _sitk_affine(image), atol=1e-4)
    else:
        np.testing.assert_allclose(volume.affine[:, 1:], _sitk_affine(image)[:, 1:], atol=1e-4)

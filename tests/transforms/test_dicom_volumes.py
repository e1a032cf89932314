"""Transforms on volumes as ``dicomml.load_files`` returns them: DICOM (slice, row, column) order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.pixels import apply_windowing

import dicomml
from dicomml.seg import seg_to_grid
from dicomml.transforms import Compose, HeaderWindow, Mask, Orient, RandomAffine, RandomFlip, Resample

CT_FOLDER = "dcmqi/data/segmentations/ct-3slice"
MR_FOLDER = "dcm_qa_decubitus/In/HFDR/2_t1_fl2d_sag"


def _files(data_dir: Path, folder: str) -> list[Path]:
    return sorted(p for p in (data_dir / folder).iterdir() if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def ct(data_dir: Path) -> dicomml.Volume:
    return dicomml.load_files(_files(data_dir, CT_FOLDER))


@pytest.mark.parametrize(("folder", "reference"), [(CT_FOLDER, "ct_3slice"), (MR_FOLDER, "mr_sagittal")])
def test_orient_brings_dicom_order_onto_dcm2niix_layout(data_dir, nifti, folder, reference):
    loaded = dicomml.load_files(_files(data_dir, folder))
    expected = nifti(reference)
    assert loaded.orientation != expected.orientation  # DICOM order is not NIfTI's
    out = Orient(expected.orientation)(loaded)
    assert out.array.dtype == loaded.array.dtype  # a relayout never interpolates
    np.testing.assert_array_equal(out.array, expected.array)
    np.testing.assert_allclose(out.affine, expected.affine, atol=0.02)  # NIfTI stores its affine in float32


def test_fused_orient_and_resample_of_dicom_order_lands_on_the_reference_world(data_dir, nifti):
    loaded = dicomml.load_files(_files(data_dir, MR_FOLDER))
    expected = nifti("mr_sagittal")
    out = Resample(spacing=(1.5, 1.5, 2.0), axcodes="RAS")(loaded)
    assert out.orientation == "RAS"
    np.testing.assert_allclose(out.spacing, (1.5, 1.5, 2.0), rtol=1e-9)
    # Sample the reference NIfTI (float64, by hand, trilinear) at the output's world positions.
    rng = np.random.default_rng(0)
    voxels = np.stack([rng.integers(2, n - 2, 300) for n in out.array.shape], axis=1)
    world = voxels @ out.affine[:3, :3].T + out.affine[:3, 3]
    index = (world - expected.affine[:3, 3]) @ np.linalg.inv(expected.affine[:3, :3]).T
    values = _trilinear(expected.array, index)
    inside = np.all((index >= 0) & (index <= np.array(expected.array.shape) - 1), axis=1)
    got = out.array[tuple(voxels[inside].T)]
    np.testing.assert_allclose(got, values[inside], atol=1e-3 * float(np.ptp(expected.array)))


def _trilinear(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    low = np.clip(np.floor(index).astype(int), 0, np.array(array.shape) - 2)
    frac = index - low
    out = np.zeros(len(index))
    for corner in np.ndindex(2, 2, 2):
        weight = np.prod(np.where(corner, frac, 1 - frac), axis=1)
        out += weight * array[tuple((low + corner).T)]
    return out


def test_header_window_on_a_loaded_ct_matches_pydicom(data_dir, ct):
    first = _files(data_dir, CT_FOLDER)
    datasets = sorted((pydicom.dcmread(p) for p in first), key=lambda ds: float(ds.ImagePositionPatient[2]))
    out = HeaderWindow()(ct)
    for k, ds in enumerate(datasets):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        reference = apply_windowing(hu.astype(np.float64), ds)
        # pydicom's output range: the stored range, rescaled (PS3.3 C.11.2.1.2 leaves it to the caller).
        stored = (
            (-(2.0 ** (ds.BitsStored - 1)), 2.0 ** (ds.BitsStored - 1) - 1) if ds.PixelRepresentation else (0.0, 2.0**ds.BitsStored - 1)
        )
        low, high = (v * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for v in stored)
        np.testing.assert_allclose(out.array[k], (reference - low) / (high - low), atol=1e-5)


def test_real_seg_decoded_on_the_dicom_grid_stays_on_the_liver(data_dir, ct):
    mask = seg_to_grid(data_dir / "dcmqi/data/segmentations/liver.dcm", ct)
    assert mask.meta["kind"] == "mask"
    liver_hu = float(ct.array[mask.array == 1].mean())
    sample = {"image": torch.from_numpy(ct.array)[None], "mask": Mask(torch.from_numpy(mask.array)[None]), "affine": ct.affine}
    for seed in range(3):
        out = Compose(
            [
                Orient("RAS"),
                Resample(spacing=(1.2, 1.2, 1.0)),
                RandomFlip(p=0.5, seed=seed),
                RandomAffine(degrees=0, scale=0.1, translate=3, seed=seed),
            ]
        )(sample)
        inside = out["mask"][0].numpy() == 1
        assert inside.sum() > 0.4 * mask.array.sum() * (0.811 / 1.2) ** 2
        assert abs(float(out["image"][0].numpy()[inside].mean()) - liver_hu) < 5
    # Loaded as a Volume, the mask is nearest-resampled by its kind.
    resampled = Resample(spacing=2.0)(mask)
    assert resampled.array.dtype == np.uint8 and set(np.unique(resampled.array)) == {0, 1}

"""A real SEG pair goes through orientation + resampling and stays on its image."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from seg_refs import nrrd_labels

import dicomml
from dicomml.geometry import LPS_TO_RAS
from dicomml.seg import seg_to_grid
from dicomml.transforms import Compose, Mask, Orient, Resample

SEGS = "dcmqi/data/segmentations"


def _sitk(array: np.ndarray, affine: np.ndarray) -> sitk.Image:
    lps = (LPS_TO_RAS @ affine)[:3]
    columns = lps[:, :3][:, ::-1]  # numpy axes reversed into ITK's (x, y, z)
    spacing = np.linalg.norm(columns, axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((columns / spacing).ravel().tolist())
    image.SetOrigin(lps[:, 3].tolist())
    return image


def _centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    index = np.argwhere(mask > 0).mean(axis=0)
    return affine[:3, :3] @ index + affine[:3, 3]


def test_liver_seg_stays_on_its_ct_through_orient_and_resample(data_dir) -> None:
    image = dicomml.load_files(sorted((data_dir / SEGS / "ct-3slice").glob("*.dcm")))
    mask = seg_to_grid(data_dir / SEGS / "liver.dcm", image)
    sample = {
        "image": torch.from_numpy(image.array[None].astype(np.float32)),
        "mask": Mask(torch.from_numpy(mask.array[None])),
        "affine": image.affine,
    }
    out = Compose([Orient("RAS"), Resample(spacing=(1.5, 1.5, 1.0))])(sample)
    assert out["mask"].shape == out["image"].shape and isinstance(out["mask"], Mask)
    moved = out["mask"][0].numpy()
    assert set(np.unique(moved)) == {0, 1}  # nearest: still labels
    # Outside oracle: dcmqi's NRRD label map resampled nearest by SimpleITK onto the output grid.
    labels, labels_affine = nrrd_labels(data_dir / SEGS / "liver_seg.nrrd")
    target = _sitk(np.zeros(moved.shape, np.uint8), out["affine"])
    theirs = sitk.GetArrayFromImage(
        sitk.Resample(_sitk(labels.astype(np.uint8), labels_affine), target, sitk.Transform(), sitk.sitkNearestNeighbor)
    )
    agree = 2 * np.count_nonzero((moved > 0) & (theirs > 0)) / (np.count_nonzero(moved) + np.count_nonzero(theirs))
    assert agree >= 0.99
    spacing = np.linalg.norm(out["affine"][:3, :3], axis=0)
    shift = np.abs(_centroid_mm(moved, out["affine"]) - _centroid_mm(mask.array, mask.affine))
    assert np.all(shift <= spacing / 2)

"""An image and its mask stay aligned through orientation, resampling and random flip/crop/affine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dicomml.geometry import dicom_affine
from dicomml.transforms import Compose, Mask, Orient, RandomAffine, RandomCrop, RandomFlip, Resample
from dicomml.volume import Volume

CENTRE_RAS = np.array([-71.0, 17.0, 15.0])  # near the middle of the grid below
RADIUS_MM = 14.0


def _sphere_sample() -> dict:
    """A soft-edged ball (image) and its binary mask on an oblique, anisotropic DICOM-order grid."""
    affine = dicom_affine([0.996, 0.087, 0, -0.087, 0.996, 0], [0.9, 1.1], [40.0, -60.0, -30.0], [0, 0, 2.5])
    shape = (36, 80, 70)
    index = np.indices(shape).reshape(3, -1)
    world = (affine[:3, :3] @ index + affine[:3, 3:]).T
    distance = np.linalg.norm(world - CENTRE_RAS, axis=1).reshape(shape)
    image = np.clip(RADIUS_MM + 0.5 - distance, 0, 1).astype(np.float32) * 100  # partial-volume edge
    mask = (distance <= RADIUS_MM).astype(np.uint8)
    return {"image": torch.from_numpy(image)[None], "mask": Mask(torch.from_numpy(mask)[None]), "affine": affine}


def _centre_of_mass(weights: np.ndarray) -> np.ndarray:
    """Weighted mean voxel index."""
    w = weights.astype(np.float64)
    return np.array([(w.sum(axis=tuple(e for e in range(3) if e != d)) * np.arange(w.shape[d])).sum() for d in range(3)]) / w.sum()


def _centroids(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    image = sample["image"][0].numpy()
    mask = sample["mask"][0].numpy()
    return _centre_of_mass(image), _centre_of_mass(mask)


@pytest.mark.parametrize("seed", range(4))
def test_sphere_mask_stays_on_its_image_through_a_random_pipeline(seed):
    pipeline = Compose(
        [
            Orient("RAS"),
            Resample(spacing=1.5),
            RandomFlip(p=0.5, seed=seed),
            RandomCrop((40, 44, 42), seed=seed),
            RandomAffine(degrees=15, scale=0.1, translate=4, seed=seed),
        ]
    )
    out = pipeline(_sphere_sample())
    names = [t["name"] for t in out["meta"]["transforms"]]
    assert names == ["RandomFlip", "RandomCrop", "RandomAffine"]
    assert set(out["mask"].unique().tolist()) <= {0, 1} and int(out["mask"].sum()) > 1000
    image_centre, mask_centre = _centroids(out)
    assert np.all(np.abs(image_centre - mask_centre) < 0.5), (image_centre, mask_centre)
    world = out["affine"][:3, :3] @ mask_centre + out["affine"][:3, 3]
    assert np.linalg.norm(world - CENTRE_RAS) < 0.75  # half of a 1.5 mm voxel: the world stays true


def test_real_seg_pair_stays_aligned(liver_pair):
    image, labels = liver_pair
    on_grid = Resample(like=image)(labels)
    assert on_grid.array.dtype == np.uint8 and set(np.unique(on_grid.array)) == {0, 1}
    liver_hu = float(image.array[on_grid.array == 1].mean())
    assert 20 < liver_hu < 120  # the mask sits on soft tissue, not on air or bone

    sample = {"image": torch.from_numpy(image.array)[None], "mask": Mask(torch.from_numpy(on_grid.array)[None]), "affine": image.affine}
    centre = _world_centroid(sample)
    for seed in range(3):
        out = Compose(
            [Orient("PIR"), Resample(spacing=(1.2, 1.0, 1.2)), RandomFlip(p=0.5, seed=seed), RandomCrop((300, 3, 300), seed=seed)]
        )(sample)
        inside = out["mask"][0].numpy() == 1
        assert abs(float(out["image"][0].numpy()[inside].mean()) - liver_hu) < 5
        if inside.sum() > 0.5 * on_grid.array.sum():
            assert np.linalg.norm(_world_centroid(out) - centre) < 3.0  # crops cut the liver; its centre moves little


def _world_centroid(sample: dict) -> np.ndarray:
    index = _centre_of_mass(sample["mask"][0].numpy())
    affine = np.asarray(sample["affine"])
    return affine[:3, :3] @ index + affine[:3, 3]


def test_a_mask_volume_is_resampled_nearest_because_of_its_kind():
    mask = Volume(np.arange(27, dtype=np.int32).reshape(3, 3, 3), np.eye(4), meta={"kind": "mask"})
    out = Resample(spacing=0.5)(mask)
    assert out.array.dtype == np.int32 and set(np.unique(out.array)) == set(range(27))
    image = Volume(np.arange(27, dtype=np.int32).reshape(3, 3, 3), np.eye(4))
    assert Resample(spacing=0.5)(image).array.dtype == np.float32  # an integer image is still an image

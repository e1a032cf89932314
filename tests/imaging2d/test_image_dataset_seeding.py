"""ImageDataset's augmentations draw by (seed, epoch, index), as the volume Datasets' do, never by DataLoader worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose as MonaiCompose
from monai.transforms import RandGaussianNoised
from torch.utils.data import DataLoader

import dicomml
from dicomml.data import collate
from dicomml.errors import ConfigError
from dicomml.imaging2d import ImageConfig, ImageDataset, Planar
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.transforms import RandomFlip, RandomNoise


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> Path:
    """Eight identical chest films: every difference between samples is the augmentation's."""
    root = tmp_path_factory.mktemp("films")
    for i in range(8):
        write_image2d(root / "dx" / f"{i}.dcm", np.full((40, 48), 100, np.uint16), bits_stored=12)
    dicomml.index(root / "dx", root / "manifest", workers=1, progress=False)
    return root


def _noisy(root: Path, transforms, seed: int = 3) -> ImageDataset:
    return ImageDataset(root / "manifest", root / "cache", ImageConfig(size=(32, 32)), transforms=transforms, seed=seed)


def _draws(ds: ImageDataset, workers: int) -> list[torch.Tensor]:
    return [batch["image"][0] for batch in DataLoader(ds, batch_size=1, num_workers=workers, collate_fn=collate)]


@pytest.mark.parametrize(
    "transforms",
    [MonaiCompose([RandGaussianNoised(keys=["image"], prob=1.0, std=0.1)]), Planar(RandomNoise(std=0.1, p=1.0))],
    ids=["monai", "dicomml"],
)
def test_draws_follow_seed_epoch_and_index_not_workers(films, transforms):
    ds = _noisy(films, transforms)
    alone = _draws(ds, 0)
    assert len({tuple(image.flatten()[:4].tolist()) for image in alone}) == len(alone)  # every sample its own draw
    assert all(torch.equal(a, b) for a, b in zip(_draws(ds, 2), alone, strict=True))  # two forked workers: the same draws
    assert torch.equal(_noisy(films, transforms)[5]["image"], alone[5])  # a new run with the seed
    ds.set_epoch(1)
    assert not torch.equal(ds[5]["image"], alone[5])
    assert not torch.equal(_noisy(films, transforms, seed=4)[5]["image"], alone[5])


def test_a_planar_monai_transform_is_seeded_through_the_wrapper(films):
    ds = _noisy(films, Planar(MonaiCompose([RandGaussianNoised(keys=["image"], prob=1.0, std=0.1)])))
    assert all(torch.equal(a, b) for a, b in zip(_draws(ds, 2), _draws(ds, 0), strict=True))


def test_a_random_transform_with_its_own_seed_is_refused(films):
    for transforms in (RandomFlip(axes=(1,), seed=2), Planar(RandomFlip(axes=(1,), seed=2))):
        with pytest.raises(ConfigError, match=r"ImageDataset: RandomFlip\(seed=2\).*pass seed= to the Dataset"):
            _noisy(films, transforms)

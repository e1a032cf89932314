"""Random transforms in batches: one dtype whatever the draw, fixed-shape records, per-worker seeded streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import list_data_collate
from torch.utils.data import DataLoader, Dataset, default_collate

from dicomml.transforms import Mask, RandomAffine, RandomCrop, RandomFlip, RandomIntensity, RandomNoise


def _ct(nifti) -> dict:
    """A real CT as dicomml loads it: int16 HU, with a label map."""
    volume = nifti("ct_3slice")
    image = torch.from_numpy(np.rint(volume.array[200:232, 200:232]).astype(np.int16))[None]
    return {"image": image, "mask": Mask((image > 0).to(torch.uint8)), "affine": volume.affine}


@pytest.mark.parametrize(
    "transform",
    [RandomAffine(degrees=10, p=0.5, seed=0), RandomIntensity(scale=0.1, p=0.5, seed=0), RandomNoise(std=1.0, p=0.5, seed=0)],
    ids=["RandomAffine", "RandomIntensity", "RandomNoise"],
)
def test_a_random_transform_gives_one_dtype_whether_or_not_its_draw_applies(nifti, transform):
    sample = _ct(nifti)
    outs = [transform(sample) for _ in range(12)]
    assert {o["meta"]["transforms"][0]["applied"] for o in outs} == {True, False}
    assert {o["image"].dtype for o in outs} == {torch.float32}
    assert {o["mask"].dtype for o in outs} == {torch.uint8}
    batch = default_collate([{"image": o["image"], "mask": o["mask"]} for o in outs])
    assert batch["image"].shape == (12, *sample["image"].shape)


def test_random_flip_records_collate_and_undo_the_flip(nifti):
    sample = _ct(nifti)
    flip = RandomFlip(p=0.5, seed=1)
    batch = [flip(sample) for _ in range(6)]
    records = [b["meta"]["transforms"][0]["flipped"] for b in batch]
    assert len({tuple(r) for r in records}) > 1 and {len(r) for r in records} == {3}
    for collate in (default_collate, list_data_collate):
        collated = collate(batch)
        assert collated["image"].shape == (6, *sample["image"].shape)
    for out, record in zip(batch, records):
        dims = [1 + a for a, f in enumerate(record) if f]
        assert torch.equal(out["image"].flip(dims) if dims else out["image"], sample["image"])


class _Crops(Dataset):
    def __init__(self, transform) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[int, ...]:
        return tuple(self.transform({"image": torch.zeros(1, 9, 9, 9)})["meta"]["transforms"][0]["start"])


def _draws(seed: int | None) -> list[tuple[int, ...]]:
    loader = DataLoader(_Crops(RandomCrop(2, seed=seed)), batch_size=None, num_workers=2)
    return list(loader)


def test_a_seeded_transform_draws_differently_in_each_worker_and_repeats_per_run():
    first = _draws(0)
    by_worker = first[0::2], first[1::2]  # DataLoader deals samples to its two workers in turn
    assert by_worker[0] != by_worker[1]
    assert _draws(0) == first
    assert _draws(1) != first


def test_a_seed_must_be_a_non_negative_integer():
    from dicomml.errors import ConfigError

    with pytest.raises(ConfigError, match=r"RandomCrop\(seed=-1\): seed must be an integer >= 0"):
        RandomCrop(2, seed=-1)
    assert RandomFlip(seed=np.int64(3)).seed == 3

"""Several Python threads reading one Dataset (a thread-pool prefetcher) get the samples one thread gets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from monai.transforms import Compose as MonaiCompose
from monai.transforms import RandGaussianNoised

from dicomml.data.datasets import SeededDataset
from dicomml.transforms import Compose, RandomFlip, RandomIntensity, RandomNoise


class _Constant(SeededDataset):
    """Eight equal samples: every difference between them is the transform's draws."""

    def __init__(self, transform: Any) -> None:
        super().__init__(0, "constant", [transform])
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = {"image": torch.zeros(1, 4, 4, 4), "affine": torch.eye(4, dtype=torch.float64), "meta": {}}
        return self._seeded(self._random(index)[1], [self.transform], sample)


def _threaded(ds: _Constant) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(ds.__getitem__, range(len(ds))))


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return torch.equal(a["image"], b["image"]) and a["meta"] == b["meta"]


def test_dicomml_transforms_in_threads_draw_as_one_thread_and_never_reseed_torchs_generator(monkeypatch):
    ds = _Constant(Compose([RandomIntensity(scale=0.2, shift=0.1), RandomFlip(axes=(0, 1, 2)), RandomNoise(std=0.1)]))
    alone = [ds[i] for i in range(len(ds))]
    assert len({str(s["meta"]["transforms"]) for s in alone}) == len(alone)  # every sample its own draws
    # two threads meet between the first transform's draws and the next ones': each has drawn before the other goes on
    meet, seeds = threading.Barrier(2, timeout=10), []
    plain = RandomIntensity.apply_image

    def meeting(self: RandomIntensity, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        seeds.append(torch.initial_seed())  # what torch's global generator was last seeded with
        meet.wait()
        return plain(self, x, params)

    monkeypatch.setattr(RandomIntensity, "apply_image", meeting)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    got = _threaded(ds)
    assert seeds == [123] * len(ds)  # the training loop's seed: a sample's draws never reseed the global generator
    assert torch.equal(torch.rand(3), expected)
    assert all(_same(a, b) for a, b in zip(got, alone, strict=True))


def _slowly(sample: dict[str, Any]) -> dict[str, Any]:
    """A user's transform drawing from torch's global generator, with a pause between draws that another thread could use."""
    first = torch.rand(())
    time.sleep(0.02)
    return {**sample, "image": sample["image"] + first + torch.rand(())}


def test_other_transforms_in_threads_draw_as_one_thread_and_restore_torchs_generator():
    noise = RandGaussianNoised(keys=["image"], prob=1.0, std=0.1)
    for transform in (_slowly, MonaiCompose([_slowly, noise]), Compose([RandomIntensity(), _slowly, RandomNoise()])):
        ds = _Constant(transform)
        alone = [ds[i] for i in range(len(ds))]
        assert len({float(s["image"].sum()) for s in alone}) == len(alone), transform
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        assert all(_same(a, b) for a, b in zip(_threaded(ds), alone, strict=True)), transform
        assert torch.equal(torch.rand(3), expected), transform


def test_a_users_transform_draws_the_samples_stream_after_dicomml_transforms():
    """The stream dicomml's transforms left goes on in torch's global generator for the user's transform (one stream)."""
    seen = []
    ds = _Constant(Compose([RandomIntensity(), lambda sample: seen.append(torch.rand(2)) or sample]))
    ds[3]
    stream = torch.Generator().manual_seed(ds._random(3)[1])
    torch.rand(3, generator=stream, dtype=torch.float64)  # RandomIntensity's three draws
    assert torch.equal(seen[0], torch.rand(2, generator=stream))

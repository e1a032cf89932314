"""The Mask tag survives batching, slicing, moves and casts; to_metatensor takes a batch as MONAI's collate makes it."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch, list_data_collate
from torch.utils.data import DataLoader

from dicomml.data import collate
from dicomml.errors import GeometryError
from dicomml.transforms import Mask, RandomAffine, RandomFlip, from_metatensor, to_metatensor


def _sample(i: int, meta: dict | None = None) -> dict:
    """A small sample: a float image, a two-channel 0/1 mask and an oblique affine that differs per sample."""
    g = torch.Generator().manual_seed(i)
    affine = np.diag([0.7 + 0.1 * i, 0.8, 2.5, 1.0])
    affine[:3, :3] = affine[:3, :3] @ np.array([[1, 0, 0], [0, 0.8, -0.6], [0, 0.6, 0.8]])
    affine[:3, 3] = [i, -2.0 * i, 30.0]
    mask = torch.zeros(2, 12, 10, 8, dtype=torch.uint8)
    mask[0, 3:9, 2:8, 2:6] = 1
    mask[1, 5:7, 4:6, 3:5] = 1
    meta = {
        "series_key": f"s{i}",
        "index": i,
        "patch_start": (i, 0, 1),
        "transforms": [{"name": "RandomFlip", "flipped": [True, i % 2 == 1]}],
    }
    return {"image": torch.rand(1, 12, 10, 8, generator=g), "mask": Mask(mask), "affine": torch.from_numpy(affine), "meta": meta}


def _same(a, b) -> bool:
    """Equal values, tensors compared elementwise, dicts and lists recursively."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


BATCH_MASK = Mask(torch.randint(0, 2, (3, 2, 4, 5, 6), dtype=torch.uint8))
KEEP = {
    "index": lambda m: m[0],
    "slice": lambda m: m[:, :1],
    "iterate": lambda m: next(iter(m)),
    "select": lambda m: m.select(0, 1),
    "unbind": lambda m: m.unbind(0)[2],
    "torch.unbind": lambda m: torch.unbind(m)[1],
    "split": lambda m: m.split(2)[0],
    "chunk": lambda m: torch.chunk(m, 3)[1],
    "to device copy": lambda m: m.to("cpu", copy=True),
    "to meta": lambda m: m.to("meta"),
    "to dtype": lambda m: m.to(torch.float16),
    "float": lambda m: m.float(),
    "long": lambda m: m.long(),
    "byte": lambda m: m.float().byte(),
    "cpu": lambda m: m.cpu(),
    "clone": lambda m: m.clone(),
    "detach": lambda m: m.detach(),
    "contiguous": lambda m: m[..., ::2].contiguous(),
    "requires_grad_": lambda m: m.float().requires_grad_(),
}


@pytest.mark.parametrize("op", KEEP.values(), ids=KEEP.keys())
def test_ops_that_move_copy_cast_or_slice_a_mask_keep_the_tag(op):
    out = op(BATCH_MASK)
    assert isinstance(out, Mask)
    if out.device.type != "meta":
        assert set(torch.unique(out.detach().float()).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "op",
    [lambda m: m + 1, lambda m: m * 2.5, lambda m: m.reshape(-1), lambda m: torch.stack([m, m]), lambda m: m.sum()],
    ids=["add", "mul", "reshape", "stack", "sum"],
)
def test_arithmetic_and_other_ops_give_plain_tensors(op):
    assert type(op(BATCH_MASK)) is torch.Tensor


def test_a_plain_tensor_moved_like_a_mask_stays_plain_and_metatensors_still_win():
    assert type(torch.zeros(3).to(BATCH_MASK)) is torch.Tensor
    assert type(MetaTensor(torch.ones(3, 2, 4, 5, 6)) * BATCH_MASK) is MetaTensor
    assert type(BATCH_MASK * MetaTensor(torch.ones(3, 2, 4, 5, 6))) is MetaTensor


def test_deepcopy_and_pickle_give_back_a_mask():
    for copied in (copy.deepcopy(BATCH_MASK), pickle.loads(pickle.dumps(BATCH_MASK))):
        assert type(copied) is Mask and torch.equal(copied, BATCH_MASK) and copied.data_ptr() != BATCH_MASK.data_ptr()


def test_a_mask_taken_from_a_collated_batch_is_resampled_nearest_like_the_sample_it_came_from():
    samples = [_sample(i) for i in range(2)]
    batch = collate(samples)
    assert type(batch["mask"]) is Mask
    assert torch.equal(batch["mask"], list_data_collate(samples)["mask"])  # MONAI's collate batches the same values
    for i, sample in enumerate(samples):
        taken = {"image": batch["image"][i], "mask": batch["mask"][i], "affine": batch["affine"][i]}
        out = RandomAffine(degrees=20, scale=0.1, seed=i)(taken)
        reference = RandomAffine(degrees=20, scale=0.1, seed=i)(sample)
        assert type(out["mask"]) is Mask and out["mask"].dtype == torch.uint8
        assert set(torch.unique(out["mask"]).tolist()) <= {0, 1}
        assert torch.equal(out["mask"], reference["mask"])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_masks_come_back_from_dataloader_workers_and_index_as_masks(context):
    samples = [_sample(i) for i in range(4)]  # a list is a Dataset: spawn workers unpickle its Masks too
    loader = DataLoader(samples, batch_size=2, num_workers=2, multiprocessing_context=context, collate_fn=collate)
    batches = list(loader)
    assert len(batches) == 2 and all(type(b["mask"]) is Mask for b in batches)
    assert type(batches[1]["mask"][0]) is Mask and torch.equal(batches[1]["mask"][0], samples[2]["mask"])
    singles = DataLoader(samples, batch_size=None, num_workers=2, multiprocessing_context=context)
    assert all(type(s["mask"]) is Mask for s in singles)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_and_cuda_masks_keep_the_tag():
    batch = next(iter(DataLoader([_sample(i) for i in range(2)], batch_size=2, collate_fn=collate, pin_memory=True)))
    assert type(batch["mask"]) is Mask and batch["mask"].is_pinned()
    on_gpu = batch["mask"].cuda(non_blocking=True)[0]
    assert type(on_gpu) is Mask
    out = RandomFlip(p=1.0)({"image": batch["image"][0].cuda(), "mask": on_gpu, "affine": batch["affine"][0]})
    assert type(out["mask"]) is Mask and out["mask"].dtype == torch.uint8


@pytest.mark.parametrize("numpy_affines", [False, True], ids=["tensor-affines", "numpy-affines"])
def test_to_metatensor_of_a_collated_batch_matches_monai_collate_of_the_samples(numpy_affines):
    samples = [_sample(i) for i in range(3)]
    if numpy_affines:  # collate keeps numpy affines as a list
        samples = [{**s, "affine": s["affine"].numpy()} for s in samples]
    batch = collate(samples)
    ours = to_metatensor(batch)
    reference = list_data_collate([to_metatensor(s) for s in samples])
    for key in ("image", "mask"):
        got, want = ours[key], reference[key]
        assert type(got) is MetaTensor and got.is_batch and want.is_batch
        assert got.shape == want.shape and got.dtype == want.dtype and torch.equal(got.as_tensor(), want.as_tensor())
        assert got.affine.shape == (3, 4, 4) and torch.equal(got.affine, want.affine)
        assert _same(dict(got.meta), dict(want.meta))
        assert got.applied_operations == want.applied_operations and got.spatial_ndim == want.spatial_ndim
    assert ours["mask"].meta["kind"] == ["mask"] * 3
    assert ours["image"].data_ptr() == batch["image"].data_ptr()  # the batch is wrapped, not copied
    for one, sample in zip(decollate_batch(ours), samples):
        assert torch.equal(one["image"].affine, torch.as_tensor(sample["affine"], dtype=torch.float64))


def test_to_metatensor_of_a_batch_keeps_meta_that_default_collate_cannot_batch_as_lists():
    samples = [_sample(i) for i in range(2)]
    for s in samples:
        s["meta"]["present"] = None  # dicomml metas hold None (PatchDataset's "present", "positive_channel")
    ours = to_metatensor(collate(samples))
    assert ours["image"].meta["present"] == [None, None]
    assert ours["image"].meta["series_key"] == ["s0", "s1"] and torch.equal(ours["image"].meta["index"], torch.tensor([0, 1]))


def test_to_metatensor_of_a_batch_of_3d_entries_adds_the_channel_after_the_batch_axis():
    samples = [{**_sample(i), "image": _sample(i)["image"][0]} for i in range(2)]
    ours = to_metatensor(collate(samples))["image"]
    reference = list_data_collate([to_metatensor(s) for s in samples])["image"]
    assert ours.shape == reference.shape == (2, 1, 12, 10, 8)


def test_to_metatensor_rejects_a_batch_whose_metas_do_not_match_its_length():
    batch = collate([_sample(i) for i in range(3)])
    with pytest.raises(GeometryError, match="one length"):
        to_metatensor({**batch, "meta": batch["meta"][:2]})


def test_from_metatensor_of_monai_collated_metatensors_gives_a_dicomml_batch():
    samples = [_sample(i) for i in range(3)]
    monai_batch = list_data_collate([{k: v for k, v in to_metatensor(s).items() if k != "meta"} for s in samples])
    back = from_metatensor({"image": monai_batch["image"], "organs": monai_batch["mask"]})
    ours = collate(samples)
    np.testing.assert_array_equal(back["affine"], ours["affine"].numpy())
    assert type(back["organs"]) is Mask and torch.equal(back["organs"], ours["mask"])  # tagged kind "mask" in every sample
    assert [m["series_key"] for m in back["meta"]] == ["s0", "s1", "s2"]
    with pytest.raises(GeometryError, match="index the batch"):
        RandomFlip(p=1.0)(monai_batch)

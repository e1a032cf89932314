"""Samples, the Mask type, the MONAI bridge, Compose interplay and DataLoader workers."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose as MonaiCompose
from monai.transforms import Orientationd, Spacingd
from torch.utils.data import DataLoader, Dataset

from dicomml.errors import GeometryError
from dicomml.transforms import (
    CropForeground,
    CropOrPad,
    Mask,
    MultiWindow,
    Orient,
    RandomAffine,
    RandomCrop,
    RandomFlip,
    Resample,
    Window,
    from_metatensor,
    to_metatensor,
)
from dicomml.volume import Volume


def _sample() -> dict:
    image = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6)
    affine = np.array([[0, 0, -1.5, 30], [0, -0.8, 0, 20], [2.0, 0, 0, -10], [0, 0, 0, 1]])
    return {"image": image, "mask": Mask((image > 60).to(torch.uint8)), "affine": affine, "meta": {"uid": "1.2.3"}}


def test_mask_is_a_cheap_tag_that_survives_pickle_and_deepcopy():
    mask = Mask(torch.ones(1, 2, 2, 2, dtype=torch.uint8))
    assert type(mask + 1) is torch.Tensor  # no __torch_function__ wrapping on the hot path
    for clone in (pickle.loads(pickle.dumps(mask)), copy.deepcopy(mask)):
        assert isinstance(clone, Mask) and torch.equal(clone, mask)


def test_a_sample_keeps_its_extra_keys_and_affine_type():
    sample = {**_sample(), "label": 3, "affine": torch.from_numpy(_sample()["affine"])}
    out = Orient("RAS")(sample)
    assert out["label"] == 3 and out["meta"]["uid"] == "1.2.3"
    assert isinstance(out["affine"], torch.Tensor) and out["affine"].dtype == torch.float64
    assert isinstance(sample["affine"], torch.Tensor) and sample["meta"] == {"uid": "1.2.3"}  # input untouched


def test_dicomml_transforms_run_inside_monai_compose_next_to_monai_dict_transforms():
    pipeline = MonaiCompose([Orient("RAS"), Resample(spacing=1.0), Window(40, 80)])
    out = pipeline(_sample())
    assert out["image"].shape[0] == 1 and float(out["image"].max()) <= 1.0
    mt = to_metatensor(out)
    assert isinstance(mt["image"], MetaTensor) and mt["mask"].meta["kind"] == "mask"
    np.testing.assert_allclose(mt["image"].affine.numpy(), out["affine"])
    monai_out = MonaiCompose(
        [Orientationd(keys=["image", "mask"], axcodes="LPS"), Spacingd(keys=["image", "mask"], pixdim=2.0, mode=("bilinear", "nearest"))]
    )(mt)
    back = from_metatensor(monai_out)
    assert isinstance(back["mask"], Mask) and not isinstance(back["image"], MetaTensor)
    np.testing.assert_allclose(back["affine"], monai_out["image"].affine.numpy())
    ours = Resample(spacing=2.0, align="centers")(Orient("LPS")(out))
    np.testing.assert_allclose(ours["affine"], back["affine"], atol=1e-6)


def test_to_metatensor_of_a_volume_carries_its_affine():
    volume = Volume(np.zeros((3, 4, 5), np.float32), np.diag([2.0, 3.0, 4.0, 1.0]))
    mt = to_metatensor(volume)
    assert isinstance(mt, MetaTensor) and mt.shape == (1, 3, 4, 5)  # channel-first, as MONAI requires
    np.testing.assert_array_equal(mt.affine.numpy(), volume.affine)
    assert from_metatensor(mt)["image"].shape == (1, 3, 4, 5)


def test_bare_tensor_in_bare_tensor_out_and_bad_inputs_raise():
    assert Orient("LPS")(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    with pytest.raises(GeometryError, match="sample dict, a tensor or a Volume"):
        Orient("LPS")([1, 2, 3])


def _voxel_world_check(before: dict, after: dict) -> None:
    """Every output voxel holds the input value found at the same world position (whole-voxel maps)."""
    index_map = np.linalg.solve(np.asarray(before["affine"]), np.asarray(after["affine"]))
    out = after["image"][0].numpy()
    src = before["image"][0].numpy()
    for v in np.ndindex(out.shape):
        u = np.rint(index_map[:3, :3] @ v + index_map[:3, 3]).astype(int)
        inside = np.all(u >= 0) and np.all(u < src.shape)
        assert out[v] == (src[tuple(u)] if inside else 0.0)


@pytest.mark.parametrize(
    "transform",
    [CropOrPad((3, 7, 4)), RandomCrop((3, 3, 3), seed=1), RandomCrop((6, 2, 8), seed=2), RandomFlip(p=1.0), Orient("SPL")],
    ids=repr,
)
def test_whole_voxel_transforms_keep_every_value_at_its_world_position(transform):
    sample = _sample()
    _voxel_world_check(sample, transform(sample))


def test_crop_foreground_crops_to_the_bounding_box_plus_margin():
    sample = _sample()
    sample["image"] = torch.zeros(1, 10, 10, 10)
    sample["image"][0, 3:5, 4, 6:9] = 1.0
    sample["mask"] = Mask(sample["image"].to(torch.uint8))
    out = CropForeground(margin=1)(sample)
    assert out["image"].shape == (1, 4, 3, 5) and int(out["mask"].sum()) == 6
    assert out["meta"]["transforms"][0] == {"name": "CropForeground", "start": [2, 3, 5], "size": [4, 3, 5]}
    _voxel_world_check(sample, out)
    empty = CropForeground(threshold=5.0)(sample)
    assert empty["image"].shape == sample["image"].shape


def test_random_affine_with_p_zero_is_identity_and_seeds_repeat():
    sample = _sample()
    same = RandomAffine(p=0.0)(sample)
    assert torch.equal(same["image"], sample["image"]) and not same["meta"]["transforms"][0]["applied"]
    a, b = RandomAffine(seed=5)(sample), RandomAffine(seed=5)(sample)
    assert a["meta"]["transforms"] == b["meta"]["transforms"] and torch.equal(a["image"], b["image"])


class _Repeat(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        return RandomFlip(p=0.5)(_sample())


def test_dataloader_workers_draw_different_parameters_and_keep_masks():
    loader = DataLoader(_Repeat(), batch_size=None, num_workers=2, collate_fn=lambda s: s)
    draws = [tuple(s["meta"]["transforms"][0]["flipped"]) for s in loader]
    assert len(set(draws)) > 1
    assert all(isinstance(s["mask"], Mask) for s in DataLoader(_Repeat(), batch_size=None, num_workers=2, collate_fn=lambda s: s))


def test_monai_metatensor_dicts_go_through_and_come_back_as_metatensors():
    sample = _sample()
    mt = to_metatensor(sample)
    out = Resample(spacing=2.0, axcodes="RAS")(mt)
    assert isinstance(out["image"], MetaTensor) and out["mask"].meta["kind"] == "mask"
    plain = Resample(spacing=2.0, axcodes="RAS")(sample)
    np.testing.assert_allclose(out["image"].affine.numpy(), plain["affine"])
    assert torch.equal(out["image"].as_tensor(), plain["image"])
    single = Orient("RAS")(mt["image"])
    assert isinstance(single, MetaTensor) and single.affine[0, 0] > 0


def test_a_volume_with_a_time_axis_becomes_channels_when_windows_multiply_them():
    volume = Volume(np.zeros((2, 3, 4, 5), np.int16), np.eye(4), axes=("time",), meta={"window_center": [40], "window_width": [80]})
    assert Orient("LPS")(volume).axes == ("time",)
    stacked = MultiWindow(["brain", "bone"])(volume)
    assert stacked.axes == ("channel",) and stacked.array.shape == (4, 3, 4, 5)
    assert stacked.meta is not volume.meta and stacked.meta["window_center"] == [40]

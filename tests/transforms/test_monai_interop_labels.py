"""MONAI MetaTensor dicts: which entries are label maps, no added keys, channel-first MetaTensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose as MonaiCompose
from monai.transforms import Orientation, SpatialResample

from dicomml.transforms import Mask, Orient, RandomAffine, Resample, from_metatensor, to_metatensor


def _monai_dict(image, labels) -> dict:
    """What ``LoadImaged(keys=["image", "label"])`` + ``EnsureChannelFirstd`` give: MetaTensors, no kind tag."""
    affine = torch.from_numpy(labels.affine)
    assert np.allclose(labels.affine, image.affine)  # one grid, as a sample needs
    return {
        "image": MetaTensor(torch.from_numpy(np.ascontiguousarray(image.array))[None], affine=torch.from_numpy(image.affine)),
        "label": MetaTensor(torch.from_numpy(labels.array.astype(np.uint8))[None], affine=affine),
    }


@pytest.mark.parametrize(
    "transform", [Resample(spacing=(1.3, 1.3, 1.0)), RandomAffine(degrees=10, seed=0)], ids=["Resample", "RandomAffine"]
)
def test_a_monai_label_under_the_label_key_is_resampled_nearest_inside_monai_compose(liver_pair, transform):
    image, labels = liver_pair
    labels = Resample(like=image)(labels)  # dcmqi's NRRD is flipped along A/P against the CT: relay it (no interpolation)
    out = MonaiCompose([transform])(_monai_dict(image, labels))
    assert sorted(out) == ["image", "label"]  # no "meta" key added to MONAI's dict
    label = out["label"]
    assert isinstance(label, MetaTensor) and label.dtype == torch.uint8 and label.meta["kind"] == "mask"
    assert set(torch.unique(label.as_tensor()).tolist()) == {0, 1}
    # MONAI's own nearest resampling onto the grid dicomml chose is the oracle
    reference = SpatialResample(mode="nearest", padding_mode="zeros")(
        MetaTensor(torch.from_numpy(labels.array.astype(np.float32))[None], affine=torch.from_numpy(labels.affine)),
        dst_affine=label.affine,
        spatial_size=label.shape[1:],
    )
    agree = (reference.as_tensor().to(torch.uint8) == label.as_tensor()).double().mean()
    assert float(agree) > 0.999


def test_label_keys_and_the_kind_tag_decide_which_metatensors_are_label_maps():
    x = MetaTensor(torch.zeros(1, 2, 2, 2))
    read = from_metatensor({"image": x, "label": x, "seg": x, "ct": x.to(torch.int16), "organ": MetaTensor(x, meta={"kind": "mask"})})
    assert {k for k, v in read.items() if isinstance(v, Mask)} == {"label", "seg", "organ"}
    assert not isinstance(from_metatensor({"label": x}, label_keys=())["label"], Mask)


def test_to_metatensor_of_a_volume_is_channel_first_as_monai_orientation_needs(nifti):
    volume = nifti("mr_sagittal")
    mt = to_metatensor(volume)
    assert mt.shape == (1, *volume.array.shape)
    ours = Orient("RAS")(volume)
    theirs = Orientation("RAS", labels=None)(mt)
    assert theirs.shape == (1, *ours.array.shape)
    np.testing.assert_array_equal(theirs.as_tensor()[0].numpy(), ours.array)
    np.testing.assert_allclose(theirs.affine.numpy(), ours.affine, atol=1e-6)


def test_a_channel_less_metatensor_keeps_its_shape_through_a_transform():
    mt = MetaTensor(torch.zeros(3, 4, 5))
    assert Orient("LPS")(mt).shape == (3, 4, 5)

"""Datasets in training loops as users wrap them: random_split / ConcatDataset under the DataModule, no validation
set, MONAI croppers returning several samples, batches mixing samples with and without masks, bad seeds."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose as MonaiCompose
from monai.transforms import RandCropByPosNegLabeld
from torch.utils.data import ConcatDataset, DataLoader, Subset, random_split

from dicomml.data import DataModule, PatchDataset, SegmentationDataset, collate, reach_epoch
from dicomml.errors import ConfigError
from dicomml.transforms import Mask

CT = "modality = 'CT'"


def _patches(study, make_config, tmp_path) -> PatchDataset:
    _, manifest = study
    return PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(16, 16, 16), samples_per_volume=4, seed=3)


def _starts(dataset) -> list[tuple[int, ...]]:
    return [tuple(dataset[i]["meta"]["patch_start"]) for i in range(len(dataset))]


@pytest.mark.parametrize(
    "wrap",
    [lambda d: Subset(d, range(4)), lambda d: ConcatDataset([d]), lambda d: random_split(d, [2, 2], torch.Generator().manual_seed(0))[0]],
    ids=["subset", "concat", "random_split"],
)
def test_the_epoch_reaches_a_wrapped_patch_dataset(study, make_config, tmp_path, wrap):
    wrapped = wrap(_patches(study, make_config, tmp_path))
    before = _starts(wrapped)
    reach_epoch(wrapped, 1)
    assert [wrapped[i]["meta"]["epoch"] for i in range(len(wrapped))] == [1] * len(wrapped)
    assert _starts(wrapped) != before
    sampler = DataModule(wrapped, batch_size=2).train_dataloader().sampler
    sampler.set_epoch(2)  # what Lightning calls every epoch
    assert wrapped[0]["meta"]["epoch"] == 2


def test_a_data_module_without_validation_gives_no_loader_and_needs_a_training_set(study, make_config, tmp_path):
    module = DataModule(_patches(study, make_config, tmp_path))
    assert module.val_dataloader() == [] and module.test_dataloader() == []
    with pytest.raises(ConfigError, match="no train dataset was given"):
        DataModule(val=_patches(study, make_config, tmp_path)).train_dataloader()


def test_a_monai_cropper_with_num_samples_gives_that_many_samples_batched_by_collate(study, make_config, tmp_path):
    _, manifest = study
    crop = RandCropByPosNegLabeld(keys=["image", "mask"], label_key="mask", spatial_size=(16, 16, 16), num_samples=3)
    ds = SegmentationDataset(manifest, make_config("ct_seg", at_load={"augment": []}), tmp_path / "c", transform=MonaiCompose([crop]))
    crops = ds[0]
    assert isinstance(crops, list) and len(crops) == 3
    assert all(c["image"].shape[1:] == (16, 16, 16) and type(c["image"]) is torch.Tensor for c in crops)
    assert all(c["affine"].dtype == torch.float64 and isinstance(c["mask"], Mask) for c in crops)
    assert [torch.equal(a["image"], b["image"]) for a, b in zip(crops, ds[0], strict=True)] == [True] * 3  # seeded by index
    batch = next(iter(DataLoader(ds, batch_size=1, collate_fn=collate)))
    assert batch["image"].shape[0] == 3 and len(batch["meta"]) == 3


def test_a_batch_mixing_samples_with_and_without_a_mask_is_one_clear_error(study, make_config, tmp_path):
    _, manifest = study
    seg = make_config("ct_seg", at_load={"augment": []})
    with_mask = PatchDataset(manifest, seg, tmp_path / "c", where=CT, patch_size=(8, 8, 8))[0]
    without = PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(8, 8, 8))[0]
    for batch in ([with_mask, without], [without, with_mask]):
        with pytest.raises(ValueError, match=r"cannot batch samples with different entries \('mask' in some only"):
            collate(batch)


def test_a_negative_seed_or_epoch_is_refused_naming_it(study, make_config, tmp_path):
    _, manifest = study
    with pytest.raises(ConfigError, match=r"PatchDataset\(seed=-1\): seed must be an integer >= 0"):
        PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(8, 8, 8), seed=-1)
    with pytest.raises(ConfigError, match=r"set_epoch\(epoch=-1\): epoch must be an integer >= 0"):
        _patches(study, make_config, tmp_path).set_epoch(-1)


def test_a_batch_of_series_with_different_volume_counts_points_to_the_volumes(tmp_path):
    samples = [{"image": torch.zeros(1, 4, 4, 4)}, {"image": torch.zeros(2, 4, 4, 4)}]
    with pytest.raises(ValueError, match=r"shapes .* differ; keep as many volumes of every series \(deterministic.volumes\)"):
        collate(samples)


def test_a_batch_of_masks_with_different_channel_counts_points_to_a_label_map():
    samples = [{"mask": torch.zeros(1, 4, 4, 4)}, {"mask": torch.zeros(2, 4, 4, 4)}]
    with pytest.raises(ValueError, match=r"cannot batch 'mask': .*one per label \(deterministic.annotations.labels\)"):
        collate(samples)

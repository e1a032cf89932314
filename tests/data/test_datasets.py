"""Datasets on real manifests and a real cache: fill on miss, oracles, workers, epochs, masks, patches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import torch
import zarr
from monai.transforms import ScaleIntensityRange
from torch.utils.data import DataLoader, DistributedSampler

import dicomml
from dicomml.cache import Cache
from dicomml.data import PatchDataset, SegmentationDataset, SeriesDataset, collate
from dicomml.data.datasets import _empty
from dicomml.errors import CacheMissError, ConfigError

CT = "modality = 'CT'"


def test_first_read_fills_the_cache_and_later_reads_use_it(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_1mm")
    cache = Cache(tmp_path / "cache")
    ds = SeriesDataset(manifest, config, cache, where=CT)
    assert len(ds) == 1 and cache.keys() == []
    first = ds[0]
    assert cache.keys() == [ds.sources[0].key]
    again = SeriesDataset(manifest, config, cache, where=CT, cache_only=True)[0]
    torch.testing.assert_close(again["image"], first["image"], rtol=0, atol=0)
    assert first["meta"]["series_key"] == ds.sources[0].series_key and first["meta"]["cache_key"] == ds.sources[0].key
    assert first["image"].dtype == torch.float32 and first["affine"].shape == (4, 4)
    assert type(first["image"]) is torch.Tensor


def test_cache_only_raises_a_clear_miss(study, make_config, tmp_path):
    _, manifest = study
    ds = SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "cache", where=CT, cache_only=True)
    with pytest.raises(CacheMissError, match=r"cache_only=True; run `dicomml preprocess"):
        ds[0]


def test_changing_a_window_reuses_the_entry(study, make_config, tmp_path):
    _, manifest = study
    a = SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT)
    b = SeriesDataset(manifest, make_config("head_ct_3window"), tmp_path / "c", where=CT, cache_only=True)
    a[0]
    assert b[0]["image"].shape[0] == 3  # brain, subdural, bone from the same cached HU


def test_real_ct_matches_dcm2niix_reoriented_by_nibabel(dcmqi_manifest, data_dir, make_config, tmp_path):
    """Oracles: dcm2niix's NIfTI of the same series, put in RAS+ by nibabel; MONAI's ScaleIntensityRange."""
    config = make_config("ct_1mm", deterministic={"spacing": None})
    ds = SeriesDataset(dcmqi_manifest, config, tmp_path / "c", where=CT)
    sample = ds[0]
    entry = ds.cache.open(ds.sources[0].key)
    ref = nib.as_closest_canonical(nib.load(data_dir / "dcmqi/derived-dcm2niix/data/segmentations/ct-3slice/6.9_Colonoscopy_2.nii"))
    np.testing.assert_array_equal(entry.read(), np.asarray(ref.dataobj).astype(np.int16))
    np.testing.assert_allclose(entry.affine, ref.affine, atol=1e-3)
    np.testing.assert_allclose(sample["affine"].numpy(), ref.affine, atol=1e-3)
    window = config.at_load.windows[0]
    expected = ScaleIntensityRange(window.low, window.high, 0.0, 1.0, clip=True)(ref.get_fdata()[None].astype(np.float32))
    np.testing.assert_allclose(sample["image"].numpy(), np.asarray(expected), atol=1e-6)


def test_real_seg_mask_lands_where_the_reference_nrrd_says(dcmqi_manifest, data_dir, make_config, tmp_path):
    """Oracle: dcmqi's NRRD label map of liver.dcm; same voxel count and world centroid (RAS+ mm)."""
    config = make_config("ct_seg", deterministic={"spacing": None}, at_load={"augment": []})
    ds = SegmentationDataset(dcmqi_manifest, config, tmp_path / "c")
    sample = ds[0]
    mask = sample["mask"].numpy()
    assert mask.shape[1:] == sample["image"].shape[1:] and mask.shape[0] == 1
    labels, header = nrrd.read(str(data_dir / "dcmqi/data/segmentations/liver_seg.nrrd"))
    assert int(mask.sum()) == int((labels > 0).sum())
    ijk = np.argwhere(labels > 0).mean(axis=0)
    lps = header["space origin"] + ijk @ np.asarray(header["space directions"])
    expected = lps * [-1, -1, 1]
    got = sample["affine"].numpy() @ np.r_[np.argwhere(mask[0] > 0).mean(axis=0), 1.0]
    np.testing.assert_allclose(got[:3], expected, atol=0.5)


def _patches(manifest, make_config, cache, **kw):
    return PatchDataset(
        manifest, make_config("ct_seg"), cache, patch_size=(24, 32, 40), samples_per_volume=6, sampler="label_balanced", **kw
    )


def _drain(dataset, **loader):
    return [b for b in DataLoader(dataset, batch_size=2, collate_fn=collate, **loader)]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_two_workers_yield_the_same_samples_as_none(study, make_config, tmp_path, context):
    _, manifest = study
    ds = _patches(manifest, make_config, tmp_path / "c")
    ds[0]  # fill the cache once (workers would race on it harmlessly, but slowly)
    reference = _drain(ds)
    got = _drain(ds, num_workers=2, multiprocessing_context=context, persistent_workers=True)
    assert len(got) == len(reference) == 3
    for a, b in zip(reference, got):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert [m["patch_start"] for m in a["meta"]] == [m["patch_start"] for m in b["meta"]]
        assert [m["transforms"] for m in a["meta"]] == [m["transforms"] for m in b["meta"]]


def test_set_epoch_redraws_and_reaches_persistent_workers(study, make_config, tmp_path):
    _, manifest = study
    ds = _patches(manifest, make_config, tmp_path / "c")
    ds[0]
    loader = DataLoader(ds, batch_size=6, collate_fn=collate, num_workers=2, persistent_workers=True)
    epoch0 = next(iter(loader))
    ds.set_epoch(1)
    epoch1 = next(iter(loader))
    assert [m["epoch"] for m in epoch1["meta"]] == [1] * 6
    assert [m["patch_start"] for m in epoch0["meta"]] != [m["patch_start"] for m in epoch1["meta"]]
    ds.set_epoch(0)
    assert torch.equal(next(iter(loader))["image"], epoch0["image"])


def test_augmentation_is_drawn_once_for_image_and_mask(study, make_config, tmp_path):
    _, manifest = study
    plain = SegmentationDataset(manifest, make_config("ct_seg", at_load={"augment": [], "windows": []}), tmp_path / "c")
    flipped = SegmentationDataset(manifest, make_config("ct_seg", at_load={"windows": []}), tmp_path / "c", cache_only=True)
    assert plain.sources == flipped.sources  # at-load changes keep the key
    for index in range(3):
        flipped.set_epoch(index)
        a, b = plain[0], flipped[0]
        axes = [d + 1 for d, flipped in enumerate(b["meta"]["transforms"][0]["flipped"]) if flipped]
        assert torch.equal(b["image"], torch.flip(a["image"], axes) if axes else a["image"])
        assert torch.equal(b["mask"], torch.flip(a["mask"], axes) if axes else a["mask"])


def test_patch_equals_the_same_box_of_the_whole_volume(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_seg", at_load={"augment": []})
    whole = SegmentationDataset(manifest, config, tmp_path / "c")[0]
    patches = PatchDataset(manifest, config, tmp_path / "c", patch_size=(50, 60, 70), samples_per_volume=4)
    for i in range(len(patches)):
        p = patches[i]
        box = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(p["meta"]["patch_start"], (50, 60, 70)))
        assert torch.equal(p["image"], whole["image"][box]) and torch.equal(p["mask"], whole["mask"][box])
        corner = whole["affine"].numpy() @ np.r_[p["meta"]["patch_start"], 1.0]
        np.testing.assert_allclose(p["affine"].numpy()[:, 3], corner)
        assert p["meta"]["positive_channel"] == -1  # documented for every sampler: uniform draws none


def test_small_chunks_are_an_entry_of_their_own_with_the_same_voxels(study, make_config, tmp_path):
    """A cache chunked for patches beside the default one: two keys, zarr-python reads both, the same patches."""
    _, manifest = study
    default = make_config("ct_seg", deterministic={"chunks": [64, 64, 64]}, at_load={"augment": []})
    small = make_config("ct_seg", deterministic={"chunks": [16, 16, 16]}, at_load={"augment": []})
    assert default.cache_hash() != small.cache_hash()
    whole = SegmentationDataset(manifest, default, tmp_path / "c")[0]
    patches = PatchDataset(manifest, small, tmp_path / "c", patch_size=(50, 60, 70), samples_per_volume=3)
    keys = [whole["meta"]["cache_key"], patches[0]["meta"]["cache_key"]]
    assert keys[0] != keys[1] and Cache(tmp_path / "c").keys() == sorted(keys)
    for key, chunks in zip(keys, [(64, 64, 64), (16, 16, 16)]):
        entry = Cache(tmp_path / "c").open(key)
        stored = zarr.open_group(entry._path, mode="r")["image"]
        assert entry.layouts["image"].chunks == stored.chunks == tuple(min(c, s) for c, s in zip(chunks, entry.shape))
        np.testing.assert_array_equal(stored[...], Cache(tmp_path / "c").open(keys[0]).read("image"))
    for i in range(len(patches)):
        p = patches[i]
        box = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(p["meta"]["patch_start"], (50, 60, 70)))
        assert torch.equal(p["image"], whole["image"][box]) and torch.equal(p["mask"], whole["mask"][box])


def test_grid_tiles_cover_every_voxel(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_seg", at_load={"augment": []})
    ds = PatchDataset(manifest, config, tmp_path / "c", patch_size=(64, 64, 64), sampler="grid")
    shape = ds.entry(0).shape
    covered = np.zeros(shape, bool)
    for i in range(len(ds)):
        meta = ds[i]["meta"]
        assert meta["positive_channel"] == -1  # documented for every sampler: a tile is not drawn
        start = meta["patch_start"]
        covered[tuple(slice(s, s + 64) for s in start)] = True
    assert covered.all() and len(ds) == int(np.prod([-(-s // 64) for s in shape]))


def test_label_balanced_positive_patches_hold_foreground(study, make_config, tmp_path):
    _, manifest = study
    ds = PatchDataset(
        manifest,
        make_config("ct_seg"),
        tmp_path / "c",
        patch_size=(16, 16, 16),
        samples_per_volume=40,
        sampler="label_balanced",
        positive_fraction=0.7,
    )
    samples = [ds[i] for i in range(len(ds))]
    positive = [s for s in samples if s["meta"]["positive_channel"] >= 0]
    assert 15 <= len(positive) <= 38
    assert all(s["mask"][s["meta"]["positive_channel"]].sum() > 0 for s in positive)
    lesion = [s for s in positive if s["meta"]["positive_channel"] == 0]
    assert 4 <= len(lesion) <= len(positive) - 4  # the 12 mm lesion is drawn as often as the liver


def test_small_volume_is_padded_to_the_patch(dcmqi_manifest, make_config, tmp_path):
    config = make_config("ct_1mm", deterministic={"spacing": None})
    ds = PatchDataset(dcmqi_manifest, config, tmp_path / "c", where=CT, patch_size=(8, 8, 8), samples_per_volume=2)
    assert ds.entry(0).shape[2] < 8  # three slices
    sample = ds[0]
    assert sample["image"].shape == (1, 8, 8, 8)


def test_changed_source_mtime_gets_a_new_entry(study, make_config, tmp_path):
    info, _ = study
    src = shutil.copytree(info.root / "CT", tmp_path / "dicom", copy_function=shutil.copy2)
    config = make_config("ct_1mm")
    cache = Cache(tmp_path / "cache")
    before = SeriesDataset(dicomml.index(str(src), str(tmp_path / "m"), workers=1, progress=False), config, cache)
    before[0]
    first = sorted(src.iterdir())[0]
    st = os.stat(first)
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after = SeriesDataset(dicomml.index(str(src), str(tmp_path / "m"), workers=1, progress=False), config, cache)
    assert after.sources[0].key != before.sources[0].key
    assert not cache.has(after.sources[0].key)
    after[0]
    assert sorted(cache.keys()) == sorted([before.sources[0].key, after.sources[0].key])


def test_collate_of_one_sample_is_a_view(study, make_config, tmp_path):
    _, manifest = study
    sample = SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT)[0]
    batch = collate([sample])
    assert batch["image"].shape == (1, *sample["image"].shape)
    assert batch["image"].data_ptr() == sample["image"].data_ptr()  # nothing copied
    torch.testing.assert_close(batch["image"], torch.stack([sample["image"]]), rtol=0, atol=0)
    assert batch["meta"] == [sample["meta"]]


def test_distributed_sampler_splits_the_dataset(study, make_config, tmp_path):
    _, manifest = study
    ds = _patches(manifest, make_config, tmp_path / "c")
    shards = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(len(ds))) and not set(shards[0]) & set(shards[1])


def test_collate_keeps_meta_and_explains_ragged_shapes():
    batch = collate([{"image": torch.zeros(1, 2, 2, 2), "meta": {"i": 0}}, {"image": torch.ones(1, 2, 2, 2), "meta": {"i": 1}}])
    assert batch["image"].shape == (2, 1, 2, 2, 2) and batch["meta"] == [{"i": 0}, {"i": 1}]
    with pytest.raises(ValueError, match="set deterministic.shape"):
        collate([{"image": torch.zeros(1, 2, 2, 2)}, {"image": torch.zeros(1, 3, 2, 2)}])


def test_bad_dataset_arguments_are_config_errors(study, make_config, tmp_path):
    _, manifest = study
    with pytest.raises(ConfigError, match="needs a config that caches masks"):
        SegmentationDataset(manifest, make_config("ct_1mm"), tmp_path / "c")
    with pytest.raises(ConfigError, match="sampler 'random'"):
        PatchDataset(manifest, make_config("ct_seg"), tmp_path / "c", patch_size=(8, 8, 8), sampler="random")
    with pytest.raises(ConfigError, match="at_load.augment\\[0\\].name: 'Nope'"):
        SeriesDataset(manifest, make_config("ct_1mm", at_load={"augment": [{"name": "Nope"}]}), tmp_path / "c")


def test_lightning_datamodule_trains_and_redraws_each_epoch(study, make_config, tmp_path):
    import lightning.pytorch as pl

    from dicomml.data import DataModule

    _, manifest = study
    ds = _patches(manifest, make_config, tmp_path / "c")
    seen: dict[int, list] = {}

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, _):
            seen.setdefault(self.current_epoch, []).extend(m["patch_start"] for m in batch["meta"])
            return (batch["image"].mean() * self.w).sum() + self.w.sum() ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Tiny(), datamodule=DataModule(train=ds, batch_size=3))
    assert sorted(seen) == [0, 1] and len(seen[0]) == len(ds)
    assert sorted(seen[0]) != sorted(seen[1])


def _in_shared_memory(batch):
    return [sample["image"].is_shared() for sample in batch]


def test_a_worker_decodes_samples_straight_into_shared_memory(study, make_config, tmp_path):
    """The DataLoader hands a worker's shared-memory tensor over as is; any other tensor is copied into shared memory first."""
    _, manifest = study
    series = SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT)
    series[0]
    patches = PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(8, 8, 8), samples_per_volume=2)
    for ds in (series, patches):
        assert not ds[0]["image"].is_shared()  # the main process allocates as usual
        loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=_in_shared_memory)
        assert all(flag for batch in loader for flag in batch)
    with torch.no_grad():
        again = next(iter(DataLoader(series, batch_size=1, num_workers=1, collate_fn=collate)))
    torch.testing.assert_close(again["image"][0], series[0]["image"], rtol=0, atol=0)


def _thp_on_advice() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[madvise]" in path.read_text()


def _smaps_field(address: int, name: str) -> int:
    """A field of /proc/self/smaps for the mapping that holds ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and head == f"{name}:":
            return int(line.split()[1])
    raise LookupError(f"{name} of {address:#x} not in /proc/self/smaps")


@pytest.mark.skipif(not _thp_on_advice(), reason="transparent huge pages are not 'madvise' on this kernel")
def test_a_large_sample_of_the_main_process_is_backed_by_huge_pages():
    """A new volume is advised 2 MiB pages: faulting it in 4 KiB pages costs as much as decoding it."""
    volume = _empty((64, 128, 256), np.dtype(np.float32))
    assert _smaps_field(volume.data_ptr() + volume.nbytes // 2, "THPeligible") == 1


def test_a_large_sample_reuses_memory_only_once_nothing_views_it():
    """The main process recycles a dropped volume's memory (no fresh page faults), never one still in use."""
    from dicomml.data import datasets

    shape = (datasets.RECYCLE_FROM // (4 * 256 * 256) + 1, 256, 256)
    first = _empty(shape, np.dtype(np.float32))
    first.fill_(1.0)
    address, kept = first.data_ptr(), first[2:4].numpy()  # a view outliving the tensor
    del first
    second = _empty(shape, np.dtype(np.float32))
    second.fill_(2.0)
    assert second.data_ptr() != address and (kept == 1.0).all()
    del kept
    third = _empty(shape, np.dtype(np.float32))
    assert third.data_ptr() == address  # its last view gone: the memory came back
    del second, third
    pooled = len(datasets._free)
    assert pooled and _empty((8, 8, 8), np.dtype(np.float32)).shape == (8, 8, 8)
    assert len(datasets._free) == pooled  # below the size: new memory, the pool untouched


def test_masks_stay_label_maps_through_the_loader_for_transforms_after_it(study, make_config, tmp_path):
    """The Dataset made a Mask then handed out a plain tensor: a dicomml transform applied after the DataLoader
    resampled the mask as an image, into fractions."""
    from dicomml.transforms import Mask, Resample

    _, manifest = study
    dataset = SegmentationDataset(manifest, make_config("ct_seg", at_load={"augment": []}), tmp_path / "c")
    sample = dataset[0]
    assert isinstance(sample["mask"], Mask) and type(sample["mask"] + 0) is torch.Tensor  # torch ops: plain
    moved = Resample(spacing=(2.3, 2.3, 2.3))(sample)
    assert moved["mask"].dtype == torch.uint8 and set(torch.unique(moved["mask"]).tolist()) == {0, 1}
    for batch in (collate([sample]), next(iter(DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)))):
        assert isinstance(batch["mask"], Mask) and not isinstance(batch["image"], Mask)


def test_zscore_of_a_patch_uses_the_whole_volume_statistics(study, make_config, tmp_path):
    """A patch was z-scored by its own mean and std: a flat background patch became unit-variance noise, unlike
    the same crop of the z-scored volume (seams against whole-volume and grid-tile inference)."""
    from dicomml.pipeline.stats import STATS_KEY

    _, manifest = study
    size = (24, 20, 16)
    older = Cache(tmp_path / "older")  # an entry written before the statistics were recorded
    for windows in ([], [{"name": "abdomen", "center": 40, "width": 400}]):  # as cached (meta), through a lookup
        config = make_config("ct_seg", at_load={"augment": [], "windows": windows, "normalize": "zscore"})
        whole = SegmentationDataset(manifest, config, tmp_path / "c")[0]
        entry = Cache(tmp_path / "c").open(whole["meta"]["cache_key"])
        assert len(entry.meta[STATS_KEY]["mean"]) == 1
        if not windows:
            meta = {k: v for k, v in entry.meta.items() if k != STATS_KEY}
            older.put(entry.key, entry.read("image"), entry.affine, mask=entry.read("mask"), meta=meta, chunks=(48, 48, 48))
        caches = [tmp_path / "c"] + ([older] if not windows else [])
        for cache in caches:
            patches = PatchDataset(manifest, config, cache, patch_size=size, samples_per_volume=12, cache_only=True)
            for i in range(len(patches)):
                p = patches[i]
                box = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(p["meta"]["patch_start"], size))
                torch.testing.assert_close(p["image"], whole["image"][box], rtol=0, atol=1e-5)

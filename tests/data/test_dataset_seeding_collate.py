"""Datasets with MONAI transforms, torch's and MONAI's collates, indexing, invalid markers and z-score statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import list_data_collate
from monai.transforms import Compose as MonaiCompose
from monai.transforms import Flipd, RandGaussianNoised, Rotate90d, Zoomd
from torch.utils.data import DataLoader, default_collate

import dicomml
from dicomml.cache import Cache
from dicomml.data import PatchDataset, SegmentationDataset, SeriesDataset, StudyDataset, collate
from dicomml.errors import CacheIntegrityError, ConfigError
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.transforms import Compose, RandomFlip, to_metatensor

CT = "modality = 'CT'"
MR = "modality = 'MR'"


def _noisy_patches(manifest, config, cache, seed: int = 7) -> PatchDataset:
    noise = MonaiCompose([RandGaussianNoised(keys=["image"], prob=1.0, std=0.1)])
    return PatchDataset(manifest, config, cache, where=CT, patch_size=(16, 16, 16), samples_per_volume=6, seed=seed, transform=noise)


def _by_index(ds, num_workers: int) -> dict[int, torch.Tensor]:
    loader = DataLoader(ds, batch_size=1, num_workers=num_workers, collate_fn=collate)
    return {batch["meta"][0]["index"]: batch["image"][0] for batch in loader}


def test_monai_random_transform_draws_follow_seed_epoch_and_index_not_workers(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_1mm")
    plain = PatchDataset(manifest, config, tmp_path / "c", where=CT, patch_size=(16, 16, 16), samples_per_volume=6, seed=7)
    ds = _noisy_patches(manifest, config, tmp_path / "c")
    noise = {i: image - plain[i]["image"] for i, image in _by_index(ds, 0).items()}
    assert len({tuple(n.flatten()[:4].tolist()) for n in noise.values()}) == len(noise)  # every sample its own draw
    for workers in (1, 2):
        got = _by_index(ds, workers)
        assert all(torch.equal(got[i] - plain[i]["image"], noise[i]) for i in noise), workers
    again = _noisy_patches(manifest, config, tmp_path / "c")  # a new run, the same seed
    assert all(torch.equal(again[i]["image"], ds[i]["image"]) for i in noise)
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["image"] - plain[0]["image"], noise[0])


@pytest.mark.parametrize(
    "monai",
    [
        Flipd(keys=["image", "mask"], spatial_axis=0),
        Rotate90d(keys=["image", "mask"], k=1, spatial_axes=(0, 1)),
        Zoomd(keys=["image", "mask"], zoom=0.5, keep_size=False, mode=("trilinear", "nearest")),
    ],
    ids=["flip", "rotate90", "zoom"],
)
def test_monai_spatial_transform_moves_the_sample_affine(study, make_config, tmp_path, monai):
    """Oracles: MONAI's own affine for the same sample as MetaTensors; the world position of voxels."""
    _, manifest = study
    config = make_config("ct_seg", at_load={"augment": []})
    before = SegmentationDataset(manifest, config, tmp_path / "c")[0]
    after = SegmentationDataset(manifest, config, tmp_path / "c", transform=MonaiCompose([monai]))[0]
    expected = monai(to_metatensor(before))["image"].affine
    torch.testing.assert_close(after["affine"], expected.as_subclass(torch.Tensor).double(), rtol=0, atol=1e-9)
    assert after["affine"].dtype == torch.float64 and type(after["image"]) is torch.Tensor
    assert isinstance(after["mask"], dicomml.transforms.Mask)
    if isinstance(monai, Zoomd):
        return
    # a voxel's value sits at the same world position (RAS+ mm) before and after
    shape = np.array(after["image"].shape[1:])
    for voxel in ([0, 0, 0], [3, 5, 7], list(shape - 1)):
        world = after["affine"].numpy() @ [*voxel, 1]
        source = np.rint(np.linalg.solve(before["affine"].numpy(), world)[:3]).astype(int)
        assert after["image"][(0, *voxel)] == before["image"][(0, *source)]
        assert after["mask"][(slice(None), *voxel)].tolist() == before["mask"][(slice(None), *source)].tolist()


def test_a_random_transform_with_its_own_seed_is_refused(study, make_config, tmp_path):
    _, manifest = study
    seeded = make_config("ct_1mm", at_load={"augment": [{"name": "RandomFlip", "params": {"axes": [0], "p": 0.5, "seed": 5}}]})
    with pytest.raises(ConfigError, match=r"RandomFlip\(seed=5\).*pass seed= to the Dataset"):
        SeriesDataset(manifest, seeded, tmp_path / "c", where=CT)
    for transform in (RandomFlip(axes=(0,), seed=3), MonaiCompose([Compose([RandomFlip(axes=(0,), seed=3)])])):
        with pytest.raises(ConfigError, match=r"RandomFlip\(seed=3\)"):
            PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(8, 8, 8), transform=transform)
    SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, transform=RandomFlip(axes=(0,)))  # no seed: fine


def _image_dataset(tmp_path: Path) -> ImageDataset:
    """Two chest films without laterality, view or frame times: meta values a header leaves empty."""
    for i in range(2):
        write_image2d(tmp_path / "dx" / f"{i}.dcm", np.full((40, 48), 100 * i, np.uint16), bits_stored=12)
    dicomml.index(tmp_path / "dx", tmp_path / "dx_manifest", workers=1, progress=False)
    return ImageDataset(tmp_path / "dx_manifest", tmp_path / "dx_cache", ImageConfig(size=(32, 32), resize="letterbox"))


def _study_config() -> dict:
    return {
        "name": "ct_and_mr",
        "roles": {"ct": {"where": CT}, "mr": {"where": MR}},
        "reference": "ct",
        "deterministic": {"orientation": "RAS", "spacing": [4.0, 4.0, 4.0], "dtype": "float32", "masks": ["*"], "chunks": [32, 32, 32]},
        "at_load": {"normalize": "zscore"},
    }


def test_torch_and_monai_collates_batch_every_dataset(study, make_config, tmp_path):
    _, manifest = study
    seg = make_config("ct_seg", at_load={"augment": []})
    datasets = {
        "series": SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c"),
        "segmentation": SegmentationDataset(manifest, seg, tmp_path / "c"),
        "patch": PatchDataset(
            manifest, seg, tmp_path / "c", patch_size=(16, 16, 16), samples_per_volume=8, sampler="label_balanced", positive_fraction=0.5
        ),
        "grid": PatchDataset(manifest, seg, tmp_path / "c", patch_size=(64, 64, 64), sampler="grid"),
        "study": StudyDataset(manifest, _study_config(), tmp_path / "c"),
        "image2d": _image_dataset(tmp_path),
    }
    for name, ds in datasets.items():
        size = 8 if name == "patch" else 2 if name in ("grid", "image2d") else 1
        for collate_fn in (default_collate, list_data_collate, collate):
            batch = next(iter(DataLoader(ds, batch_size=size, collate_fn=collate_fn)))
            assert batch["image"].shape[0] == size, (name, collate_fn)
    channels = [datasets["patch"][i]["meta"]["positive_channel"] for i in range(8)]
    assert -1 in channels and any(c >= 0 for c in channels)  # a mixed batch: -1 for a patch not centred on foreground
    sample = datasets["segmentation"][0]
    assert sample["meta"]["present"] == sample["mask"].flatten(1).any(1).tolist()  # one bool per label, with masks ["*"]
    assert len(sample["meta"]["present"]) == len(sample["meta"]["labels"])
    assert "laterality" not in datasets["image2d"][0]["meta"]  # no value: left out


def test_indices_read_like_a_python_sequence(study, make_config, tmp_path):
    _, manifest = study
    series = SeriesDataset(manifest, make_config("ct_1mm"), tmp_path / "c")
    patches = PatchDataset(manifest, make_config("ct_1mm"), tmp_path / "c", where=CT, patch_size=(8, 8, 8), samples_per_volume=3)
    for ds in (series, patches):
        last = ds[len(ds) - 1]
        for index in (-1, np.int64(len(ds) - 1), torch.tensor(len(ds) - 1)):
            sample = ds[index]
            assert torch.equal(sample["image"], last["image"]) and sample["meta"]["index"] == len(ds) - 1
        for index in (len(ds), -len(ds) - 1):
            with pytest.raises(IndexError, match="out of range"):
                ds[index]


def test_an_empty_marker_is_computed_again_unless_cache_only(study, make_config, tmp_path):
    _, manifest = study
    config = make_config("ct_seg", at_load={"augment": []})
    ds = SegmentationDataset(manifest, config, tmp_path / "c")
    first = ds[0]
    marker = tmp_path / "c" / "entries" / f"{ds.sources[0].key}.json"
    marker.write_bytes(b"")  # left by a crash on a store without atomic renames
    with pytest.raises(CacheIntegrityError, match="marker of entry"):
        SegmentationDataset(manifest, config, tmp_path / "c", cache_only=True)[0]
    again = ds[0]
    torch.testing.assert_close(again["image"], first["image"], rtol=0, atol=0)
    assert Cache(tmp_path / "c").published(ds.sources[0].key) is not None  # the marker was replaced


def test_zscore_statistics_do_not_depend_on_torch_threads(study, make_config, tmp_path):
    _, manifest = study
    ds = SeriesDataset(manifest, make_config("mr_brain_1mm", deterministic={"spacing": None}), tmp_path / "c", where=MR)
    threads = torch.get_num_threads()
    samples = []
    try:
        for count in (1, 2, 4):  # a float32 reduction on 2 or 4 threads sums this volume in another order than on 1
            torch.set_num_threads(count)
            samples.append(ds[0]["image"])
    finally:
        torch.set_num_threads(threads)
    samples.append(next(iter(DataLoader(ds, batch_size=1, num_workers=1, collate_fn=collate)))["image"][0])  # a worker: 1 thread
    assert all(torch.equal(samples[0], other) for other in samples[1:])
    values = ds.cache.open(ds.sources[0].key).read().astype(np.float64)  # oracle: numpy's float64 statistics
    expected = ((values - values.mean()) / values.std()).astype(np.float32)
    np.testing.assert_allclose(samples[0][0].numpy(), expected, rtol=0, atol=1e-6)

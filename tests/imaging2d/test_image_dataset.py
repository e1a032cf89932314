"""ImageDataset: letterboxed samples with their new spacing, cached one entry per image x config, cine, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

import dicomml
from dicomml.cache import Cache
from dicomml.cache.array import shard_key
from dicomml.errors import CacheIntegrityError, CacheMissError, ManifestError
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.synthetic import write_image2d, write_seg2d


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    source = tmp_path / "source"
    write_image2d(
        source / "dx.dcm",
        rng.integers(0, 4096, (300, 200)).astype(np.uint16),
        modality="DX",
        bits_stored=12,
        extra={"ImagerPixelSpacing": [0.15, 0.15], "WindowCenter": 2000, "WindowWidth": 3000, "ViewPosition": "PA"},
    )
    write_image2d(source / "us.dcm", rng.integers(0, 255, (4, 60, 80)).astype(np.uint8), modality="US", extra={"FrameTime": 40})
    write_image2d(source / "sc.dcm", rng.integers(0, 255, (50, 100, 3)).astype(np.uint8), modality="SC", photometric="RGB")
    dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    return tmp_path


def test_letterbox_keeps_aspect_and_records_spacing(cohort: Path) -> None:
    data = ImageDataset(cohort / "manifest", config=ImageConfig(size=(64, 64)), where="modality = 'DX'")
    sample = data[0]
    assert sample["image"].shape == (1, 64, 64) and sample["image"].dtype == torch.float32
    meta = sample["meta"]
    assert meta["placed_shape"] == [64, 43] and meta["offset"] == [0, 10]
    np.testing.assert_allclose(sample["spacing"].numpy(), [0.15 * 300 / 64, 0.15 * 200 / 43])
    # the placed pixels are the windowed image (pydicom's functions), averaged over the pixels each covers
    ds = pydicom.dcmread(meta["path"])
    windowed = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) / 4095.0
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(windowed)[None, None], (64, 43))[0, 0]
    np.testing.assert_allclose(sample["image"][0, :, 10:53].numpy(), expected.numpy(), atol=1e-5)
    assert float(sample["image"][0, :, :10].abs().max()) == 0.0


def test_cached_once_per_image_and_config(cohort: Path) -> None:
    cache = Cache(cohort / "cache")
    small = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))
    first = [small[i]["image"] for i in range(len(small))]
    assert len(cache.keys()) == len(small) == 3
    again = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)), cache_only=True)
    for a, b in zip(first, (again[i]["image"] for i in range(len(again)))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(CacheMissError):
        ImageDataset(cohort / "manifest", cache, ImageConfig(size=(48, 48)), cache_only=True)[0]


def test_an_image_rewritten_after_indexing_is_refused_with_or_without_a_cache(cohort: Path) -> None:
    ds = pydicom.dcmread(cohort / "source" / "dx.dcm")
    ds.WindowCenter = 1000  # still a valid image: only the manifest can tell
    ds.save_as(cohort / "source" / "dx.dcm")
    for cache in (None, Cache(cohort / "cache")):
        data = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)), where="modality = 'DX'")
        with pytest.raises(ManifestError, match="dx.dcm: changed since it was indexed"):
            data[0]
    assert Cache(cohort / "cache").keys() == []  # nothing cached under the old file's key


def _damage(cache: Cache, key: str) -> None:
    """Flip one byte of the pixels of ``key``'s published copy (its chunk's CRC32C no longer matches)."""
    shard = Path(cache.open(key)._path) / shard_key("image", 3)
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))


def test_remembered_entries_follow_gc_and_rewrites(cohort: Path) -> None:
    cache = Cache(cohort / "cache")
    data = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)), where="modality = 'DX'", cache_only=True)
    with pytest.raises(CacheMissError):
        data[0]

    def computed() -> torch.Tensor:  # by a new dataset, which remembers nothing yet
        return ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)), where="modality = 'DX'")[0]["image"]

    expected = computed()
    first = data[0]
    torch.testing.assert_close(first["image"], expected, rtol=0, atol=0)
    first["meta"]["spacing"][0] = -1.0  # a sample's meta is its own: the remembered entry keeps its values
    first["meta"]["placed_shape"].append(0)
    assert data[0]["meta"]["spacing"][0] > 0 and len(data[0]["meta"]["placed_shape"]) == 2
    key = first["key"]
    # rewritten: unpublished, computed again into a new copy, the remembered copy removed by gc
    cache.delete(key)
    torch.testing.assert_close(computed(), expected, rtol=0, atol=0)
    assert cache.gc(grace_seconds=0)
    torch.testing.assert_close(data[0]["image"], expected, rtol=0, atol=0)
    # the copy now read is the new one, its chunks still checked
    _damage(cache, key)
    with pytest.raises(CacheIntegrityError):
        data[0]
    # gone: unpublished and collected, the marker is asked again and there is none
    cache.delete(key)
    cache.gc(grace_seconds=0)
    with pytest.raises(CacheMissError):
        data[0]
    torch.testing.assert_close(computed(), expected, rtol=0, atol=0)
    torch.testing.assert_close(data[0]["image"], expected, rtol=0, atol=0)


def test_remembered_entry_damaged_in_place_still_fails_its_check(cohort: Path) -> None:
    cache = Cache(cohort / "cache")
    data = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)), where="modality = 'DX'")
    key = data[0]["key"]
    _damage(cache, key)
    for _ in range(2):
        with pytest.raises(CacheIntegrityError):
            data[0]


def test_cine_and_colour_layouts(cohort: Path) -> None:
    data = ImageDataset(cohort / "manifest", config=ImageConfig(size=(40, 40)))
    by_modality = {data[i]["meta"]["modality"]: data[i] for i in range(len(data))}
    us, sc = by_modality["US"], by_modality["SC"]
    assert us["image"].shape == (4, 40, 40)
    np.testing.assert_allclose(us["frame_times"].numpy(), [0, 40, 80, 120])
    assert torch.isnan(us["spacing"]).all() and us["meta"]["spacing_missing"]
    assert sc["image"].shape == (3, 40, 40) and float(sc["image"].max()) <= 1.0


def test_preprocess_batches_many_images_per_task(cohort: Path) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        with get_task_stream(client) as stream:
            report = dicomml.preprocess_images(
                cohort / "manifest", ImageConfig(size=(32, 32)), cohort / "cache", batch_size=2, scheduler=client, progress=False
            )
    assert report.counts["done"] == 3 and report.counts["failed"] == 0
    assert sorted(Cache(cohort / "cache").keys()) == sorted(report.table["cache_key"])
    assert len(stream.data) == 2  # three images in two tasks


def test_dicomml_transforms_augment_2d_samples_per_type(cohort: Path) -> None:
    from dicomml.imaging2d import Planar
    from dicomml.transforms import Compose, Mask, RandomFlip, RandomIntensity

    data = ImageDataset(
        cohort / "manifest",
        config=ImageConfig(size=(64, 64)),
        where="modality = 'DX'",
        transforms=Compose([Planar(RandomFlip(axes=(1,), p=1.0)), Planar(RandomIntensity(scale=0.3, shift=0.1))]),
    )
    plain = ImageDataset(cohort / "manifest", config=ImageConfig(size=(64, 64)), where="modality = 'DX'")[0]
    sample = data[0]
    flip, jitter = sample["meta"]["transforms"]
    assert (flip["name"], flip["flipped"], jitter["name"]) == ("RandomFlip", [False, True, False], "RandomIntensity")
    torch.testing.assert_close(sample["image"], plain["image"].flip(-1) * jitter["factor"] + jitter["offset"])
    mask = Mask(torch.zeros(1, 64, 64, dtype=torch.uint8))
    mask[0, :, :5] = 1
    flipped = Planar(RandomFlip(axes=(1,), p=1.0))({"image": plain["image"], "mask": mask, "spacing": plain["spacing"]})
    assert isinstance(flipped["mask"], Mask) and flipped["mask"][0, :, -5:].all() and "affine" not in flipped


def test_cli_preprocess_images_in_batches(cohort: Path) -> None:
    import os
    import subprocess
    import sys

    (cohort / "cxr.yaml").write_text("size: [32, 32]\nresize: letterbox\nvoi: header\n")
    command = [
        sys.executable,
        "-c",
        "from dicomml.cli.main import main; main()",
        "preprocess",
        str(cohort / "manifest"),
        "--images",
        "--config",
        str(cohort / "cxr.yaml"),
        "--cache",
        str(cohort / "cache"),
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--quiet",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    assert "3 images in" in done.stderr and "0 failed" in done.stderr  # the run report's summary
    cached = ImageDataset(cohort / "manifest", cohort / "cache", ImageConfig.from_yaml(cohort / "cxr.yaml"), cache_only=True)
    assert [cached[i]["image"].shape[-2:] for i in range(3)] == [(32, 32)] * 3
    (cohort / "bad.yaml").write_text("size: [32, 32]\nwindowing: lung\n")
    bad = subprocess.run(
        [*command[:7], str(cohort / "bad.yaml"), *command[8:]],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert bad.returncode == 1 and "unknown image config key(s) ['windowing']" in bad.stderr


def test_seg_masks_follow_flips_and_letterbox(tmp_path: Path) -> None:
    from dicomml.transforms import Mask

    source = tmp_path / "source"
    stored = np.full((120, 80), 100, np.uint16)
    stored[20:40, 8:24] = 4000  # a lesion near the image's left edge, on the patient's right (mirrored film)
    path = write_image2d(
        source / "cxr.dcm",
        stored,
        modality="DX",
        bits_stored=12,
        extra={"ImagerPixelSpacing": [0.2, 0.2], "PatientOrientation": ["R", "F"], "ViewPosition": "PA"},
    )
    write_seg2d(path, stored == 4000, source / "seg.dcm")
    dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    config = ImageConfig(size=(60, 60), display="chest")
    for cache in (None, Cache(tmp_path / "cache"), Cache(tmp_path / "cache")):  # computed, then cached, then read back
        data = ImageDataset(tmp_path / "manifest", cache, config, masks=True)
        assert len(data) == 1  # the SEG is not an image
        sample = data[0]
        mask, pixels = sample["mask"], sample["image"][0]
        assert isinstance(mask, Mask) and mask.shape == (1, 60, 60) and sample["meta"]["mask_labels"] == ["nodule"]
        assert sample["meta"]["flips"] == ["horizontal"]
        lesion = pixels > 0.5
        assert lesion[:, 30:].any() and not lesion[:, :30].any()  # flipped: now on the image's right
        assert torch.equal(mask[0].bool(), lesion)  # nearest mask on exactly the lesion's pixels


def test_a_filled_cache_keeps_the_keys_and_a_fresh_interpreter_reads_no_manifest_row(cohort: Path) -> None:
    import json
    import subprocess
    import sys

    cache = Cache(cohort / "cache")
    filled = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))
    first = [filled[i]["image"] for i in range(len(filled))]
    again = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))
    assert again._keys == filled._keys and "rows" not in vars(again)  # the kept keys answered
    # a miss still computes: the manifest's rows are read then, and checked against the kept keys
    cache.delete(filled._keys[1])
    torch.testing.assert_close(again[1]["image"], first[1], rtol=0, atol=0)
    assert list(again.rows["path"]) == list(filled.rows["path"])
    code = (
        "import json, sys\nfrom dicomml.imaging2d import ImageConfig, ImageDataset\n"
        "ds = ImageDataset(sys.argv[1], sys.argv[2], ImageConfig(size=(32, 32)), cache_only=True)\n"
        "assert [ds[i]['key'] for i in range(len(ds))] == json.loads(sys.argv[3])\n"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'duckdb', 'pydicom') if m in sys.modules))"
    )
    args = [str(cohort / "manifest"), str(cohort / "cache"), json.dumps(filled._keys)]
    assert subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_rows_read_after_the_manifest_changed_are_refused(cohort: Path) -> None:
    from dicomml.errors import ManifestError

    cache = Cache(cohort / "cache")
    ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))
    opened = ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))  # from the kept keys
    (cohort / "source" / "sc.dcm").unlink()
    dicomml.index(cohort / "source", cohort / "manifest", workers=1, progress=False)
    with pytest.raises(ManifestError, match="changed since this ImageDataset was opened"):
        opened.rows  # noqa: B018
    assert len(ImageDataset(cohort / "manifest", cache, ImageConfig(size=(32, 32)))) == 2

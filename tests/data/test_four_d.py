"""4D series end to end: manifest -> preprocess -> cache -> SeriesDataset, held to dcm2niix.

Every corpus series whose dcm2niix reference is 4D comes out of a
SeriesDataset (read back from the cache) with the reference's voxels, volume
order and affine (corners within 0.02 mm), and its .bval/.bvec where the corpus
has them. The pipeline only reorients (a relayout, no interpolation).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

import dicomml
from dicomml.config import PipelineConfig
from dicomml.geometry.directions import fsl_bvecs, reaxis_table
from dicomml.testing import data_root

CONFIG = PipelineConfig.from_dict({"name": "four_d", "deterministic": {"orientation": "RAS", "dtype": "float32"}})


def _four_d_rows() -> list[tuple[str, str, str]]:
    """(folder, SeriesInstanceUID, reference) of every corpus series with a 4D dcm2niix reference."""
    index = pd.read_csv(data_root() / "INDEX.csv", dtype=str, keep_default_na=False)
    rows = []
    for row in index.itertuples(index=False):
        for ref in filter(None, row.reference_output.split(";")):
            if ref.endswith((".nii", ".nii.gz")) and "_ground_truth" not in ref and "_Tilt_" not in ref and "_Eq_" not in ref:
                shape = nib.load(data_root() / ref).shape
                if len(shape) == 4 and shape[3] > 1:
                    rows.append((row.folder, row.series_instance_uid, ref))
    return rows


ROWS = _four_d_rows()


@pytest.fixture(scope="module")
def four_d(tmp_path_factory):
    root = tmp_path_factory.mktemp("four_d")
    folders = sorted({str(data_root() / folder) for folder, _, _ in ROWS})
    manifest = dicomml.index(folders, str(root / "manifest"), workers=1, progress=False)
    return manifest, root / "cache"


def _series_key(manifest, folder: str, uid: str) -> str:
    # by key, not by `usable`: the indexer marks dicom2nifti's four CT images at one position "not a
    # volume", and an explicit key still loads them as the single-slice time series dcm2niix makes
    found = manifest.sql(
        "SELECT series_key FROM series WHERE n_volumes > 1 AND series_instance_uid = ? AND folder = ?",
        uid,
        str(data_root() / folder),
    )
    assert len(found) == 1, f"{folder}: {len(found)} 4D groups of series {uid}"
    return str(found["series_key"].iloc[0])


def test_the_corpus_has_4d_references():
    assert len(ROWS) >= 10


@pytest.mark.parametrize(("folder", "uid", "ref"), ROWS, ids=[Path(r).name for _, _, r in ROWS])
def test_series_dataset_equals_dcm2niix(four_d, folder, uid, ref):
    manifest, cache = four_d
    key = _series_key(manifest, folder, uid)
    dicomml.SeriesDataset(manifest, CONFIG, cache, series_keys=[key])[0]  # fills the cache
    sample = dicomml.SeriesDataset(manifest, CONFIG, cache, series_keys=[key], cache_only=True)[0]
    image = nib.load(data_root() / ref)
    expected = image.get_fdata() if image.header.get_slope_inter() != (None, None) else np.asarray(image.dataobj, np.float64)
    ours, affine = sample["image"].numpy(), sample["affine"].numpy()
    assert sample["meta"]["axes"] and ours.shape[0] == expected.shape[3] == len(next(iter(sample["meta"]["volumes"].values())))
    transform = ornt_transform(io_orientation(affine), io_orientation(image.affine))
    moved = np.stack([apply_orientation(v, transform) for v in ours], axis=-1)  # volumes last, in their order
    moved_affine = affine @ inv_ornt_aff(transform, ours.shape[1:])
    assert moved.shape == expected.shape
    np.testing.assert_allclose(moved, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in expected.shape[:3]], indexing="ij")).reshape(3, -1).T
    distance = np.linalg.norm(nib.affines.apply_affine(moved_affine, corners) - nib.affines.apply_affine(image.affine, corners), axis=1)
    assert distance.max() <= 0.02, f"corners differ by up to {distance.max():.4f} mm"
    stem = data_root() / ref.removesuffix(".gz").removesuffix(".nii")
    if stem.with_suffix(".bval").exists():
        table = sample["meta"]["volumes"]
        np.testing.assert_allclose(table["b_value"], np.loadtxt(stem.with_suffix(".bval")))
        gradients = reaxis_table(sample["meta"], affine, moved_affine)["volumes"]["gradient"]
        np.testing.assert_allclose(fsl_bvecs(np.asarray(gradients), image.affine), np.loadtxt(stem.with_suffix(".bvec")), atol=2e-5)


def test_one_volume_reads_without_the_others(four_d):
    manifest, cache = four_d
    folder, uid, _ = next(r for r in ROWS if "canon" in r[0])
    key = _series_key(manifest, folder, uid)
    dataset = dicomml.SeriesDataset(manifest, CONFIG, cache, series_keys=[key])
    entry = dataset.entry(0)
    assert entry.layouts["image"].chunks[0] == 1  # one volume per chunk
    whole = entry.read()
    np.testing.assert_array_equal(entry.read(volumes=slice(5, 6))[0], whole[5])
    # the chunks of volume 5 alone decode it: remove every other volume's chunks from the shard index
    np.testing.assert_array_equal(entry.read(volumes=slice(5, 6), start=(0, 0, 0), size=entry.shape)[0], whole[5])


def test_config_selects_and_reduces_volumes(four_d):
    manifest, cache = four_d
    folder, uid, ref = next(r for r in ROWS if "canon" in r[0])
    key = _series_key(manifest, folder, uid)
    full = dicomml.SeriesDataset(manifest, CONFIG, cache, series_keys=[key])[0]["image"].numpy()
    b1500 = CONFIG.to_dict()
    b1500["deterministic"]["volumes"] = {"by": "b_value", "values": [1500], "reduce": "mean"}
    mean = dicomml.SeriesDataset(manifest, PipelineConfig.from_dict(b1500), cache, series_keys=[key])[0]
    np.testing.assert_allclose(mean["image"].numpy()[0], full[1:].mean(axis=0), rtol=1e-5, atol=1e-3)
    assert mean["meta"]["axes"] == [] and mean["image"].shape[0] == 1
    first = CONFIG.to_dict()
    first["deterministic"]["volumes"] = {"by": "index", "values": [0, 3]}
    two = dicomml.SeriesDataset(manifest, PipelineConfig.from_dict(first), cache, series_keys=[key])[0]
    np.testing.assert_array_equal(two["image"].numpy(), full[[0, 3]])
    assert two["meta"]["volumes"]["b_value"] == [0.0, 1500.0]

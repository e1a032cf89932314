"""load_mask and pairs on a real manifest: masks on exactly load_series' grid."""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from seg_refs import ct2_files, nrrd_labels, onto

import dicomml
from dicomml.errors import SegReferenceError, SeriesNotFoundError, SliceGapError

SEGS = "dcmqi/data/segmentations"
HD = "highdicom/data/test_files"
MOCK = "rt-utils/tests/mock_data"


@pytest.fixture(scope="module")
def manifest(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dicomml.Manifest:
    sources = [data_dir / "dcmqi", data_dir / MOCK, data_dir / "highdicom", ct2_files()[0].parent]
    return dicomml.index([str(s) for s in sources], tmp_path_factory.mktemp("manifest") / "m", workers=1)


def _key(manifest: dicomml.Manifest, name: str) -> str:
    rows = manifest.annotations
    return str(rows.loc[rows.path.str.endswith("/" + name), "annotation_key"].item())


def test_pairs_link_each_annotation_to_its_image_series(manifest) -> None:
    pairs = dicomml.pairs(manifest)
    series = manifest.series.set_index("series_key")
    by_name = {Path(p).name: k for p, k in zip(pairs.annotation_path, pairs.series_key)}
    assert series.loc[by_name["liver.dcm"], "folder"].endswith("ct-3slice")
    assert series.loc[by_name["label.seg"], "folder"].endswith("24x38x3/image")
    assert series.loc[by_name["rt.dcm"], "folder"].endswith("mock_data")
    ct2 = series.loc[by_name["seg_image_ct_binary_overlap.dcm"]]
    assert (
        ct2.folder.endswith("CT2") and ct2.series_instance_uid == pydicom.dcmread(ct2_files()[0], stop_before_pixels=True).SeriesInstanceUID
    )
    assert {"series_key", "annotation_key", "modality", "labels", "usable"} <= set(pairs.columns)


def test_load_mask_is_on_exactly_the_grid_of_load_series_and_equals_the_nrrd(manifest, data_dir) -> None:
    key = _key(manifest, "liver.dcm")
    mask = dicomml.load_mask(manifest, key)
    image = dicomml.load_series(manifest, mask.meta["series_key"])
    assert mask.array.shape == image.array.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    labels, affine = nrrd_labels(data_dir / SEGS / "liver_seg.nrrd")
    expected, _ = onto(labels, affine, image.affine)
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.meta["annotation_key"] == key and mask.meta["kind"] == "mask"


def test_ct2_masks_land_on_the_right_slices_of_load_series_resample_grid(manifest, data_dir) -> None:
    key = _key(manifest, "seg_image_ct_binary_overlap.dcm")
    with pytest.raises(SliceGapError):  # the referenced series has a 202.5 mm gap
        dicomml.load_mask(manifest, key, as_channels=True)
    mask = dicomml.load_mask(manifest, key, as_channels=True, on_irregular="resample")
    image = dicomml.load_series(manifest, mask.meta["series_key"], on_irregular="resample")
    assert mask.array.shape[1:] == image.array.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    theirs = hd.seg.segread(data_dir / HD / "seg_image_ct_binary_overlap.dcm")
    to_index = np.linalg.inv(image.affine)
    filled = set()
    for file in ct2_files():
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        ras = np.array([-1, -1, 1.0]) * np.asarray(ds.ImagePositionPatient, float)
        k, row, col = np.rint(to_index[:3, :3] @ ras + to_index[:3, 3]).astype(int)
        assert (row, col) == (0, 0)
        filled.add(int(k))
        expected = theirs.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[1, 2])[0]
        np.testing.assert_array_equal(mask.array[:, k], np.moveaxis(expected, -1, 0))
    others = [k for k in range(image.array.shape[0]) if k not in filled]
    assert len(filled) == 4 and not mask.array[:, others].any()


def test_rtstruct_load_mask_on_the_series_grid(manifest, data_dir) -> None:
    # rt-utils 1.2 wrote rt.dcm with a new FrameOfReferenceUID; it names the CT series, so the link holds
    mask = dicomml.load_mask(manifest, _key(manifest, "rt.dcm"), segments="ROI-1")
    image = dicomml.load_series(manifest, mask.meta["series_key"])
    assert mask.array.shape == image.array.shape and mask.meta["labels"] == {1: "ROI-1"}
    np.testing.assert_array_equal(mask.affine, image.affine)
    direct = dicomml.seg.rtstruct_to_grid(data_dir / MOCK / "rt.dcm", image)
    np.testing.assert_array_equal(mask.array, direct.array)
    assert mask.array.sum() > 1000


def test_rtstruct_referencing_absent_slices_raises_seg_reference_error(manifest) -> None:
    """MIM's invalid_reference_rt.dcm is linked by its series UID, but its contours lie on slices the CT lacks."""
    key = _key(manifest, "invalid_reference_rt.dcm")
    series_key = manifest.annotations.set_index("annotation_key").loc[key, "referenced_series_key"]
    with pytest.raises(SegReferenceError, match="outside series") as info:
        dicomml.load_mask(manifest, key)
    assert "invalid_reference_rt.dcm" in str(info.value) and series_key in str(info.value)  # names both


def test_unlinked_annotation_raises_seg_reference_error_naming_both(manifest, tmp_path, data_dir) -> None:
    other = dicomml.index([str(data_dir / "highdicom")], tmp_path / "m", workers=1)  # without CT2
    key = _key(other, "seg_image_ct_binary.dcm")
    with pytest.raises(SegReferenceError, match="not in the manifest") as info:
        dicomml.load_mask(other, key)
    message = str(info.value)
    assert "seg_image_ct_binary.dcm" in message and "1.3.6.1.4.1.5962.1.1.0.0.0.1196530851.28319.0.2" in message
    with pytest.raises(SeriesNotFoundError, match="no annotation_key"):
        dicomml.load_mask(manifest, "0000000000000000")


def test_an_annotation_rewritten_after_indexing_is_refused(tmp_path, data_dir):
    import shutil

    from dicomml.errors import ManifestError

    for folder in ("image", "seg"):
        shutil.copytree(data_dir / "dcmqi/data/segmentations/24x38x3" / folder, tmp_path / "tree" / folder)
    manifest = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, progress=False)
    (key,) = manifest.annotations.annotation_key
    assert dicomml.load_mask(manifest, key).array.any()
    seg = tmp_path / "tree" / "seg" / "label.seg"
    seg.write_bytes(seg.read_bytes())  # the same bytes, written again: a new modification time
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 1_000_000_000))
    with pytest.raises(ManifestError, match="label.seg: changed since it was indexed"):
        dicomml.load_mask(manifest, key)

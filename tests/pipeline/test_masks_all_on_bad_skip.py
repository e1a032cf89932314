"""``masks: ["*"]`` honours ``annotations.on_bad``: a bad RTSTRUCT is skipped (and listed) and its good siblings are
kept, as a label map does, instead of failing the series."""

from __future__ import annotations

import pytest

import dicomml
from dicomml.data import SegmentationDataset
from dicomml.errors import SegReferenceError


@pytest.fixture(scope="module")
def rt_utils(data_dir, tmp_path_factory):
    """rt-utils' mock CT with its RTSTRUCTs: rt.dcm, and two negative tests (references that are not this series')."""
    return dicomml.index(data_dir / "rt-utils/tests/mock_data", tmp_path_factory.mktemp("rt") / "m", workers=1, progress=False)


def test_a_bad_annotation_is_skipped_and_its_good_sibling_kept(rt_utils, tmp_path):
    sample = SegmentationDataset(rt_utils, "ct_seg", tmp_path / "c", annotations={"on_bad": "skip"})[0]
    skipped = sample["meta"]["skipped_annotations"]
    assert len(skipped) == 2 and all("SegReferenceError" in reason for reason in skipped.values())
    assert sample["mask"].shape[0] >= 1 and bool(sample["mask"].any())
    with pytest.raises(SegReferenceError, match="does not belong to this image"):
        SegmentationDataset(rt_utils, "ct_seg", tmp_path / "c2")[0]  # on_bad: raise, the default


def test_a_series_whose_every_annotation_is_bad_fails_in_one_line(data_dir, tmp_path):
    """rt-utils' CT with only its two negative-test RTSTRUCTs: no mask to cache, so the series fails (no entry
    without masks that every Dataset reading masks would trip on)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("ct_1.dcm", "ct_2.dcm", "invalid_reference_rt.dcm", "non_existent_reference_rt.dcm"):
        (src / name).write_bytes((data_dir / "rt-utils/tests/mock_data" / name).read_bytes())
    manifest = dicomml.index(src, tmp_path / "m", workers=1, progress=False)
    with pytest.raises(dicomml.errors.DicomMLError, match=r"no annotation of this series could be read \(2 skipped under on_bad: skip: "):
        SegmentationDataset(manifest, "ct_seg", tmp_path / "c", annotations={"on_bad": "skip"})[0]

"""Enhanced multi-frame objects keep echo time, slice thickness, window and acquisition time in their functional
groups: the manifest reads them there (the first frame of each row's group), as pydicom finds them."""

from __future__ import annotations

import pydicom
import pytest

import dicomml

ENHANCED = ["dcm_qa_xa30/In/5_anat-T1w_acq-tfl", "dcm_qa_philips_enh/In/enh", "dcm_qa_xa30/In/8_gre_field_mapping"]


def _first_frame(ds: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    for groups in (ds.PerFrameFunctionalGroupsSequence[frame], ds.SharedFunctionalGroupsSequence[0]):
        if sequence in groups:
            return groups[sequence][0]
    return None


@pytest.mark.parametrize("folder", ENHANCED)
def test_enhanced_rows_carry_the_first_frames_functional_group_values(tmp_path, data_dir, folder):
    manifest = dicomml.index([str(data_dir / folder)], str(tmp_path / "m"), workers=1, progress=False, salt="t")
    columns = ["path", "frame_numbers", "echo_time", "slice_thickness", "window_center", "window_width", "acquisition_time"]
    rows = manifest.table("instances", columns).to_pylist()
    assert rows
    for row in rows:
        ds = pydicom.dcmread(row["path"], stop_before_pixels=True)
        frame = (row["frame_numbers"] or [1])[0] - 1
        echo = _first_frame(ds, frame, "MREchoSequence")
        assert row["echo_time"] == pytest.approx(float(echo.EffectiveEchoTime))
        assert row["slice_thickness"] == pytest.approx(float(_first_frame(ds, frame, "PixelMeasuresSequence").SliceThickness))
        voi = _first_frame(ds, frame, "FrameVOILUTSequence")
        if voi is not None and "WindowCenter" not in ds:  # a top-level window, where a file has one, stays
            for column, keyword in (("window_center", "WindowCenter"), ("window_width", "WindowWidth")):
                value = voi[keyword].value
                assert row[column] == pytest.approx(
                    [float(v) for v in (value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value])]
                )
        content = _first_frame(ds, frame, "FrameContentSequence")
        acquired = str(content.get("FrameAcquisitionDateTime", "") or ds.get("AcquisitionDateTime", ""))
        assert row["acquisition_time"] == (acquired.strip()[8:] or None)

"""Header text that names no side (a Patient Orientation or Image Laterality outside the standard's values) is neither
drawn by ``dicomml show`` (edge labels, their nonsense opposites, the title) nor a reason to flip an image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dicomml
from dicomml.imaging2d import load_image
from dicomml.imaging2d.orientation import edge_sides, is_patient_orientation
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.viz import render_images

#: Made-up text in the two elements, and what the edge opposite to it used to read.
MADE_UP = {"PatientOrientation": ["LEAKPOA", "LEAKPOB"], "ImageLaterality": "LEAKLAT", "ViewPosition": "CC"}


def _mammogram(tmp_path, **extra):
    header = {**MADE_UP, "ImagerPixelSpacing": [0.1, 0.1], **extra}
    return write_image2d(tmp_path / "mg.dcm", np.full((64, 48), 500, np.uint16), modality="MG", extra=header)


@pytest.mark.parametrize(
    ("orientation", "valid"),
    [(("A", "R"), True), (("AF", "R"), True), (("P", "FL"), True), (("LEAKPOA", "LEAKPOB"), False)]
    + [(("A", "P"), False), (("AP", "R"), False), (("A", ""), False), (("X", "R"), False), (("AA", "R"), False)],
)
def test_only_the_standards_patient_orientations_are_accepted(orientation, valid):
    assert is_patient_orientation(orientation) is valid
    assert any(edge_sides(orientation).values()) is valid


def test_made_up_orientation_and_laterality_are_not_drawn(tmp_path):
    image = load_image(_mammogram(tmp_path), display="breast")
    ax = render_images([image]).axes[0]
    texts = " ".join([ax.get_title(), *(t.get_text() for t in ax.texts)])
    assert "LEAK" not in texts and "REPKAOP" not in texts and "AEL" not in texts
    assert ax.get_title() == "MG CC"  # the view is a code string, drawn as the header has it
    assert image.meta["laterality"] is None and image.meta["patient_orientation"] is None
    assert image.meta["flips"] == [] and image.meta["flip_basis"] == "unknown"


def test_a_made_up_orientation_does_not_drive_the_flip_a_valid_laterality_does(tmp_path):
    """``LEAKPOA`` holds an A and a P: it was read as a row direction towards the nipple, and the right breast
    was left facing left."""
    image = load_image(_mammogram(tmp_path, ImageLaterality="R"), display="breast")
    assert image.meta["flip_basis"] == "laterality" and image.meta["flips"] == ["horizontal"]


def test_the_manifest_keeps_no_made_up_side(tmp_path):
    (tmp_path / "dicom").mkdir()
    _mammogram(tmp_path / "dicom")
    row = dicomml.index(tmp_path / "dicom", tmp_path / "m", workers=1, salt="labels", progress=False).instances.iloc[0]
    assert pd.isna(row.laterality) and pd.isna(row.patient_orientation) and row.view == "CC"

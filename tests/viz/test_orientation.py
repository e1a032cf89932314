"""A marker at a known patient side shows up on that side of the PNG, and under the right letter.

The volumes are built from DICOM geometry (ImageOrientationPatient, slice
step, LPS+) through ``dicom_affine``; the marker is placed by world
coordinates, so each acquisition stores it at different array indices. The
PNG is read back with matplotlib and the marker found by its pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dicomml.assemble import load_files
from dicomml.dicom.synthetic import write_series
from dicomml.geometry import LPS_TO_RAS, dicom_affine
from dicomml.sample.phantom import voxel_centres
from dicomml.viz import render
from dicomml.volume import Volume

#: Marker centre, RAS+ mm: patient LEFT (x < 0), ANTERIOR (y > 0), SUPERIOR (z > 0).
MARKER_RAS = np.array([-40.0, 30.0, 35.0])
MARKER_SIDES = ("L", "A", "S")
OPPOSITE = {"L": "R", "A": "P", "S": "I", "R": "L", "P": "A", "I": "S"}

#: name -> (ImageOrientationPatient, slice step direction), LPS+.
ACQUISITIONS = {
    "axial_head_first": ((1, 0, 0, 0, 1, 0), (0, 0, 1)),
    "axial_feet_first": ((-1, 0, 0, 0, 1, 0), (0, 0, -1)),
    "sagittal": ((0, 1, 0, 0, 0, -1), (1, 0, 0)),
    "coronal": ((1, 0, 0, 0, 0, -1), (0, 1, 0)),
    "axial_oblique_20deg": (
        (np.cos(np.radians(20)), np.sin(np.radians(20)), 0, -np.sin(np.radians(20)), np.cos(np.radians(20)), 0),
        (0, 0, 1),
    ),
}

#: Where the marker must appear on screen, per convention and view: (horizontal, vertical) half.
SCREEN = {
    "radiological": {"axial": ("right", "top"), "coronal": ("right", "top"), "sagittal": ("left", "top")},
    "neurological": {"axial": ("left", "top"), "coronal": ("left", "top"), "sagittal": ("left", "top")},
}


def marker_volume(orientation, step_direction) -> Volume:
    """A 200 mm field of view, 2 mm pixels, 4 mm slices, centred on the origin, with the marker."""
    shape = (50, 100, 100)
    step = 4.0 * np.asarray(step_direction, np.float64)
    unshifted = dicom_affine(orientation, (2.0, 2.0), (0, 0, 0), step)
    centre = unshifted @ np.array([(n - 1) / 2 for n in shape] + [1.0])
    affine = unshifted.copy()
    affine[:3, 3] -= centre[:3]
    world = voxel_centres(affine, shape)
    inside = np.all(np.abs(world - MARKER_RAS) <= 8.0, axis=-1)
    return Volume(np.where(inside, 1000, 100).astype(np.int16), affine)


def png_and_figure(volume: Volume, path: Path, convention: str):
    fig = render(volume, window=(500, 1000), centre=MARKER_RAS, convention=convention, montage=0)
    fig.savefig(path, format="png", facecolor=fig.get_facecolor())
    return imread(path), fig


def centre_of(extent, height: int) -> np.ndarray:
    """Centre of a display-space box (origin bottom left) in PNG (column, row) pixels."""
    return np.array([(extent.x0 + extent.x1) / 2, height - (extent.y0 + extent.y1) / 2])


def assert_marker_on_its_labelled_sides(volume: Volume, path: Path, convention: str, case: str) -> None:
    png, fig = png_and_figure(volume, path, convention)
    height = png.shape[0]
    panels = {ax.get_label(): ax for ax in fig.axes}
    for view in ("axial", "coronal", "sagittal"):
        ax = panels[view]
        box = ax.get_window_extent()
        rows = slice(int(height - box.y1), int(height - box.y0))
        cols = slice(int(box.x0), int(box.x1))
        white = np.all(png[rows, cols, :3] > 0.9, axis=-1)
        assert white.sum() > 10, f"{case}/{view}: marker not visible"
        marker = np.argwhere(white).mean(axis=0)[::-1] + [cols.start, rows.start]
        labels = {t.get_text(): centre_of(t.get_window_extent(), height) for t in ax.texts if len(t.get_text()) == 1}
        shown = [side for side in MARKER_SIDES if side in labels]
        assert len(shown) == 2, f"{case}/{view}: side letters {sorted(labels)}"
        for side in shown:
            near = np.linalg.norm(marker - labels[side])
            far = np.linalg.norm(marker - labels[OPPOSITE[side]])
            assert near < far, f"{case}/{view}: marker nearer the {OPPOSITE[side]} label than {side}"
        middle = centre_of(box, height)
        horizontal, vertical = SCREEN[convention][view]
        assert (marker[0] > middle[0]) == (horizontal == "right"), f"{case}/{view}: marker not on the {horizontal}"
        assert (marker[1] < middle[1]) == (vertical == "top"), f"{case}/{view}: marker not at the {vertical}"


@pytest.mark.parametrize("convention", ["radiological", "neurological"])
@pytest.mark.parametrize("acquisition", sorted(ACQUISITIONS))
def test_marker_appears_on_its_labelled_side(tmp_path, acquisition, convention):
    volume = marker_volume(*ACQUISITIONS[acquisition])
    assert_marker_on_its_labelled_sides(volume, tmp_path / "views.png", convention, acquisition)


@pytest.mark.parametrize("acquisition", ["axial_feet_first", "sagittal", "coronal"])
def test_marker_written_as_dicom_and_loaded_lands_on_its_side(tmp_path, acquisition):
    """The whole chain: DICOM files (shuffled names) -> load_files -> PNG."""
    orientation, step_direction = ACQUISITIONS[acquisition]
    volume = marker_volume(orientation, step_direction)
    lps = LPS_TO_RAS @ volume.affine
    positions = lps[:3, 3] + np.outer(np.arange(volume.spatial_shape[0]), lps[:3, 0])
    files = write_series(
        tmp_path / "dicom",
        volume.array.astype(np.uint16),
        positions=positions,
        orientation=orientation,
        pixel_spacing=(2.0, 2.0),
        modality="MR",
        rescale=None,
        shuffle=1,
        series_uid="1.2.826.0.1.3680043.8.498.7",
    )
    loaded = load_files(files)
    assert_marker_on_its_labelled_sides(loaded, tmp_path / "views.png", "radiological", acquisition)


def test_oblique_volume_says_it_is_shown_on_nearest_axes(tmp_path):
    volume = marker_volume(*ACQUISITIONS["axial_oblique_20deg"])
    fig = render(volume, window=(500, 1000), montage=0)
    assert "oblique 20.0 deg" in fig.get_suptitle()
    straight = render(marker_volume(*ACQUISITIONS["sagittal"]), window=(500, 1000), montage=0)
    assert "oblique" not in straight.get_suptitle()

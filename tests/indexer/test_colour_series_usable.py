"""A stack of colour images with full geometry is not a usable volume (the series table agrees with load_series), and
``dicomml show`` draws it image by image, in colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.image import imread
from pydicom.pixels import apply_color_lut
from pydicom.uid import generate_uid

import dicomml
from dicomml.cli.main import main
from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import load_image
from dicomml.imaging2d.modalities import IMAGES_2D
from dicomml.imaging2d.synthetic import write_image2d
from dicomml.indexer.series import COLOUR_IMAGES

#: A PALETTE COLOR table: index i is (i, 0, 255 - i) in 8 bits.
PALETTE = {
    **{f"{c}PaletteColorLookupTableDescriptor": [256, 0, 8] for c in ("Red", "Green", "Blue")},
    "RedPaletteColorLookupTableData": np.arange(256, dtype="<u2").tobytes(),
    "GreenPaletteColorLookupTableData": np.zeros(256, "<u2").tobytes(),
    "BluePaletteColorLookupTableData": np.arange(255, -1, -1, dtype="<u2").tobytes(),
}


def write_stack(
    folder: Path, *, colour: bool, modality: str = "OT", n: int = 4, pixels: np.ndarray | None = None, palette: bool = False
) -> None:
    """``n`` slices 2 mm apart, axial, 1 mm pixels: a volume's geometry, in RGB, in palette colour or grey (``pixels``:
    each slice's)."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    if pixels is None:
        pixels = np.zeros((16, 16, 3) if colour else (16, 16), np.uint8)
    for k in range(n):
        geometry = {
            "ImagePositionPatient": [0.0, 0.0, 2.0 * k],
            "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
            "PixelSpacing": [1, 1],
            "FrameOfReferenceUID": frame,
            "InstanceNumber": k + 1,
            "Modality": modality,
            **(PALETTE if palette else {}),
        }
        write_image2d(
            folder / f"{k}.dcm",
            pixels,
            modality="SC",
            photometric="RGB" if colour else "PALETTE COLOR" if palette else "MONOCHROME2",
            study_uid=study,
            series_uid=series,
            extra=geometry,
        )


def test_a_colour_stack_is_not_usable_and_says_which_readers_read_it(tmp_path: Path) -> None:
    write_stack(tmp_path / "src" / "rgb", colour=True)
    write_stack(tmp_path / "src" / "grey", colour=False)
    write_image2d(tmp_path / "src" / "us.dcm", np.zeros((16, 16, 3), np.uint8), modality="US", photometric="RGB")
    manifest = dicomml.index(tmp_path / "src", tmp_path / "manifest", workers=1, salt="colour", progress=False)
    rows = manifest.table("series", ["folder", "series_key", "usable", "reason"]).to_pylist()
    series = {Path(row.pop("folder")).name: row for row in rows}
    assert series["grey"]["usable"] and series["grey"]["reason"] is None  # the same geometry in grey levels is a volume
    assert (series["rgb"]["usable"], series["rgb"]["reason"]) == (False, COLOUR_IMAGES)
    with pytest.raises(
        InvalidDicomFileError,
        match=r"Samples per Pixel is 3, expected 1; colour images are not volumes: read them with dicomml.ImageDataset",
    ):
        dicomml.load_series(manifest, series["rgb"]["series_key"])  # what the table says: no volume
    assert series["src"]["reason"] == IMAGES_2D  # a single colour ultrasound image keeps its reason


def test_show_draws_a_colour_stack_with_geometry_image_by_image(tmp_path: Path) -> None:
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, 24:] = [255, 0, 0]
    write_stack(tmp_path / "src", colour=True, modality="CT", n=3, pixels=pixels)  # CT: only its colour says no volume
    manifest = dicomml.index(tmp_path / "src", tmp_path / "manifest", workers=1, salt="colour", progress=False)
    out = tmp_path / "rgb.png"
    try:
        main(["show", str(tmp_path / "manifest"), str(manifest.series.series_key[0]), "-o", str(out)])
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml show exited {exc.code}") from exc
    png = imread(out)[..., :3]
    red = (png[..., 0] > 0.9) & (png[..., 1] < 0.1) & (png[..., 2] < 0.1)
    assert png.shape[:2] == (460, 1200)  # three images side by side, not a volume's views and montage
    assert red.sum() > 3 * 500


def test_a_palette_colour_stack_is_colour_images_not_a_grey_volume(tmp_path: Path) -> None:
    """One sample per pixel, but each an index into a colour table: the indices are no grey levels (pydicom maps them)."""
    pixels = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    write_stack(tmp_path / "src", colour=False, modality="MR", n=3, pixels=pixels, palette=True)
    manifest = dicomml.index(tmp_path / "src", tmp_path / "manifest", workers=1, salt="colour", progress=False)
    row = manifest.table("series", ["series_key", "usable", "reason"]).to_pylist()[0]
    assert (row["usable"], row["reason"]) == (False, COLOUR_IMAGES)
    with pytest.raises(InvalidDicomFileError, match=r"0\.dcm: \(0028,0004\) Photometric Interpretation is PALETTE COLOR"):
        dicomml.load_series(manifest, row["series_key"])
    image = load_image(tmp_path / "src" / "0.dcm")  # the 2D reader maps the indices through the table, as pydicom does
    ds = pydicom.dcmread(tmp_path / "src" / "0.dcm")
    np.testing.assert_array_equal(image.pixels[0], apply_color_lut(ds.pixel_array, ds))
    out = tmp_path / "palette.png"
    try:
        main(["show", str(tmp_path / "manifest"), row["series_key"], "-o", str(out)])
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml show exited {exc.code}") from exc
    png = imread(out)[..., :3]
    assert png.shape[:2] == (460, 1200)  # three images side by side, in colour
    assert ((png[..., 2] > 0.9) & (png[..., 0] < 0.1)).sum() > 3 * 100  # index 0 is blue

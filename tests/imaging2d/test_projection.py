"""Physical size, laterality, view and display convention of projection images, in meta and in the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import dicomml
from dicomml.errors import InconsistentGeometryError
from dicomml.imaging2d import load_image, physical_spacing
from dicomml.imaging2d.synthetic import code_item, write_image2d

#: Real headers' values: a Hologic-style mammogram (70 um detector, magnification 1.08) and a GE-style US.
_MG = {
    "ImagerPixelSpacing": [0.07, 0.07],
    "EstimatedRadiographicMagnificationFactor": 1.08,
    "BodyPartExamined": "BREAST",
    "PresentationLUTShape": "IDENTITY",
    "BurnedInAnnotation": "NO",
    "WindowCenter": 2047,
    "WindowWidth": 4096,
}
_VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
#: Patient Orientation of the usual hanging: left breasts face right (nipple = anterior on the right).
_ORIENTATION = {("L", "CC"): "A\\R", ("R", "CC"): "P\\L", ("L", "MLO"): "A\\F", ("R", "MLO"): "P\\F"}


def _region(x0: int, y0: int, x1: int, y1: int, delta_cm: float) -> Dataset:
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, y1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
    region.PhysicalDeltaX = region.PhysicalDeltaY = delta_cm
    return region


def test_mammogram_spacing_is_imager_spacing_over_magnification(tmp_path: Path) -> None:
    path = write_image2d(
        tmp_path / "mg.dcm", np.zeros((40, 30), np.uint16), modality="MG", bits_stored=12, extra={**_MG, "PixelSpacing": [0.07, 0.07]}
    )  # copied from the detector: not calibrated
    image = load_image(path)
    assert image.meta["spacing_source"] == "magnification_corrected"
    np.testing.assert_allclose(image.meta["spacing"], [0.07 / 1.08, 0.07 / 1.08])


@pytest.mark.parametrize(
    ("headers", "expected", "source"),
    [
        ({"ImagerPixelSpacing": [0.15, 0.15]}, (0.15, 0.15), "imager_pixel_spacing"),
        ({"ImagerPixelSpacing": [0.15, 0.15], "PixelSpacing": [0.14, 0.13]}, (0.14, 0.13), "pixel_spacing"),
        (
            {
                "ImagerPixelSpacing": [0.15, 0.15],
                "PixelSpacing": [0.15, 0.15],
                "PixelSpacingCalibrationType": "GEOMETRY",
                "EstimatedRadiographicMagnificationFactor": 1.2,
            },
            (0.15, 0.15),
            "pixel_spacing",
        ),
        ({"PixelSpacing": [0.5, 0.25]}, (0.5, 0.25), "pixel_spacing"),
        ({"NominalScannedPixelSpacing": [0.2, 0.2]}, (0.2, 0.2), "nominal_scanned"),
        ({}, (None, None), "none"),
    ],
)
def test_ps33_spacing_rules(headers: dict, expected: tuple, source: str) -> None:
    ds = Dataset()
    for keyword, value in headers.items():
        setattr(ds, keyword, value)
    spacing = physical_spacing(ds)
    assert (spacing.row, spacing.column, spacing.source) == (*expected, source)


def test_ultrasound_spacing_from_regions(tmp_path: Path) -> None:
    regions = Sequence([_region(0, 0, 319, 239, 0.0242), _region(320, 0, 639, 239, 0.0242)])
    path = write_image2d(
        tmp_path / "us.dcm",
        np.zeros((240, 640, 3), np.uint8),
        modality="US",
        photometric="RGB",
        extra={"SequenceOfUltrasoundRegions": regions},
    )
    image = load_image(path)
    assert image.meta["spacing_source"] == "ultrasound_region"
    np.testing.assert_allclose(image.meta["spacing"], [0.242, 0.242])
    mixed = Sequence([_region(0, 0, 319, 239, 0.0242), _region(320, 0, 639, 239, 0.05)])
    ds = pydicom.dcmread(path)
    ds.SequenceOfUltrasoundRegions = mixed
    assert physical_spacing(ds).source == "none"  # regions disagree: no one spacing for the image


def test_real_ultrasound_regions() -> None:
    path = pydicom.data.get_testdata_file("OBXXXX1A.dcm", download=False)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    region = ds.SequenceOfUltrasoundRegions[0]
    image = load_image(path)
    np.testing.assert_allclose(image.meta["spacing"], [region.PhysicalDeltaY * 10, region.PhysicalDeltaX * 10])


def _tissue(laterality: str, rows: int = 60, columns: int = 40) -> np.ndarray:
    """A breast-like blob against the chest wall: on the image's left for left breasts (usual hanging), else right."""
    y, x = np.mgrid[:rows, :columns]
    wall = 0 if laterality == "L" else columns - 1
    blob = ((x - wall) / (0.8 * columns)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2 < 1
    return (blob * 3000 + 100).astype(np.uint16)


def _write_pair(folder: Path) -> dict[tuple[str, str], Path]:
    study = pydicom.uid.generate_uid()
    paths = {}
    for (side, view), orientation in _ORIENTATION.items():
        code, meaning = _VIEW_CODES[view]
        paths[side, view] = write_image2d(
            folder / f"{side}{view}.dcm",
            _tissue(side),
            modality="MG",
            bits_stored=12,
            study_uid=study,
            extra={
                **_MG,
                "ImageLaterality": side,
                "ViewPosition": view,
                "PatientOrientation": orientation.split("\\"),
                "ViewCodeSequence": Sequence([code_item(code, "SCT", meaning)]),
            },
        )
    return paths


@pytest.mark.parametrize("facing", ["right", "left"])
def test_mammogram_pair_comes_out_in_one_display_convention(tmp_path: Path, facing: str) -> None:
    paths = _write_pair(tmp_path)
    for (side, view), path in paths.items():
        image = load_image(path, display="breast", facing=facing)
        tissue = image.pixels[0] > image.pixels[0].mean()
        left, right = tissue[:, :20].sum(), tissue[:, 20:].sum()
        chest_wall_left = left > right  # nipple faces right
        assert chest_wall_left == (facing == "right"), (side, view)
        assert (image.meta["laterality"], image.meta["view"]) == (side, view)
        assert image.meta["patient_orientation"].split("\\")[0] == ("A" if facing == "right" else "P")
        native = "right" if side == "L" else "left"
        assert image.meta["flips"] == ([] if native == facing else ["horizontal"])
        assert image.meta["flip_basis"] == "patient_orientation" and image.meta["burned_in"] is False


def test_laterality_alone_decides_when_patient_orientation_is_absent(tmp_path: Path) -> None:
    path = write_image2d(tmp_path / "r.dcm", _tissue("R"), modality="MG", extra={"Laterality": "R", "ViewPosition": "CC"})
    image = load_image(path, display="breast")
    assert image.meta["flips"] == ["horizontal"] and image.meta["flip_basis"] == "laterality"
    np.testing.assert_array_equal(image.pixels[0], _tissue("L").astype(np.float32))


def test_chest_puts_patients_right_on_the_images_left(tmp_path: Path) -> None:
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4)
    mirrored = write_image2d(tmp_path / "pa.dcm", stored, modality="DX", extra={"ViewPosition": "PA", "PatientOrientation": ["R", "F"]})
    image = load_image(mirrored, display="chest")
    np.testing.assert_array_equal(image.pixels[0], stored[:, ::-1])
    assert image.meta["patient_orientation"] == "L\\F" and image.meta["flips"] == ["horizontal"]
    upright = write_image2d(tmp_path / "ap.dcm", stored, modality="DX", extra={"ViewPosition": "AP", "PatientOrientation": ["L", "F"]})
    assert load_image(upright, display="chest").meta["flips"] == []


def test_manifest_columns_pick_cohorts_in_sql(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _write_pair(source / "mg")
    write_image2d(
        source / "dx.dcm",
        np.zeros((30, 20), np.uint16),
        modality="DX",
        photometric="MONOCHROME1",
        extra={"ViewPosition": "PA", "BurnedInAnnotation": "YES", "ImagerPixelSpacing": [0.1, 0.1]},
    )
    write_image2d(source / "sc.dcm", np.zeros((10, 10, 3), np.uint8), modality="SC", photometric="RGB")
    manifest = dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    mg = manifest.sql(
        "SELECT laterality, view, spacing_source, photometric_interpretation, number_of_frames, n_frames "
        "FROM instances WHERE modality = 'MG' ORDER BY laterality, view"
    )
    assert list(zip(mg.laterality, mg.view)) == [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
    assert set(mg.spacing_source) == {"magnification_corrected"} and set(mg.photometric_interpretation) == {"MONOCHROME2"}
    dx = manifest.sql("SELECT burned_in, spacing_source, photometric_interpretation, has_voi_lut_table FROM instances WHERE view = 'PA'")
    assert dx.iloc[0].tolist() == [True, "imager_pixel_spacing", "MONOCHROME1", False]
    sc = manifest.sql("SELECT spacing_source FROM instances WHERE modality = 'SC'")
    assert sc.spacing_source.tolist() == ["none"]


def test_a_group_of_2d_images_is_reported_as_2d_images_not_a_broken_volume(tmp_path: Path) -> None:
    """`info` and the cohort picture read `reason`: radiographs say what they are, a CT slice keeps its own reason."""
    from dicomml.dicom.synthetic import write_series
    from dicomml.imaging2d.modalities import IMAGES_2D

    source = tmp_path / "source"
    _write_pair(source / "mg")
    write_image2d(source / "dx.dcm", np.zeros((30, 20), np.uint16), modality="DX", extra={"ImagerPixelSpacing": [0.1, 0.1]})
    write_series(source / "ct", np.zeros((1, 8, 8), np.int16), modality="CT")
    manifest = dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    reasons = manifest.sql("SELECT modality, usable, reason FROM series ORDER BY modality")
    assert reasons.to_dict("list") == {
        "modality": ["CT", "DX", "MG", "MG", "MG", "MG"],
        "usable": [False] * 6,
        "reason": ["single slice", *[IMAGES_2D] * 5],
    }
    dx = manifest.sql("SELECT series_key FROM series WHERE modality = 'DX'").series_key[0]
    with pytest.raises(InconsistentGeometryError, match=r"these are 2D images: dicomml\.ImageDataset") as info:
        dicomml.load_series(manifest, dx)  # the volume loader points to the 2D readers
    assert "\n" not in str(info.value)

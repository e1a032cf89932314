"""Mammography views by their CID 4014 code, and the enhanced breast objects: tomosynthesis is a volume, a breast projection a 2D image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

import dicomml
from dicomml.imaging2d import ImageConfig, ImageDataset, load_image, physical_spacing, projection_header
from dicomml.imaging2d.orientation import normalize_view
from dicomml.imaging2d.selection import select_images
from dicomml.imaging2d.synthetic import code_item, write_image2d

#: ACR MQCM abbreviation of each view of pydicom's CID 4014 (View for Mammography), by pydicom's concept name.
_MQCM = {
    "CranioCaudal": "CC",
    "MedioLateralObliqueProjection": "MLO",
    "MedioLateralProjection": "ML",
    "LateroMedial": "LM",
    "LateroMedialOblique": "LMO",
    "CranioCaudalExaggeratedLaterally": "XCCL",
    "CranioCaudalExaggeratedMedially": "XCCM",
    "CaudoCranial": "FB",
    "SuperolateralToInferomedialOblique": "SIO",
    "InferomedialToSuperolateralOblique": "ISO",
}
#: The SNOMED-RT (SRT) codes of the same views, as files written before SNOMED CT carry them.
_SRT = {
    "CranioCaudal": "R-10242",
    "MedioLateralObliqueProjection": "R-10226",
    "MedioLateralProjection": "R-10224",
    "LateroMedial": "R-10228",
    "LateroMedialOblique": "R-10230",
    "CranioCaudalExaggeratedLaterally": "R-1024A",
    "CranioCaudalExaggeratedMedially": "R-1024B",
    "CaudoCranial": "R-10244",
    "SuperolateralToInferomedialOblique": "R-102D0",
    "InferomedialToSuperolateralOblique": "R-40AAA",
}
_TOMOSYNTHESIS = "1.2.840.10008.5.1.4.1.1.13.1.3"
_PROJECTION = {"presentation": "1.2.840.10008.5.1.4.1.1.13.1.4", "processing": "1.2.840.10008.5.1.4.1.1.13.1.5"}
#: Real headers' values of a Hologic-style mammogram.
_MG = {
    "ImagerPixelSpacing": [0.07, 0.07],
    "BodyPartExamined": "BREAST",
    "BurnedInAnnotation": "NO",
    "WindowCenter": 2047,
    "WindowWidth": 4096,
}


def _item(**values: object) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _view_code(name: str) -> Dataset:
    concept = codes.cid4014.concepts[name]
    return code_item(concept.value, concept.scheme_designator, concept.meaning)


def _header(name: str, scheme: str = "SCT") -> Dataset:
    concept = codes.cid4014.concepts[name]
    value = concept.value if scheme == "SCT" else _SRT[name]
    return _item(ViewCodeSequence=Sequence([code_item(value, scheme, concept.meaning)]))


@pytest.mark.parametrize("name", sorted(_MQCM))
def test_cid4014_view_is_decided_by_its_code_value(name: str) -> None:
    concept = codes.cid4014.concepts[name]
    assert normalize_view(concept.value) == _MQCM[name]
    assert projection_header(_header(name)).view == _MQCM[name]
    # the code decides even when the meaning is a site's own wording
    odd = _item(ViewCodeSequence=Sequence([code_item(concept.value, "SCT", f"site text {name}")]))
    assert projection_header(odd).view == _MQCM[name]


@pytest.mark.parametrize("name", sorted(_MQCM))
def test_cid4014_view_meaning_is_the_fallback_without_a_known_code(name: str) -> None:
    meaning = codes.cid4014.concepts[name].meaning
    assert normalize_view(meaning) == _MQCM[name]
    assert projection_header(_item(ViewCodeSequence=Sequence([code_item("99-LOCAL", "99SITE", meaning)]))).view == _MQCM[name]


@pytest.mark.parametrize("name", sorted(_SRT))
def test_srt_view_codes_of_older_files(name: str) -> None:
    concept = codes.cid4014.concepts[name]
    assert Code(_SRT[name], "SRT", concept.meaning) == concept  # pydicom maps the SRT code to this SNOMED CT concept
    assert projection_header(_header(name, "SRT")).view == _MQCM[name]


@pytest.mark.parametrize(
    ("side", "name", "orientation", "flips", "after"),
    [
        ("L", "MedioLateralProjection", "A\\H", ["vertical"], "A\\F"),  # head at the bottom: turned head up like an MLO
        ("R", "LateroMedial", "P\\H", ["horizontal", "vertical"], "A\\F"),
        ("L", "SuperolateralToInferomedialOblique", "A\\HL", ["vertical"], "A\\FR"),
        ("R", "InferomedialToSuperolateralOblique", "P\\F", ["horizontal"], "A\\F"),
        ("L", "CranioCaudalExaggeratedLaterally", "A\\L", ["vertical"], "A\\R"),  # lateral at the bottom: turned lateral up like a CC
        ("R", "CranioCaudalExaggeratedMedially", "P\\R", ["horizontal", "vertical"], "A\\L"),
        ("L", "CaudoCranial", "A\\R", [], "A\\R"),
    ],
)
def test_breast_display_of_every_cid4014_view(tmp_path: Path, side: str, name: str, orientation: str, flips: list, after: str) -> None:
    """Patient Orientation (PS3.3 C.7.6.1.1.1) names the rows' and columns' directions: after the flips the nipple
    points right (rows anterior), and the top is the head for views in the head-foot plane, else lateral."""
    stored = np.arange(12 * 8, dtype=np.uint16).reshape(12, 8)
    path = write_image2d(
        tmp_path / "mg.dcm",
        stored,
        modality="MG",
        extra={
            **_MG,
            "ImageLaterality": side,
            "PatientOrientation": orientation.split("\\"),
            "ViewCodeSequence": Sequence([_view_code(name)]),
        },
    )
    image = load_image(path, display="breast", facing="right")
    assert (image.meta["view"], image.meta["flips"], image.meta["patient_orientation"]) == (_MQCM[name], flips, after)
    expected = stored[::-1] if "vertical" in flips else stored
    expected = expected[:, ::-1] if "horizontal" in flips else expected
    np.testing.assert_array_equal(
        np.argsort(image.pixels[0], axis=None), np.argsort(expected, axis=None)
    )  # display values rise with stored ones


def test_manifest_view_column_holds_the_mqcm_abbreviation(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in ("MedioLateralProjection", "CranioCaudalExaggeratedLaterally", "CaudoCranial"):
        write_image2d(
            source / f"{name}.dcm",
            np.zeros((30, 20), np.uint16),
            modality="MG",
            extra={**_MG, "ImageLaterality": "L", "PatientOrientation": ["A", "H"], "ViewCodeSequence": Sequence([_view_code(name)])},
        )
    manifest = dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    assert sorted(manifest.sql("SELECT view FROM instances").view) == ["FB", "ML", "XCCL"]
    assert len(ImageDataset(tmp_path / "manifest", where="view = 'ML'")) == 1


def _enhanced_mg(path: Path, sop_class: str, frames: int, laterality: str, per_frame_measures: bool = False) -> Path:
    """A Breast Tomosynthesis / Breast Projection X-Ray object as a Hologic-style export writes it: laterality and
    spacing only in the functional groups (Frame Anatomy, Pixel Measures), no top-level Image Laterality."""
    stored = np.random.default_rng(3).integers(0, 1024, (frames, 64, 48)).astype(np.uint16)
    measures = Sequence([_item(PixelSpacing=[0.1, 0.1], SliceThickness=1.0)])
    breast = code_item("76752008", "SCT", "Breast")
    shared = _item(
        PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[0, 1, 0, 0, 0, -1])]),
        FrameAnatomySequence=Sequence([_item(FrameLaterality=laterality, AnatomicRegionSequence=Sequence([breast]))]),
        FrameVOILUTSequence=Sequence([_item(WindowCenter=512, WindowWidth=1024)]),
        PixelValueTransformationSequence=Sequence([_item(RescaleSlope=1, RescaleIntercept=0, RescaleType="US")]),
    )
    if not per_frame_measures:
        shared.PixelMeasuresSequence = measures
    per_frame = []
    for i in range(frames):
        group = _item(
            PlanePositionSequence=Sequence([_item(ImagePositionPatient=[float(i), 0.0, 0.0])]),
            FrameContentSequence=Sequence([_item(DimensionIndexValues=[i + 1])]),
        )
        if per_frame_measures:
            group.PixelMeasuresSequence = measures
        per_frame.append(group)
    write_image2d(
        path,
        stored if frames > 1 else stored[0],
        modality="MG",
        bits_stored=10,
        extra={
            "SOPClassUID": sop_class,
            "NumberOfFrames": frames,
            "ImageType": ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS" if sop_class == _TOMOSYNTHESIS else "NONE", "NONE"],
            "FrameOfReferenceUID": pydicom.uid.generate_uid(),
            "PresentationIntentType": "FOR PRESENTATION",
            "BurnedInAnnotation": "NO",
            "PatientOrientation": ["A", "R"],
            "ViewCodeSequence": Sequence([_view_code("CranioCaudal")]),
            "SharedFunctionalGroupsSequence": Sequence([shared]),
            "PerFrameFunctionalGroupsSequence": Sequence(per_frame),
        },
    )
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(sop_class)  # write_image2d names the modality's SOP class
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("per_frame_measures", [False, True])
def test_functional_groups_give_spacing_and_laterality(tmp_path: Path, per_frame_measures: bool) -> None:
    ds = pydicom.dcmread(_enhanced_mg(tmp_path / "bpx.dcm", _PROJECTION["presentation"], 1, "R", per_frame_measures))
    assert physical_spacing(ds) == physical_spacing(_item(PixelSpacing=[0.1, 0.1]))  # as top-level Pixel Spacing would give
    assert projection_header(ds).laterality == "R"
    ds.ImageLaterality = "L"  # an Image Laterality at the top level, where present, is the image's
    assert projection_header(ds).laterality == "L"


@pytest.mark.parametrize("kind", sorted(_PROJECTION))
def test_breast_projection_xray_is_a_2d_image_with_spacing_and_laterality(tmp_path: Path, kind: str) -> None:
    source = tmp_path / "source"
    _enhanced_mg(source / "bpx.dcm", _PROJECTION[kind], 1, "R")
    manifest = dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    row = manifest.sql("SELECT laterality, view, spacing_source FROM instances").iloc[0].tolist()
    assert row == ["R", "CC", "pixel_spacing"]
    sample = ImageDataset(tmp_path / "manifest", config=ImageConfig(size=(32, 32), display="breast"))[0]
    assert sample["image"].shape == (1, 32, 32) and sample["meta"]["laterality"] == "R"
    assert not sample["meta"]["spacing_missing"] and np.isfinite(sample["spacing"].numpy()).all()


def test_breast_tomosynthesis_is_a_volume_not_a_2d_sample(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _enhanced_mg(source / "dbt.dcm", _TOMOSYNTHESIS, 12, "L")
    write_image2d(source / "mg.dcm", np.zeros((30, 20), np.uint16), modality="MG", extra={**_MG, "ImageLaterality": "L"})
    manifest = dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    dbt = manifest.sql("SELECT laterality, spacing_source, series_key FROM instances WHERE sop_class_uid = ?", _TOMOSYNTHESIS)
    assert dbt[["laterality", "spacing_source"]].iloc[0].tolist() == ["L", "pixel_spacing"]
    assert manifest.sql("SELECT usable FROM series WHERE series_key = ?", dbt.series_key[0]).usable.tolist() == [True]
    volume = dicomml.load_series(manifest, dbt.series_key[0])
    np.testing.assert_allclose(volume.spacing, [1.0, 0.1, 0.1])
    data = ImageDataset(tmp_path / "manifest")
    assert [Path(row["path"]).name for row in data.rows.to_dict("records")] == ["mg.dcm"]
    assert select_images(manifest, "1 = 0) OR (1 = 1").path.map(lambda p: Path(p).name).tolist() == ["mg.dcm"]

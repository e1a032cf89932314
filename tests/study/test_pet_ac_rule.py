"""The guide's PET role rule picks the attenuation-corrected reconstruction, not its NAC twin."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

import dicomml
from dicomml.study import StudyConfig, match_studies

GUIDE = Path(__file__).resolve().parents[2] / "docs/guide/4d-and-studies.md"
#: (attenuation-corrected, not corrected) SeriesDescriptions as scanners write them; the NAC series is
#: the newer one, so a rule that matched both would pick it.
PAIRS = [
    ("PET AC", "PET NAC"),
    ("PET WB", "PET WB Uncorrected"),
    ("WB 3D MAC", "WB 3D NAC"),
    ("WB_CTAC", "WB_NONAC"),
    ("PET_AC_2D", "PET NoAC"),
    ("Thoracic PET", "Thoracic PET non-AC"),
]


def _guide_pet_rule() -> StudyConfig:
    """The guide's ``petct`` config, its ``pet`` role alone (these studies have no CT)."""
    blocks = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), flags=re.S)
    (petct,) = [yaml.safe_load(b) for b in blocks if "name: petct" in b]
    return StudyConfig.from_dict({"name": petct["name"], "roles": {"pet": petct["roles"]["pet"]}, "reference": "pet"})


def _write_pet(folder: Path, description: str, *, study: str, frame: str, number: int, time: str) -> None:
    folder.mkdir(parents=True)
    series = generate_uid()
    for k in range(3):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality, ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "PT", "P1", study, series
        ds.FrameOfReferenceUID, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = frame, number, k + 1, description
        ds.SeriesDate = ds.AcquisitionDate = "20260101"
        ds.SeriesTime = ds.AcquisitionTime = time
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 4.0 * k], [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [4.0, 4.0], 4.0
        ds.Rows = ds.Columns = 4
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.PixelData = np.zeros((4, 4), "<i2").tobytes()
        ds.save_as(folder / f"IM{k}.dcm", enforce_file_format=True)


def test_guide_pet_rule_keeps_the_attenuation_corrected_series_of_each_study(tmp_path):
    expected = {}
    for s, (corrected, uncorrected) in enumerate(PAIRS):
        study, frame = generate_uid(), generate_uid()
        _write_pet(tmp_path / f"dicom/{s}/ac", corrected, study=study, frame=frame, number=3, time="100000")
        _write_pet(tmp_path / f"dicom/{s}/nac", uncorrected, study=study, frame=frame, number=4, time="101500")
        expected[study] = corrected
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)
    match = match_studies(manifest, _guide_pet_rule())
    descriptions = dict(zip(manifest.series["series_key"], manifest.series["series_description"]))
    chosen = {row.study_instance_uid: descriptions.get(row.pet) for row in match.table.itertuples()}
    assert chosen == expected

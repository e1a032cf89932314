"""PET body-weight SUV against values computed by hand from synthetic PET headers and series."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

import dicomml
from dicomml.dicom.synthetic import write_series
from dicomml.errors import SUVError
from dicomml.study import Role, StudyConfig, compute_study, role_volume, study_sources, suv_factor
from dicomml.study.suv import first_acquired
from dicomml.volume import Volume

WEIGHT_KG = 75.0
DOSE_BQ = 370e6
HALF_LIFE_S = 6586.2  # F-18
# injected 08:00:00, series starts 09:00:00: one hour of decay
ELAPSED_S = 3600.0


def _pet(**changes) -> Dataset:
    ds = Dataset()
    ds.Modality = "PT"
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.PatientWeight = WEIGHT_KG
    ds.SeriesDate, ds.SeriesTime = "20260101", "090000"
    ds.AcquisitionDate, ds.AcquisitionTime = "20260101", "090000"
    drug = Dataset()
    drug.RadionuclideTotalDose = DOSE_BQ
    drug.RadionuclideHalfLife = HALF_LIFE_S
    drug.RadiopharmaceuticalStartTime = "080000"
    ds.RadiopharmaceuticalInformationSequence = [drug]
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword) if keyword in ds else delattr(drug, keyword)
        else:
            setattr(drug if keyword.startswith("Radio") else ds, keyword, value)
    return ds


def test_suv_factor_equals_hand_computed_value():
    decayed = DOSE_BQ * 2 ** (-ELAPSED_S / HALF_LIFE_S)
    expected = WEIGHT_KG * 1000 / decayed
    assert suv_factor(_pet()) == pytest.approx(expected, rel=1e-12)
    # 5 kBq/mL one hour after 370 MBq in 75 kg: about 1.48 g/mL
    assert 5000 * suv_factor(_pet()) == pytest.approx(1.4803, abs=1e-3)


def test_start_datetime_wins_over_start_time_and_post_processed_series_use_acquisition_time():
    later_start = _pet(RadiopharmaceuticalStartDateTime="20260101083000")  # 30 min before the scan
    assert suv_factor(later_start) == pytest.approx(WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-1800 / HALF_LIFE_S)))
    # series time after the acquisition (a reconstruction made later): decay to the acquisition
    reprocessed = _pet(SeriesTime="120000")
    assert suv_factor(reprocessed) == pytest.approx(suv_factor(_pet()))


def test_admin_decay_correction_and_gml_units():
    assert suv_factor(_pet(DecayCorrection="ADMIN")) == pytest.approx(WEIGHT_KG * 1000 / DOSE_BQ)
    assert suv_factor(_pet(Units="GML")) == 1.0


@pytest.mark.parametrize(
    ("missing", "tag"),
    [
        ("PatientWeight", "(0010,1030) PatientWeight"),
        ("RadionuclideTotalDose", "(0018,1074) RadionuclideTotalDose"),
        ("RadionuclideHalfLife", "(0018,1075) RadionuclideHalfLife"),
        ("RadiopharmaceuticalStartTime", "(0018,1072)"),
    ],
)
def test_missing_tag_is_named(missing, tag):
    with pytest.raises(SUVError, match=re.escape(tag)) as info:
        suv_factor(_pet(**{missing: None}))
    assert info.value.tag == tag.split()[0]


def test_units_that_cannot_be_converted():
    with pytest.raises(SUVError, match="Units is 'PROPCPS'|is 'PROPCPS'"):
        suv_factor(_pet(Units="PROPCPS"))


def test_role_volume_scales_activity_to_suv():
    activity = np.full((2, 3, 4), 5000.0, np.float32)
    out = role_volume(Volume(activity, np.eye(4), (), {"series_key": "pet"}), Role("pet", "modality = 'PT'", suv=True), _pet())
    assert out.array.dtype == np.float32
    np.testing.assert_allclose(out.array, 5000 * WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-ELAPSED_S / HALF_LIFE_S)), rtol=1e-6)
    assert math.isclose(out.meta["suv_factor"], suv_factor(_pet()))


# -- decay times as QIBA's vendor-neutral pseudo-code takes them: the series' earliest acquisition for a
# post-processed series, an injection before midnight, impossible times

ZR89_HALF_LIFE_S = 282276.0  # 78.41 h
ACTIVITY = 10000.0  # Bq/mL in every voxel


def _hand_factor(elapsed_s: float, half_life_s: float = HALF_LIFE_S) -> float:
    return WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-elapsed_s / half_life_s))


def _write_pet(folder: Path, acquired: list[tuple[str, str]], *, study: str, frame: str, series_time: tuple[str, str], start: str) -> None:
    """One PET Image Storage file per slice (file ``k`` acquired at ``acquired[k]``: date, time), 4 mm apart."""
    folder.mkdir(parents=True)
    series = generate_uid()
    for k, (date, time) in enumerate(acquired):
        ds = _pet(SeriesDate=series_time[0], SeriesTime=series_time[1], AcquisitionDate=date, AcquisitionTime=time)
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = start
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "P1", study, series, frame
        ds.StudyDate = series_time[0]
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 3, k + 1, "PET AC"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.ImagePositionPatient = [-32.0, -32.0, 4.0 * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [4.0, 4.0], 4.0
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.PixelData = np.full((16, 16), ACTIVITY, "<i2").tobytes()
        ds.save_as(folder / f"pt{k:03d}.dcm", enforce_file_format=True)


@pytest.mark.parametrize(
    ("acquired", "series_time", "start", "elapsed_s"),
    [
        # beds listed (by path) last acquired first; the series made at 11:00: decay to 10:00
        ([("20260101", f"10{21 - 3 * k:02d}00") for k in range(8)], ("20260101", "110000"), "090000", 3600.0),
        # acquired across midnight, 23:55 to 00:16; the series made the next morning: decay to 23:55
        (
            [("20260102", f"00{16 - 3 * k:02d}00") for k in range(6)] + [("20260101", "235800"), ("20260101", "235500")],
            ("20260102", "080000"),
            "230000",
            3300.0,
        ),
    ],
    ids=["multi-bed", "across-midnight"],
)
def test_post_processed_series_decays_to_its_earliest_acquisition(tmp_path, acquired, series_time, start, elapsed_s):
    study, frame = generate_uid(), generate_uid()
    _write_pet(tmp_path / "dicom/pt", acquired, study=study, frame=frame, series_time=series_time, start=start)
    write_series(
        tmp_path / "dicom/ct",
        np.full((8, 16, 16), 1024, np.uint16),
        positions=np.array([[-32.0, -32.0, 4.0 * k] for k in range(8)]),
        pixel_spacing=(4.0, 4.0),
        spacing=4.0,
        extra={"StudyInstanceUID": study, "FrameOfReferenceUID": frame, "PatientID": "P1", "SeriesNumber": 2},
    )
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)
    config = StudyConfig.from_dict(
        {
            "name": "petct",
            "roles": {"pet": {"where": "modality = 'PT'", "suv": True}, "ct": {"where": "modality = 'CT'"}},
            "reference": "pet",
            "deterministic": {"dtype": "float32"},
        }
    )
    (source,) = study_sources(manifest, config)
    sample = compute_study(manifest, source, config)
    assert sample.roles["pet"]["suv_factor"] == pytest.approx(_hand_factor(elapsed_s), rel=1e-9)
    np.testing.assert_allclose(sample.image[0], ACTIVITY * _hand_factor(elapsed_s), rtol=1e-6)


def test_first_acquired_reads_times_of_day_and_runs_across_midnight():
    assert first_acquired(["102100", "101800", None, "100000", "100000"]) == 3  # the first of a tie
    assert first_acquired(["000500", "235500", "001500.5"]) == 1
    assert first_acquired(["10:18:00", "10:21:00"]) == 0  # ACR-NEMA style
    assert first_acquired([None, "", "not a time"]) is None
    assert first_acquired([]) is None


def test_injection_time_before_midnight_is_the_day_before_a_scan_after_it():
    header = _pet(SeriesTime="003000", AcquisitionTime="003000", RadiopharmaceuticalStartTime="233000")
    assert suv_factor(header) == pytest.approx(_hand_factor(3600.0), rel=1e-12)
    # a post-processed series made after midnight, acquired before it: the injection is on the acquisition's day
    reprocessed = _pet(SeriesDate="20260102", SeriesTime="010000", AcquisitionTime="233000", RadiopharmaceuticalStartTime="223000")
    assert suv_factor(reprocessed) == pytest.approx(_hand_factor(3600.0), rel=1e-12)


@pytest.mark.parametrize(
    ("changes", "tag", "problem"),
    [
        # given with its date, the injection is after the scan
        ({"RadiopharmaceuticalStartDateTime": "20260101093000"}, "(0018,1078)", "0.5 h after the scan start"),
        # two days of F-18 decay: a wrong date
        ({"RadiopharmaceuticalStartDateTime": "20251230090000"}, "(0018,1078)", "48.0 h before the scan start"),
        # a time only, 30 min after the scan: not an injection before midnight (that would be over 12 h after)
        ({"RadiopharmaceuticalStartTime": "093000"}, "(0018,1072)", "0.5 h after the scan start"),
        # a time only, 13 h after the scan: the day before, 11 h before it, over 10 half-lives of a 1 h tracer
        ({"RadiopharmaceuticalStartTime": "220000", "RadionuclideHalfLife": 3600.0}, "(0018,1072)", "11.0 h before the scan start"),
    ],
)
def test_injection_after_the_scan_or_many_half_lives_before_it_is_an_error_naming_file_and_tags(tmp_path, changes, tag, problem):
    path = tmp_path / "IM0001.dcm"
    header = _pet(**changes)
    header.file_meta = FileMetaDataset()
    header.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header.save_as(path, enforce_file_format=False)
    with pytest.raises(SUVError) as info:
        suv_factor(pydicom.dcmread(path, force=True))
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    assert tag in message and problem in message and "(0008,0021) SeriesDate, (0008,0031) SeriesTime" in message
    assert info.value.tag == tag


@pytest.mark.parametrize("start", ["090020", "20260101090020"])  # a time only, and with its date
def test_dynamic_scan_started_just_before_its_injection_is_not_an_error(start):
    key = "RadiopharmaceuticalStartDateTime" if len(start) > 6 else "RadiopharmaceuticalStartTime"
    header = _pet(**{key: start})  # the scan starts at 09:00:00, 20 s before the injection
    assert suv_factor(header) == pytest.approx(_hand_factor(-20.0), rel=1e-12)


def test_long_lived_tracer_days_after_injection_is_not_an_error():
    header = _pet(RadiopharmaceuticalStartDateTime="20251229090000", RadionuclideHalfLife=ZR89_HALF_LIFE_S)  # 72 h
    assert math.isclose(suv_factor(header), _hand_factor(72 * 3600.0, ZR89_HALF_LIFE_S), rel_tol=1e-12)

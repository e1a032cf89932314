"""PET body-weight SUV against values computed by hand from a synthetic PET header."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pydicom.dataset import Dataset

from dicomml.errors import SUVError
from dicomml.study import Role, role_volume, suv_factor
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

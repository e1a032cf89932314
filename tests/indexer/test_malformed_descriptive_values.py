"""A malformed value of a column that only describes (a date, a code of free meaning, an identifier kept with
``include_phi``) is stored as null: the file keeps its rows and its series stays usable. A value that holds the bytes of
swallowed elements (a length that lies) still makes the file an error row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest

import dicomml
from dicomml.dicom.synthetic import write_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom")  # pydicom warns as it writes the bad values


def _series(tmp_path, **values):
    """Three CT slices; the middle one gets ``values``."""
    files = write_series(tmp_path / "tree", np.zeros((3, 8, 8), np.int16))
    ds = pydicom.dcmread(files[1])
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(files[1])
    return files


@pytest.mark.parametrize(
    ("keyword", "value", "column"),
    [("StudyDate", "2020-01-01", "study_date"), ("BodyPartExamined", "ABDOMEN AND PELVIS", "body_part")],
)
def test_a_malformed_description_is_null_and_the_slice_is_kept(tmp_path, keyword, value, column):
    files = _series(tmp_path, **{keyword: value})
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", progress=False)
    assert m.errors.empty and len(m.instances) == 3 and bool(m.series.usable.iloc[0])
    assert pd.isna(m.instances.set_index("path").loc[str(files[1]), column])


def test_with_include_phi_a_malformed_birth_date_is_null_and_the_name_is_kept(tmp_path):
    files = _series(tmp_path, PatientBirthDate="1970-01-01", PatientName="Doe^Jane")
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", include_phi=True, progress=False)
    assert m.errors.empty and len(m.instances) == 3
    row = m.instances.set_index("path").loc[str(files[1])]
    assert pd.isna(row.patient_birth_date) and row.patient_name == "Doe^Jane"


def test_a_date_whose_length_swallows_the_next_element_is_still_an_error_row(tmp_path):
    files = _series(tmp_path, StudyDate="20200101", StudyTime="101010")
    data = files[1].read_bytes()
    date = b"\x08\x00\x20\x00DA\x08\x0020200101"
    at = data.index(date)
    swallowed = 8 + 8 + len("101010")  # StudyTime (0008,0030): its 8-byte element header and its value
    assert data[at + len(date) : at + len(date) + 4] == b"\x08\x00\x30\x00"
    files[1].write_bytes(data[: at + 6] + swallowed.to_bytes(2, "little") + data[at + 8 :])
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", progress=False)
    assert list(m.errors.path) == [str(files[1])] and "(0008,0020)" in m.errors.message.iloc[0]

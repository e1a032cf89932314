"""The voxel ceiling's error carries the file and series it was given, as every dicomml error should (the errors
table and run reports record them), besides naming them in its message."""

from __future__ import annotations

import pickle

import pytest

import dicomml
from dicomml.errors import ResourceLimitError
from dicomml.limits import check_voxels


def test_a_volume_past_the_limit_carries_its_path_and_series():
    with pytest.raises(ResourceLimitError, match=r"^/d/CT0001\.dcm: a volume of 3x4x5 voxels exceeds the limit of 10; ") as raised:
        check_voxels((3, 4, 5), "/d/CT0001.dcm", 10, path="/d/CT0001.dcm", series_uid="1.2.3")
    assert (raised.value.path, raised.value.series_uid) == ("/d/CT0001.dcm", "1.2.3")
    again = pickle.loads(pickle.dumps(raised.value))  # as a worker process hands it back
    assert (again.path, again.series_uid) == ("/d/CT0001.dcm", "1.2.3")
    check_voxels((2, 5), "/d/CT0001.dcm", 10, path="/d/CT0001.dcm")  # at the limit: allowed


def test_load_series_past_the_limit_names_its_first_file_and_series(study):
    _, manifest = study
    row = manifest.sql("SELECT series_key, series_instance_uid FROM series WHERE modality = 'CT'").iloc[0]
    with pytest.raises(ResourceLimitError) as raised:
        dicomml.load_series(manifest, row.series_key, max_voxels=10)
    assert raised.value.path in str(raised.value) and raised.value.path.endswith(".dcm")
    assert raised.value.series_uid == row.series_instance_uid

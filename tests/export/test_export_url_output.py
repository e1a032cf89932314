"""A URL given as a local output is refused, in the library as in the CLI: the writers would make a folder ``s3:``."""

from __future__ import annotations

import numpy as np
import pytest

from dicomml.errors import OutputError
from dicomml.export import save_nifti
from dicomml.volume import Volume


def test_save_nifti_to_a_url_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    volume = Volume(np.zeros((2, 3, 4), np.int16), np.eye(4), {})
    with pytest.raises(OutputError, match=r"^s3:/+bucket/x\.nii\.gz: the output must be a local path, not a URL"):
        save_nifti(volume, "s3://bucket/x.nii.gz")
    assert list(tmp_path.iterdir()) == []

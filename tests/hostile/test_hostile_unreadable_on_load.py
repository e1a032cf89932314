"""A file the OS refuses to the loader is called unreadable, with a hint about permissions, not corrupt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

import dicomml
from dicomml.dicom.synthetic import write_series


def test_a_file_refused_by_the_os_is_not_called_corrupt(tmp_path: Path, honouring_modes) -> None:
    files = write_series(tmp_path / "src", np.zeros((4, 4, 4), np.uint16), series_uid=pydicom.uid.generate_uid())
    manifest = dicomml.index(tmp_path / "src", tmp_path / "m", workers=1, progress=False)
    key = manifest.series.series_key[0]
    files[1].chmod(0)
    code = (
        "import dicomml\n"
        f"try:\n    dicomml.load_series({str(tmp_path / 'm')!r}, {key!r})\n"
        "except dicomml.errors.DicomMLError as exc:\n    print(type(exc).__name__, exc, sep='|')\n"
    )
    done = honouring_modes(code)
    kind, message = done.stdout.strip().split("|")
    assert kind == "InvalidDicomFileError", done.stderr
    assert message == f"{files[1]}: cannot be read (Permission denied); check permissions"

"""References of the 2D imaging tests: pydicom's test files and pydicom-data's, found by name."""

from __future__ import annotations

from pathlib import Path

import pydicom.data


def pydicom_test_files() -> list[Path]:
    """Every .dcm shipped with pydicom and with the pydicom-data package (installed by the test extra)."""
    import data_store  # the pydicom-data package: its files are in the wheel, nothing is downloaded

    folders = [Path(pydicom.data.__file__).parent / "test_files", Path(data_store.__file__).parent / "data"]
    files = sorted(p for folder in folders for p in folder.rglob("*.dcm"))
    assert len(files) > 100, f"pydicom and pydicom-data test files not found in {folders}"
    return files

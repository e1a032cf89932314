"""Private data: identifiers stay out of the default manifest, the salt stays out of every manifest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pydicom
import pytest

import dicomml
from dicomml.indexer import Manifest
from dicomml.indexer.privacy import patient_key, resolve_salt

IDENTIFIERS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
]


#: Stored on purpose; anonymized test data often repeats them in identifier fields
#: (PatientName = StudyDescription, BirthDate = StudyDate).
STORED_ON_PURPOSE = ["StudyDescription", "SeriesDescription", "StudyDate"]


def _identifiers_in_headers(data_dir: Path, corpus_manifest: Manifest) -> set[str]:
    """Distinct identifier values of the corpus headers (read by pydicom), long enough to be telling."""
    found: set[str] = set()
    kept: set[str] = set()
    for path in corpus_manifest.instances.path.unique():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        kept |= {str(ds.get(keyword, "") or "").strip() for keyword in STORED_ON_PURPOSE}
        found |= {str(ds.get(keyword, "") or "").strip() for keyword in IDENTIFIERS}
    return {value for value in found - kept if len(value) >= 6}


def _manifest_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in sorted(root.rglob("*")) if p.is_file())


def _all_values(manifest: Manifest) -> set[str]:
    values: set[str] = set()
    for table in ("instances", "series", "annotations", "errors"):
        frame = getattr(manifest, table)
        for column in frame.columns:
            values.update(str(v) for v in frame[column].dropna())
    return values


def test_default_manifest_holds_no_direct_identifiers(corpus_manifest: Manifest, data_dir: Path):
    identifiers = _identifiers_in_headers(data_dir, corpus_manifest)
    assert len(identifiers) >= 10  # the corpus has identifiers to leak
    stored = _all_values(corpus_manifest)
    leaked = {v for v in identifiers if v in stored}
    assert not leaked
    assert not any(column in corpus_manifest.instances for column in ("patient_name", "patient_id", "accession_number"))
    assert corpus_manifest.instances.patient_key.notna().any()


def test_include_phi_keeps_them(data_dir: Path, tmp_path: Path, salt: str):
    folder = data_dir / "dicom2nifti/tests/data/failing/gantrytilting/001"
    m = dicomml.index(folder, tmp_path / "m", workers=1, salt=salt, include_phi=True, progress=False)
    ds = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    row = m.instances.sort_values("path").iloc[0]
    assert row.patient_name == str(ds.PatientName) and row.patient_id == ds.PatientID
    assert m.meta["include_phi"] is True


def test_salt_is_not_in_the_manifest_and_changes_the_key(corpus_manifest: Manifest, tmp_path: Path, data_dir: Path, salt: str):
    text = _manifest_text(corpus_manifest.path)
    assert salt not in text
    ds = pydicom.dcmread(corpus_manifest.instances.path.iloc[0], stop_before_pixels=True)
    row = corpus_manifest.instances.iloc[0]
    assert row.patient_key == patient_key(ds.PatientID, salt.encode())
    assert row.patient_key != patient_key(ds.PatientID, b"another salt")
    assert ds.PatientID not in text


def test_generated_salt_lives_in_the_config_folder(tmp_path: Path):
    config = tmp_path / "config"
    first = resolve_salt(config_dir=config)
    assert len(first) == 64 and resolve_salt(config_dir=config) == first
    assert stat.S_IMODE(os.stat(config / "salt").st_mode) == 0o600
    assert resolve_salt("explicit", config_dir=config) == b"explicit"


def test_default_salt_comes_from_home_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    m = dicomml.index(data_dir / "dcmqi/data/segmentations/24x38x3/image", tmp_path / "m", workers=1, progress=False)
    salt = (tmp_path / "home" / ".config" / "dicomml" / "salt").read_bytes()
    assert salt.decode() not in _manifest_text(m.path)

"""Series that the folder or the key's rounding cut in parts, lost end slices and 4D series missing a slice:
the ``series`` table marks them not usable, with the reason load_series would give."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

import dicomml
from dicomml.dicom.synthetic import write_series, write_slice
from dicomml.errors import DuplicateSliceError
from dicomml.indexer import Manifest

PHILIPS = "dcm_qa_philips_enh/In/cl"  # 40 oblique slices 4 mm apart, one file each
PHILIPS_REF = "dcm_qa_philips_enh/Ref/1901_WIP_3DpCASL_cl.nii.gz"  # dcm2niix's volume of them


def _index(roots: list[Path], out: Path, salt: str) -> Manifest:
    dicomml.index(roots, out, salt=salt, progress=False)
    return Manifest(out)  # read back from disk


def _rows(manifest: Manifest) -> dict[str, dict]:
    """Series rows by folder name."""
    return {Path(row["folder"]).name: row for row in manifest.series.to_dict("records")}


def _copy(files: list[Path], folder: Path, edit=None) -> None:
    folder.mkdir(parents=True)
    for i, source in enumerate(files):
        ds = pydicom.dcmread(source)
        if edit is not None:
            edit(i, ds)
        ds.save_as(folder / source.name)


def _philips(data_dir: Path) -> tuple[list[Path], int, float]:
    """The files in order along the slice normal; dcm2niix's number of slices and slice spacing (mm)."""
    files = sorted((data_dir / PHILIPS).glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    normal = np.cross(*np.reshape(np.asarray(headers[0].ImageOrientationPatient, float), (2, 3)))
    along = [float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)) for ds in headers]
    ref = nib.Nifti1Image.from_filename(data_dir / PHILIPS_REF)
    return [files[i] for i in np.argsort(along)], ref.shape[2], float(ref.header.get_zooms()[2])


def test_orientation_noise_across_a_rounding_boundary_is_not_two_usable_volumes(data_dir, tmp_path, salt):
    """Every other slice's row cosine z 0.0608499 or 0.0608501: equal within 2e-7, rounded to 1e-4 apart."""
    files, ref_slices, ref_step = _philips(data_dir)

    def jitter(i, ds):
        ds.ImageOrientationPatient = [
            *ds.ImageOrientationPatient[:2],
            "0.0608501" if i % 2 else "0.0608499",
            *ds.ImageOrientationPatient[3:],
        ]

    _copy(files, tmp_path / "jittered", jitter)
    _copy(files, tmp_path / "original")
    manifest = _index([tmp_path / "jittered", tmp_path / "original"], tmp_path / "m", salt)
    series = manifest.series
    parts = series[series.folder.str.endswith("jittered")]
    original = _rows(manifest)["original"]

    assert len(parts) == 2 and parts.n_slices.sum() == ref_slices == 40
    for part in parts.itertuples():
        other = (set(parts.series_key) - {part.series_key}).pop()
        assert not part.usable and "rounding" in part.reason and other in part.reason
        half = dicomml.load_series(manifest, part.series_key)
        assert half.array.shape[0] == 20 and half.spacing[0] == pytest.approx(2 * ref_step)  # every other slice
    # the untouched files hold the same SOP instances: a copy, usable, as dcm2niix makes it
    assert original["usable"] and original["n_slices"] == 40
    volume = dicomml.load_series(manifest, original["series_key"])
    assert volume.array.shape == (40, 96, 96) and volume.spacing[0] == pytest.approx(ref_step, abs=1e-3)


def test_series_split_across_folders_is_not_usable_but_a_copy_is(data_dir, tmp_path, salt):
    files, ref_slices, ref_step = _philips(data_dir)
    _copy(files[:20], tmp_path / "split" / "a")
    _copy(files[20:], tmp_path / "split" / "b")
    _copy(files, tmp_path / "copy")
    manifest = _index([tmp_path / "split", tmp_path / "copy"], tmp_path / "m", salt)
    rows = _rows(manifest)

    for name, other in (("a", "b"), ("b", "a")):
        part = rows[name]
        assert not part["usable"] and part["reason"].startswith("series split across folders")
        assert rows[other]["series_key"] in part["reason"] and rows["copy"]["series_key"] not in part["reason"]
        half = dicomml.load_series(manifest, part["series_key"])
        assert half.array.shape == (20, 96, 96) and half.spacing[0] == pytest.approx(ref_step, abs=1e-3)
    # dcm2niix merges the parts by SeriesInstanceUID into the one volume the copy makes
    assert rows["a"]["n_slices"] + rows["b"]["n_slices"] == ref_slices
    assert rows["copy"]["usable"]
    assert dicomml.load_series(manifest, rows["copy"]["series_key"]).array.shape == (ref_slices, 96, 96)


def test_one_volume_stored_in_two_transfer_syntaxes_is_not_two_usable_half_volumes(data_dir, tmp_path, salt):
    """Every other slice RLE-compressed in one folder: each syntax's slices alone look like a volume of twice the step."""
    files, ref_slices, ref_step = _philips(data_dir)

    def every_other(i, ds):
        if i % 2:
            ds.compress(RLELossless)

    _copy(files, tmp_path / "mixed", every_other)
    _copy(files, tmp_path / "recoded", lambda i, ds: ds.compress(RLELossless))  # a whole copy, same SOP instances
    manifest = _index([tmp_path / "mixed", tmp_path / "recoded"], tmp_path / "m", salt)
    series = manifest.series
    parts = series[series.folder.str.endswith("mixed")]

    assert len(parts) == 2 and parts.n_slices.sum() == ref_slices
    for part in parts.itertuples():
        other = parts[parts.series_key != part.series_key].iloc[0]
        assert not part.usable and part.reason.startswith("one volume stored in several transfer syntaxes")
        assert other.series_key in part.reason and other.transfer_syntaxes[0] in part.reason
        assert dicomml.load_series(manifest, part.series_key).spacing[0] == pytest.approx(2 * ref_step)  # the part
    recoded = _rows(manifest)["recoded"]
    assert recoded["usable"] and recoded["n_slices"] == ref_slices


def test_4d_series_missing_a_slice_gives_load_series_reason(tmp_path, salt):
    """3 positions x 3 time points, the middle slice of the last time point lost."""
    uid = pydicom.uid.generate_uid()
    (tmp_path / "d").mkdir()
    kept = [(t, z) for t in range(3) for z in range(3) if (t, z) != (2, 1)]
    for n, (t, z) in enumerate(kept, 1):
        extra = {"TemporalPositionIdentifier": t + 1, "AcquisitionNumber": t + 1}
        pixels = np.zeros((8, 8), np.int16)
        write_slice(
            tmp_path / "d" / f"IM{n:03d}.dcm", pixels, position=(0, 0, 2.0 * z), series_uid=uid, instance=n, modality="MR", extra=extra
        )
    manifest = _index([tmp_path / "d"], tmp_path / "m", salt)
    row = manifest.series.iloc[0]
    with pytest.raises(DuplicateSliceError) as raised:
        dicomml.load_series(manifest, row.series_key)
    said = "positions hold unequal numbers of slices ([2, 3]; 2 extra"
    assert not row.usable and row.reason.startswith(said) and said in str(raised.value)


@pytest.mark.parametrize("size", [0, 100, 131])
def test_end_slice_too_short_to_be_dicom_makes_the_series_unusable(tmp_path, salt, size):
    lost = write_series(tmp_path / "lost", np.zeros((5, 8, 8), np.int16))[-1]
    lost.write_bytes(lost.read_bytes()[:size])
    write_series(tmp_path / "notes", np.zeros((4, 8, 8), np.int16))
    notes = tmp_path / "notes" / "notes.txt"
    notes.write_text("scanned on the second console; contrast given at 10:42\n" * 4)
    manifest = _index([tmp_path / "lost", tmp_path / "notes"], tmp_path / "m", salt)
    errors = {Path(p).name: (t, s) for p, t, s in manifest.errors[["path", "error_type", "size"]].itertuples(index=False)}
    rows = _rows(manifest)

    assert errors == {lost.name: ("not_dicom", size), "notes.txt": ("not_dicom", notes.stat().st_size)}
    assert rows["lost"]["n_slices"] == 4 and not rows["lost"]["usable"] and "a slice may be lost" in rows["lost"]["reason"]
    assert rows["notes"]["usable"]  # a text file beside a series is not a lost slice


def test_copies_with_new_sop_uids_are_not_parts(data_dir, tmp_path, salt):
    """Re-encodes keep the series UID under new SOP Instance UIDs: a GDCM JPEG Lossless copy of slice 1 (dcm_qa_ts,
    converted by dcm2niix on its own) and a same-syntax copy at the same positions are volumes of their own, usable."""
    files, _, _ = _philips(data_dir)
    _copy(files, tmp_path / "renewed", lambda i, ds: setattr(ds, "SOPInstanceUID", pydicom.uid.generate_uid()))
    philips = tmp_path / "original"
    _copy(files, philips)
    manifest = _index([philips, tmp_path / "renewed"], tmp_path / "m", salt)
    rows = _rows(manifest)
    assert rows["original"]["usable"] and rows["renewed"]["usable"], (rows["original"]["reason"], rows["renewed"]["reason"])
    reencoded = _index([data_dir / "dcm_qa/In/Orientation/ax/axasc35", data_dir / "dcm_qa_ts/In/6.dcm"], tmp_path / "ts", salt)
    assert reencoded.series.usable.all() and len(reencoded.series) == 2, reencoded.series.reason.tolist()

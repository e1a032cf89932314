"""Every corpus series with a dcm2niix (or dicom2nifti) reference: same voxels, affine within 0.02 mm.

Both sides are brought to the reference's axis codes with nibabel.orientations;
the 4D time axis (leading in dicomml, trailing in NIfTI) is moved to the end.
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from dicomml.assemble import load_files
from dicomml.dicom import frame_table
from dicomml.dicom.series_key import dataset_group_keys
from dicomml.errors import InconsistentGeometryError
from dicomml.testing import data_root

#: References whose affine cannot match, each with its reason: the slices are loaded with
#: on_irregular="keep" and only the voxels are compared.
VOXELS_ONLY = {
    "dicom2nifti/derived-dcm2niix/tests/data/failing/gantrytilting/001/_4.nii": (
        "dcm2niix's uncorrected output of a tilted CT: its affine is neither the sheared raw geometry "
        "(which dicomml keeps under on_irregular='keep') nor a regular grid; the _Tilt_1 resample is compared"
    ),
    "dicom2nifti/derived-dcm2niix/tests/data/failing/sliceincrement/001/dicom2nifti_2.nii": (
        "dcm2niix's uncorrected output of a CT with a missing slice claims a uniform 5 mm step, so its "
        "last slice is placed 5 mm from where it was acquired; the _Eq_1 resample is compared"
    ),
}

#: emri_small*.dcm is an enhanced MR without functional groups: no ImagePositionPatient or
#: ImageOrientationPatient, so both affines are invented. dicomml raises InconsistentGeometryError;
#: with on_irregular="keep" its voxels, in DICOM's (column, row, frame) order, are compared.
NO_GEOMETRY = "pydicom-data/derived-dcm2niix/data_store/data/emri_small.nii"

#: Philips references whose private MR Scale Slope makes the display values differ from dcm2niix's
#: floating-point ones (RS * SS far from 1): compared a second time with philips_scaling="display".
PHILIPS_FLOAT = {"dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e1.nii"}

#: dcm2niix derives its NIfTI scl_slope / scl_inter for Philips in float32 (the difference of two
#: values near -500 here), so its field map is off by up to 1.2e-5 of the range; float32 elsewhere.
FLOAT32_SCALING = {"dcm_qa_enh/Ref/Philips_WIP_B0_NS_801_e2_fieldmaphz.nii": 2e-5}

#: dcm2niix keeps the number of slices when it makes a stack equidistant, so its grid stops one
#: step short of the last acquired slice; dicomml's grid spans all slices. The slices dcm2niix has
#: are compared (they start at the same first slice).
KEEPS_SLICE_COUNT = {"dicom2nifti/derived-dcm2niix/tests/data/failing/sliceincrement/001/dicom2nifti_2_Eq_1.nii"}

#: Rows whose DICOM need a policy other than "raise" to match the reference.
POLICY = {"_Tilt_1": "resample", "_Eq_1": "resample"}


def _index_rows():
    import pandas as pd

    index = pd.read_csv(data_root() / "INDEX.csv", dtype=str, keep_default_na=False)
    cases = []
    for _, row in index.iterrows():
        for ref in filter(None, row.reference_output.split(";")):
            if re.search(r"\.nii(\.gz)?$", ref) and "_ground_truth" not in ref:
                cases.append(pytest.param(row.to_dict(), ref, id=f"{row.folder}/{row.files}->{Path(ref).name}"))
    return cases


def _dicom_files(row: dict) -> list[Path]:
    folder = data_root() / row["folder"]
    if row["files"]:
        return [folder / name for name in row["files"].split(";")]
    files = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        if str(ds.get("SeriesInstanceUID", "")) == row["series_instance_uid"]:
            files.append(path)
    return files


def _frames_of_group(files: list[Path], group_index: int) -> tuple[list[Path], list[list[int]]]:
    """Paths and 1-based frame numbers of the group_index-th group (by echo)."""
    per_key: dict[str, tuple[float, dict[Path, list[int]]]] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        table = frame_table(ds)
        for key, echo, frame in zip(dataset_group_keys(ds, "f", table), table.echo, table.frame_numbers):
            per_key.setdefault(key, (float(echo), {}))[1].setdefault(path, []).append(int(frame))
    # dcm2niix numbers echoes by echo time; a computed map (Philips B0, echo time 0) comes after them.
    chosen = sorted(per_key.values(), key=lambda e: (e[0] <= 0, e[0]))[group_index][1]
    return list(chosen), list(chosen.values())


def _to_reference_axes(array: np.ndarray, affine: np.ndarray, ref_affine: np.ndarray, time_leading: bool):
    if time_leading:
        array = np.moveaxis(array, 0, -1)
    transform = ornt_transform(io_orientation(affine), io_orientation(ref_affine))
    spatial = array.shape[:3]
    return apply_orientation(array, transform), affine @ inv_ornt_aff(transform, spatial)


def _corners(affine: np.ndarray, shape) -> np.ndarray:
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1).T
    return nib.affines.apply_affine(affine, corners)


@pytest.mark.parametrize(("row", "ref"), _index_rows())
def test_matches_dcm2niix(row, ref):
    files = _dicom_files(row)
    echo_match = re.search(r"_e(\d)", Path(ref).name)
    group = int(echo_match.group(1)) - 1 if echo_match else 0
    paths, frames = _frames_of_group(files, group)
    if ref == NO_GEOMETRY:
        with pytest.raises(
            InconsistentGeometryError, match=r"no ImagePositionPatient \(0020,0032\) / ImageOrientationPatient \(0020,0037\) on any frame, "
        ):
            load_files(files)
        volume = load_files(files, on_irregular="keep")
        np.testing.assert_array_equal(volume.array.transpose(2, 1, 0), np.asarray(nib.load(data_root() / ref).dataobj))
        return
    policy = "keep" if ref in VOXELS_ONLY else next((p for suffix, p in POLICY.items() if suffix in ref), "raise")
    volume = load_files(paths, frames=frames, on_irregular=policy)
    image = nib.load(data_root() / ref)
    expected = np.asarray(image.dataobj, dtype=np.float64) if image.header.get_slope_inter() == (None, None) else image.get_fdata()
    ours, affine = _to_reference_axes(volume.array, volume.affine, image.affine, bool(volume.axes))
    if ref in KEEPS_SLICE_COUNT:
        assert ours.shape[2] == expected.shape[2] + 1
        ours = ours[:, :, : expected.shape[2]]
    assert ours.shape == expected.shape
    if policy == "resample":
        np.testing.assert_allclose(ours, expected, atol=1.0)  # dcm2niix rounds its interpolation to int16
    elif volume.array.dtype.kind == "f":  # rescaled with a fractional slope; NIfTI keeps it as float32
        relative = FLOAT32_SCALING.get(ref, 1e-6)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=relative * np.abs(expected).max())
    else:
        np.testing.assert_array_equal(ours.astype(np.float64), expected)
    distance = np.linalg.norm(_corners(affine, ours.shape) - _corners(image.affine, expected.shape), axis=1)
    if ref in VOXELS_ONLY:
        assert volume.meta["irregularities"], VOXELS_ONLY[ref]
    else:
        assert distance.max() <= 0.02, f"corners differ by up to {distance.max():.4f} mm"


def _dicom2nifti_rows():
    import pandas as pd

    index = pd.read_csv(data_root() / "INDEX.csv", dtype=str, keep_default_na=False)
    cases = []
    for _, row in index.iterrows():
        for ref in row.reference_output.split(";"):
            if ref.endswith("_ground_truth.nii.gz"):
                cases.append(pytest.param(row.to_dict(), ref, id=row.folder))
    return cases


@pytest.mark.parametrize(("row", "ref"), _dicom2nifti_rows())
def test_matches_dicom2nifti_ground_truth(row, ref):
    """A second outside oracle for the series that have no dcm2niix reference (JPEG-LS, JPEG 2000,
    Hitachi implicit VR, Philips enhanced, PMOD non-isotropic): dicom2nifti's own ground truth.
    dicom2nifti applies the standard rescale only, never Philips' private scaling: "display"."""
    volume = load_files(_dicom_files(row), philips_scaling="display")
    image = nib.load(data_root() / ref)
    expected = image.get_fdata()
    if expected.ndim == 4 and expected.shape[3] == 1:  # dicom2nifti writes one multi-frame volume as 4D
        expected = expected[..., 0]
    ours, affine = _to_reference_axes(volume.array, volume.affine, image.affine, bool(volume.axes))
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    distance = np.linalg.norm(_corners(affine, ours.shape) - _corners(image.affine, expected.shape), axis=1)
    assert distance.max() <= 0.02, f"corners differ by up to {distance.max():.4f} mm"


@pytest.mark.parametrize("ref", sorted(PHILIPS_FLOAT))
def test_philips_display_scaling_is_dcm2niix_float_times_rs_ss(ref):
    """dcm2niix writes FP = DV / (RS * SS); philips_scaling="display" gives DV, the standard rescale."""
    path = data_root() / "dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm"
    paths, frames = _frames_of_group([path], 0)
    display = load_files(paths, frames=frames, philips_scaling="display")
    item = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence[frames[0][0] - 1]
    rs = float(item.PixelValueTransformationSequence[0].RescaleSlope)
    ss = float(item[0x2005140F][0][0x2005100E].value)
    assert rs * ss < 1e-4  # far from 1: the two scalings differ by a factor of ~1e5
    image = nib.load(data_root() / ref)
    ours, _ = _to_reference_axes(display.array, display.affine, image.affine, False)
    expected = image.get_fdata()
    np.testing.assert_allclose(ours / (rs * ss), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

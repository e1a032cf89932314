"""NIfTI export: the same voxels at the same RAS+ places as dcm2niix's and SimpleITK's NIfTI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from dicomml.assemble import load_files
from dicomml.export import diffusion_paths, save_nifti, to_nifti
from dicomml.sample import write_sample_study
from dicomml.volume import Volume

#: Corpus series with a dcm2niix reference: sagittal MR, feet-first CT, 4D feet-first fMRI, fMRI of TR 5 s,
#: enhanced DWI (its TR in the functional groups).
DCM2NIIX_CASES = [
    "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag",
    "dcmqi/data/segmentations/ct-3slice",
    "dcm_qa_table/In/GE/Exam1486_Laser794mm/02_Ax_fMRI_FF_I11.1_S15.9",
    "dcm_qa_nih/In/20180918GE/mr_0004",
    "dcm_qa_canon_61/In/enh",
]


def canonical(image: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and affine brought to RAS axis order (nibabel's closest canonical)."""
    image = nib.as_closest_canonical(image)
    return image.get_fdata(), image.affine


@pytest.mark.parametrize("folder", DCM2NIIX_CASES)
def test_nifti_matches_dcm2niix_reference(tmp_path, data_dir, corpus_index, folder):
    row = corpus_index[corpus_index.folder == folder].iloc[0]
    reference = nib.load(data_dir / row.reference_output.split(";")[0])
    volume = load_files(sorted(p for p in (data_dir / folder).iterdir() if p.is_file() and p.suffix != ".txt"))
    ours = nib.load(save_nifti(volume, tmp_path / "out.nii.gz"))
    assert ours.header["sform_code"] == ours.header["qform_code"] == 1
    assert ours.shape == reference.shape
    assert ours.header.get_zooms()[3:] == pytest.approx(reference.header.get_zooms()[3:])  # the TR, s, FSL and nilearn read
    our_data, our_affine = canonical(ours)
    ref_data, ref_affine = canonical(reference)
    np.testing.assert_allclose(our_affine, ref_affine, atol=0.02)
    np.testing.assert_allclose(our_data, ref_data, atol=1e-3)


def test_nifti_of_sample_ct_matches_simpleitk(tmp_path):
    study = write_sample_study(tmp_path / "study")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in study.ct])  # head-to-feet order; SimpleITK keeps it
    sitk.WriteImage(reader.Execute(), str(tmp_path / "sitk.nii.gz"))
    ours = nib.load(save_nifti(load_files(study.ct), tmp_path / "ours.nii.gz"))
    our_data, our_affine = canonical(ours)
    sitk_data, sitk_affine = canonical(nib.load(tmp_path / "sitk.nii.gz"))
    np.testing.assert_allclose(our_affine, sitk_affine, atol=1e-4)
    np.testing.assert_array_equal(our_data, sitk_data)


def test_axes_reverse_and_leading_axes_become_time():
    affine = np.array([[0, 0, -2.0, 10], [0, -2.0, 0, 20], [3.0, 0, 0, 30], [0, 0, 0, 1]])
    series = Volume(np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5), affine, axes=("time",))
    image = to_nifti(series)
    assert image.shape == (5, 4, 3, 2)
    assert np.asanyarray(image.dataobj)[4, 3, 2, 1] == series.array[1, 2, 3, 4]
    # voxel (column 4, row 3, slice 2) keeps its RAS+ place
    np.testing.assert_allclose(image.affine @ [4, 3, 2, 1], affine @ [2, 3, 4, 1])
    assert "".join(nib.aff2axcodes(affine)) == "SPL" and "".join(nib.aff2axcodes(image.affine)) == "LPS"


def test_integer_types_nifti_tools_read():
    affine = np.eye(4)
    assert to_nifti(Volume(np.ones((2, 2, 2), bool), affine)).get_data_dtype() == np.uint8
    assert to_nifti(Volume(np.full((2, 2, 2), 3, np.int64), affine)).get_data_dtype() == np.uint8
    assert to_nifti(Volume(np.full((2, 2, 2), -70000, np.int64), affine)).get_data_dtype() == np.int32


def test_sheared_affine_is_the_sform_only(tmp_path, data_dir):
    """A gantry tilt kept as it is: a qform (rotation and zooms) would put the far slices ~25 mm away."""
    files = sorted((data_dir / "dicom2nifti/tests/data/failing/gantrytilting/001").iterdir())
    volume = load_files(files, on_irregular="keep")
    image = nib.load(save_nifti(volume, tmp_path / "tilt.nii.gz"))
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 0
    corner = [n - 1 for n in image.shape[:3]]
    np.testing.assert_allclose(image.affine @ [*corner, 1], volume.affine @ [corner[2], corner[1], corner[0], 1], atol=1e-3)
    with pytest.raises(RuntimeError, match="orthonormal"):  # ITK refuses the shear rather than reading a rotated grid
        sitk.ReadImage(str(tmp_path / "tilt.nii.gz"))


def _world_bvecs(image: nib.Nifti1Image, bvec: np.ndarray) -> np.ndarray:
    """FSL's .bvec rows as RAS+ unit vectors: voxel-axis components, the first negated under a positive determinant."""
    columns = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
    voxel = bvec.T * ([-1.0, 1.0, 1.0] if np.linalg.det(image.affine[:3, :3]) > 0 else 1.0)
    return voxel @ columns.T


@pytest.mark.parametrize(
    ("folder", "reference"),
    [
        ("dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2", "dcm_qa_ge/Ref/Ax_DWI_TENSOR_R2_1"),
        ("dcm_qa_canon_61/In/enh", "dcm_qa_canon_61/Ref/8000_DTI_PA-ALL_20d_enh"),
    ],
)
def test_diffusion_series_gets_dcm2niix_bval_and_bvec(tmp_path, data_dir, folder, reference):
    """The b-values equal dcm2niix's; the gradients point the same way in the world (dcm2niix flips the rows)."""
    volume = load_files(sorted(p for p in (data_dir / folder).iterdir() if p.is_file()))
    path = save_nifti(volume, tmp_path / "dwi.nii.gz")
    assert diffusion_paths(volume, path) == (tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "dwi.bval"), np.loadtxt(data_dir / f"{reference}.bval"))
    ref_image = nib.load(next(data_dir.glob(f"{reference}.nii*")))
    ours = _world_bvecs(nib.load(path), np.loadtxt(tmp_path / "dwi.bvec"))
    theirs = _world_bvecs(ref_image, np.loadtxt(data_dir / f"{reference}.bvec"))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert not diffusion_paths(volume.__class__(volume.array[0], volume.affine, (), {}), path)  # one volume: no sidecars


def test_nominal_affine_is_written_with_codes_0(tmp_path, data_dir):
    """An enhanced MR without positions, stacked as it is: its affine is made up, and the NIfTI says so."""
    volume = load_files([data_dir / "pydicom-data/data_store/data/emri_small.dcm"], on_irregular="keep")
    assert volume.meta["nominal_affine"]
    image = nib.load(save_nifti(volume, tmp_path / "nominal.nii.gz"))
    assert image.header["sform_code"] == image.header["qform_code"] == 0


def test_a_shear_from_rounded_slice_positions_keeps_the_qform_as_dcm2niix(tmp_path, data_dir):
    """The GE DWI's slice column is 8e-5 degrees off the normal (ImagePositionPatient is rounded): qform 1 as in
    dcm2niix's file, the qform placing every voxel where the sform does."""
    volume = load_files(sorted((data_dir / "dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2").iterdir()))
    image = nib.load(save_nifti(volume, tmp_path / "dwi.nii.gz"))
    reference = nib.load(data_dir / "dcm_qa_ge/Ref/Ax_DWI_TENSOR_R2_1.nii")
    assert reference.header["qform_code"] == image.header["qform_code"] == image.header["sform_code"] == 1
    corner = [n - 1 for n in image.shape[:3]]
    np.testing.assert_allclose(image.get_qform() @ [*corner, 1], image.get_sform() @ [*corner, 1], atol=1e-3)

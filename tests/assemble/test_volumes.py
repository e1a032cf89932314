"""The per-volume table of 4D series, held to dcm2niix's .bval/.bvec; selection and reduction."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import inv_ornt_aff, io_orientation, ornt_transform

from dicomml.assemble import load_files
from dicomml.assemble.volumes import reduce_volumes, select_volumes
from dicomml.errors import ConfigError
from dicomml.geometry.directions import fsl_bvecs, reaxis_table
from dicomml.testing import data_root
from dicomml.volume import Volume

#: 4D diffusion series of the corpus with dcm2niix's .bval/.bvec: (DICOM files, reference stem).
DIFFUSION = {
    "canon_enhanced": ("dcm_qa_canon_61/In/enh/8000.dcm", "dcm_qa_canon_61/Ref/8000_DTI_PA-ALL_20d_enh"),
    "ge_classic": ("dcm_qa_ge/In/01_Ax_DWI_TENSOR_R2/*", "dcm_qa_ge/Ref/Ax_DWI_TENSOR_R2_1"),
}


def _nifti_gradients(volume: Volume, ref_affine: np.ndarray) -> np.ndarray:
    """Our gradients (along the volume's array axes) re-expressed along the reference NIfTI's axes."""
    transform = ornt_transform(io_orientation(volume.affine), io_orientation(ref_affine))
    moved = volume.affine @ inv_ornt_aff(transform, volume.spatial_shape)
    return np.asarray(reaxis_table(volume.meta, volume.affine, moved)["volumes"]["gradient"])


@pytest.mark.parametrize("name", sorted(DIFFUSION))
def test_bval_bvec_equal_dcm2niix(name):
    pattern, stem = DIFFUSION[name]
    files = sorted(data_root().glob(pattern))
    volume = load_files(files)
    ref = nib.load(data_root() / f"{stem}.nii{'.gz' if (data_root() / f'{stem}.nii.gz').exists() else ''}")
    bval = np.loadtxt(data_root() / f"{stem}.bval")
    bvec = np.loadtxt(data_root() / f"{stem}.bvec")
    assert volume.axes == ("diffusion",)
    np.testing.assert_allclose(volume.meta["volumes"]["b_value"], bval)
    ours = fsl_bvecs(_nifti_gradients(volume, ref.affine), ref.affine)
    np.testing.assert_allclose(ours, bvec, atol=2e-5)


def _dcm2niix() -> str | None:
    """The dcm2niix binary: on PATH, or the one the ``dcm2niix`` wheel installs beside this interpreter."""
    beside = Path(sys.executable).parent / "dcm2niix"
    return shutil.which("dcm2niix") or (str(beside) if beside.exists() else None)


def test_ge_gradients_with_row_phase_encoding_equal_dcm2niix(tmp_path):
    """The corpus' GE DTI re-encoded as row phase encoding (no corpus series has it): dcm2niix's .bvec is the oracle."""
    binary = _dcm2niix()
    if binary is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix, in the test extra)")
    pattern, _ = DIFFUSION["ge_classic"]
    (tmp_path / "dicom").mkdir()
    for path in sorted(data_root().glob(pattern)):
        ds = pydicom.dcmread(path)
        ds.InPlanePhaseEncodingDirection = "ROW"
        ds.save_as(tmp_path / "dicom" / path.name)
    subprocess.run([binary, "-f", "dwi", "-o", str(tmp_path), str(tmp_path / "dicom")], check=True, capture_output=True)
    volume = load_files(sorted((tmp_path / "dicom").iterdir()))
    ref = nib.load(tmp_path / "dwi.nii")
    bvec = np.loadtxt(tmp_path / "dwi.bvec")
    column = np.loadtxt(data_root() / f"{DIFFUSION['ge_classic'][1]}.bvec")
    assert not np.allclose(bvec, column, atol=1e-3)  # row phase encoding changes dcm2niix's answer: the check can fail
    np.testing.assert_allclose(fsl_bvecs(_nifti_gradients(volume, ref.affine), ref.affine), bvec, atol=2e-5)


def test_fmri_volumes_are_named_time_with_acquisition_times():
    volume = load_files(sorted((data_root() / "dcm_qa_nih/In/20180918GE/mr_0004").glob("*.dcm")))
    table = volume.meta["volumes"]
    assert volume.axes == ("time",) and volume.array.shape[0] == 10 == len(table["acquisition_time"])
    assert "b_value" not in table and "gradient" not in table


GE_FMRI = "dcm_qa_table/In/GE/Exam1486_Laser794mm/02_Ax_fMRI_FF_I11.1_S15.9"


def test_ge_slice_timing_is_no_cardiac_phase_and_the_table_ignores_file_order():
    """GE writes each slice's time since the run's start in TriggerTime (100-1000 ms in the first volume, TR 1000 ms)."""
    files = sorted((data_root() / GE_FMRI).iterdir())
    volume, backwards = load_files(files), load_files(files[::-1])
    assert volume.axes == backwards.axes == ("time",) and volume.array.shape[0] == 5
    assert "trigger_time" not in volume.meta["volumes"]
    assert volume.meta["volumes"] == backwards.meta["volumes"]


def test_cardiac_phases_keep_their_trigger_times_from_each_volumes_first_slice(tmp_path):
    """The same files as cine phases: one trigger time per volume, with a few ms of jitter between slices."""
    jitter = np.random.default_rng(0)
    for path in sorted((data_root() / GE_FMRI).iterdir()):
        ds = pydicom.dcmread(path)
        ds.TriggerTime = f"{40 * (int(ds.TemporalPositionIdentifier) - 1) + jitter.uniform(0, 6):.1f}"
        ds.save_as(tmp_path / path.name)
    files = sorted(tmp_path.iterdir())
    volume, backwards = load_files(files), load_files(files[::-1])
    assert volume.axes == ("phase",)
    first = [float(pydicom.dcmread(volume.meta["source_files"][v * 10]).TriggerTime) for v in range(5)]
    assert volume.meta["volumes"]["trigger_time"] == first and backwards.meta["volumes"] == volume.meta["volumes"]


def _four_d(n: int = 4) -> Volume:
    array = np.arange(n * 2 * 3 * 4, dtype=np.int16).reshape(n, 2, 3, 4)
    table = {
        "b_value": [0.0, 1000.0, 1000.0, 2000.0][:n],
        "echo_number": [1.0] * n,
        "gradient": [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]][:n],
    }
    return Volume(array, np.diag([2.0, 1.0, 1.0, 1.0]), ("diffusion",), {"volumes": table, "series_key": "s"})


def test_select_by_b_value_keeps_the_table_rows():
    out = select_volumes(_four_d(), "b_value", [1000])
    assert out.axes == ("diffusion",) and out.array.shape[0] == 2
    np.testing.assert_array_equal(out.array, _four_d().array[1:3])
    assert out.meta["volumes"]["gradient"] == [[1, 0, 0], [0, 1, 0]] and out.meta["volume_indices"] == [1, 2]


def test_select_one_volume_gives_3d_and_range_is_a_slice():
    assert select_volumes(_four_d(), "index", [-1]).axes == ()
    np.testing.assert_array_equal(select_volumes(_four_d(), "index", [-1]).array, _four_d().array[3])
    assert select_volumes(_four_d(), "range", [0, 4, 2]).meta["volume_indices"] == [0, 2]


def test_selection_errors_name_the_problem():
    with pytest.raises(ConfigError, match="leaves the 4 volumes"):
        select_volumes(_four_d(), "index", [4])
    with pytest.raises(ConfigError, match="keeps none"):
        select_volumes(_four_d(), "b_value", [500])
    with pytest.raises(ConfigError, match="is not one of"):
        select_volumes(_four_d(), "bval", [0])


def test_reduce_mean_and_max():
    v = _four_d()
    np.testing.assert_allclose(reduce_volumes(v, "mean").array, v.array.mean(axis=0))
    assert reduce_volumes(v, "max").array.dtype == np.int16 and reduce_volumes(v, "max").axes == ()
    np.testing.assert_array_equal(reduce_volumes(v, "max").array, v.array[-1])


def test_gradients_follow_reorientation():
    from dicomml.transforms import Orient

    v = _four_d()
    out = Orient("ASL")(v)  # axes permuted and flipped: the gradient components must move with them
    # RAS+ direction of volume 1 is +x (R); in ASL axes it lies along axis 2 pointing L, so -1
    assert out.meta["volumes"]["gradient"][1] == pytest.approx([0, 0, -1])
    assert out.meta["volumes"]["gradient"][3] == pytest.approx([0, 1, 0])

"""Write-back edges: bfloat16 predictions, orientation noise in the source, probabilities at the field of view's edge, NaN."""

from __future__ import annotations

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from seg_refs import to_sitk, write_ct

import dicomml
from dicomml.errors import ConfigError
from dicomml.seg import rtstruct_to_grid, seg_to_grid
from dicomml.transforms.functional.grid import orient_grid, spacing_grid


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A 1.1 mm axial CT of 8 slices of 40 x 36 (the 1.5 mm grid over it ends between its voxel centres), and its volume."""
    folder = tmp_path_factory.mktemp("ct11")
    write_ct(folder, (8, 40, 36), 1.1)
    return folder, dicomml.load_files(sorted(folder.iterdir()))


def _ras_grid(volume):
    """The guide's model grid: RAS, 1.5 mm."""
    return spacing_grid(*orient_grid(volume.affine, volume.spatial_shape, "RAS"), 1.5)


@pytest.mark.parametrize("write, read", [(dicomml.write_seg, seg_to_grid), (dicomml.write_rtstruct, rtstruct_to_grid)])
def test_a_bfloat16_prediction_is_written_as_its_float32_values(ct, tmp_path, write, read) -> None:
    folder, volume = ct
    affine, shape = _ras_grid(volume)
    probabilities = torch.zeros((1, *shape))
    probabilities[0, 4:12, 5:15, 1:4] = 0.75
    bf16 = write(probabilities.bfloat16(), folder, ["a"], tmp_path / "bf16.dcm", affine=affine)
    f32 = write(probabilities, folder, ["a"], tmp_path / "f32.dcm", affine=affine)
    expected = read(f32, volume).array
    assert expected.any() and np.array_equal(read(bf16, volume).array, expected)


def test_source_orientations_a_rounding_apart_are_written_as_one(ct, tmp_path) -> None:
    folder, volume = ct
    headers = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    for k, ds in enumerate(headers):  # as MR scanners write them: the same plane, cosines 1e-6 apart
        iop = [float(v) for v in ds.ImageOrientationPatient]
        iop[1], iop[3] = 1e-6 * k, -1e-6 * k
        ds.ImageOrientationPatient = iop
    before = [list(ds.ImageOrientationPatient) for ds in headers]
    labels = np.zeros(volume.spatial_shape, np.uint8)
    labels[2:6, 10:30, 8:20] = 1
    out = dicomml.write_seg(labels, headers, ["a"], tmp_path / "noisy.dcm", affine=volume.affine)
    assert [list(ds.ImageOrientationPatient) for ds in headers] == before  # the caller's headers stay as they were
    order = np.argsort([float(ds.ImagePositionPatient[2]) for ds in headers])  # the volume's slices, feet to head
    uids = [headers[i].SOPInstanceUID for i in order]
    pixels = hd.seg.segread(out).get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(pixels, labels)


def test_probabilities_keep_their_value_out_to_the_edge_of_the_predictions_field_of_view(ct, tmp_path) -> None:
    folder, volume = ct
    affine, shape = _ras_grid(volume)
    probabilities = np.full((1, *shape), 0.7, np.float32)
    on = dicomml.write_seg(np.ones(shape, np.uint8), folder, ["a"], tmp_path / "labels.dcm", affine=affine)
    soft = dicomml.write_seg(probabilities, folder, ["a"], tmp_path / "binary.dcm", affine=affine)
    fractional = dicomml.write_seg(probabilities, folder, ["a"], tmp_path / "fractional.dcm", affine=affine, kind="fractional")
    inside = seg_to_grid(on, volume).array.astype(bool)  # nearest: the prediction's voxels, edges included
    reference = to_sitk(np.zeros(volume.spatial_shape, np.float32), volume.affine)
    linear = sitk.Resample(to_sitk(probabilities[0], affine), reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    oracle = sitk.GetArrayFromImage(linear) >= 0.5
    assert not inside.all()  # the prediction's field of view ends inside the source's
    assert np.array_equal(seg_to_grid(soft, volume).array.astype(bool), inside)
    assert np.array_equal(oracle, inside)
    values = seg_to_grid(fractional, volume, as_channels=True).array[0]
    assert values[inside].min() == pytest.approx(0.7, abs=1 / 255)  # 8-bit fractional


@pytest.mark.parametrize("write", [dicomml.write_seg, dicomml.write_rtstruct])
def test_nan_or_inf_probabilities_are_refused_naming_the_file(ct, tmp_path, write) -> None:
    folder, volume = ct
    probabilities = np.full((*volume.spatial_shape, 1), np.nan, np.float32)
    probabilities[2:5, 10:20, 10:20] = 0.9
    path = tmp_path / "probabilities.nii.gz"
    nib.save(nib.Nifti1Image(probabilities, volume.affine), path)
    with pytest.raises(ConfigError, match="NaN or infinite") as caught:
        write(path, folder, ["a"], tmp_path / "out.dcm")
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    infinite = np.zeros((1, *volume.spatial_shape), np.float32)
    infinite[0, 0, 0, 0] = np.inf
    with pytest.raises(ConfigError, match="NaN or infinite"):
        write(infinite, folder, ["a"], tmp_path / "out.dcm", affine=volume.affine)

"""Orientation and resampling against MONAI, nibabel and SimpleITK on real volumes of the corpus."""

from __future__ import annotations

import threading
import warnings
from itertools import permutations, product

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Spacing, SpatialResample

from dicomml.errors import ConfigError, GeometryError
from dicomml.geometry import axcodes, spacing_of
from dicomml.transforms import Compose, Mask, Orient, Resample
from dicomml.transforms.functional import resample_image, spacing_grid
from dicomml.volume import Volume

CODES = ["RAS", "LPS", "SPL", "IAR", "PSR"]


def _metatensor(volume: Volume) -> MetaTensor:
    return MetaTensor(torch.from_numpy(volume.array)[None].clone(), affine=torch.from_numpy(volume.affine))


def _monai(transform, volume: Volume) -> MetaTensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's Orientation label default notice
        return transform(_metatensor(volume))


def _tolerance(volume: Volume) -> float:
    """Interpolation tolerance: float32 coordinate rounding times the value range."""
    return 1e-4 * float(np.ptp(volume.array))


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("path", ["mr_sagittal", "mr_oblique", "ct_3slice"])
def test_orient_matches_monai_orientation_and_nibabel(nifti, path, code):
    volume = nifti(path)
    ours = Orient(code)(volume)
    theirs = _monai(Orientation(axcodes=code), volume)
    np.testing.assert_allclose(ours.affine, theirs.affine.numpy(), atol=1e-9)
    np.testing.assert_array_equal(ours.array, theirs.as_tensor()[0].numpy())
    reoriented = nib.Nifti1Image(volume.array, volume.affine).as_reoriented(
        nib.orientations.ornt_transform(nib.orientations.io_orientation(volume.affine), nib.orientations.axcodes2ornt(tuple(code)))
    )
    np.testing.assert_array_equal(ours.array, np.asarray(reoriented.dataobj))
    np.testing.assert_allclose(ours.affine, reoriented.affine, atol=1e-6)
    assert ours.orientation == code or path == "mr_oblique"  # an oblique volume goes to its closest axes


@pytest.mark.parametrize("pixdim", [(1.0, 1.0, 1.0), (1.3, 0.7, 2.1)])
@pytest.mark.parametrize("path", ["mr_sagittal", "ct_3slice"])
def test_resample_centers_matches_monai_spacing(nifti, path, pixdim):
    # Axis-aligned volumes only: for oblique affines MONAI's corner test (compute_shape_offset,
    # atol 1e-8) misses on rounding noise and it centres the extent instead.
    volume = nifti(path)
    ours = Resample(spacing=pixdim, align="centers")(volume)
    theirs = _monai(Spacing(pixdim=pixdim), volume)
    assert ours.array.shape == tuple(theirs.shape[1:])
    np.testing.assert_allclose(ours.affine, theirs.affine.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.array, theirs.as_tensor()[0].numpy(), atol=_tolerance(volume))


@pytest.mark.parametrize("path", ["mr_sagittal", "mr_oblique", "ct_3slice"])
def test_resample_edges_shares_monai_scale_extent_shape_and_axes_not_its_origin(nifti, path):
    volume = nifti(path)
    ours = Resample(spacing=(0.9, 1.7, 1.25))(volume)
    grid = _monai(Spacing(pixdim=(0.9, 1.7, 1.25), scale_extent=True), volume)
    assert ours.array.shape == tuple(grid.shape[1:])
    np.testing.assert_allclose(ours.affine[:3, :3], grid.affine.numpy()[:3, :3], atol=1e-6)
    # Both start at the input's outer edge; MONAI places it with the rounded shape ratio n / m,
    # dicomml with the exact spacing ratio r, so origins differ by |n / m - r| / 2 input voxels.
    n, m = np.array(volume.spatial_shape), np.array(ours.array.shape)
    ratio = np.array([0.9, 1.7, 1.25]) / np.array(volume.spacing)
    expected = volume.affine[:3, :3] @ ((n / m - ratio) / 2)
    np.testing.assert_allclose(grid.affine.numpy()[:3, 3] - ours.affine[:3, 3], expected, atol=1e-4)
    np.testing.assert_allclose(ours.affine @ [-0.5, -0.5, -0.5, 1], volume.affine @ [-0.5, -0.5, -0.5, 1], atol=1e-9)
    theirs = SpatialResample()(_metatensor(volume), dst_affine=torch.from_numpy(ours.affine), spatial_size=ours.array.shape)
    np.testing.assert_allclose(ours.array, theirs.as_tensor()[0].numpy(), atol=_tolerance(volume))
    np.testing.assert_allclose(ours.spacing, (0.9, 1.7, 1.25), rtol=1e-12)


def _sitk_image(volume: Volume) -> sitk.Image:
    """The volume as a SimpleITK image (x = array axis 0, LPS world)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine
    spacing = np.asarray(spacing_of(lps))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    return image


def test_resample_edges_matches_simpleitk_resample(nifti):
    volume = nifti("mr_oblique")
    ours = Resample(spacing=1.5)(volume)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ours.affine
    spacing = np.asarray(spacing_of(lps))
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(v) for v in ours.array.shape])
    resampler.SetOutputSpacing(spacing.tolist())
    resampler.SetOutputOrigin(lps[:3, 3].tolist())
    resampler.SetOutputDirection((lps[:3, :3] / spacing).flatten().tolist())
    resampler.SetInterpolator(sitk.sitkLinear)
    theirs = sitk.GetArrayFromImage(resampler.Execute(_sitk_image(volume))).transpose(2, 1, 0)
    inside = np.zeros(ours.array.shape, bool)
    inside[1:-1, 1:-1, 1:-1] = True  # SimpleITK pads the outer half voxel with 0, dicomml with the border
    np.testing.assert_allclose(ours.array[inside], theirs[inside], atol=1e-3 * float(np.ptp(volume.array)))


def test_orient_and_resample_fuse_into_one_pass(nifti):
    volume = nifti("mr_sagittal")
    pipeline = Compose([Orient("RAS"), Resample(spacing=(1.2, 1.1, 1.3))])
    assert len(pipeline.transforms) == 1 and pipeline.transforms[0].axcodes == "RAS"
    fused = pipeline(volume)
    two = Resample(spacing=(1.2, 1.1, 1.3))(Orient("RAS")(volume))
    assert fused.orientation == "RAS" and fused.array.shape == two.array.shape
    np.testing.assert_allclose(fused.spacing, (1.2, 1.1, 1.3), rtol=1e-12)
    np.testing.assert_allclose(fused.affine[:3, :3], two.affine[:3, :3], atol=1e-9)
    # The fused grid is anchored at the stored first voxel edge; orienting first anchors flipped
    # axes at the other end: a shift below half an output voxel.
    assert np.all(np.abs(np.linalg.solve(two.affine, fused.affine)[:3, 3]) < 0.5)
    theirs = SpatialResample()(_metatensor(volume), dst_affine=torch.from_numpy(fused.affine), spatial_size=fused.array.shape)
    np.testing.assert_allclose(fused.array, theirs.as_tensor()[0].numpy(), atol=_tolerance(volume))


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("spacing", [(1.2, 0.9, 1.7), (0.6, 2.3, 1.0)])
def test_integer_images_resample_in_slabs_to_the_values_of_their_float_copy(nifti, code, spacing):
    # integer CPU images take the separable slab path (no float copy of the whole input, output written
    # in the target order); the fused kernel on the float32 copy is the reference, to float32 rounding
    volume = nifti("mr_sagittal")
    ints = np.rint(volume.array).astype(np.int16)
    step = Resample(spacing=spacing, axcodes=code)
    ours = step(Volume(ints, volume.affine))
    reference = step(Volume(ints.astype(np.float32), volume.affine))
    assert ours.array.dtype == np.float32 and ours.orientation == code
    np.testing.assert_array_equal(ours.affine, reference.affine)
    np.testing.assert_allclose(ours.array, reference.array, rtol=0, atol=1e-6 * float(np.ptp(ints)))


#: The 48 orientation codes: each axis order of L/R, P/A, I/S, each direction.
_ALL_CODES = [
    "".join(pair[d] for pair, d in zip(order, dirs)) for order in permutations(("LR", "PA", "IS")) for dirs in product((0, 1), repeat=3)
]


@pytest.mark.parametrize("code", _ALL_CODES)
def test_orient_and_resample_in_one_pass_equal_interpolate_then_nibabel_reorientation(code):
    # Fused orient + resample (any of the 48 codes, two channels, an axial LPS-stored grid) against
    # torch's interpolate on the stored voxels, reoriented by nibabel. Spacings divide the field of
    # view, so interpolate's size-derived scales are the grid's.
    x = torch.from_numpy(np.random.default_rng(0).random((2, 20, 24, 16), dtype=np.float32))
    affine = np.diag([-0.5, -0.75, 1.5, 1.0])[:, [1, 0, 2, 3]]
    affine[:3, 3] = [30.0, -20.0, 10.0]
    out = Resample(spacing=1.0, axcodes=code)({"image": x, "affine": affine})
    assert out["image"].is_contiguous() and axcodes(out["affine"]) == code
    np.testing.assert_allclose(out["image"].numpy(), _interpolate_then_reorient(x, affine, (15, 12, 24), code), rtol=0, atol=1e-6)
    np.testing.assert_allclose(spacing_of(out["affine"]), (1.0, 1.0, 1.0), rtol=1e-12)


def _interpolate_then_reorient(x: torch.Tensor, affine: np.ndarray, size: tuple[int, int, int], code: str) -> np.ndarray:
    """torch's interpolate on the stored voxels, reoriented to ``code`` by nibabel."""
    floor = torch.nn.functional.interpolate(x[None], size=size, mode="trilinear", align_corners=False)[0].numpy()
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(tuple(code)))
    return np.stack([nib.orientations.apply_orientation(channel, transform) for channel in floor])


def _slab_grid() -> tuple[torch.Tensor, np.ndarray]:
    """Two channels on an axial grid (slices S, rows L, columns P) whose ratios to 1 mm are 4/5 (upsampled), 10/7 and 2."""
    x = torch.from_numpy(np.random.default_rng(1).random((2, 16, 30, 24), dtype=np.float32))
    affine = np.diag([-0.7, -0.5, 1.25, 1.0])[:, [2, 0, 1, 3]]
    affine[:3, 3] = [30.0, -20.0, 10.0]
    return x, affine


@pytest.mark.parametrize("code", _ALL_CODES)
def test_fused_kernel_in_slabs_equals_interpolate_then_nibabel_reorientation(monkeypatch, code):
    # One period of output planes per slab (7 along the 0.7 mm axis, 5 along the 1.25 mm one), and the
    # whole-volume kernel made to fail: every relaid code must take the slab path.
    from dicomml.transforms.functional import spatial

    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    x, affine = _slab_grid()
    if code != axcodes(affine):
        monkeypatch.setattr(spatial, "_trilinear", None)
    out = Resample(spacing=1.0, axcodes=code)({"image": x, "affine": affine})
    assert out["image"].is_contiguous() and axcodes(out["affine"]) == code
    # a slab counts its float32 sample positions from its own first plane: they differ from the whole
    # kernel's by float32 rounding of positions below 32 (values in [0, 1))
    np.testing.assert_allclose(out["image"].numpy(), _interpolate_then_reorient(x, affine, (20, 21, 12), code), rtol=0, atol=1e-5)


def test_slabs_leave_torch_thread_count_as_it_was(monkeypatch):
    from dicomml.transforms.functional import spatial

    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    monkeypatch.setattr(spatial, "_trilinear", None)
    x, affine = _slab_grid()
    before = torch.get_num_threads()
    Resample(spacing=1.0, axcodes="RAS")({"image": x, "affine": affine})
    seen: list[int] = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert torch.get_num_threads() == before and seen == [before]


def test_ratios_that_are_no_small_fraction_take_the_whole_kernel(monkeypatch):
    # 0.683594 mm: no slab boundary short of the end falls on a whole input plane
    from dicomml.transforms.functional import spatial

    monkeypatch.setattr(spatial, "_OUT_SLAB_BYTES", 10_000)
    monkeypatch.setattr(spatial, "_trilinear_to_target", None)
    x, affine = _slab_grid()
    affine[:, 1] *= 0.683594 / 0.7
    affine[:, 2] *= 0.683594 / 0.5
    assert axcodes(Resample(spacing=1.0, axcodes="RAS")({"image": x, "affine": affine})["affine"]) == "RAS"


def test_resample_shape_equals_torch_interpolate(nifti):
    volume = nifti("mr_sagittal")
    ours = Resample(shape=(100, 90, 50))(volume)
    floor = torch.nn.functional.interpolate(
        torch.from_numpy(volume.array)[None, None], size=(100, 90, 50), mode="trilinear", align_corners=False
    )[0, 0]
    np.testing.assert_allclose(ours.array, floor.numpy(), atol=_tolerance(volume))
    corner = ours.affine @ [-0.5, -0.5, -0.5, 1]
    np.testing.assert_allclose(corner, volume.affine @ [-0.5, -0.5, -0.5, 1], atol=1e-9)  # field of view kept


def test_resample_like_reference_samples_its_world_positions(nifti):
    volume = nifti("mr_oblique")
    reference = Volume(np.zeros((40, 50, 30), np.float32), np.array([[0, 0, 2.0, -40], [1.5, 0, 0, -60], [0, 2.2, 0, -50], [0, 0, 0, 1]]))
    ours = Resample(like=reference)(volume)
    assert ours.array.shape == reference.array.shape
    np.testing.assert_array_equal(ours.affine, reference.affine)
    theirs = SpatialResample()(_metatensor(volume), dst_affine=torch.from_numpy(reference.affine), spatial_size=(40, 50, 30))
    np.testing.assert_allclose(ours.array, theirs.as_tensor()[0].numpy(), atol=1e-3 * float(np.ptp(volume.array)))


def test_masks_are_resampled_nearest_and_keep_their_labels(nifti):
    volume = nifti("mr_sagittal")
    labels = (volume.array > np.percentile(volume.array, 60)).astype(np.uint8) + (volume.array > np.percentile(volume.array, 90))
    sample = {"image": torch.from_numpy(volume.array)[None], "mask": Mask(torch.from_numpy(labels)[None]), "affine": volume.affine}
    out = Resample(spacing=(1.3, 0.7, 2.1), align="centers")(sample)
    assert isinstance(out["mask"], Mask) and out["mask"].dtype == torch.uint8
    assert set(out["mask"].unique().tolist()) == {0, 1, 2}
    theirs = _monai(Spacing(pixdim=(1.3, 0.7, 2.1), mode="nearest"), Volume(labels.astype(np.float32), volume.affine))
    agree = (out["mask"][0].numpy() == theirs.as_tensor()[0].numpy().astype(np.uint8)).mean()
    assert agree > 0.995  # ties at exactly half a voxel may round either way


def test_antialias_removes_a_checkerboard_when_downsampling():
    board = torch.from_numpy((np.indices((32, 32, 32)).sum(0) % 2).astype(np.float32))[None]
    plain = Resample(spacing=3.0)({"image": board})["image"]
    smooth = Resample(spacing=3.0, antialias=True)({"image": board})["image"]
    assert float(plain.std()) > 0.3
    assert float(smooth.std()) < 0.05 and abs(float(smooth.mean()) - 0.5) < 0.02


def test_a_spacing_within_the_tolerance_of_the_input_is_copied():
    # DICOM spacings carry decimal and float32 noise: a target within 1e-5 of the input's spacing is
    # the same grid, so the image is copied (no blur, dtype kept) under the requested spacing; its far
    # end lies within 1e-5 x 12 voxels of where the affine says. 1e-4 away, it is interpolated.
    image = torch.arange(12, dtype=torch.int16).reshape(1, 1, 12, 1)
    affine = np.diag([1.0, 2.0, 1.0, 1.0])
    near = Resample(spacing=[1.0, 2.00001, 1.0])({"image": image, "affine": affine})
    assert near["image"].dtype == torch.int16 and torch.equal(near["image"], image)
    np.testing.assert_allclose(spacing_of(np.asarray(near["affine"])), [1.0, 2.00001, 1.0], rtol=1e-12)
    last = np.array([0, 11, 0, 1])  # the far end: where the output affine puts it, in input voxels
    assert abs((np.linalg.inv(affine) @ np.asarray(near["affine"]) @ last)[1] - 11) <= 1e-5 * 12
    far = Resample(spacing=[1.0, 2.0002, 1.0])({"image": image, "affine": affine})
    assert far["image"].shape == image.shape and far["image"].dtype == torch.float32
    assert not torch.equal(far["image"], image.float())


def test_resample_keeps_the_tensor_device_and_accepts_bare_tensors():
    x = torch.rand(2, 6, 6, 6)
    y = Resample(spacing=2.0)(x)
    assert y.shape == (2, 3, 3, 3) and y.device == x.device
    assert torch.allclose(y, torch.nn.functional.interpolate(x[None], size=(3, 3, 3), mode="trilinear")[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resample_on_cuda_matches_cpu(nifti):
    volume = nifti("mr_oblique")
    x = torch.from_numpy(volume.array)[None]
    for target in (spacing_grid(volume.affine, volume.spatial_shape, 1.1), (volume.affine @ np.diag([0.9, 1.1, 1.0, 1.0]), (90, 80, 40))):
        cpu = resample_image(x, volume.affine, *target)
        gpu = resample_image(x.cuda(), volume.affine, *target)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=_tolerance(volume), rtol=0)


def test_bad_arguments_raise_dicomml_errors():
    with pytest.raises(ConfigError, match="exactly one"):
        Resample(spacing=1.0, shape=(2, 2, 2))
    with pytest.raises(GeometryError, match="axis code"):
        Orient("RAX")
    with pytest.raises(GeometryError, match="different grids"):
        Orient("LPS")({"image": torch.zeros(1, 2, 2, 2), "mask": Mask(torch.zeros(1, 3, 2, 2))})


def test_orient_on_volume_keeps_axes_and_meta(nifti):
    volume = nifti("mr_sagittal")
    four = Volume(np.stack([volume.array, volume.array + 1]), volume.affine, axes=("time",), meta={"modality": "MR"})
    out = Orient("RAS")(four)
    assert out.axes == ("time",) and out.meta["modality"] == "MR" and axcodes(out.affine) == "RAS"
    np.testing.assert_array_equal(out.array[1] - out.array[0], 1)

"""Study channels beyond one per role: 4D roles as channels, per-role dtype and interpolation, a grid tied to no role."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import dicomml
from dicomml.assemble import load_files
from dicomml.errors import ConfigError
from dicomml.study import ReferenceGrid, StudyConfig, resample_roles, role_volume
from dicomml.testing.studies import SeriesGrid, write_study

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope="module")
def two_series(tmp_path_factory):
    """An axial reference at 2 mm and a sagittal series at other spacings, off centre by an offset that makes no exact
    half-voxel ties (where nearest neighbour may round either way)."""
    files = write_study(
        tmp_path_factory.mktemp("two"),
        [
            SeriesGrid("ref", shape=(16, 24, 24), spacing=(2.0, 2.0, 2.0)),
            SeriesGrid("moving", shape=(14, 20, 22), spacing=(2.5, 2.2, 1.9), orientation=SAGITTAL, centre=(1.37, -2.63, 0.71), number=2),
        ],
    )
    return {name: load_files(paths) for name, paths in files.items()}


def _config(roles, reference="ref", dtype="float32"):
    return StudyConfig.from_dict({"name": "s", "roles": roles, "reference": reference, "deterministic": {"dtype": dtype, "spacing": None}})


def _sitk_resampled(sitk_image, volume_array, volume_affine, grid_affine, grid_shape, nearest=False):
    """SimpleITK's Resample of one 3D array onto a grid (linear or nearest; 0 outside), and where it is inside."""
    reference = sitk_image(np.zeros(grid_shape, np.float32), grid_affine)
    moving = sitk_image(volume_array.astype(np.float32), volume_affine)
    mode = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.GetArrayFromImage(sitk.Resample(moving, reference, sitk.Transform(), mode, 0.0)).transpose(2, 1, 0)
    ones = sitk.Resample(moving * 0 + 1, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    inside = sitk.GetArrayFromImage(ones).transpose(2, 1, 0) > 0.999
    # SimpleITK repeats the edge voxel up to half a voxel out, where we pad with zeros: one voxel in from its border
    eroded = np.zeros_like(inside)
    eroded[1:-1, 1:-1, 1:-1] = inside[1:-1, 1:-1, 1:-1]
    for axis in range(3):
        for step in (-1, 1):
            eroded &= np.roll(inside, step, axis)
    return out, eroded


def test_a_4d_role_gives_one_channel_per_kept_volume(two_series, sitk_image):
    moving = two_series["moving"]
    arrays = [moving.array.astype(np.float32), 2 * moving.array.astype(np.float32) + 3]
    meta = {**moving.meta, "volumes": {"b_value": [0.0, 1000.0]}}
    dwi = dicomml.Volume(np.stack(arrays), moving.affine, ("diffusion",), meta)
    config = _config({"ref": {"where": "true"}, "dwi": {"where": "true", "volumes": {"by": "b_value", "values": [0, 1000]}}})
    sample = resample_roles({"ref": two_series["ref"], "dwi": role_volume(dwi, config.roles[1])}, [], config)
    assert sample.image.shape[0] == 3 and sample.channel_names == ["ref", "dwi/0", "dwi/1"]
    assert [c["b_value"] for c in sample.roles["dwi"]["channels"]] == [0.0, 1000.0]
    for c, array in enumerate(arrays, start=1):
        theirs, inside = _sitk_resampled(sitk_image, array, moving.affine, sample.affine, sample.image.shape[1:])
        assert inside.mean() > 0.2
        span = float(np.ptp(theirs[inside]))
        assert np.abs(sample.image[c][inside] - theirs[inside]).mean() <= 0.01 * span
    # one b-value kept: one channel, named after the role
    one = _config({"ref": {"where": "true"}, "dwi": {"where": "true", "volumes": {"by": "b_value", "values": [1000]}}})
    single = resample_roles({"ref": two_series["ref"], "dwi": role_volume(dwi, one.roles[1])}, [], one)
    assert single.channel_names == ["ref", "dwi"]
    np.testing.assert_allclose(single.image[1], sample.image[2], atol=1e-3)


def test_a_missing_4d_role_gives_one_empty_channel_per_selected_value(two_series):
    config = _config({"ref": {"where": "true"}, "dwi": {"where": "true", "volumes": {"by": "index", "values": [0, 2, 4]}}})
    sample = resample_roles({"ref": two_series["ref"], "dwi": None}, [], config)
    assert sample.image.shape[0] == 4 and not sample.image[1:].any() and not sample.roles["dwi"]["present"]


def test_each_role_is_cast_to_its_own_dtype_and_a_label_role_is_resampled_nearest(two_series, sitk_image):
    moving = two_series["moving"]
    low, high = np.quantile(moving.array, [0.5, 0.9])
    labels = (moving.array > low).astype(np.int16) + (moving.array > high)  # zones 0, 1, 2: must not mix
    zones = dicomml.Volume(labels, moving.affine, (), moving.meta)
    roles = {"ref": {"where": "true"}, "zones": {"where": "true", "dtype": "uint8", "interpolation": "nearest"}}
    config = _config(roles, dtype="int16")
    assert config.dtype == "int16" and config.role_dtype(config.roles[1]) == "uint8"
    sample = resample_roles({"ref": two_series["ref"], "zones": zones}, [], config)
    assert sample.image.dtype == np.int16 and set(np.unique(sample.image[1])) <= {0, 1, 2}
    theirs, inside = _sitk_resampled(sitk_image, labels, moving.affine, sample.affine, sample.image.shape[1:], nearest=True)
    assert theirs.max() == 2 and inside.mean() > 0.2
    assert (sample.image[1][inside] != theirs[inside]).mean() < 1e-3  # ties at exact half voxels aside
    # a float role widens the entry, while an integer role is still rounded to its own dtype
    floating = _config({"ref": {"where": "true"}, "pet": {"where": "true", "dtype": "float32"}}, dtype="int16")
    assert floating.dtype == "float32"
    mixed = resample_roles({"ref": two_series["ref"], "pet": moving}, [], floating)
    assert mixed.image.dtype == np.float32
    np.testing.assert_array_equal(mixed.image[0], np.rint(mixed.image[0]))
    assert not np.array_equal(mixed.image[1], np.rint(mixed.image[1]))


def test_an_explicit_grid_covers_the_union_or_intersection_of_the_roles(two_series, sitk_image):
    ref, moving = two_series["ref"], two_series["moving"]
    grid = {"spacing": [3, 3, 3], "orientation": "LPS"}
    config = _config({"ref": {"where": "true"}, "moving": {"where": "true"}}, reference={**grid, "extent": "union"})
    assert isinstance(config.reference, ReferenceGrid)
    sample = resample_roles({"ref": ref, "moving": moving}, [], config)
    # the boxes of voxel centres, along L, P, S (LPS = RAS with x and y negated)
    boxes = []
    for v in (ref, moving):
        corners = np.array(np.meshgrid(*[[0, n - 1] for n in v.spatial_shape], indexing="ij")).reshape(3, -1)
        lps = np.diag([-1.0, -1, 1]) @ (v.affine[:3, :3] @ corners + v.affine[:3, 3:4])
        boxes.append((lps.min(axis=1), lps.max(axis=1)))
    low = np.min([b[0] for b in boxes], axis=0)
    high = np.max([b[1] for b in boxes], axis=0)
    np.testing.assert_allclose(sample.affine[:3, :3], np.diag([-3.0, -3.0, 3.0]))
    np.testing.assert_allclose(np.diag([-1.0, -1, 1]) @ sample.affine[:3, 3], low, atol=1e-6)
    assert sample.image.shape[1:] == tuple(int(v) for v in np.floor((high - low) / 3 + 1e-6) + 1)
    for c, v in enumerate((ref, moving)):
        theirs, inside = _sitk_resampled(sitk_image, v.array, v.affine, sample.affine, sample.image.shape[1:])
        span = float(np.ptp(theirs[inside]))
        assert inside.mean() > 0.2 and np.abs(sample.image[c][inside] - theirs[inside]).mean() <= 0.01 * span
    inner = resample_roles({"ref": ref, "moving": moving}, [], _config(config_roles(), reference={**grid, "extent": "intersection"}))
    low_i = np.max([b[0] for b in boxes], axis=0)
    high_i = np.min([b[1] for b in boxes], axis=0)
    assert inner.image.shape[1:] == tuple(int(v) for v in np.floor((high_i - low_i) / 3 + 1e-6) + 1)
    sized = resample_roles({"ref": ref, "moving": moving}, [], _config(config_roles(), reference={**grid, "size": [8, 9, 10]}))
    centre = sized.affine[:3, :3] @ (np.array([8, 9, 10]) - 1) / 2 + sized.affine[:3, 3]
    assert sized.image.shape[1:] == (8, 9, 10)
    np.testing.assert_allclose(np.diag([-1.0, -1, 1]) @ centre, (low + high) / 2, atol=1e-6)


def config_roles():
    return {"ref": {"where": "true"}, "moving": {"where": "true"}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roles": {"a": {"where": "true", "dtype": "int64"}}}, "roles.a.dtype 'int64' is not one of"),
        ({"roles": {"a": {"where": "true", "interpolation": "cubic"}}}, "roles.a.interpolation 'cubic' is not one of"),
        ({"reference": {"spacing": [1, 1]}}, "reference.spacing"),
        ({"reference": {"spacing": [1, 1, 1], "extent": "hull"}}, "reference.extent 'hull' is not one of"),
        ({"reference": {"spacing": [1, 1, 1], "orientation": "RAX"}}, "reference.orientation"),
        ({"reference": {"spacing": [1, 1, 1], "size": [2, 2]}}, "reference.size"),
        ({"reference": {"spacing": [1, 1, 1], "centre": [0, 0, 0]}}, "reference.centre: unknown key"),
    ],
)
def test_bad_role_and_grid_options_are_one_line_config_errors(change, message):
    data = {"name": "s", "roles": {"a": {"where": "true"}}, "reference": "a", **change}
    with pytest.raises(ConfigError, match=message):
        StudyConfig.from_dict(data)


def test_new_role_options_leave_existing_cache_keys_unchanged_at_their_defaults():
    plain = StudyConfig.from_dict({"name": "s", "roles": {"a": {"where": "true"}}, "reference": "a"})
    explicit = StudyConfig.from_dict({"name": "s", "roles": {"a": {"where": "true", "interpolation": "linear"}}, "reference": "a"})
    typed = StudyConfig.from_dict({"name": "s", "roles": {"a": {"where": "true", "dtype": "uint8"}}, "reference": "a"})
    assert plain.canonical() == explicit.canonical() and '"dtype":"uint8"' in typed.canonical()
    assert plain.cache_hash() != typed.cache_hash()

"""Study samples: roles on the reference grid, held to SimpleITK and to a synthetic study of known geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

import dicomml
from dicomml.assemble import load_files
from dicomml.errors import FrameOfReferenceError
from dicomml.study import StudyConfig, compute_study, resample_roles, role_volume, study_sources
from dicomml.testing import data_root
from dicomml.testing.studies import SeriesGrid, write_study

ORIENTATION = "dcm_qa/In/Orientation"
#: dcm2niix's NIfTI of each series (SimpleITK cannot unpack Siemens mosaics; these are its voxels, see
#: tests/assemble/test_dcm2niix_reference.py).
REFERENCES = {"ax": "dcm_qa/Ref/ax_asc_35sl_6.nii", "cor": "dcm_qa/Ref/cor_asc_35sl_16.nii", "sag": "dcm_qa/Ref/sag_asc_35sl_22.nii"}


@pytest.fixture(scope="module")
def orientation_manifest(tmp_path_factory):
    folders = [str(data_root() / ORIENTATION / d) for d in ("ax", "cor", "sag")]
    return dicomml.index(folders, str(tmp_path_factory.mktemp("orientation") / "manifest"), workers=1, progress=False)


def _first_volume(path: str) -> sitk.Image:
    image = sitk.ReadImage(str(data_root() / path), sitk.sitkFloat32)
    return image[:, :, :, 0] if image.GetDimension() == 4 else image


@pytest.mark.parametrize("moving", ["cor", "sag"])
def test_orientation_study_matches_simpleitk_resample(orientation_manifest, moving):
    """Axial, coronal and sagittal series of one exam; the axial is the reference grid."""
    config = StudyConfig.from_dict(
        {
            "name": "orientation",
            "roles": {
                name: {"where": f"series_description = '{name}_asc_35sl'", "volumes": {"by": "index", "values": [0]}}
                for name in ("ax", "cor", "sag")
            },
            "reference": "ax",
            "deterministic": {"dtype": "float32"},
        }
    )
    (source,) = study_sources(orientation_manifest, config)
    sample = compute_study(orientation_manifest, source, config)
    reference = _first_volume(REFERENCES["ax"])
    expected = sitk.Resample(_first_volume(REFERENCES[moving]), reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    inside = sitk.Resample(_first_volume(REFERENCES[moving]) * 0 + 1, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    # SimpleITK's arrays are (z, y, x) of the NIfTI's (x, y, z) axes; bring ours to those axes
    nifti_affine = _nifti_affine(reference)
    ours = sample.image[config.role_names.index(moving)]
    ours = apply_orientation(ours, ornt_transform(io_orientation(sample.affine), io_orientation(nifti_affine)))
    theirs = sitk.GetArrayFromImage(expected).T
    overlap = sitk.GetArrayFromImage(inside).T > 0.999
    assert ours.shape == theirs.shape and overlap.mean() > 0.2
    span = float(theirs[overlap].max() - theirs[overlap].min())
    mad = float(np.abs(ours[overlap] - theirs[overlap]).mean())
    assert mad <= 0.01 * span, f"mean absolute difference {mad:.3f} over a range of {span:.1f}"
    assert sample.roles[moving]["present"] and sample.roles[moving]["volume_indices"] == [0]


def _nifti_affine(image: sitk.Image) -> np.ndarray:
    """RAS+ affine of a SimpleITK image (which is LPS+), (x, y, z) index order."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1, -1, 1]) @ direction
    affine[:3, 3] = np.diag([-1, -1, 1]) @ np.asarray(image.GetOrigin())
    return affine


def _centroid(channel: np.ndarray, floor: float = 700.0) -> np.ndarray:
    weight = np.clip(channel.astype(np.float64) - floor, 0, None)
    grid = np.indices(channel.shape).reshape(3, -1)
    return grid @ weight.ravel() / weight.sum()


def test_synthetic_offset_and_rotation_are_aligned_within_a_tenth_of_a_voxel(tmp_path):
    rotated = (np.cos(0.35), np.sin(0.35), 0.0, -np.sin(0.35) * 0.9, np.cos(0.35) * 0.9, np.sqrt(1 - 0.81))
    row, col = np.asarray(rotated[:3]), np.asarray(rotated[3:])
    col = col - row * (row @ col)
    col /= np.linalg.norm(col)
    files = write_study(
        tmp_path,
        [
            SeriesGrid("ref", shape=(40, 64, 64), spacing=(2.0, 2.0, 2.0)),
            # another spacing, an oblique orientation and a grid centre off by a known, non-integer offset
            SeriesGrid("moving", shape=(36, 96, 96), spacing=(2.6, 1.7, 1.7), orientation=(*row, *col), centre=(3.3, -2.1, 4.7), number=2),
        ],
    )
    volumes = {name: load_files(paths) for name, paths in files.items()}
    config = StudyConfig.from_dict(
        {
            "name": "s",
            "roles": {"ref": {"where": "true"}, "moving": {"where": "true"}},
            "reference": "ref",
            "deterministic": {"dtype": "float32"},
        }
    )
    sample = resample_roles(volumes, [], config)
    offset = _centroid(sample.image[1]) - _centroid(sample.image[0])
    assert np.abs(offset).max() < 0.1, f"channels differ by {offset} voxels"
    # the raw moving array is not aligned: the check above could fail
    raw = _centroid(volumes["moving"].array) * np.asarray(volumes["moving"].spacing) / 2.0
    assert np.abs(raw - _centroid(sample.image[0])).max() > 1.0


def test_missing_role_is_an_empty_channel_marked_absent(cohort, roles_config):
    config = roles_config(missing="empty", deterministic={"dtype": "float32"})
    sources = {s.study_uid: s for s in study_sources(cohort, config)}
    sample = compute_study(cohort, sources["1.2.826.0.1.3680043.8.498.2"], config)
    assert sample.image.shape[0] == 3 and not sample.roles["flair"]["present"] and sample.roles["t2"]["present"]
    assert not sample.image[2].any() and sample.image[1].any()
    # same phantom, same grid: t2 equals t1 up to interpolation (both were written on one grid here)
    np.testing.assert_allclose(sample.image[1], sample.image[0], atol=1.0)


def test_other_frame_of_reference_is_a_typed_error_unless_trusted(tmp_path):
    a = write_study(tmp_path / "a", [SeriesGrid("ref", shape=(8, 16, 16))])
    b = write_study(tmp_path / "b", [SeriesGrid("other", shape=(8, 16, 16), centre=(1.0, 0.0, 0.0))])
    volumes = {"ref": load_files(a["ref"]), "other": load_files(b["other"])}
    data = {"name": "s", "roles": {"ref": {"where": "true"}, "other": {"where": "true"}}, "reference": "ref"}
    with pytest.raises(FrameOfReferenceError, match="FrameOfReferenceUID .*trust_scanner_coordinates"):
        resample_roles(volumes, [], StudyConfig.from_dict(data))
    trusted = resample_roles(volumes, [], StudyConfig.from_dict({**data, "trust_scanner_coordinates": True}))
    assert trusted.image.shape == (2, 16, 16, 8) and trusted.roles["other"]["present"]


def test_a_4d_role_keeps_its_selected_volumes_as_a_leading_axis_or_reduces_them(tmp_path, roles_config):
    files = write_study(tmp_path, [SeriesGrid("ref", shape=(4, 8, 8))])
    volume = load_files(files["ref"])
    four = dicomml.Volume(np.stack([volume.array, volume.array]), volume.affine, ("time",), {**volume.meta, "volumes": {}})
    assert role_volume(four, roles_config().roles[0]).array.shape == (2, 4, 8, 8)
    reduced = role_volume(four, roles_config(role_t1={"volumes": {"by": "all", "reduce": "mean"}}).roles[0])
    np.testing.assert_allclose(reduced.array, volume.array)


def test_masks_of_another_role_come_along_on_the_reference_grid(tmp_path, sitk_image):
    from dicomml.sample import write_sample_study
    from dicomml.seg import load_mask

    write_sample_study(tmp_path / "dicom")
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)
    config = StudyConfig.from_dict(
        {
            "name": "ct_mr",
            "roles": {"mr": {"where": "modality = 'MR'"}, "ct": {"where": "modality = 'CT'"}},
            "reference": "mr",
            "deterministic": {"masks": ["*"], "dtype": "float32"},
        }
    )
    (source,) = study_sources(manifest, config)
    assert [role for role, _ in source.annotation_keys] == ["ct"]  # the SEG references the CT, not the reference
    sample = compute_study(manifest, source, config)
    ct = dicomml.load_series(manifest, dict(source.members)["ct"])
    mask = load_mask(manifest, source.annotation_keys[0][1], reference=ct, as_channels=True)
    assert sample.mask is not None and sample.mask.shape == (mask.array.shape[0], *sample.image.shape[1:])
    assert sample.mask_labels == ["ct/lesion", "ct/liver"]
    reference = sitk_image(sample.image[0], sample.affine)
    for c in range(mask.array.shape[0]):
        moved = sitk.Resample(
            sitk_image(mask.array[c].astype(np.uint8), mask.affine), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0
        )
        expected = sitk.GetArrayFromImage(moved).transpose(2, 1, 0)
        assert expected.any()
        # nearest neighbour on one grid: the same voxels, up to ties at exact half-voxel positions
        assert (sample.mask[c] != expected).mean() < 1e-3

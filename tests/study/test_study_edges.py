"""A role's edges on the reference grid, held to SimpleITK's ``Resample`` (linear, default value 0).

A role's field of view is its voxels' extent (outer voxel centres ± half a
voxel): inside it a reference voxel takes the interpolated value, the edge
value past the outer centres; outside it, exactly 0. SimpleITK resamples the
very voxels dicomml loaded (placed by their affine), so any difference is the
resampling's. Tolerances: ``1e-4`` of the role's largest value at every voxel
(float32 interpolation; blending with 0 at an edge would differ by a good
part of the edge value), and exactly 0 where SimpleITK's field of view ends.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

import dicomml
from dicomml.assemble import load_series
from dicomml.assemble.volumes import apply_selection
from dicomml.dicom.synthetic import write_slice
from dicomml.study import StudyConfig, compute_study, study_sources
from dicomml.testing import data_root
from dicomml.testing.studies import SeriesGrid, write_study

ORIENTATION = "dcm_qa/In/Orientation"
#: Sagittal: rows run head to feet, columns anterior to posterior.
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
#: Rotated 30 degrees about the feet-head axis and tilted 10 degrees.
OBLIQUE = (0.866025, 0.5, 0.0, -0.492404, 0.852869, 0.173648)


def _assert_matches_simpleitk(sample, volume, sitk_image) -> None:
    """The sample's second channel is SimpleITK's linear resampling of ``volume`` onto the sample's grid.

    Reference voxels whose centre lies within 2e-3 role voxels of the role's outer voxel edges are
    left out: there the two may count the centre on either side (SimpleITK's field of view is
    half-open, dicomml's closed to within 1e-3 voxels of float noise).
    """
    ours = sample.image[1]
    reference = sitk_image(np.zeros(ours.shape, np.float32), sample.affine)
    moving = sitk_image(np.asarray(volume.array, np.float32), volume.affine)
    theirs = sitk.GetArrayFromImage(sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)).T
    inside = sitk.GetArrayFromImage(sitk.Resample(moving * 0 + 1, reference, sitk.Transform(), sitk.sitkLinear, 0.0)).T > 0
    index_map = np.linalg.solve(volume.affine, sample.affine)
    grid = np.indices(ours.shape).reshape(3, -1)
    at = (index_map[:3, :3] @ grid + index_map[:3, 3:4]).T.reshape(*ours.shape, 3)  # role (i, j, k) of each voxel
    edges = np.asarray(volume.spatial_shape) - 0.5
    clear = ~np.any((np.abs(at + 0.5) < 2e-3) | (np.abs(at - edges) < 2e-3), axis=-1)
    assert inside[clear].any() and not inside[clear].all(), "the reference grid should reach past the role's edges"
    outside = ours[clear & ~inside]
    assert np.all(outside == 0), f"{np.count_nonzero(outside)} voxels outside the field of view are not 0 (max {np.abs(outside).max()})"
    worst = float(np.abs(ours - theirs)[clear].max())
    assert worst <= 1e-4 * float(np.abs(theirs).max()), f"max |dicomml - SimpleITK| {worst} (range {np.abs(theirs).max()})"


def test_a_slab_reads_its_value_to_half_a_voxel_past_its_outer_slices_and_zero_beyond(tmp_path, sitk_image):
    """5 sagittal slices 5 mm apart, all 100, onto a 1 mm axial grid: 100 out to x = ±12.5 mm, 0 beyond."""
    (tmp_path / "dicom").mkdir()
    study, frame = generate_uid(), generate_uid()
    common = {"StudyInstanceUID": study, "FrameOfReferenceUID": frame, "PatientID": "P1"}
    ct, mr = generate_uid(), generate_uid()
    for k in range(40):
        write_slice(
            tmp_path / f"dicom/ct{k}.dcm",
            np.full((40, 40), 1024, np.uint16),
            position=(-20.0, -20.0, -20.0 + k),
            series_uid=ct,
            instance=k + 1,
            extra=dict(common, SeriesNumber=1),
        )
    for k in range(5):  # x = -10, -5, 0, 5, 10 (LPS): the field of view is x in [-12.5, 12.5]
        write_slice(
            tmp_path / f"dicom/mr{k}.dcm",
            np.full((40, 40), 100, np.uint16),
            position=(-10.0 + 5 * k, -20.0, 19.0),
            orientation=SAGITTAL,
            series_uid=mr,
            instance=k + 1,
            modality="MR",
            rescale=None,
            extra=dict(common, SeriesNumber=2),
        )
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)
    config = StudyConfig.from_dict(
        {
            "name": "slab",
            "roles": {"ct": {"where": "modality = 'CT'"}, "mr": {"where": "modality = 'MR'"}},
            "reference": "ct",
            "deterministic": {"orientation": "RAS", "dtype": "float32"},
        }
    )
    (source,) = study_sources(manifest, config)
    sample = compute_study(manifest, source, config)
    slab = sample.image[1]
    x = sample.affine[0, 0] * np.arange(slab.shape[0]) + sample.affine[0, 3]  # RAS mm of each i (axis 0 runs along x)
    np.testing.assert_allclose(slab[np.abs(x) <= 12], 100, rtol=1e-6)
    assert np.all(slab[np.abs(x) >= 13] == 0)
    _assert_matches_simpleitk(sample, load_series(manifest, dict(source.members)["mr"]), sitk_image)


@pytest.fixture(scope="module")
def edge_study(tmp_path_factory):
    """An axial reference and three roles over part of it: sagittal, oblique, and a coarser axial grid sharing
    the reference's first corner (its edges on the reference's, its far side short of it)."""
    root = tmp_path_factory.mktemp("edges")
    write_study(
        root / "dicom",
        [
            SeriesGrid("ax", number=1, shape=(20, 24, 24), spacing=(2.0, 2.0, 2.0)),
            SeriesGrid("sag", number=2, shape=(10, 16, 16), spacing=(3.0, 2.5, 2.5), orientation=SAGITTAL, centre=(4.3, -3.2, 5.1)),
            SeriesGrid("obl", number=3, shape=(12, 20, 20), spacing=(2.5, 2.0, 2.0), orientation=OBLIQUE, centre=(-2.7, 3.1, -1.3)),
            SeriesGrid("coarse", number=4, shape=(6, 8, 8), spacing=(4.0, 4.0, 4.0), centre=(-8.0, -8.0, -8.0)),
        ],
    )
    return dicomml.index(str(root / "dicom"), str(root / "manifest"), workers=1, progress=False)


@pytest.mark.parametrize("role", ["sag", "obl", "coarse"])
@pytest.mark.parametrize("deterministic", [{}, {"orientation": "RAS", "spacing": [1.5, 1.5, 1.5]}], ids=["native", "RAS-1.5mm"])
def test_synthetic_roles_match_simpleitk_at_every_voxel(edge_study, sitk_image, role, deterministic):
    config = StudyConfig.from_dict(
        {
            "name": "edges",
            "roles": {name: {"where": f"series_description = '{name}'"} for name in ("ax", role)},
            "reference": "ax",
            "deterministic": {"dtype": "float32", **deterministic},
        }
    )
    (source,) = study_sources(edge_study, config)
    sample = compute_study(edge_study, source, config)
    _assert_matches_simpleitk(sample, load_series(edge_study, dict(source.members)[role]), sitk_image)


@pytest.fixture(scope="module")
def orientation_manifest_for_edges(tmp_path_factory):
    folders = [str(data_root() / ORIENTATION / d) for d in ("ax", "cor", "sag")]
    return dicomml.index(folders, str(tmp_path_factory.mktemp("orientation") / "manifest"), workers=1, progress=False)


@pytest.mark.parametrize("moving", ["cor", "sag"])
@pytest.mark.parametrize("deterministic", [{}, {"orientation": "RAS", "spacing": [2.5, 2.5, 2.5]}], ids=["native", "RAS-2.5mm"])
def test_corpus_roles_match_simpleitk_at_every_voxel(orientation_manifest_for_edges, sitk_image, moving, deterministic):
    """Axial, coronal and sagittal series of one exam (dcm_qa): their fields of view differ, so the edges count."""
    config = StudyConfig.from_dict(
        {
            "name": "orientation",
            "roles": {
                name: {"where": f"series_description = '{name}_asc_35sl'", "volumes": {"by": "index", "values": [0]}}
                for name in ("ax", moving)
            },
            "reference": "ax",
            "deterministic": {"dtype": "float32", **deterministic},
        }
    )
    (source,) = study_sources(orientation_manifest_for_edges, config)
    sample = compute_study(orientation_manifest_for_edges, source, config)
    role = config.roles[1]
    volume = apply_selection(load_series(orientation_manifest_for_edges, dict(source.members)[moving]), role.volumes)
    _assert_matches_simpleitk(sample, volume, sitk_image)


def test_a_copy_of_the_reference_on_another_grid_equals_the_reference_up_to_its_edges(tmp_path):
    """The same voxel centres stored axial (the reference) and sagittal (a role): resampled to 3 mm and padded,
    the role's channel is the reference's, edges and padding included."""
    cube = {"shape": (8, 8, 8), "spacing": (4.0, 4.0, 4.0)}
    write_study(tmp_path / "dicom", [SeriesGrid("ax", number=1, **cube), SeriesGrid("sag", number=2, orientation=SAGITTAL, **cube)])
    manifest = dicomml.index(str(tmp_path / "dicom"), str(tmp_path / "manifest"), workers=1, progress=False)
    config = StudyConfig.from_dict(
        {
            "name": "copy",
            "roles": {"ax": {"where": "series_description = 'ax'"}, "sag": {"where": "series_description = 'sag'"}},
            "reference": "ax",
            "deterministic": {"orientation": "RAS", "spacing": [3.0, 3.0, 3.0], "shape": [15, 15, 15], "dtype": "float32"},
        }
    )
    (source,) = study_sources(manifest, config)
    sample = compute_study(manifest, source, config)
    reference, copy = sample.image
    assert np.all(reference[:2] == 0) and np.any(reference[2] != 0)  # padding, then the reference's first plane
    np.testing.assert_allclose(copy, reference, rtol=0, atol=1e-4 * float(reference.max()))

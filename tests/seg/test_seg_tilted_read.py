"""A SEG on a gantry-tilted CT (a sheared stack) read onto the grid that on_irregular="resample" gives its image."""

from __future__ import annotations

import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid
from seg_refs import to_sitk, write_seg

import dicomml
from dicomml.errors import SegReferenceError
from dicomml.geometry import dicom_affine
from dicomml.seg import seg_to_grid
from dicomml.seg._grid import stack_grid

TILTED = "dicom2nifti/tests/data/failing/gantrytilting/001"


@pytest.fixture(scope="module")
def tilted(tmp_path_factory, data_dir):
    """dicom2nifti's 14 degree gantry-tilt CT (4 slices) with a Frame of Reference UID (a SEG needs one), and a SEG of a box."""
    folder = tmp_path_factory.mktemp("tilted")
    frame = generate_uid()
    headers = []
    for path in sorted((data_dir / TILTED).glob("*.dcm")):
        shutil.copy(path, folder / path.name)
        ds = pydicom.dcmread(folder / path.name)
        ds.FrameOfReferenceUID = frame
        for keyword in ("AccessionNumber", "StudyID", "ReferringPhysicianName", "PatientSex", "PatientBirthDate", "SliceThickness"):
            setattr(ds, keyword, ds.get(keyword, ""))
        ds.save_as(folder / path.name)
        headers.append(ds)
    headers.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    box = np.zeros((len(headers), headers[0].Rows, headers[0].Columns), np.uint8)
    box[:, 200:300, 150:350] = 1
    seg = write_seg(folder / "seg.dcm", headers, box, "BINARY", 1)
    return folder, headers, box, seg


def test_a_seg_on_a_tilted_ct_lands_where_simpleitk_resamples_its_frames(tilted) -> None:
    folder, headers, box, seg = tilted
    files = sorted(folder.glob("IM-*.dcm"))
    image = dicomml.load_files(files, on_irregular="resample")
    mask = seg_to_grid(seg, image)
    # the oracle: the frames as highdicom decodes them, on their own sheared grid, SimpleITK nearest onto the image's
    frames = hd.seg.segread(seg).get_pixels_by_source_instance([ds.SOPInstanceUID for ds in headers], segment_numbers=[1])[..., 0]
    assert np.array_equal(frames, box)
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in headers])
    sheared = dicom_affine(headers[0].ImageOrientationPatient, headers[0].PixelSpacing, positions[0], (positions[-1] - positions[0]) / 3)
    target = to_sitk(np.zeros(image.spatial_shape, np.uint8), image.affine)
    nearest = sitk.Resample(to_sitk(frames, sheared), target, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert mask.meta["resampled"] and int(mask.array.sum()) == int(box.sum())
    assert np.array_equal(mask.array, sitk.GetArrayFromImage(nearest))
    # and the same place as on the slices kept as they are
    kept = seg_to_grid(seg, dicomml.load_files(files, on_irregular="keep")).array
    assert np.array_equal(kept, box)


def test_planes_that_are_not_whole_steps_of_one_vector_form_no_grid() -> None:
    orientation, spacing = [1.0, 0, 0, 0, 1, 0], [1.0, 1.0]
    sparse = np.array([[0, 0, 0], [0, 1.0, 4], [0, 1.5, 6]])  # a sheared stack with one slice missing
    affine, shape = stack_grid(orientation, spacing, sparse, (8, 8))
    assert shape == (4, 8, 8) and np.allclose(affine[:3, 0], [0, -0.5, 2])
    assert stack_grid(orientation, spacing, np.array([[0, 0, 0], [0, 0.5, 2], [0, 0.5, 5]]), (8, 8)) is None  # uneven
    assert stack_grid(orientation, spacing, np.array([[0, 0, 0], [0, 0.5, 2], [0, 3, 4]]), (8, 8)) is None  # bent


def test_an_uneven_seg_off_the_grid_is_refused_saying_so(tilted) -> None:
    folder, headers, box, _ = tilted
    image = dicomml.load_files(sorted(folder.glob("IM-*.dcm")), on_irregular="resample")
    uneven = write_seg(folder / "uneven.dcm", headers, box, "BINARY", 1)
    ds = pydicom.dcmread(uneven)
    last = ds.PerFrameFunctionalGroupsSequence[-1].PlanePositionSequence[0]
    last.ImagePositionPatient = [float(v) + (3.0 if i == 2 else 0.0) for i, v in enumerate(last.ImagePositionPatient)]
    ds.save_as(uneven)
    with pytest.raises(SegReferenceError, match="not whole steps of one vector"):
        seg_to_grid(uneven, image)

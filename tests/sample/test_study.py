"""The sample study: real DICOM that outside readers (pydicom, SimpleITK, highdicom) place right."""

from __future__ import annotations

import hashlib

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from dicomml.sample import write_sample_study
from dicomml.sample.phantom import LESION_CENTRE, LESION_RADIUS


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return write_sample_study(tmp_path_factory.mktemp("sample"))


def read_series(paths) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])  # in InstanceNumber order, not sorted: SimpleITK sorts itself
    return reader.Execute()


def value_at_ras(image: sitk.Image, ras) -> float:
    """Voxel value nearest a RAS+ point (mm), through SimpleITK's own LPS+ geometry."""
    lps = (-ras[0], -ras[1], ras[2])
    return float(image[image.TransformPhysicalPointToIndex(lps)])


def test_sample_is_small_and_complete(study):
    written = study
    assert (len(written.ct), len(written.mr)) == (80, 28)
    total = sum(p.stat().st_size for p in (*written.ct, *written.mr, written.seg))
    assert total < 6_000_000
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in (written.ct[0], written.mr[0], written.seg)]
    assert [h.Modality for h in headers] == ["CT", "MR", "SEG"]
    assert len({h.StudyInstanceUID for h in headers}) == 1
    assert headers[0].FrameOfReferenceUID == headers[1].FrameOfReferenceUID == headers[2].FrameOfReferenceUID


def test_same_seed_same_bytes_other_seed_other_uids(tmp_path):
    a = write_sample_study(tmp_path / "a", seed=7)
    b = write_sample_study(tmp_path / "b", seed=7)
    c = write_sample_study(tmp_path / "c", seed=8)
    digest = lambda paths: [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]  # noqa: E731
    assert digest((*a.ct, *a.mr, a.seg)) == digest((*b.ct, *b.mr, b.seg))
    assert {a.ct_series_uid, a.mr_series_uid}.isdisjoint({c.ct_series_uid, c.mr_series_uid})


def test_ct_lesion_sits_in_the_right_lung_for_simpleitk(study):
    written = study
    ct = read_series(written.ct)
    assert ct.GetSize() == (128, 128, 80)
    assert value_at_ras(ct, LESION_CENTRE) == pytest.approx(35, abs=60)  # soft tissue, HU after rescale
    mirrored = (-LESION_CENTRE[0], LESION_CENTRE[1], LESION_CENTRE[2])
    assert value_at_ras(ct, mirrored) < -600  # the left lung is air-filled there
    assert value_at_ras(ct, (0.0, -55.0, 0.0)) > 500  # spine: posterior midline bone
    assert value_at_ras(ct, (0.0, 0.0, 0.0)) > -200 and value_at_ras(ct, (0.0, 125.0, 0.0)) < -900  # body, air


def test_sagittal_mr_shows_the_liver_on_the_patient_right(study):
    written = study
    mr = read_series(written.mr)
    direction = np.array(mr.GetDirection()).reshape(3, 3)
    assert np.allclose(np.abs(direction[:, 2]), [1, 0, 0])  # slices stack along left-right: sagittal
    liver, mirrored = value_at_ras(mr, (45.0, 5.0, -40.0)), value_at_ras(mr, (-45.0, 5.0, -40.0))
    assert liver == pytest.approx(550, abs=100) and abs(mirrored - 450) < 100  # liver vs muscle signal


def test_seg_segments_are_where_highdicom_puts_them(study):
    written = study
    seg = hd.seg.segread(written.seg)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion", "liver"]
    assert seg.get_source_image_uids()[0][1] == written.ct_series_uid
    lesion = seg.get_volume(segment_numbers=[1], combine_segments=True)
    centre_lps = lesion.affine @ np.append(np.argwhere(lesion.array > 0).mean(axis=0), 1.0)
    centre_ras = centre_lps[:3] * [-1, -1, 1]
    assert np.linalg.norm(centre_ras - LESION_CENTRE) < 2.0
    voxel_mm3 = 2.0 * 2.0 * 2.5
    sphere_mm3 = 4 / 3 * np.pi * LESION_RADIUS**3
    assert (lesion.array > 0).sum() * voxel_mm3 == pytest.approx(sphere_mm3, rel=0.15)

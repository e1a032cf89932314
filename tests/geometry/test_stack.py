import numpy as np
import pytest

from dicomml.errors import GeometryError
from dicomml.geometry import analyze_stack, dicom_affine, slice_normal

AXIAL = [1, 0, 0, 0, 1, 0]


def test_sort_uses_slice_normal_not_input_order():
    pos = np.array([[0, 0, z] for z in (4.0, 0.0, 2.0, 6.0)])
    g = analyze_stack(pos, AXIAL)
    assert g.order.tolist() == [1, 2, 0, 3]
    assert g.spacing == 2.0 and g.uniform and g.problem() is None


def test_oblique_normal_orders_by_projection():
    iop = [1, 0, 0, 0, np.cos(0.3), -np.sin(0.3)]
    n = slice_normal(iop)
    pos = np.array([k * 3.0 * n + [5, 7, 9] for k in (2, 0, 1)])
    g = analyze_stack(pos, iop)
    assert g.order.tolist() == [1, 2, 0]
    assert g.spacing == pytest.approx(3.0)
    assert g.tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_missing_slice_is_counted():
    pos = np.array([[0, 0, z] for z in (18.1, 23.1, 28.1, 38.1)])
    g = analyze_stack(pos, AXIAL)
    assert g.missing == 1
    assert "gap" in g.problem()


def test_repeated_positions_make_volumes_not_duplicates():
    pos = np.array([[0, 0, z] for z in (0, 1, 2)] * 3, dtype=float)
    g = analyze_stack(pos, AXIAL)
    assert g.n_volumes == 3 and g.duplicates == 0 and g.problem() is None


def test_uneven_repeats_are_duplicates():
    pos = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1.0]])
    g = analyze_stack(pos, AXIAL)
    assert g.n_volumes == 0 and g.duplicates == 1
    assert "duplicate" in g.problem()


def test_tilt_angle_measured_from_positions():
    angle = np.radians(14.0)
    pos = np.array([[0, k * np.tan(angle), k] for k in range(4)], dtype=float)
    g = analyze_stack(pos, AXIAL)
    assert g.tilt_deg == pytest.approx(14.0, abs=1e-6)
    assert "tilt" in g.problem()


def test_affine_maps_first_voxel_to_origin_in_ras():
    a = dicom_affine(AXIAL, [0.5, 0.7], [10, 20, 30], [0, 0, 2])
    assert a[:3, 3].tolist() == [-10.0, -20.0, 30.0]
    # column index moves along the row cosine (LPS x -> RAS -x) by column spacing
    assert a[:3, 2].tolist() == [-0.7, 0.0, 0.0]
    assert a[:3, 1].tolist() == [0.0, -0.5, 0.0]


def test_bad_orientation_is_a_geometry_error():
    with pytest.raises(GeometryError):
        dicom_affine([1, 0, 0, 1, 0, 0], [1, 1], [0, 0, 0], [0, 0, 1])

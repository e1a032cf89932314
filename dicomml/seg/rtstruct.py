"""RTSTRUCT CLOSED_PLANAR contours rasterized onto a reference grid.

Each contour's points (LPS+ mm) are mapped through the reference affine into
grid indices, so axial, coronal, sagittal and oblique series are all the same
case: a contour must lie in one grid slice (the nearest is taken and the
distance reported), and the contours of one ROI on one plane are filled
together by the even-odd rule, so an inner contour is a hole. When contours
of several planes fall on one slice (a grid with coarser slices than the
contours'), the slice takes the plane nearest to it, and a plane reaches a
slice only within half the step between the ROI's planes: what resampling the
mask drawn on the contours' planes with nearest neighbour gives. Planes are
never filled together. A voxel is in the ROI when its centre is inside, or
lies on a contour (as OpenCV's ``fillPoly`` paints outlines), so masks that
tools such as rt-utils traced along pixel centres come back unchanged.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from dicomml.dicom.io import read_dataset
from dicomml.errors import (
    InvalidDicomFileError,
    SegmentNotFoundError,
    SegmentOverlapError,
    SegReferenceError,
)
from dicomml.geometry import LPS_TO_RAS
from dicomml.geometry.checks import POSITION_LIMIT_MM
from dicomml.seg._grid import ALIGN_TOLERANCE, nominal_slice_positions, paint_label, tolerance_voxels
from dicomml.seg._link import check_frame_of_reference, describe
from dicomml.volume import Volume

__all__ = ["fill_polygons", "rtstruct_to_grid"]

#: A pixel centre this close (pixels) to a contour counts as on it.
ON_EDGE_TOLERANCE = 1e-3

_Source = Union[str, "os.PathLike[str]", Dataset]


def fill_polygons(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterize closed polygons together by the even-odd rule.

    Parameters
    ----------
    polygons
        Each an (n, 2) array of vertices in pixel indices (row, column); the
        last vertex connects back to the first.
    shape
        (rows, columns) of the output.

    Returns
    -------
    numpy.ndarray
        bool (rows, columns): pixels whose centre is inside an odd number of
        polygons, or on a polygon's edge.

    Examples
    --------
    >>> square = np.array([[0, 0], [0, 4], [4, 4], [4, 0]], float)
    >>> hole = np.array([[1.5, 1.5], [1.5, 2.5], [2.5, 2.5], [2.5, 1.5]])
    >>> int(fill_polygons([square, hole], (6, 6)).sum())
    24
    """
    out = np.zeros(shape, dtype=bool)
    if not polygons:
        return out
    start = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
    end = np.concatenate([np.roll(np.asarray(p, dtype=np.float64).reshape(-1, 2), -1, axis=0) for p in polygons])
    # work in the polygons' bounding box only: structures are small next to the slice
    low = np.maximum(np.floor(start.min(axis=0)).astype(np.int64) - 1, 0)
    high = np.minimum(np.ceil(start.max(axis=0)).astype(np.int64) + 2, shape)
    if np.any(high <= low):
        return out
    box = (int(high[0] - low[0]), int(high[1] - low[1]))
    start, end = start - low, end - low
    parity = _crossings(start, end, box)
    inside = (np.cumsum(parity[:, : box[1]], axis=1) % 2).astype(bool)
    out[low[0] : high[0], low[1] : high[1]] = inside | _outline(start, end, box)
    return out


def _spans(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For integer ranges ``first[e]..last[e]`` (inclusive): each value and the range it belongs to."""
    counts = np.maximum(last - first + 1, 0)
    owner = np.repeat(np.arange(len(first)), counts)
    value = first[owner] + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return value, owner


def _crossings(start: np.ndarray, end: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Edge crossings of each pixel-centre row, counted at the first pixel right of them (half-open rule)."""
    rows, cols = shape
    width = cols + 1
    lo = np.minimum(start[:, 0], end[:, 0])
    hi = np.maximum(start[:, 0], end[:, 0])
    first = np.maximum(np.ceil(lo), 0).astype(np.int64)
    last = np.minimum(np.ceil(hi) - 1, rows - 1).astype(np.int64)  # rows y with lo <= y < hi
    y, e = _spans(first, last)
    t = (y - start[e, 0]) / (end[e, 0] - start[e, 0])
    x = start[e, 1] + t * (end[e, 1] - start[e, 1])
    column = np.clip(np.floor(x).astype(np.int64) + 1, 0, width - 1)  # centres right of x
    return np.bincount(y * width + column, minlength=rows * width).reshape(rows, width)


def _outline(start: np.ndarray, end: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixel centres that lie on an edge (within ``ON_EDGE_TOLERANCE`` pixels)."""
    rows, cols = shape
    tol = ON_EDGE_TOLERANCE
    edge = np.zeros(shape, dtype=bool)
    flat = np.abs(end[:, 0] - start[:, 0]) <= tol
    # along a row: on it only if the row is a pixel-centre row
    a, b = start[flat], end[flat]
    row = np.rint(a[:, 0]).astype(np.int64)
    keep = (np.abs(a[:, 0] - row) <= tol) & (row >= 0) & (row < rows)
    lo, hi = np.minimum(a[:, 1], b[:, 1])[keep], np.maximum(a[:, 1], b[:, 1])[keep]
    x, e = _spans(np.maximum(np.ceil(lo - tol), 0).astype(np.int64), np.minimum(np.floor(hi + tol), cols - 1).astype(np.int64))
    edge[row[keep][e], x] = True
    a, b = start[~flat], end[~flat]
    lo, hi = np.minimum(a[:, 0], b[:, 0]), np.maximum(a[:, 0], b[:, 0])
    y, e = _spans(np.maximum(np.ceil(lo - tol), 0).astype(np.int64), np.minimum(np.floor(hi + tol), rows - 1).astype(np.int64))
    t = np.clip((y - a[e, 0]) / (b[e, 0] - a[e, 0]), 0.0, 1.0)
    x = a[e, 1] + t * (b[e, 1] - a[e, 1])
    x_int = np.rint(x).astype(np.int64)
    on = (np.abs(x - x_int) <= tol) & (x_int >= 0) & (x_int < cols)
    edge[y[on], x_int[on]] = True
    return edge


def _name(ds: Dataset) -> str:
    return str(getattr(ds, "filename", None) or f"RTSTRUCT {ds.get('SOPInstanceUID', '?')}")


def _read(source: _Source) -> Dataset:
    if isinstance(source, Dataset):
        return source
    ds = read_dataset(source, pixels=True)
    if ds.get("Modality") != "RTSTRUCT" or "ROIContourSequence" not in ds:
        raise InvalidDicomFileError(
            f"{source}: (0008,0060) Modality {ds.get('Modality')!r} without (3006,0039) ROI Contour Sequence; expected an RT Structure Set",
            path=str(source),
            tag="(0008,0060)",
        )
    return ds


def _roi_number(ds: Dataset, item: Dataset, keyword: str, tag: str, where: str) -> int:
    """An ROI number (ROINumber or ReferencedROINumber) as an int, or an error naming the file and item."""
    try:
        return int(item.get(keyword))
    except (TypeError, ValueError) as exc:
        raise InvalidDicomFileError(
            f"{_name(ds)}: {tag} {keyword} {item.get(keyword)!r} of {where} is not an integer; expected the ROI's number",
            path=_name(ds),
            tag=tag,
        ) from exc


def _roi_names(ds: Dataset) -> dict[int, str]:
    """ROI number -> ROIName of every ROI of the (3006,0020) Structure Set ROI Sequence, in file order."""
    names: dict[int, str] = {}
    for i, item in enumerate(ds.get("StructureSetROISequence", []), 1):
        number = _roi_number(ds, item, "ROINumber", "(3006,0022)", f"item {i} of (3006,0020) Structure Set ROI Sequence")
        if number in names:
            raise InvalidDicomFileError(
                f"{_name(ds)}: (3006,0022) ROI Number {number} is used by ROIs {names[number]!r} and "
                f"{str(item.get('ROIName', ''))!r}; expected each ROI to have its own number",
                path=_name(ds),
                tag="(3006,0022)",
            )
        names[number] = str(item.get("ROIName", ""))
    return names


def _select_rois(ds: Dataset, names: dict[int, str], rois: int | str | Sequence[int | str] | None) -> dict[int, str]:
    """ROI number -> name of those asked among ``names`` (:func:`_roi_names`), in the order asked (all when ``None``)."""
    if rois is None:
        return names
    chosen: dict[int, str] = {}
    for item in [rois] if isinstance(rois, (int, str)) else rois:
        found = [n for n, name in names.items() if (name == item if isinstance(item, str) else n == item)]
        if not found:
            have = ", ".join(f"{n}: {name!r}" for n, name in names.items())
            raise SegmentNotFoundError(
                f"{_name(ds)}: (3006,0020) Structure Set ROI Sequence has no ROI {item!r}; it has {have}",
                path=_name(ds),
                tag="(3006,0020)",
            )
        chosen.update((n, names[n]) for n in found)
    return chosen


def _contours(ds: Dataset, names: dict[int, str], numbers: dict[int, str]) -> tuple[dict[int, list[np.ndarray]], dict[str, int]]:
    """CLOSED_PLANAR contour points (LPS+ mm) per chosen ROI, and how many others were skipped.

    Every (3006,0039) ROI Contour Sequence item must reference a ROI of the
    Structure Set ROI Sequence, once: contours of no ROI would be lost silently.
    """
    contours: dict[int, list[np.ndarray]] = {n: [] for n in numbers}
    skipped: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    for i, roi in enumerate(ds.ROIContourSequence, 1):
        number = _roi_number(ds, roi, "ReferencedROINumber", "(3006,0084)", f"item {i} of (3006,0039) ROI Contour Sequence")
        if number not in names or number in seen:
            problem = "a second time" if number in seen else f"but (3006,0020) Structure Set ROI Sequence has only {sorted(names)}"
            raise InvalidDicomFileError(
                f"{_name(ds)}: item {i} of (3006,0039) ROI Contour Sequence references (3006,0084) ROI {number} {problem}; "
                "expected one item per ROI of the structure set",
                path=_name(ds),
                tag="(3006,0084)",
            )
        seen.add(number)
        if number not in contours:
            continue
        for j, item in enumerate(roi.get("ContourSequence", []), 1):
            kind = str(item.get("ContourGeometricType", ""))
            if kind != "CLOSED_PLANAR":
                skipped[f"{numbers[number]}: {kind}"] += 1
                continue
            contours[number].append(_points(item, _name(ds), f"contour {j} of ROI {numbers[number]!r}"))
    return contours, dict(skipped)


def _points(item: Dataset, name: str = "RTSTRUCT", what: str = "a contour") -> np.ndarray:
    """(3006,0050) Contour Data as (n, 3) floats (LPS+ mm), parsed from the raw bytes when still raw (pydicom's DS objects are slow).

    Raises InvalidDicomFileError, naming ``name`` and ``what``, unless the
    values are finite numbers, a non-zero multiple of three, within
    :data:`~dicomml.geometry.checks.POSITION_LIMIT_MM` of the origin.
    """
    raw = item.get_item(0x30060050)
    try:
        if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
            values = np.array(raw.value.split(b"\\") if raw.value.strip() else [], dtype=bytes).astype(np.float64)
        else:
            data = item.get("ContourData")
            values = np.asarray([] if data is None else data, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise InvalidDicomFileError(
            f"{name}: (3006,0050) Contour Data of {what} holds a value that is not a number ({exc})", path=name, tag="(3006,0050)"
        ) from exc
    if values.size == 0 or values.size % 3:
        problem = f"has {values.size} values; expected x, y, z for each of at least one point"
    elif not np.all(np.isfinite(values)):
        problem = "holds NaN or infinite values"
    elif np.max(np.abs(values)) > POSITION_LIMIT_MM:
        problem = f"has a coordinate of {np.max(np.abs(values)):g} mm, past the {POSITION_LIMIT_MM:g} mm (1 km) limit"
    else:
        return values.reshape(-1, 3)
    raise InvalidDicomFileError(f"{name}: (3006,0050) Contour Data of {what} {problem}", path=name, tag="(3006,0050)")


#: One contour on the grid: its level (fractional slice index), its spread along the slice axis (voxels), its polygon.
_Contour = tuple[float, float, np.ndarray]


def _planes(contours: list[_Contour], tolerance: float) -> list[list[_Contour]]:
    """Contours along one grid axis grouped into the planes they were drawn on.

    Sorted by level, a new plane starts wherever the level steps by more than
    ``tolerance`` voxels plus the contours' largest spread (a plane slightly
    tilted against the grid puts its contours at levels about that far apart).
    """
    ordered = sorted(contours, key=lambda item: item[0])
    tilt = max(item[1] for item in ordered)
    planes = [[ordered[0]]]
    for item in ordered[1:]:
        if item[0] - planes[-1][-1][0] > tolerance + tilt:
            planes.append([])
        planes[-1].append(item)
    return planes


def _drawn_planes(
    by_axis: dict[int, list[_Contour]],
    tolerance: np.ndarray,
    nominal: str | None,
    name: str,
    roi_name: str,
    reference: Volume,
) -> Iterator[tuple[int, int, list[_Contour]]]:
    """(axis, slice, contours of the plane drawn there) for one ROI: nearest neighbour between planes and slices.

    Each plane goes to its nearest slice. A slice that several planes go to
    takes the nearest of them, and a plane reaches its slice only within half
    the median step between the ROI's planes, so a slice between planes, past
    the ROI's end, stays empty: what resampling the mask drawn on the planes'
    own slices with nearest neighbour gives. The planes are never filled
    together, which would cut rings into the mask.

    Raises
    ------
    SegReferenceError
        If the reference's affine is ``nominal`` (a stack kept irregular) and
        a plane is off its slice by more than ``tolerance`` or several planes
        go to one slice: where its slices lie is not known.
    """
    spacing = np.asarray(reference.spacing, dtype=np.float64)
    for axis, drawn in by_axis.items():
        planes = _planes(drawn, float(tolerance[axis]))
        levels = np.array([np.mean([item[0] for item in plane]) for plane in planes])
        reach = float(np.median(np.diff(levels))) / 2 if levels.size > 1 else np.inf
        on_slice: dict[int, list[int]] = defaultdict(list)
        for i, level in enumerate(levels):
            on_slice[int(np.rint(level))].append(i)
        for k, members in on_slice.items():
            nearest = min(members, key=lambda i: abs(levels[i] - k))
            if nominal is not None and (len(members) > 1 or abs(levels[nearest] - k) > tolerance[axis]):
                offsets = ", ".join(f"{(levels[i] - k) * spacing[axis]:+.2f}" for i in members)
                raise SegReferenceError(
                    f"{name}: contours of ROI {roi_name!r} on {len(members)} plane(s) {offsets} mm from slice {k} of axis "
                    f"{axis} of {describe(reference)} are not on its slices, whose positions are irregular "
                    f"({nominal.split(':')[0]}): kept as they are, its affine is nominal and does not say where each "
                    "slice lies; load the series with on_irregular='resample'",
                    path=name,
                    series_uid=reference.meta.get("series_uid"),
                    tag="(3006,0050)",
                )
            if abs(levels[nearest] - k) <= reach + tolerance[axis]:
                yield axis, k, planes[nearest]


def rtstruct_to_grid(
    rtstruct: _Source,
    reference: Volume,
    *,
    rois: int | str | Sequence[int | str] | None = None,
    as_channels: bool = False,
) -> Volume:
    """Rasterize an RTSTRUCT's CLOSED_PLANAR contours onto a reference grid.

    Parameters
    ----------
    rtstruct
        A local path, fsspec URL or pydicom Dataset of an RT Structure Set.
    reference
        The image volume whose spatial grid (``spatial_shape``, ``affine``:
        indices to RAS+ mm, any axis order) the mask takes.
    rois
        ROI names (ROIName) or numbers (ROINumber); all ROIs when ``None``.
    as_channels
        ``True``: one uint8 channel per ROI, axes ``("segment",)``.
        ``False``: one label map holding ROI numbers (0 = none).

    Returns
    -------
    Volume
        On exactly the reference grid; ``meta``: ``kind="mask"``, ``labels``
        (ROI number -> ROIName, in channel order), ``residual_mm`` (largest
        distance between a drawn contour's plane and the slice it was drawn
        on), ``skipped_contours`` (non-CLOSED_PLANAR contours per ROI and
        type). On a grid with coarser slices than the contours', each slice
        holds the plane nearest to it, and only if that plane lies within
        half the median step between the ROI's planes (nearest neighbour, as
        resampling the mask drawn on the contours' own planes gives); other
        planes are left out, never filled together with it.

    Raises
    ------
    InvalidDicomFileError
        If Contour Data is not finite x, y, z triplets within 1 km, ROI numbers
        are not integers, repeated or undefined where contours reference them,
        or a label map is asked for ROI numbers outside 1..65535.
    SegReferenceError
        If the frame of reference differs from the reference's, a contour is
        not parallel to the grid's slices or lies outside them, or contours
        are not on the slices (within 0.05 voxel and 0.1 mm, one plane per
        slice) of a reference kept irregular, whose affine is nominal
        (``meta["nominal_affine"]``: kept with missing slices, uneven
        spacing, unequal repeats or frames without positions).
    SegmentNotFoundError
        If an asked ROI is absent.
    SegmentOverlapError
        If a label map is asked for ROIs that overlap (pass ``as_channels=True``).

    Examples
    --------
    >>> mask = rtstruct_to_grid("rt.dcm", load_files(ct_paths), rois="ROI-1")  # doctest: +SKIP
    >>> mask.meta["labels"]  # doctest: +SKIP
    {1: 'ROI-1'}
    """
    ds = _read(rtstruct)
    name = _name(ds)
    frames = [item.get("FrameOfReferenceUID") for item in ds.get("ReferencedFrameOfReferenceSequence", [])]
    series = [
        item.get("SeriesInstanceUID")
        for frame in ds.get("ReferencedFrameOfReferenceSequence", [])
        for study in frame.get("RTReferencedStudySequence", [])
        for item in study.get("RTReferencedSeriesSequence", [])
    ]
    check_frame_of_reference(name, frames, series, reference, "(3006,0024)")
    names = _roi_names(ds)
    chosen = _select_rois(ds, names, rois)
    contours, skipped = _contours(ds, names, chosen)
    shape = reference.spatial_shape
    to_grid = np.linalg.inv(reference.affine) @ LPS_TO_RAS
    spacing = np.asarray(reference.spacing)
    outside = [n for n in chosen if not 0 < n <= np.iinfo(np.uint16).max]
    if outside and not as_channels:
        raise InvalidDicomFileError(
            f"{name}: (3006,0022) ROI Number {outside[0]} of ROI {chosen[outside[0]]!r} cannot be a label map value "
            "(1 to 65535; 0 is none); pass as_channels=True",
            path=name,
            tag="(3006,0022)",
        )
    dtype = np.uint8 if as_channels or max(chosen, default=0) < 256 else np.uint16
    array = np.zeros(((len(chosen),) if as_channels else ()) + shape, dtype=dtype)
    tolerance = tolerance_voxels(spacing)
    nominal = nominal_slice_positions(reference.meta)
    residual = 0.0
    for channel, (number, roi_name) in enumerate(chosen.items()):
        by_axis: dict[int, list[_Contour]] = defaultdict(list)
        for points in contours[number]:
            index = points @ to_grid[:3, :3].T + to_grid[:3, 3]
            spread = index.max(axis=0) - index.min(axis=0)
            axis = int(np.argmin(spread))
            if spread[axis] > ALIGN_TOLERANCE:
                raise SegReferenceError(
                    f"{name}: a (3006,0050) Contour Data of ROI {roi_name!r} is not parallel to the slices of "
                    f"{describe(reference)} (it spans {spread.round(2).tolist()} voxels); expected a contour on "
                    "one slice",
                    path=name,
                    series_uid=reference.meta.get("series_uid"),
                    tag="(3006,0050)",
                )
            level = float(np.mean(index[:, axis]))
            k = int(np.rint(level))
            plane = np.delete(index, axis, axis=1)
            # wholly past the grid's slices, or beside every voxel of its slice: no voxel can hold it
            beside = np.any(plane.max(axis=0) < -0.5) or np.any(plane.min(axis=0) > np.delete(shape, axis) - 0.5)
            if not 0 <= k < shape[axis] or beside:
                at = f"beside the rows and columns of slice {k}" if 0 <= k < shape[axis] else f"at slice {level:.2f}"
                raise SegReferenceError(
                    f"{name}: a contour of ROI {roi_name!r} lies {at} of axis {axis}, outside "
                    f"{describe(reference)}; the RTSTRUCT does not belong to this image",
                    path=name,
                    series_uid=reference.meta.get("series_uid"),
                    tag="(3006,0050)",
                )
            by_axis[axis].append((level, float(spread[axis]), plane))
        target = array[channel] if as_channels else array
        for axis, k, nearest in _drawn_planes(by_axis, tolerance, nominal, name, roi_name, reference):
            residual = max(residual, max(abs(level - k) for level, _, _ in nearest) * float(spacing[axis]))
            plane_shape = tuple(s for a, s in enumerate(shape) if a != axis)
            inside = fill_polygons([polygon for _, _, polygon in nearest], plane_shape)  # type: ignore[arg-type]
            where: list[int | slice] = [slice(None)] * 3
            where[axis] = k
            region = target[tuple(where)]
            if as_channels:
                region[inside] = 1
                continue
            clash = paint_label(region, inside, number)
            if clash is not None:
                raise SegmentOverlapError(
                    f"{name}: ROIs {roi_name!r} and {chosen.get(clash, clash)!r} overlap, so "
                    "they cannot share one label map; pass as_channels=True",
                    path=name,
                )
    meta = {
        "kind": "mask",
        "labels": chosen,
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "source": name,
        "resampled": False,
        "residual_mm": residual,
        "skipped_contours": skipped,
    }
    return Volume(array, reference.affine.copy(), ("segment",) if as_channels else (), meta)

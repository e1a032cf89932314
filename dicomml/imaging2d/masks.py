"""Masks of a 2D image from the DICOM SEG and RTSTRUCT objects that reference it, on the sample's pixels.

highdicom reads each SEG's frames for the image's SOP Instance UID. An
RTSTRUCT's CLOSED_PLANAR contours that reference the image are filled in its
pixel grid (even-odd, as for volumes): through the image plane (Image
Position/Orientation (Patient), Pixel Spacing) when the image has one, the
contour having to lie in that plane. A contour without a Contour Image
Sequence (an RTSTRUCT may name only the series) is the image's when it lies
in the image's plane. A projection image (DX, MG, CR...) has no patient
coordinates: its contours' (x, y) are read as (column, row) pixel positions
(PS3.3 defines Contour Data in patient coordinates only), and a contour
naming no image cannot be placed on it.
The masks then take the image's display flips and its resize or letterbox
(nearest source pixel), so mask and image stay aligned pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydicom.dataset import Dataset

from dicomml.dicom.io import is_url, read_dataset
from dicomml.errors import SegReferenceError
from dicomml.imaging2d.resize import Placement, place
from dicomml.seg.rtstruct import _name, _points, _read, _roi_names, _roi_number, fill_polygons

if TYPE_CHECKING:
    from dicomml.sources import Remote

__all__ = ["contour_pixels", "displayed_masks", "image_masks", "rtstruct_masks", "sample_masks"]


def _plane(image: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The image plane: position, row axis, column axis, (row, column) spacing; None for a projection image."""
    position, orientation, spacing = (image.get(k) for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"))
    if position is None or orientation is None or spacing is None:
        return None
    return np.asarray(position, float), np.asarray(orientation[:3], float), np.asarray(orientation[3:], float), np.asarray(spacing, float)


def _off_plane(points: np.ndarray, plane: tuple[np.ndarray, ...]) -> float:
    """Largest distance (mm) of patient-coordinate points from the image plane."""
    position, row_axis, column_axis, _ = plane
    return float(np.abs((points - position) @ np.cross(row_axis, column_axis)).max())


def contour_pixels(points: np.ndarray, image: Dataset) -> np.ndarray:
    """(row, column) pixel positions of contour points (``(n, 3)``) on an image.

    Through the image plane when the image has Image Position/Orientation
    (Patient) and Pixel Spacing; else (projection images) the points' (x, y)
    as (column, row).

    Raises
    ------
    SegReferenceError
        If patient-coordinate points lie off the image plane by more than half a pixel.
    """
    plane = _plane(image)
    if plane is None:
        return points[:, [1, 0]]
    position, row_axis, column_axis, spacing = plane  # spacing: (between rows, between columns)
    off_plane = _off_plane(points, plane)
    if off_plane > spacing.min() / 2:
        name = str(getattr(image, "filename", None) or image.get("SOPInstanceUID", "?"))
        raise SegReferenceError(
            f"{name}: a contour referencing this image lies {off_plane:.2f} mm off its plane; the RTSTRUCT was drawn elsewhere",
            path=name,
            tag="(3006,0050)",
        )
    offset = points - position
    return np.stack([offset @ column_axis / spacing[0], offset @ row_axis / spacing[1]], axis=1)


def rtstruct_masks(rtstruct: str | Dataset, image: Dataset, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """``(S, rows, columns)`` uint8 masks of one image from an RTSTRUCT, one per ROI, and the ROI names.

    Each ROI's CLOSED_PLANAR contours whose Contour Image Sequence names the
    image are filled together (even-odd: an inner contour is a hole), and so
    are its contours without a Contour Image Sequence that lie in the image's
    plane (within half a pixel; a projection image has no plane, so none of
    those); an ROI without such a contour gives an empty mask.

    Raises
    ------
    InvalidDicomFileError
        If ``rtstruct`` is a path to a file that is not an RT Structure Set.
    SegReferenceError
        If a contour that names the image lies off its plane.
    """
    ds = _read(rtstruct)
    uid = str(image.SOPInstanceUID)
    plane = _plane(image)
    names = _roi_names(ds)
    polygons: dict[int, list[np.ndarray]] = {number: [] for number in names}
    for i, roi in enumerate(ds.get("ROIContourSequence", []), 1):
        number = _roi_number(ds, roi, "ReferencedROINumber", "(3006,0084)", f"item {i} of (3006,0039) ROI Contour Sequence")
        for j, item in enumerate(roi.get("ContourSequence", []), 1):
            if str(item.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            points = _points(item, _name(ds), f"contour {j} of ROI {names.get(number, number)!r}")
            images = {str(ref.ReferencedSOPInstanceUID) for ref in item.get("ContourImageSequence") or []}
            if images and uid not in images:
                continue
            if not images and (plane is None or _off_plane(points, plane) > plane[3].min() / 2):
                continue  # no reference: only a contour in this image's plane is this image's
            polygons.setdefault(number, []).append(contour_pixels(points, image))
    masks = [fill_polygons(polygons[n], shape) for n in polygons]
    labels = [names.get(n, str(n)) for n in polygons]
    return np.stack(masks).astype(np.uint8) if masks else np.zeros((0, *shape), np.uint8), labels


def image_masks(
    seg_paths: Sequence[str], sop_instance_uid: str, shape: tuple[int, int], image_path: str | None = None, remote: Remote | None = None
) -> tuple[np.ndarray, list[str]]:
    """``(S, rows, columns)`` uint8 masks of one image from SEG and RTSTRUCT files, and each segment's or ROI's label.

    Fractional segments count as present where their value exceeds one half.
    RTSTRUCTs need ``image_path`` (the image's header holds its plane).
    ``remote`` (a :class:`dicomml.sources.Remote`) says how to reach URLs.

    Raises
    ------
    SegReferenceError
        If a SEG has no frame for the image, or its frames are not the image's size.
    InvalidDicomFileError
        If a SEG is not one highdicom can parse.
    """
    planes, labels = [], []
    for path in seg_paths:
        # a remote SEG is fetched once, with its frames, through the Remote
        header = read_dataset(path, pixels=is_url(path), remote=remote)
        if str(header.get("Modality", "")) == "RTSTRUCT":
            masks, names = rtstruct_masks(header, read_dataset(image_path or "", pixels=False, remote=remote), shape)
            planes.append(masks)
            labels += names
            continue
        from dicomml.seg.dicomseg import read_segmentation  # highdicom's import: only for a SEG

        seg = read_segmentation(header if is_url(path) else path)
        try:
            pixels = seg.get_pixels_by_source_instance([sop_instance_uid], ignore_spatial_locations=True)
        except (ValueError, KeyError, IndexError) as exc:
            raise SegReferenceError(
                f"{path}: no segmentation frames for image {sop_instance_uid} ({exc}); the SEG does not reference it",
                path=str(path),
            ) from exc
        if pixels.shape[1:3] != tuple(shape):
            raise SegReferenceError(
                f"{path}: segmentation frames are {pixels.shape[1]}x{pixels.shape[2]}, the image {shape[0]}x{shape[1]}; "
                "the SEG was made on another rendition of the image",
                path=str(path),
            )
        planes.append(np.moveaxis(np.asarray(pixels[0]) > 0.5 if pixels.dtype.kind == "f" else np.asarray(pixels[0]) > 0, -1, 0))
        labels += [str(seg.get_segment_description(int(n)).segment_label) for n in seg.segment_numbers]
    return np.concatenate(planes).astype(np.uint8) if planes else np.zeros((0, *shape), np.uint8), labels


def displayed_masks(seg_paths: Sequence[str], meta: Mapping[str, Any], remote: Remote | None = None) -> tuple[np.ndarray, list[str]]:
    """An image's masks on its displayed pixels: :func:`image_masks` with the image's transpose and flips.

    ``meta`` is a loaded image's (:func:`~dicomml.imaging2d.load_image`): ``sop_instance_uid``,
    ``full_shape``, ``path``, ``flips``, ``transposed`` (absent: False).
    """
    masks, labels = image_masks(seg_paths, meta["sop_instance_uid"], tuple(meta["full_shape"]), meta["path"], remote)
    if meta.get("transposed"):
        masks = masks.transpose(0, 2, 1)
    if "horizontal" in meta["flips"]:
        masks = masks[:, :, ::-1]
    if "vertical" in meta["flips"]:
        masks = masks[:, ::-1, :]
    return np.ascontiguousarray(masks), labels


def sample_masks(
    seg_paths: Sequence[str], meta: Mapping[str, Any], size: tuple[int, int] | None, remote: Remote | None = None
) -> tuple[torch.Tensor, list[str]]:
    """An image's masks on its sample's pixels: :func:`displayed_masks`, then its placement (nearest).

    Parameters
    ----------
    seg_paths
        SEG and RTSTRUCT files referencing the image.
    meta
        The sample's meta (``sop_instance_uid``, ``full_shape``, ``flips``,
        ``scale``, ``offset``, ``placed_shape``).
    size
        The sample's output size (None when not resized).
    remote
        How to reach remote files: a :class:`dicomml.sources.Remote`.
    """
    masks, labels = displayed_masks(seg_paths, meta, remote)
    where = Placement(tuple(meta["scale"]), tuple(meta["offset"]), tuple(meta["placed_shape"]))  # type: ignore[arg-type]
    return place(torch.from_numpy(masks), where, size, label=True), labels

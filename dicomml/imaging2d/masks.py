"""Masks of a 2D image from the DICOM SEG objects that reference it, on the sample's pixels.

highdicom reads each SEG's frames for the image's SOP Instance UID; the
masks then take the image's display flips and its resize or letterbox
(nearest source pixel), so mask and image stay aligned pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dicomml._optional import require
from dicomml.errors import SegReferenceError
from dicomml.imaging2d.resize import Placement, place

__all__ = ["image_masks", "sample_masks"]


def image_masks(seg_paths: Sequence[str], sop_instance_uid: str, shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """``(S, rows, columns)`` uint8 masks of one image from SEG files, and each segment's label.

    Fractional segments count as present where their value exceeds one half.

    Raises
    ------
    SegReferenceError
        If a SEG has no frame for the image, or its frames are not the image's size.
    """
    hd = require("highdicom", extra="seg", feature="masks of 2D images")
    planes, labels = [], []
    for path in seg_paths:
        seg = hd.seg.segread(path)
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
    return np.concatenate(planes).astype(np.uint8), labels


def sample_masks(seg_paths: Sequence[str], meta: Mapping[str, Any], size: tuple[int, int] | None) -> tuple[torch.Tensor, list[str]]:
    """An image's masks on its sample's pixels: the image's flips, then its placement (nearest).

    Parameters
    ----------
    seg_paths
        SEG files referencing the image.
    meta
        The sample's meta (``sop_instance_uid``, ``full_shape``, ``flips``,
        ``scale``, ``offset``, ``placed_shape``).
    size
        The sample's output size (None when not resized).
    """
    masks, labels = image_masks(seg_paths, meta["sop_instance_uid"], tuple(meta["full_shape"]))
    if "horizontal" in meta["flips"]:
        masks = masks[:, :, ::-1]
    if "vertical" in meta["flips"]:
        masks = masks[:, ::-1, :]
    where = Placement(tuple(meta["scale"]), tuple(meta["offset"]), tuple(meta["placed_shape"]))  # type: ignore[arg-type]
    return place(torch.from_numpy(np.ascontiguousarray(masks)), where, size, label=True), labels

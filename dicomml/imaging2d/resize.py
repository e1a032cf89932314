"""Resizing 2D images to a network's input size: stretched, or letterboxed keeping the aspect ratio.

Downsampling averages the pixels each output pixel covers (``area``), so a
radiograph reduced 6x keeps its fine structure as mean intensity instead of
aliasing; upsampling is bilinear. The rule holds per axis: when one axis
shrinks and the other grows (``stretch``), the image is averaged along the
first, then interpolated along the second. The new pixel spacing and the placement
are returned, so that a prediction maps back onto the source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dicomml.errors import ConfigError

__all__ = ["RESIZE_MODES", "Placement", "fit", "place", "placement"]

#: ``letterbox`` keeps the aspect ratio and pads, ``stretch`` fills the size, ``none`` keeps the pixels.
RESIZE_MODES = ("letterbox", "stretch", "none")


@dataclass(frozen=True)
class Placement:
    """Where the source image lies in the output.

    Attributes
    ----------
    scale
        (row, column) output pixels per source pixel.
    offset
        (row, column) of the image's first pixel in the output (the padding before it).
    shape
        (rows, columns) the image covers in the output.
    """

    scale: tuple[float, float]
    offset: tuple[int, int]
    shape: tuple[int, int]

    def spacing(self, spacing: tuple[float, float] | None) -> tuple[float, float] | None:
        """Output pixel spacing (mm) from the source's (row, column) spacing, None if unknown."""
        if spacing is None:
            return None
        return spacing[0] / self.scale[0], spacing[1] / self.scale[1]


def placement(rows: int, columns: int, size: tuple[int, int] | None, mode: str = "letterbox") -> Placement:
    """Where a ``rows x columns`` image lands in an output of ``size`` under ``mode``.

    Examples
    --------
    >>> placement(300, 200, (100, 100))
    Placement(scale=(0.3333333333333333, 0.335), offset=(0, 16), shape=(100, 67))
    """
    if mode not in RESIZE_MODES:
        raise ConfigError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if size is None or mode == "none" or (rows, columns) == tuple(size):
        return Placement((1.0, 1.0), (0, 0), (rows, columns))
    out_rows, out_columns = int(size[0]), int(size[1])
    if mode == "stretch":
        shape = (out_rows, out_columns)
    else:
        factor = min(out_rows / rows, out_columns / columns)
        shape = (min(out_rows, max(1, round(rows * factor))), min(out_columns, max(1, round(columns * factor))))
    offset = ((out_rows - shape[0]) // 2, (out_columns - shape[1]) // 2)
    return Placement((shape[0] / rows, shape[1] / columns), offset, shape)


def place(x: torch.Tensor, where: Placement, size: tuple[int, int] | None, *, label: bool = False) -> torch.Tensor:
    """Resize ``(N, H, W)`` planes to ``where.shape`` and pad them to ``size`` at ``where.offset``.

    Images are area-averaged along an axis that shrinks and bilinear along one
    that grows (one pass when both go the same way, else one pass per axis,
    averaging first); label maps (``label=True``) take the nearest source
    pixel, so labels stay labels.
    """
    if tuple(x.shape[-2:]) != where.shape:
        if label:
            x = F.interpolate(x[None].float(), size=where.shape, mode="nearest-exact")[0].to(x.dtype)
        else:
            rows, columns = int(x.shape[-2]), int(x.shape[-1])
            if (where.shape[0] < rows) != (where.shape[1] < columns) and rows != where.shape[0] and columns != where.shape[1]:
                # mixed: average along the shrinking axis (fewer pixels for the second pass), then interpolate along the other
                x = _resized(x, (where.shape[0], columns) if where.shape[0] < rows else (rows, where.shape[1]))
            x = _resized(x, where.shape)
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    out = x.new_zeros((x.shape[0], int(size[0]), int(size[1])))
    out[:, where.offset[0] : where.offset[0] + where.shape[0], where.offset[1] : where.offset[1] + where.shape[1]] = x
    return out


def _resized(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` planes resized to ``shape`` in one pass: area when neither axis grows, else bilinear."""
    down = shape[0] <= x.shape[-2] and shape[1] <= x.shape[-1]
    return F.interpolate(x[None], size=shape, mode="area" if down else "bilinear", **({} if down else {"align_corners": False}))[0]


def fit(image: np.ndarray | torch.Tensor, size: tuple[int, int] | None, mode: str = "letterbox") -> tuple[torch.Tensor, Placement]:
    """Resize ``(N, H, W)`` planes to ``size`` (rows, columns).

    Parameters
    ----------
    image
        Float planes (frames and/or channels first).
    size
        Output (rows, columns); None keeps the image as it is.
    mode
        One of :data:`RESIZE_MODES`; ``letterbox`` centres the image and pads with 0.

    Returns
    -------
    (tensor, Placement)

    Examples
    --------
    >>> out, where = fit(np.ones((1, 300, 200), np.float32), (100, 100))
    >>> tuple(out.shape), where.shape, where.offset
    ((1, 100, 100), (100, 67), (0, 16))
    """
    x = torch.as_tensor(image)
    where = placement(int(x.shape[-2]), int(x.shape[-1]), size, mode)
    return place(x, where, None if mode == "none" else size), where

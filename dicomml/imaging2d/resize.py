"""Resizing 2D images to a network's input size: stretched, or letterboxed keeping the aspect ratio.

Downsampling averages the pixels each output pixel covers (``area``), so a
radiograph reduced 6x keeps its fine structure as mean intensity instead of
aliasing; upsampling is bilinear. The new pixel spacing and the placement
are returned, so that a prediction maps back onto the source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["RESIZE_MODES", "Placement", "fit"]

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

    Example
    -------
    >>> out, where = fit(np.ones((1, 300, 200), np.float32), (100, 100))
    >>> tuple(out.shape), where.shape, where.offset
    ((1, 100, 100), (100, 67), (0, 16))
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    x = torch.as_tensor(image)
    rows, columns = int(x.shape[-2]), int(x.shape[-1])
    if size is None or mode == "none" or (rows, columns) == tuple(size):
        return x, Placement((1.0, 1.0), (0, 0), (rows, columns))
    out_rows, out_columns = int(size[0]), int(size[1])
    if mode == "stretch":
        shape = (out_rows, out_columns)
    else:
        factor = min(out_rows / rows, out_columns / columns)
        shape = (min(out_rows, max(1, round(rows * factor))), min(out_columns, max(1, round(columns * factor))))
    down = shape[0] <= rows and shape[1] <= columns
    resized = F.interpolate(x[None], size=shape, mode="area" if down else "bilinear", **({} if down else {"align_corners": False}))[0]
    offset = ((out_rows - shape[0]) // 2, (out_columns - shape[1]) // 2)
    if shape != (out_rows, out_columns):
        out = resized.new_zeros((x.shape[0], out_rows, out_columns))
        out[:, offset[0] : offset[0] + shape[0], offset[1] : offset[1] + shape[1]] = resized
        resized = out
    return resized, Placement((shape[0] / rows, shape[1] / columns), offset, shape)



"""Decoding a JPEG 2000 image at a lower resolution level, for images much larger than the output.

A JPEG 2000 codestream holds its image as wavelet resolution levels; the
level ``r`` steps below full size is the image's own low-pass at
``1/2**r`` per side, and decoding it skips the entropy decoding of the finer
levels, which is most of the work. Pillow's OpenJPEG binding exposes this as
``reduce`` (pydicom's decoders do not). The values are the codec's low-pass
filter sampled at every ``2**r``-th pixel (rows and columns 0, 2**r, ...),
not box averages of the full-resolution pixels: close on smooth images,
shifted by ``(2**r - 1) / 2`` source pixels (under one output pixel once
letterboxed), so this is an opt-in approximation
(``ImageConfig(reduced_decode=True)``).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from dicomml._optional import require
from dicomml.dicom.pixels import transfer_syntax

__all__ = ["decomposition_levels", "reduced_frame"]

_J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
_SOC, _COD, _SOT = 0xFF4F, 0xFF52, 0xFF90


def decomposition_levels(codestream: bytes) -> int | None:
    """Number of wavelet decomposition levels of a J2K codestream's COD segment, None if not found."""
    if len(codestream) < 4 or struct.unpack_from(">H", codestream, 0)[0] != _SOC:
        return None
    pos = 2
    while pos + 4 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, pos)
        if marker == _SOT:
            return None
        if marker == _COD and pos + 4 + 5 <= len(codestream):
            return int(codestream[pos + 4 + 5])  # Scod, progression, layers (2), MCT, then the levels
        pos += 2 + length
    return None


def reduced_frame(ds: Dataset, target: tuple[int, int]) -> tuple[np.ndarray, int] | None:
    """The stored values of a single-frame grey JPEG 2000 image at the coarsest level still as large as
    the image will be when letterboxed into ``target``.

    Parameters
    ----------
    ds
        The dataset, read with its pixels.
    target
        (rows, columns) of the box the image will be fitted into, keeping its aspect ratio.

    Returns
    -------
    (array, level) or None
        ``(rows / 2**level, columns / 2**level)`` uint16 stored values, or None
        when the image is not a single-frame unsigned grey JPEG 2000, no
        level below full size is still as large as the fitted image, or Pillow
        decodes none of the levels from there up to full size (the finest that
        decodes is taken; with None the caller decodes the full image).
    """
    uid = transfer_syntax(ds)
    if uid not in _J2K_SYNTAXES or int(ds.get("NumberOfFrames") or 1) != 1 or int(ds.get("SamplesPerPixel") or 1) != 1:
        return None
    if int(ds.get("PixelRepresentation") or 0) != 0 or int(ds.get("BitsAllocated") or 0) != 16:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    factor = min(target[0] / rows, target[1] / columns)
    level = 0
    while (rows >> (level + 1)) >= rows * factor and (columns >> (level + 1)) >= columns * factor:
        level += 1
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    levels = decomposition_levels(codestream)
    level = min(level, levels or 0)
    if level == 0:
        return None
    from openjpeg import get_parameters

    Image = require("PIL.Image", extra="imaging2d", feature="reduced JPEG 2000 decoding (ImageConfig(reduced_decode=True))")
    precision = int(get_parameters(codestream)["precision"])
    for tried in range(level, 0, -1):  # Pillow fails some levels of odd-sized images ("broken data stream"): a finer one
        try:
            with Image.open(io.BytesIO(codestream)) as image:
                image.reduce = tried  # type: ignore[method-assign,assignment]
                image.load()
                if image.mode != "I;16":
                    return None
                values = np.asarray(image)
        except OSError:
            continue
        # Pillow scales samples of fewer than 16 bits up to 16; undo it to get stored values.
        return np.right_shift(values, 16 - precision) if precision < 16 else values, tried
    return None

"""Display window of a picture: explicit numbers, a named preset, the header's, or percentiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dicomml.config import WindowSpec

__all__ = ["Window", "auto_limits", "window_limits"]

#: ``(center, width)``, a preset name, or ``None`` (header window, else percentiles).
Window = tuple[float, float] | str | None
#: Percentiles that bound the display range when neither a window nor a header window is given.
AUTO_PERCENTILES = (0.5, 99.5)
#: Meta key of the factor from the header window's scale (display values) to the voxels' (Philips' floating point).
WINDOW_SCALE = "window_scale"


def window_limits(window: Window, image: np.ndarray, meta: Mapping[str, Any]) -> tuple[float, float]:
    """Lowest and highest displayed value (black and white) for ``window``.

    Parameters
    ----------
    window
        ``(center, width)`` in the image's units (HU for CT), DICOM's
        (0028,1050) / (0028,1051) convention; or a name of
        :data:`dicomml.transforms.WINDOW_PRESETS` (``"lung"``, ``"bone"``,
        ``"brain"``, ``"soft_tissue"``...); or ``None``: the header's first window
        from ``meta`` (mapped onto the voxels' scale where ``meta["window_scale"]``
        says they are Philips' floating-point values), else the 0.5 and 99.5
        percentiles of ``image``'s finite values.
    image
        The voxels, for the percentile fallback.
    meta
        The Volume's metadata.

    Returns
    -------
    tuple of float
        ``(low, high)``.

    Raises
    ------
    ConfigError
        If the width is not positive or the preset is unknown.

    Examples
    --------
    >>> window_limits((40, 400), np.zeros(3), {})
    (-160.0, 240.0)
    """
    if isinstance(window, str):
        spec = _preset(window)
    elif window is not None:
        center, width = window
        spec = WindowSpec(float(center), float(width))
    else:
        header = _header_window(meta)
        if header is None:
            return auto_limits(image)
        spec = header
    return spec.low, spec.high


def auto_limits(image: np.ndarray) -> tuple[float, float]:
    """The 0.5 and 99.5 percentiles of ``image``'s finite values; ``(0, 1)`` when none is finite.

    NaN and infinity (outside an ADC or probability map's mask) are left out
    so that they blank no picture; a constant image gets a width of 1.

    Examples
    --------
    >>> auto_limits(np.array([np.nan, np.inf, 3.0]))
    (3.0, 4.0)
    """
    if image.dtype.kind == "f":  # integers are all finite: no copy
        image = image[np.isfinite(image)]
    if image.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(image, AUTO_PERCENTILES))
    return low, high if high > low else low + 1.0


def _preset(name: str) -> WindowSpec:
    from dicomml.transforms import Window as WindowTransform  # owns the preset table; imports torch, so on use

    preset = WindowTransform.preset(name)
    return WindowSpec(preset.center, preset.width, name)


def _header_window(meta: Mapping[str, Any]) -> WindowSpec | None:
    """The first WindowCenter / WindowWidth pair recorded in ``meta``, on the voxels' scale, if any.

    The header's window is in display values; voxels scaled to Philips'
    floating point are those times ``meta["window_scale"]`` (``1 / (RS * SS)``,
    see :mod:`dicomml.dicom.philips`). A factor that varies by slice has no
    one window on the voxels' scale: None, so the percentiles are used.
    """
    center, width = meta.get("window_center"), meta.get("window_width")
    if center is None or width is None or np.size(center) == 0 or np.size(width) == 0:  # absent or empty elements
        return None
    first_center, first_width = (float(np.ravel(v)[0]) for v in (center, width))
    if not (np.isfinite(first_center) and np.isfinite(first_width) and first_width > 0):
        return None
    factor = meta.get(WINDOW_SCALE)
    scale = np.ravel(np.asarray(1.0 if factor is None else factor, np.float64))
    if scale.size == 0 or not np.all(np.isfinite(scale)) or scale[0] <= 0 or np.any(scale != scale[0]):
        return None
    return WindowSpec(first_center * float(scale[0]), first_width * float(scale[0]))

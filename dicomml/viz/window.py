"""Display window of a picture: explicit numbers, a named preset, the header's, or percentiles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dicomml.config import WindowSpec

__all__ = ["Window", "window_limits"]

#: ``(center, width)``, a preset name, or ``None`` (header window, else percentiles).
Window = tuple[float, float] | str | None
#: Percentiles that bound the display range when neither a window nor a header window is given.
AUTO_PERCENTILES = (0.5, 99.5)


def window_limits(window: Window, image: np.ndarray, meta: Mapping[str, Any]) -> tuple[float, float]:
    """Lowest and highest displayed value (black and white) for ``window``.

    Parameters
    ----------
    window
        ``(center, width)`` in the image's units (HU for CT), DICOM's
        (0028,1050) / (0028,1051) convention; or a name of
        :data:`dicomml.transforms.WINDOW_PRESETS` (``"lung"``, ``"bone"``,
        ``"brain"``, ``"soft_tissue"``...); or ``None``: the header's first window
        from ``meta``, else the 0.5 and 99.5 percentiles of ``image``.
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
            low, high = np.percentile(image, AUTO_PERCENTILES)
            return float(low), float(max(high, low + 1e-6))
        spec = header
    return spec.low, spec.high


def _preset(name: str) -> WindowSpec:
    from dicomml.transforms import Window as WindowTransform  # owns the preset table; imports torch, so on use

    preset = WindowTransform.preset(name)
    return WindowSpec(preset.center, preset.width, name)


def _header_window(meta: Mapping[str, Any]) -> WindowSpec | None:
    """The first WindowCenter / WindowWidth pair recorded in ``meta``, if any."""
    center, width = meta.get("window_center"), meta.get("window_width")
    if center is None or width is None or np.size(center) == 0 or np.size(width) == 0:  # absent or empty elements
        return None
    first_center, first_width = (float(np.ravel(v)[0]) for v in (center, width))
    if not (np.isfinite(first_center) and np.isfinite(first_width) and first_width > 0):
        return None
    return WindowSpec(first_center, first_width)

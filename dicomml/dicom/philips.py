"""Philips' private floating-point scaling of MR images.

Philips MR stores pixel values PV whose standard Rescale Slope and Intercept
(RS, RI) give *display* values ``DV = PV * RS + RI``, scaled per acquisition to
fill the display range. The private MR Scale Slope (2005,100E), SS, of classic
files (per frame, inside (2005,140F), for enhanced ones) gives the
*floating-point* value ``FP = DV / (RS * SS)``, which is comparable between
scans (Chenevert et al. 2014, PMC3998685). dcm2niix writes FP by default (its
``-p y``, "UsePhilipsFloatNotDisplayScaling"); every other reader applies RS and
RI only. ``philips_scaling="float" | "display"`` chooses.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # pydicom on first use: the config reads this module's constants
    from pydicom.dataset import Dataset

    from dicomml.dicom.frames import FrameTable

__all__ = ["PHILIPS_SCALINGS", "PhilipsScaling", "float_scaling", "scale_slope"]

#: How Philips MR values are scaled: "float" as dcm2niix (FP), "display" the standard rescale only (DV).
PhilipsScaling = Literal["display", "float"]
PHILIPS_SCALINGS: tuple[str, ...] = ("display", "float")

#: (2005,100E) MR Scale Slope, private to "Philips MR Imaging DD 001".
SCALE_SLOPE = 0x2005100E
#: (2005,140F) the per-frame private item of an enhanced Philips MR, which holds (2005,100E).
FRAME_ITEM = 0x2005140F


def scale_slope(item: Dataset | None) -> float:
    """The MR Scale Slope (2005,100E) of a dataset or a per-frame item; NaN when absent, zero or unreadable.

    Parameters
    ----------
    item
        A classic dataset, or a Per-frame Functional Groups item (its
        (2005,140F) item is looked in first).

    Returns
    -------
    float

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.add_new(0x2005100E, "FL", 10.0)
    >>> scale_slope(ds), scale_slope(Dataset())
    (10.0, nan)
    """
    from pydicom.multival import MultiValue

    if item is None:
        return np.nan
    private = item.get(FRAME_ITEM)
    if private is not None and private.VR == "SQ" and len(private.value) > 0 and SCALE_SLOPE in private.value[0]:
        item = private.value[0]
    if SCALE_SLOPE not in item:
        return np.nan
    value: Any = item[SCALE_SLOPE].value
    if isinstance(value, bytes):  # implicit VR: no dictionary entry, so the raw little-endian FL bytes
        value = float(np.frombuffer(value[:4], "<f4")[0]) if len(value) >= 4 else np.nan
    elif isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else np.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return np.nan
    return number if np.isfinite(number) and number != 0 else np.nan


def float_scaling(table: FrameTable) -> FrameTable:
    """The table with each plane's rescale turned into Philips' floating-point one.

    ``FP = (PV * RS + RI) / (RS * SS)``: slope ``1 / SS``, intercept
    ``RI / (RS * SS)``, and ``display_scale`` ``1 / (RS * SS)`` (what maps the
    header's window onto these values). Planes without a usable SS (other
    vendors, derived images) keep their standard rescale (a scale of 1).

    Parameters
    ----------
    table
        A :class:`~dicomml.dicom.frames.FrameTable`.

    Returns
    -------
    FrameTable

    Examples
    --------
    >>> float_scaling(frame_table(ds)).rescale_slope  # doctest: +SKIP
    array([0.0055...])
    """
    ss = table.philips_scale_slope
    usable = np.isfinite(ss) & (table.rescale_slope * ss != 0)
    if not usable.any():
        return table
    denominator = np.where(usable, table.rescale_slope * ss, 1.0)
    return dataclasses.replace(
        table,
        rescale_slope=np.where(usable, table.rescale_slope / denominator, table.rescale_slope),
        rescale_intercept=np.where(usable, table.rescale_intercept / denominator, table.rescale_intercept),
        display_scale=1.0 / denominator,  # the header's window is in display values: FP = DV / (RS * SS)
    )

"""Pictures of 2D images (radiographs, mammograms, ultrasound...): each as displayed, with its masks.

An image is drawn as :func:`~dicomml.imaging2d.load_image` returns it (display
values, flipped to a display convention when asked), one panel per image,
with the patient side at each edge read from its Patient Orientation and
its pixels' aspect from their spacing. Drawn like :mod:`dicomml.viz.render`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dicomml._optional import require
from dicomml.errors import ConfigError
from dicomml.imaging2d.orientation import edge_sides
from dicomml.paths import atomic_output
from dicomml.viz.planes import Plane
from dicomml.viz.render import _draw, _legend
from dicomml.viz.window import auto_limits

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dicomml.imaging2d.load import Image2D

__all__ = ["render_images", "save_images_png"]

_FEATURE = "pictures (dicomml.viz, dicomml show)"
_COLUMNS = 4


def render_images(
    images: Sequence[Image2D],
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    labels: Sequence[str] = (),
) -> Figure:
    """Draw each image (its first frame) in a panel, with its masks in colour.

    Parameters
    ----------
    images
        From :func:`~dicomml.imaging2d.load_image` (``display="breast"`` or
        ``"chest"`` for the usual hanging).
    masks
        Per image, ``(S, H, W)`` masks on its displayed pixels (e.g. from
        :func:`~dicomml.imaging2d.masks.displayed_masks`) or None; mask ``s``
        is drawn as label ``s + 1``.
    labels
        Names of the masks, for the legend.

    Returns
    -------
    matplotlib.figure.Figure
        Panels are labelled (``Axes.get_label()``) ``"image-<n>"``; each
        carries the patient side at its edges (empty without Patient
        Orientation).

    Examples
    --------
    >>> fig = render_images([load_image("mammo/R_CC.dcm", display="breast")])  # doctest: +SKIP
    """
    if not images:
        raise ConfigError("render_images: no image to draw; give one or more Image2D")
    masks = list(masks) if masks is not None else [None] * len(images)
    figure = require("matplotlib.figure", extra="viz", feature=_FEATURE)
    columns = min(_COLUMNS, len(images))
    rows = -(-len(images) // columns)
    fig = figure.Figure(figsize=(4 * columns, 4.6 * rows), facecolor="black")
    shown = np.zeros(0, np.int64)
    for n, (image, mask) in enumerate(zip(images, masks)):
        frame = image.pixels[0]
        label_map = None if mask is None or not len(mask) else _label_map(mask)
        low, high = _range(image, frame)
        spacing = image.meta.get("spacing")
        plane = Plane(
            name=" ".join(str(image.meta[k]) for k in ("modality", "laterality", "view") if image.meta.get(k)),
            image=frame,
            labels=label_map,
            sides=edge_sides(_orientation(image.meta.get("patient_orientation"))),
            aspect=float(spacing[0] / spacing[1]) if spacing else 1.0,
            position=f"frame 1 of {image.n_frames}" if image.n_frames > 1 else "",
        )
        _draw(fig.add_subplot(rows, columns, n + 1, label=f"image-{n}"), plane, low, high, 11)
        if label_map is not None:
            shown = np.union1d(shown, np.unique(label_map))
    if len(shown):
        _legend(fig, dict(enumerate(labels, start=1)), shown)
    return fig


def save_images_png(images: Sequence[Image2D], path: str | Path, **options: object) -> Path:
    """:func:`render_images` written as a PNG; returns ``path``."""
    path = Path(path)
    fig = render_images(images, **options)  # type: ignore[arg-type]
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return path


def _label_map(masks: np.ndarray) -> np.ndarray:
    """``(S, H, W)`` masks as one map of labels 1..S (a later mask over an earlier one)."""
    out = np.zeros(masks.shape[1:], np.int64)
    for s, mask in enumerate(masks, start=1):
        out[mask > 0] = s
    return out


def _range(image: Image2D, frame: np.ndarray) -> tuple[float, float]:
    """The range to display: colour's full scale, a window's output range, else the grey values' percentiles."""
    known = image.meta.get("output_range")
    if image.is_colour:  # full scale of the stored bits: 12 bits in 16 reach 4095, not 65535
        return (float(known[0]), float(known[1])) if known else (0.0, float(np.iinfo(frame.dtype).max) if frame.dtype.kind in "iu" else 1.0)
    if known and image.meta.get("voi") not in (None, "none"):  # a window was applied: its output spans the range
        return float(known[0]), float(known[1])
    return auto_limits(frame)  # a grey image no window mapped: as a volume's


def _orientation(text: str | None) -> tuple[str, str] | None:
    parts = (text or "").split("\\")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

"""Pictures of a Volume: three orthogonal views and a slice montage, with a mask overlay.

Rendering uses matplotlib's object API (a ``Figure`` with the Agg canvas),
never ``pyplot``, so it changes no global backend or state and works in
worker processes and on machines without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomml._optional import require
from dicomml.errors import GeometryError
from dicomml.paths import atomic_output
from dicomml.viz.planes import OBLIQUE_TOLERANCE_DEG, Convention, DisplayGrid, Plane, PlaneName
from dicomml.viz.window import Window, window_limits
from dicomml.volume import Volume

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["render", "save_png"]

#: What needs matplotlib, for the error that names the ``viz`` extra.
_FEATURE = "pictures (dicomml.viz, dicomml show)"

#: Affines of an image and its mask may differ by this much (mm) and still be one grid.
GRID_TOLERANCE_MM = 1e-3
_VIEWS: tuple[PlaneName, ...] = ("axial", "coronal", "sagittal")
_MONTAGE_COLUMNS = 6
_OVERLAY_ALPHA = 0.45
_LABEL_STYLE: dict[str, Any] = {"color": "yellow", "fontsize": 11, "fontweight": "bold"}
_EDGE = {  # where each side letter sits, in axes fractions
    "left": (0.02, 0.5, "left", "center"),
    "right": (0.98, 0.5, "right", "center"),
    "top": (0.5, 0.98, "center", "top"),
    "bottom": (0.5, 0.02, "center", "bottom"),
}


def render(
    volume: Volume,
    *,
    window: Window = None,
    mask: Volume | None = None,
    centre: Sequence[float] | None = None,
    convention: Convention = "radiological",
    montage: int = 12,
) -> Figure:
    """Draw axial, coronal and sagittal views through one point, and an axial montage.

    Every panel carries the patient side (R/L, A/P, S/I) at each edge, read
    from the affine; see :mod:`dicomml.viz.planes` for the conventions. A
    volume with leading axes (time, echo) is shown at index 0 of each.

    Parameters
    ----------
    volume
        The image.
    window
        ``(center, width)``, a preset name of :data:`dicomml.transforms.WINDOW_PRESETS`
        (e.g. ``"lung"``), or ``None`` for the header's first window, else the
        0.5-99.5 percentiles.
    mask
        A label map (or channels, shown as labels 1..n) on exactly the image's
        grid, e.g. from :func:`dicomml.load_mask`; drawn in colour over the image.
    centre
        RAS+ point (mm) the orthogonal views pass through. Default: the mask's
        centre of mass, else the grid's centre.
    convention
        ``"radiological"`` (patient right on the viewer's left) or
        ``"neurological"``.
    montage
        Number of axial slices in the montage (0 for none), evenly spaced over
        the mask's extent when a mask is given, else over the volume.

    Returns
    -------
    matplotlib.figure.Figure
        Panels are labelled (``Axes.get_label()``) ``"axial"``, ``"coronal"``,
        ``"sagittal"`` and ``"montage-<n>"``.

    Raises
    ------
    GeometryError
        If the mask is not on the image's grid.

    Examples
    --------
    >>> fig = render(volume, window="lung", mask=mask)  # doctest: +SKIP
    >>> fig.savefig("views.png")  # doctest: +SKIP
    """
    image = _first_volume(volume)
    labels = None if mask is None else _label_map(mask, volume)
    grid = DisplayGrid(image, volume.affine, labels, convention)
    vmin, vmax = window_limits(window, image, volume.meta)
    point: tuple[int, ...]
    if centre is not None:
        point = grid.index_of(np.asarray(centre, np.float64))
    elif grid.labels is not None and grid.labels.any():
        point = tuple(int(np.rint(c)) for c in np.argwhere(grid.labels).mean(axis=0))
    else:
        point = tuple(n // 2 for n in grid.shape)
    slices = _montage_indices(grid, montage)
    rows = -(-len(slices) // _MONTAGE_COLUMNS)
    figure = require("matplotlib.figure", extra="viz", feature=_FEATURE)  # optional: imported on first picture
    fig = figure.Figure(figsize=(12, 4.6 + 2.2 * rows), facecolor="black")
    outer = fig.add_gridspec(2, 1, height_ratios=[4.6, 2.2 * rows or 0.01], hspace=0.12)
    top = outer[0].subgridspec(1, 3, wspace=0.05)
    for column, name in enumerate(_VIEWS):
        _draw(fig.add_subplot(top[column], label=name), grid.plane_through(name, point), vmin, vmax, 11)
    if slices:
        bottom = outer[1].subgridspec(rows, _MONTAGE_COLUMNS, wspace=0.03, hspace=0.15)
        for n, index in enumerate(slices):
            ax = fig.add_subplot(bottom[n // _MONTAGE_COLUMNS, n % _MONTAGE_COLUMNS], label=f"montage-{n}")
            _draw(ax, grid.plane("axial", index), vmin, vmax, 7)
    fig.suptitle(_title(volume, grid, convention, vmin, vmax), color="white", fontsize=10)
    if mask is not None and grid.labels is not None:
        _legend(fig, mask.meta.get("labels"), grid.labels)
    return fig


def save_png(volume: Volume, path: str | Path, **options: object) -> Path:
    """Render ``volume`` (see :func:`render` for ``options``) and write it as a PNG.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> save_png(volume, "ct.png", window="soft_tissue")  # doctest: +SKIP
    """
    path = Path(path)
    fig = render(volume, **options)  # type: ignore[arg-type]
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    return path


def _first_volume(volume: Volume) -> np.ndarray:
    return volume.array[(0,) * len(volume.axes)] if volume.axes else volume.array


def _label_map(mask: Volume, image: Volume) -> np.ndarray:
    if mask.spatial_shape != image.spatial_shape or not np.allclose(mask.affine, image.affine, atol=GRID_TOLERANCE_MM):
        raise GeometryError(
            f"mask grid {mask.spatial_shape} {mask.orientation} differs from the image grid "
            f"{image.spatial_shape} {image.orientation} (affines differ by more than {GRID_TOLERANCE_MM} mm); "
            "load the mask on the image's grid (dicomml.load_mask(..., reference=image))"
        )
    data = mask.array
    if data.ndim == 3:
        return np.asarray(data > 0.5, np.int16) if data.dtype.kind == "f" else data.astype(np.int16)
    channels = data.reshape((-1,) + mask.spatial_shape) > 0.5
    return np.where(channels.any(axis=0), channels.argmax(axis=0) + 1, 0).astype(np.int16)


def _montage_indices(grid: DisplayGrid, count: int) -> list[int]:
    if count <= 0:
        return []
    n = grid.shape[2]
    if grid.labels is not None and grid.labels.any():
        present = np.flatnonzero(grid.labels.any(axis=(0, 1)))
        first, last = int(present[0]), int(present[-1])
    else:
        first, last = 0, n - 1
    return sorted({int(v) for v in np.rint(np.linspace(first, last, min(count, last - first + 1)))})


def _draw(ax: Axes, plane: Plane, vmin: float, vmax: float, fontsize: int) -> None:
    image = plane.image
    if image.ndim == 3:  # RGB: imshow ignores vmin/vmax and clips to [0, 255], so scale to [0, 1] here
        image = np.clip((image.astype(np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, aspect=plane.aspect, interpolation="nearest")
    if plane.labels is not None and plane.labels.any():
        from matplotlib import colormaps  # render() has required matplotlib

        colours = colormaps["tab10"]((plane.labels - 1) % 10)
        colours[..., 3] = np.where(plane.labels > 0, _OVERLAY_ALPHA, 0.0)
        ax.imshow(colours, aspect=plane.aspect, interpolation="nearest")
    for side, (x, y, ha, va) in _EDGE.items():
        ax.text(x, y, plane.sides[side], transform=ax.transAxes, ha=ha, va=va, **{**_LABEL_STYLE, "fontsize": fontsize})
    ax.set_title(f"{plane.name} {plane.position}".strip(), color="white", fontsize=fontsize - 1, pad=2)
    ax.set_axis_off()


def _legend(fig: Figure, names: Any, labels: np.ndarray) -> None:
    """Colour key of the labels present, named by ``names`` (number -> name) when it is a mapping."""
    present = [int(v) for v in np.unique(labels) if v > 0]
    if not present:
        return
    from matplotlib import colormaps  # render() has required matplotlib
    from matplotlib.patches import Patch

    handles = [
        Patch(
            color=colormaps["tab10"]((v - 1) % 10),
            alpha=_OVERLAY_ALPHA,
            label=f"{v} {names[v]}" if isinstance(names, Mapping) and v in names else str(v),
        )
        for v in present
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=8, labelcolor="white", facecolor="black", edgecolor="grey")


def _title(volume: Volume, grid: DisplayGrid, convention: str, vmin: float, vmax: float) -> str:
    meta = volume.meta
    parts = [str(meta.get(k)) for k in ("modality", "series_description") if meta.get(k)]
    parts.append(f"{'x'.join(str(n) for n in volume.array.shape)} voxels, {'x'.join(f'{s:.3g}' for s in volume.spacing)} mm")
    if volume.axes:
        parts.append(f"{', '.join(volume.axes)} index 0 shown")
    parts.append(f"{convention} convention, window [{vmin:.6g}, {vmax:.6g}]")
    if grid.obliquity_deg > OBLIQUE_TOLERANCE_DEG:
        parts.append(f"oblique {grid.obliquity_deg:.1f} deg: shown on nearest axes")
    return " | ".join(parts)

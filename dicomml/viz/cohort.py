"""A picture of a manifest's cohort: what it holds, what is usable and why not, and the spread of its geometry.

The counts are :meth:`dicomml.Manifest.summary`'s (what ``dicomml info``
prints); the histograms are of the usable series. Drawn with matplotlib's
object API, like :mod:`dicomml.viz.render`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dicomml._optional import require
from dicomml.paths import atomic_output

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dicomml.indexer.manifest import Manifest

__all__ = ["render_cohort", "save_cohort_png"]

_FEATURE = "pictures (dicomml.viz, dicomml info --plot)"
#: Bars of a count panel; the rest are summed into one "other" bar.
MAX_BARS = 8
_COUNTS = (  # panel label, summary title, the column naming each bar
    ("modality", "series by modality", "modality"),
    ("usable", "series usable or not, by reason", "status"),
    ("manufacturer", "series by manufacturer", "manufacturer"),
)
_SPREADS = (  # panel label, x axis title
    ("in-plane spacing", "in-plane spacing (mm)"),
    ("slice spacing", "slice spacing (mm)"),
    ("slices", "slices per series"),
)


def render_cohort(manifest: Manifest | str | Path) -> Figure:
    """Draw a manifest's series by modality, by usability (with the reasons) and by manufacturer,
    and histograms of the usable series' in-plane spacing, slice spacing and slices per series.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its folder.

    Returns
    -------
    matplotlib.figure.Figure
        Panels are labelled (``Axes.get_label()``) ``"modality"``,
        ``"usable"``, ``"manufacturer"``, ``"in-plane spacing"``,
        ``"slice spacing"`` and ``"slices"``.

    Examples
    --------
    >>> render_cohort("manifest/").savefig("cohort.png")  # doctest: +SKIP
    """
    from dicomml.indexer.manifest import Manifest

    manifest = Manifest.open(manifest)
    summary = manifest.summary()
    series = manifest.series
    usable = series[series.usable.fillna(False).astype(bool)]
    spreads = {
        "in-plane spacing": [float(v[0]) for v in usable.pixel_spacing if v is not None and len(v)],
        "slice spacing": usable.slice_spacing.dropna().astype(float).tolist(),
        "slices": usable.n_slices.dropna().astype(float).tolist(),
    }
    figure = require("matplotlib.figure", extra="viz", feature=_FEATURE)
    fig = figure.Figure(figsize=(14, 8), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    for column, (label, title, name) in enumerate(_COUNTS):
        _bars(fig.add_subplot(grid[0, column], label=label), summary[title], name, title)
    for column, (label, axis) in enumerate(_SPREADS):
        _histogram(fig.add_subplot(grid[1, column], label=label), spreads[label], axis)
    counts = manifest.meta.get("counts", {})
    fig.suptitle(
        f"{manifest.path.name}: {counts.get('series', len(series))} series, {len(usable)} usable, "
        f"{_count(counts.get('instances'), 'instance row')}, {_count(counts.get('annotations'), 'annotation')}, "
        f"{_count(counts.get('errors'), 'error')}"
    )
    return fig


def save_cohort_png(manifest: Manifest | str | Path, path: str | Path) -> Path:
    """:func:`render_cohort` written as a PNG; returns ``path``."""
    path = Path(path)
    fig = render_cohort(manifest)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _bars(ax: Axes, counts: pd.DataFrame, name: str, title: str) -> None:
    """Horizontal bars, largest first; beyond :data:`MAX_BARS`, one "other" bar."""
    labels = [str(v) for v in counts[name].fillna("?")]
    values = [int(v) for v in counts["n"]]
    if len(values) > MAX_BARS:
        labels = [*labels[: MAX_BARS - 1], f"other ({len(values) - MAX_BARS + 1})"]
        values = [*values[: MAX_BARS - 1], sum(values[MAX_BARS - 1 :])]
    ax.set_title(title)
    if not values:
        ax.text(0.5, 0.5, "(none)", ha="center", va="center", transform=ax.transAxes)
        return
    positions = np.arange(len(values))[::-1]
    ax.barh(positions, values, color="tab:blue")
    ax.xaxis.set_major_locator(require("matplotlib.ticker", extra="viz", feature=_FEATURE).MaxNLocator(integer=True))
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=8)
    for y, value in zip(positions, values):
        ax.text(value, y, f" {value}", va="center", fontsize=8)
    ax.set_xlabel("series")


def _histogram(ax: Axes, values: list[float], axis: str) -> None:
    ax.set_title(axis.split(" (")[0] + " of the usable series")
    ax.set_xlabel(axis)
    if not values:
        ax.text(0.5, 0.5, "(none)", ha="center", va="center", transform=ax.transAxes)
        return
    ax.hist(values, bins=min(30, max(1, len(set(values)))), color="tab:green", edgecolor="white")  # neighbours apart
    ax.set_ylabel("series")
    ax.yaxis.set_major_locator(require("matplotlib.ticker", extra="viz", feature=_FEATURE).MaxNLocator(integer=True))


def _count(n: int | None, noun: str) -> str:
    """``"1 annotation"``, ``"3 annotations"``, ``"? errors"`` when unknown."""
    return f"? {noun}s" if n is None else f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Whole-volume intensity statistics, recorded in a cache entry so a patch is z-scored like its volume."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["STATS_KEY", "intensity_stats"]

#: The cache entry's meta key holding :func:`intensity_stats` of its image as stored.
STATS_KEY = "intensity_stats"

#: Voxels converted to float64 at a time (a slab of slices), so a large volume needs no float64 copy.
_SLAB_VOXELS = 1 << 22


def intensity_stats(image: Any) -> dict[str, list[float | None]]:
    """Per-channel mean and population std, over all voxels and over the non-zero ones.

    What :func:`~dicomml.transforms.functional.znormalize` computes on a whole
    volume (``nonzero=False`` / ``True``), in float64.

    Parameters
    ----------
    image
        ``(i, j, k)`` or ``(..., i, j, k)`` array (numpy or torch); the
        leading axes, flattened, are the channels (as the Datasets read them).

    Returns
    -------
    dict
        ``{"mean", "std", "nonzero_mean", "nonzero_std"}``, one float per
        channel each; ``None`` for a channel with no (non-zero) voxel.

    Examples
    --------
    >>> intensity_stats(np.array([[[0.0, 1.0, 3.0]]]))["nonzero_mean"]
    [2.0]
    """
    array = np.asarray(image)
    channels = array.reshape(-1, *array.shape[-3:]) if array.ndim >= 3 else array.reshape(1, 1, 1, -1)
    out: dict[str, list[float | None]] = {"mean": [], "std": [], "nonzero_mean": [], "nonzero_std": []}
    for channel in channels:
        step = max(1, _SLAB_VOXELS // max(1, channel[0].size))
        slabs = range(0, channel.shape[0], step)
        total = nz_total = 0.0
        count = nz_count = 0
        for s in slabs:
            values = channel[s : s + step].astype(np.float64).ravel()
            nonzero = values[values != 0]
            total, count = total + float(values.sum()), count + values.size
            nz_total, nz_count = nz_total + float(nonzero.sum()), nz_count + nonzero.size
        mean = total / count if count else None
        nz_mean = nz_total / nz_count if nz_count else None
        squares = nz_squares = 0.0
        for s in slabs:
            values = channel[s : s + step].astype(np.float64).ravel()
            if mean is not None:
                squares += float(np.square(values - mean).sum())
            if nz_mean is not None:
                nz_squares += float(np.square(values[values != 0] - nz_mean).sum())
        out["mean"].append(mean)
        out["std"].append(float(np.sqrt(squares / count)) if count else None)
        out["nonzero_mean"].append(nz_mean)
        out["nonzero_std"].append(float(np.sqrt(nz_squares / nz_count)) if nz_count else None)
    return out

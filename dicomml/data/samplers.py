"""Where patches are cut: uniform, label-balanced and grid patch locations.

Pure functions of shapes, a foreground index and a numpy Generator; the
:class:`~dicomml.data.PatchDataset` seeds the generator from (seed, epoch,
index) so every DataLoader worker layout draws the same patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SAMPLERS", "grid_starts", "label_balanced_start", "uniform_start"]

SAMPLERS = ("uniform", "label_balanced", "grid")


def _clip_start(start: np.ndarray, shape: Sequence[int], patch: Sequence[int]) -> tuple[int, int, int]:
    high = np.maximum(np.asarray(shape) - np.asarray(patch), 0)
    return tuple(int(v) for v in np.clip(start, 0, high))  # type: ignore[return-value]


def uniform_start(shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator) -> tuple[int, int, int]:
    """Corner (i, j, k) of a patch placed uniformly inside ``shape`` (0 where the patch is larger).

    Examples
    --------
    >>> uniform_start((10, 10, 10), (10, 4, 20), np.random.default_rng(0))[0::2]
    (0, 0)
    """
    high = np.maximum(np.asarray(shape) - np.asarray(patch), 0)
    return tuple(int(v) for v in rng.integers(0, high + 1))  # type: ignore[return-value]


def label_balanced_start(
    shape: Sequence[int],
    patch: Sequence[int],
    foreground: np.ndarray,
    positive_fraction: float,
    rng: np.random.Generator,
) -> tuple[tuple[int, int, int], int | None]:
    """Corner of a patch centred on foreground with probability ``positive_fraction``.

    A positive patch first draws a mask channel (uniformly among the channels
    that have foreground, so a 12 mm lesion is as likely as the liver), then
    one of its voxels, like MONAI's ``RandCropByLabelClasses``. Otherwise, or
    when there is no foreground, the patch is placed uniformly (mostly
    background, as MONAI's negatives).

    Parameters
    ----------
    shape, patch
        Volume and patch shape (i, j, k), voxels.
    foreground
        (N, 4) rows (channel, i, j, k): the cache's foreground index.
    positive_fraction
        Probability of a foreground-centred patch, in [0, 1].
    rng
        Random generator.

    Returns
    -------
    start : tuple of int
        Patch corner.
    channel : int or None
        The mask channel the patch was centred on; None for a uniform patch.
    """
    if len(foreground) and rng.random() < positive_fraction:
        channels = np.unique(foreground[:, 0])
        channel = channels[rng.integers(len(channels))]
        rows = np.flatnonzero(foreground[:, 0] == channel)
        centre = foreground[rows[rng.integers(len(rows))], 1:]
        return _clip_start(centre - np.asarray(patch) // 2, shape, patch), int(channel)
    return uniform_start(shape, patch, rng), None


def grid_starts(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int, int]]:
    """Corners of patches tiling ``shape`` without gaps (the last tile per axis ends at the border).

    Examples
    --------
    >>> grid_starts((10, 4, 4), (4, 4, 4))
    [(0, 0, 0), (4, 0, 0), (6, 0, 0)]
    """
    axes = []
    for size, p in zip(shape, patch):
        last = max(size - p, 0)
        axes.append(sorted(set(range(0, last + 1, p)) | {last}))
    return [(int(i), int(j), int(k)) for i in axes[0] for j in axes[1] for k in axes[2]]

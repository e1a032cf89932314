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

    Example
    -------
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
) -> tuple[tuple[int, int, int], bool]:
    """Corner of a patch centred on a foreground voxel with probability ``positive_fraction``.

    Otherwise (or when there is no foreground) the patch is placed uniformly,
    as MONAI's ``RandCropByPosNegLabel`` does for its negatives in practice.

    Parameters
    ----------
    shape, patch
        Volume and patch shape (i, j, k), voxels.
    foreground
        (N, 3) voxel indices of foreground (the cache's foreground index).
    positive_fraction
        Probability of a foreground-centred patch, in [0, 1].
    rng
        Random generator.

    Returns
    -------
    start : tuple of int
        Patch corner.
    positive : bool
        Whether the patch was centred on foreground.
    """
    if len(foreground) and rng.random() < positive_fraction:
        centre = foreground[rng.integers(len(foreground))]
        return _clip_start(centre - np.asarray(patch) // 2, shape, patch), True
    return uniform_start(shape, patch, rng), False


def grid_starts(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int, int]]:
    """Corners of patches tiling ``shape`` without gaps (the last tile per axis ends at the border).

    Example
    -------
    >>> grid_starts((10, 4, 4), (4, 4, 4))
    [(0, 0, 0), (4, 0, 0), (6, 0, 0)]
    """
    axes = []
    for size, p in zip(shape, patch):
        last = max(size - p, 0)
        axes.append(sorted(set(range(0, last + 1, p)) | {last}))
    return [(int(i), int(j), int(k)) for i in axes[0] for j in axes[1] for k in axes[2]]

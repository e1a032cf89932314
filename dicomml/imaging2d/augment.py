"""dicomml's transforms on 2D samples: planes become a one-voxel-thick volume for the call.

The transforms of :mod:`dicomml.transforms` work on ``(C, i, j, k)``
entries and follow each entry's type (images interpolated, masks nearest).
:class:`Planar` gives them a 2D sample's ``(..., H, W)`` entries (``CHW``,
``THW``, ``TCHW``: every leading axis folded into one channel axis) as
``(C, H, W, 1)``, with the pixel spacing in the affine, and gives each entry
its own leading axes back afterwards, so flips, crops, intensity changes and in-plane affine
transforms (rotation about axis 2) are the same code for 2D and 3D.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dicomml.transforms.base import RESERVED, Mask, Transform

__all__ = ["Planar"]


class Planar(Transform):
    """Apply a dicomml transform to the ``(..., H, W)`` tensors of a 2D sample.

    Every tensor entry with at least three axes is a stack of planes: grey
    ``(1, H, W)``, colour ``(3, H, W)``, grey cine ``(T, H, W)``, colour cine
    ``(T, 3, H, W)``, masks ``(S, H, W)``. Its leading axes are folded into
    one channel axis for the call, so a flip or crop acts on the rows and
    columns of every frame and channel alike, and are restored afterwards.

    Parameters
    ----------
    transform
        Any :class:`~dicomml.transforms.Transform` (or a MONAI-style callable
        on sample dicts); spatial axes 0 and 1 are the image's rows and columns.

    Examples
    --------
    >>> from dicomml.transforms import RandomFlip
    >>> s = Planar(RandomFlip(axes=(1,), p=1.0))({"image": torch.arange(3.0).view(1, 1, 3)})
    >>> s["image"].flatten().tolist(), s["meta"]["transforms"][0]["flipped"]
    ([2.0, 1.0, 0.0], [False, True, False])
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: Any = None) -> Planar:
        """Seed the wrapped transform's own generator where it has one (MONAI's), as a Dataset does before each sample."""
        if hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed, state=state)
        return self

    def __call__(self, data: Any) -> Any:
        sample = dict(data)
        leading = {k: tuple(v.shape[:-2]) for k, v in sample.items() if k not in RESERVED and isinstance(v, torch.Tensor) and v.ndim >= 3}
        for key in leading:
            sample[key] = _same_kind(sample[key].reshape(-1, *sample[key].shape[-2:])[..., None], sample[key])
        spacing = sample.get("spacing")
        if "affine" not in sample and isinstance(spacing, torch.Tensor) and bool(torch.isfinite(spacing).all()):
            sample["affine"] = torch.from_numpy(np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0]))
            added = True
        else:
            added = False
        out = dict(self.transform(sample))
        for key, lead in leading.items():
            out[key] = _same_kind(out[key][..., 0].reshape(*lead, *out[key].shape[1:3]), out[key])
        if added:
            out.pop("affine", None)
        return out


def _same_kind(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` as a :class:`~dicomml.transforms.Mask` when ``like`` is one (indexing drops the type)."""
    return Mask(x) if isinstance(like, Mask) else x

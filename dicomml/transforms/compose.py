"""`Compose`: transforms in order, with orientation and resampling fused into one pass."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from dicomml.transforms.spatial import Orient, Resample

__all__ = ["Compose"]


def _fuse(transforms: Sequence[Callable[[Any], Any]]) -> list[Callable[[Any], Any]]:
    out: list[Callable[[Any], Any]] = []
    for t in transforms:
        previous = out[-1] if out else None
        if isinstance(t, Resample) and t.axcodes is None and isinstance(previous, Orient):
            fused = copy.copy(t)
            fused.axcodes = previous.axcodes
            out[-1] = fused
        else:
            out.append(t)
    return out


class Compose:
    """Apply transforms in order; ``Orient`` directly followed by ``Resample`` runs as one resample.

    Any callable taking and returning a sample works as a step (MONAI
    transforms included); dicomml transforms also work inside MONAI's own
    ``Compose``, without the fusion.

    Parameters
    ----------
    transforms
        The steps, in order.

    Examples
    --------
    >>> c = Compose([Orient("RAS"), Resample(spacing=1.0)])
    >>> len(c.transforms), c.transforms[0].axcodes
    (1, 'RAS')
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = _fuse(list(transforms))

    def __call__(self, data: Any) -> Any:
        for t in self.transforms:
            data = t(data)
        return data

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"

"""From a pipeline config to its transforms: the part before the cache and the part at every read."""

from __future__ import annotations

from typing import Any

from dicomml.config import PipelineConfig
from dicomml.errors import ConfigError

__all__ = ["at_load_transforms", "deterministic_transforms"]


def deterministic_transforms(config: PipelineConfig) -> list[Any]:
    """Transforms that run before the cache: orientation, spacing, crop/pad, in that order."""
    from dicomml import transforms as T

    det = config.deterministic
    # with a spacing, reorientation runs in the same (single) resampling pass
    steps: list[Any] = [T.Orient(det.orientation) if det.spacing is None else T.Resample(spacing=det.spacing, axcodes=det.orientation)]
    if det.shape is not None:
        steps.append(T.CropOrPad(det.shape))
    return steps


def at_load_transforms(config: PipelineConfig) -> list[Any]:
    """Transforms that run on every read: windows, normalization, random augmentation.

    Raises
    ------
    ConfigError
        If an augmentation names no transform of :mod:`dicomml.transforms`, or
        its parameters do not fit it.
    """
    from dicomml import transforms as T

    load = config.at_load
    steps: list[Any] = []
    if load.windows:
        steps.append(T.MultiWindow(list(load.windows)))
    if load.normalize == "zscore":
        steps.append(T.ZNormalize())
    for i, aug in enumerate(load.augment):
        cls = getattr(T, aug.name, None)
        if not (isinstance(cls, type) and issubclass(cls, T.Transform)):
            raise ConfigError(f"{config.name}: at_load.augment[{i}].name: {aug.name!r} is not a dicomml.transforms transform")
        try:
            steps.append(cls(**aug.kwargs()))
        except TypeError as exc:
            raise ConfigError(f"{config.name}: at_load.augment[{i}].params: {exc}") from None
    return steps

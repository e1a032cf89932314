"""Spatial transforms: orientation, resampling, crop/pad and spatial augmentation.

Every spatial transform keeps the world true: it updates ``affine`` so that
each output voxel's affine position is where its value lies in the patient
(RAS+ mm). Augmentations change what the array holds (the network sees a
flipped or rotated volume); the affine follows, as in MONAI. All entries of a
sample are moved by the same parameters, label maps nearest, images linearly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dicomml.errors import ConfigError
from dicomml.geometry.checks import affine_problem
from dicomml.transforms.base import (
    RESERVED,
    RandomTransform,
    Transform,
    check_number,
    check_probability,
    check_seed,
    sample_grid,
    spatial_keys,
)
from dicomml.transforms.functional.grid import (
    ALIGNS,
    check_axcodes,
    orient_grid,
    output_axes_in_source_order,
    shape_grid,
    shift_grid,
    spacing_grid,
)
from dicomml.transforms.functional.intensity import floating
from dicomml.transforms.functional.spatial import check_padding, crop_pad, flip, resample_image, resample_mask
from dicomml.volume import Volume

__all__ = [
    "CropForeground",
    "CropOrPad",
    "Orient",
    "RandomAffine",
    "RandomCrop",
    "RandomFlip",
    "Resample",
]


def _triple(value: int | Sequence[int], name: str, minimum: int = 1) -> tuple[int, int, int]:
    scalar = isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
    items: list[Any] = (
        [value] * 3 if scalar else list(value) if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str) else []
    )
    numbers = all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in items)
    if len(items) != 3 or not numbers or not all(np.isfinite(v) and int(v) == v and v >= minimum for v in items):
        counts = "positive voxel counts" if minimum == 1 else f"voxel counts >= {minimum}"
        raise ConfigError(f"{name}={value!r} must be one or three {counts}")
    return (int(items[0]), int(items[1]), int(items[2]))


def _spacing(spacing: Any) -> float | tuple[float | None, ...] | None:
    """``Resample``'s ``spacing`` as Python floats (numpy numbers and arrays accepted)."""

    def one(v: Any) -> float | None:
        return None if v is None else check_number("Resample", "spacing", v)

    if spacing is None or isinstance(spacing, (int, float, np.number)):
        return one(spacing)
    if not isinstance(spacing, (Sequence, np.ndarray)) or isinstance(spacing, str) or len(spacing) not in (1, 3):
        raise ConfigError(f"Resample(spacing={spacing!r}): give one or three numbers in mm (None or <= 0 keeps an axis)")
    try:
        values = tuple(one(v) for v in spacing)
    except ConfigError:
        raise ConfigError(f"Resample(spacing={spacing!r}): give one or three numbers in mm (None or <= 0 keeps an axis)") from None
    return values[0] if len(values) == 1 else values


def _reference(like: Any) -> Volume | tuple[np.ndarray, tuple[int, int, int]] | None:
    """``Resample``'s ``like``: a Volume, or ``(affine, shape)`` checked and converted."""
    if like is None:
        return None
    if isinstance(like, Volume):
        affine = like.affine
    elif isinstance(like, (tuple, list)) and len(like) == 2 and isinstance(like[0], (np.ndarray, Sequence, torch.Tensor)):
        affine = np.asarray(like[0], dtype=np.float64)
    else:
        raise ConfigError(f"Resample(like={type(like).__name__}): give a Volume or (affine, shape), the affine a 4x4 array")
    problem = affine_problem(affine)
    if problem is not None:
        raise ConfigError(f"Resample(like=...): the reference grid's {problem}")
    return like if isinstance(like, Volume) else (affine, _triple(like[1], "Resample(like=(affine, shape)): shape"))


class _Regrid(Transform):
    """A transform that resamples every entry onto one target grid (``params``: source, affine, shape)."""

    padding = "border"
    antialias = False

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return resample_image(x, params["source"], params["affine"], params["shape"], padding=self.padding, antialias=self.antialias)

    def apply_mask(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return resample_mask(x, params["source"], params["affine"], params["shape"])


class Orient(_Regrid):
    """Relay the axes to an orientation code by permutation and flips only; no interpolation.

    Parameters
    ----------
    axcodes
        RAS+ letters the output axes increase towards: ``"RAS"`` (nibabel's
        canonical), ``"LPS"`` (ITK's), ``"SPL"`` (DICOM axial as loaded), ...
        Oblique volumes go to the closest axes (nibabel's ``io_orientation``);
        they stay oblique.

    Examples
    --------
    >>> s = Orient("RAS")({"image": torch.zeros(1, 2, 3, 4), "affine": np.diag([1.0, -1.0, 1.0, 1.0])})
    >>> s["image"].shape, float(s["affine"][1, 1])
    (torch.Size([1, 2, 3, 4]), 1.0)
    """

    def __init__(self, axcodes: str = "RAS") -> None:
        self.axcodes = check_axcodes(axcodes)

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        source, shape = sample_grid(sample, "Orient")
        affine, shape = orient_grid(source, shape, self.axcodes)
        return {"source": source, "affine": affine, "shape": shape}


class Resample(_Regrid):
    """Resample to a voxel spacing, a shape or a reference grid; optionally reorient in the same pass.

    Images are interpolated trilinearly, label maps nearest; both on the
    tensor's device.

    Parameters
    ----------
    spacing
        Target voxel size in mm, one number or one per output array axis
        (``None``/``<= 0`` keeps an axis).
    shape
        Target shape over the same field of view (voxels).
    like
        A reference grid: a :class:`~dicomml.Volume` or ``(affine, shape)``.
    axcodes
        Also reorient to this code; permutation, flips and scaling then run as
        one resample. ``spacing`` / ``shape`` are then per output axis. With
        ``align="edges"`` the grid is scaled in the input's stored axis order
        and anchored at its first voxel edge, then relaid (torch's fused
        kernel can then run); orienting first would anchor at the other end
        of flipped axes, a shift of less than half an output voxel. With
        ``align="centers"`` it is the grid of orienting first, exactly
        ``Orient`` then ``Resample`` (MONAI ``Orientation`` then ``Spacing``).
        ``Compose`` fuses ``Orient`` followed by ``Resample`` into this.
    align
        ``"edges"`` (default) or ``"centers"``: where the output grid starts.
        See :mod:`dicomml.transforms.functional.grid`; ``"centers"`` is
        MONAI ``Spacing``'s default grid, ``"edges"`` samples where torch's
        ``interpolate(scale_factor=...)`` does.
    padding
        Image values outside the input: ``"border"``, ``"zeros"``,
        ``"reflection"`` (``grid_sample``'s), or ``"fov"`` (the edge value out
        to the outer voxel edges, 0 beyond, as SimpleITK's ``Resample``).
    antialias
        Gaussian pre-filter along downsampled axes.

    Raises
    ------
    ConfigError
        Unless exactly one of ``spacing``, ``shape``, ``like`` is given, or for
        a bad ``align`` / ``padding``.

    Examples
    --------
    >>> s = Resample(spacing=1.0)({"image": torch.zeros(1, 10, 4, 4), "affine": np.diag([2.0, 1.0, 1.0, 1.0])})
    >>> tuple(s["image"].shape), float(s["affine"][0, 0])
    ((1, 20, 4, 4), 1.0)
    """

    def __init__(
        self,
        spacing: float | Sequence[float | None] | None = None,
        shape: int | Sequence[int] | None = None,
        like: Volume | tuple[np.ndarray, Sequence[int]] | None = None,
        axcodes: str | None = None,
        align: str = "edges",
        padding: str = "border",
        antialias: bool = False,
    ) -> None:
        if sum(v is not None for v in (spacing, shape, like)) != 1:
            raise ConfigError("Resample needs exactly one of spacing=, shape=, like=")
        if align not in ALIGNS:
            raise ConfigError(f"align={align!r} is not one of {ALIGNS}")
        check_padding(padding)
        self.spacing = _spacing(spacing)
        self.shape = None if shape is None else _triple(shape, "shape")
        self.like = _reference(like)
        self.axcodes = None if axcodes is None else check_axcodes(axcodes)
        self.align, self.padding, self.antialias = align, padding, antialias

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        source, shape = sample_grid(sample, "Resample")
        if isinstance(self.like, Volume):
            return {"source": source, "affine": self.like.affine, "shape": self.like.spatial_shape}
        if self.like is not None:
            return {"source": source, "affine": self.like[0], "shape": self.like[1]}
        if self.axcodes is not None and self.spacing is not None and self.align == "centers":
            # a centres grid takes no fused kernel anyway: the grid of orienting first, exactly
            affine, size = orient_grid(source, shape, self.axcodes)
            affine, size = spacing_grid(affine, size, self.spacing, self.align)  # type: ignore[arg-type]
            return {"source": source, "affine": affine, "shape": size}
        wanted: Any = self.spacing if self.spacing is not None else self.shape
        if self.axcodes is not None and not np.isscalar(wanted):
            wanted = output_axes_in_source_order(source, shape, self.axcodes, list(wanted))  # type: ignore[arg-type]
        if self.spacing is not None:
            affine, size = spacing_grid(source, shape, wanted, self.align)  # type: ignore[arg-type]
        else:
            affine, size = shape_grid(source, shape, _triple(wanted, "shape"))  # type: ignore[arg-type]
        if self.axcodes is not None:
            affine, size = orient_grid(affine, size, self.axcodes)
        return {"source": source, "affine": affine, "shape": size}


class RandomAffine(_Regrid, RandomTransform):
    """Random rotation, isotropic scaling and translation about the volume centre, in mm.

    Angles are drawn in ``[-degrees, degrees]`` about the world R, A and S
    axes, the zoom in ``[1 - scale, 1 + scale]`` and the shift in
    ``[-translate, translate]`` mm per world axis; applied with probability
    ``p``. The output keeps the input's shape; its affine is the transform
    composed with the input's, so world positions stay true. Images come out
    floating (integers as float32) whether or not the draw applies the
    transform, so a batch collates; label maps keep their dtype.

    Examples
    --------
    >>> s = RandomAffine(degrees=10, seed=0)({"image": torch.zeros(1, 4, 4, 4)})
    >>> sorted(s["meta"]["transforms"][0])
    ['applied', 'degrees', 'name', 'scale', 'translate']
    """

    def __init__(
        self,
        degrees: float = 10.0,
        scale: float = 0.1,
        translate: float = 0.0,
        p: float = 1.0,
        padding: str = "border",
        seed: int | None = None,
    ) -> None:
        degrees = check_number("RandomAffine", "degrees", degrees, ">= 0 (angles are drawn in [-degrees, degrees])", lambda v: v >= 0)
        scale = check_number("RandomAffine", "scale", scale, "in [0, 1)", lambda v: 0 <= v < 1)
        translate = check_number("RandomAffine", "translate", translate, ">= 0 (mm)", lambda v: v >= 0)
        p = check_probability("RandomAffine", p)
        check_padding(padding)
        self.degrees, self.scale, self.translate, self.p, self.padding = degrees, scale, translate, p, padding
        self.seed = check_seed("RandomAffine", seed)

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        source, shape = sample_grid(sample, "RandomAffine")
        applied = bool(self._uniform(0, 1)[0] < self.p)
        angles = self._uniform(-self.degrees, self.degrees, 3) if applied else np.zeros(3)
        zoom = float(self._uniform(1 - self.scale, 1 + self.scale)[0]) if applied else 1.0
        shift = self._uniform(-self.translate, self.translate, 3) if applied else np.zeros(3)
        world = _rotation(np.radians(angles)) * zoom
        centre = source[:3, :3] @ ((np.asarray(shape) - 1) / 2) + source[:3, 3]
        move = np.eye(4)
        move[:3, :3] = world
        move[:3, 3] = centre + shift - world @ centre
        return {
            "source": source,
            "affine": move @ source,
            "shape": shape,
            "applied": applied,
            "degrees": angles.tolist(),
            "scale": zoom,
            "translate": shift.tolist(),
        }

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        # floating whatever the draw: an unapplied (or whole-voxel) draw must not keep an int16 image int16
        return floating(super().apply_image(x, params) if params["applied"] else x)

    def apply_mask(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return super().apply_mask(x, params) if params["applied"] else x

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: params[k] for k in ("applied", "degrees", "scale", "translate")}


def _rotation(radians: np.ndarray) -> np.ndarray:
    """Rotation about R, then A, then S (world axes), 3x3."""
    out = np.eye(3)
    for axis, angle in enumerate(radians):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


class _Crop(Transform):
    """Crop (or pad) every entry to the box ``params["start"]`` + ``params["size"]``."""

    value = 0.0

    def _box(self, affine: np.ndarray, start: Sequence[int] | np.ndarray, size: Sequence[int] | np.ndarray) -> dict[str, Any]:
        start = [int(v) for v in start]
        return {"start": start, "size": [int(v) for v in size], "affine": shift_grid(affine, start)}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return crop_pad(x, params["start"], params["size"], value=self.value)

    def apply_mask(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return crop_pad(x, params["start"], params["size"], value=0)


class CropOrPad(_Crop):
    """Centre-crop or pad to ``shape`` voxels; images pad with ``value``, masks with 0.

    Examples
    --------
    >>> CropOrPad((2, 6, 4))(torch.ones(1, 4, 4, 4)).shape
    torch.Size([1, 2, 6, 4])
    """

    def __init__(self, shape: int | Sequence[int], value: float = 0.0) -> None:
        self.shape, self.value = _triple(shape, "shape"), check_number("CropOrPad", "value", value)

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        affine, n = sample_grid(sample, "CropOrPad")
        return self._box(affine, (np.asarray(n) - np.asarray(self.shape)) // 2, self.shape)


class CropForeground(_Crop):
    """Crop every entry to the bounding box of ``sample[source] > threshold`` plus ``margin`` voxels.

    ``source`` names a spatial entry of the sample; ``margin`` is one or three
    voxel counts >= 0. When nothing exceeds the threshold the sample is kept
    whole. The box is recorded in ``meta["transforms"]``.

    Examples
    --------
    >>> x = torch.zeros(1, 5, 5, 5); x[0, 1:3, 2, 2:4] = 1
    >>> CropForeground()(x).shape
    torch.Size([1, 2, 1, 2])
    """

    def __init__(self, source: str = "image", threshold: float = 0.0, margin: int | Sequence[int] = 0) -> None:
        if not isinstance(source, str) or source in RESERVED:
            raise ConfigError(f"CropForeground(source={source!r}): source must name a spatial entry such as 'image'")
        self.source = source
        self.threshold = check_number("CropForeground", "threshold", threshold)
        self.margin = _triple(margin, "CropForeground(margin)", minimum=0)

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        affine, shape = sample_grid(sample, "CropForeground")
        n = np.asarray(shape)
        if self.source not in spatial_keys(sample):
            raise ConfigError(f"CropForeground(source={self.source!r}): the sample's spatial entries are {spatial_keys(sample)}")
        value = sample[self.source]
        found = (value.reshape(-1, *value.shape[-3:]) > self.threshold).any(dim=0)
        if not bool(found.any()):
            return self._box(affine, (0, 0, 0), n)
        lo = np.array([int(torch.nonzero(found.any(dim=tuple(e for e in range(3) if e != d)))[0]) for d in range(3)])
        hi = np.array([int(torch.nonzero(found.any(dim=tuple(e for e in range(3) if e != d)))[-1]) + 1 for d in range(3)])
        margin = np.asarray(self.margin)
        lo, hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, n)
        return self._box(affine, lo, hi - lo)

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"start": params["start"], "size": params["size"]}


class RandomCrop(_Crop, RandomTransform):
    """Crop ``shape`` voxels at a random position (padding first where the volume is smaller).

    Examples
    --------
    >>> s = RandomCrop((2, 2, 2), seed=0)({"image": torch.zeros(1, 4, 4, 4)})
    >>> tuple(s["image"].shape), len(s["meta"]["transforms"][0]["start"])
    ((1, 2, 2, 2), 3)
    """

    def __init__(self, shape: int | Sequence[int], value: float = 0.0, seed: int | None = None) -> None:
        self.shape, self.value, self.seed = (
            _triple(shape, "shape"),
            check_number("RandomCrop", "value", value),
            check_seed("RandomCrop", seed),
        )

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        affine, shape = sample_grid(sample, "RandomCrop")
        spare = np.asarray(shape) - np.asarray(self.shape)
        low, high = np.minimum(spare, 0), np.maximum(spare, 0)
        start = np.floor(low + self._uniform(0, 1, 3) * (high - low + 1)).astype(int)
        return self._box(affine, np.minimum(start, high), self.shape)

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"start": params["start"], "size": params["size"]}


class RandomFlip(RandomTransform):
    """Flip each of ``axes`` (spatial array axes 0, 1, 2; one int or several) with probability ``p``.

    The draw is recorded as ``"flipped"``: one bool per spatial axis 0, 1, 2,
    the same length for every sample, so records collate into a batch
    (``torch.flip(x, [1 + a for a, f in enumerate(flipped) if f])`` undoes it).

    Examples
    --------
    >>> s = RandomFlip(axes=2, p=1.0)({"image": torch.arange(3.0).view(1, 1, 1, 3)})
    >>> s["image"].flatten().tolist(), s["meta"]["transforms"][0]["flipped"]
    ([2.0, 1.0, 0.0], [False, False, True])
    """

    def __init__(self, axes: int | Sequence[int] = (0, 1, 2), p: float = 0.5, seed: int | None = None) -> None:
        items = [axes] if isinstance(axes, (int, np.integer)) else list(axes) if isinstance(axes, (Sequence, np.ndarray)) else [None]
        valid = all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a in (0, 1, 2) for a in items)
        if not valid or len(set(items)) != len(items):
            raise ConfigError(f"RandomFlip(axes={axes!r}, p={p!r}): axes are spatial 0, 1, 2, each at most once (one int or several)")
        self.axes, self.p, self.seed = tuple(int(a) for a in items), check_probability("RandomFlip", p), check_seed("RandomFlip", seed)  # type: ignore[arg-type]

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        draws = self._uniform(0, 1, len(self.axes))
        flipped = [False, False, False]
        for a, u in zip(self.axes, draws):
            flipped[a] = bool(u < self.p)
        affine, n = sample_grid(sample, "RandomFlip")
        mirror = np.eye(4)
        for a in range(3):
            if flipped[a]:
                mirror[a, a], mirror[a, 3] = -1.0, n[a] - 1.0
        return {"flipped": flipped, "affine": affine @ mirror}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return flip(x, [1 + a for a in range(3) if params["flipped"][a]])

    apply_mask = apply_image

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"flipped": list(params["flipped"])}

"""Bridge to MONAI: samples of plain tensors <-> MONAI ``MetaTensor`` dicts.

dicomml keeps plain tensors plus an explicit ``affine`` on the hot path
(MetaTensor's ``__torch_function__`` adds a large cost to every op, MONAI PR #4223);
these two functions convert at the edge for MONAI transforms, inferers and
savers.

MetaTensors carry no label-map type. A MetaTensor is read as a label map
(resampled nearest, integer dtype kept) when its ``meta["kind"]`` is
``"mask"`` (what :func:`to_metatensor` writes), when it is ``bool``, or when
it sits under a key of ``label_keys`` (by default :data:`LABEL_KEYS`:
``"label"``, ``"seg"``, ``"mask"``, the names MONAI's examples give
``LoadImaged`` outputs). Other keys hold images, whatever their dtype (an
``int16`` CT is an image); tag a label map under another key with
``meta["kind"] = "mask"``. MONAI is imported on first use, so ``import dicomml.transforms``
stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dicomml._optional import require
from dicomml.transforms.base import LABEL_KEYS, Mask, is_label, sample_affine, spatial_keys, to_sample

__all__ = ["from_metatensor", "to_metatensor"]


def to_metatensor(data: Any, *, channel: bool = True) -> Any:
    """Spatial entries as MONAI ``MetaTensor`` s carrying the sample's affine.

    Parameters
    ----------
    data
        A sample dict, a tensor or a :class:`~dicomml.Volume`.
    channel
        Give a 3-axis entry (a 3D Volume, an ``(i, j, k)`` tensor) a leading
        channel axis, ``(1, i, j, k)``: MONAI's transforms take the first axis
        as channels.

    Returns
    -------
    dict or MetaTensor
        For a dict: the same dict with each spatial entry a MetaTensor
        (``.affine`` float64; label maps get ``meta["kind"] = "mask"``) and no
        ``"affine"`` key; other keys unchanged. For a tensor or Volume: the image (or mask) MetaTensor.

    Examples
    --------
    >>> to_metatensor({"image": torch.zeros(1, 2, 2, 2)})["image"].affine.shape
    torch.Size([4, 4])
    >>> to_metatensor(torch.zeros(2, 3, 4)).shape
    torch.Size([1, 2, 3, 4])
    """
    MetaTensor = require("monai.data", extra="monai", feature="MONAI MetaTensors (to_metatensor)").MetaTensor

    sample, _ = to_sample(data)
    affine = torch.from_numpy(sample_affine(sample))
    meta = dict(sample.get("meta") or {})
    out = {k: v for k, v in sample.items() if k != "affine"}  # the MetaTensors carry it
    for key in spatial_keys(sample):
        value = sample[key]
        extra = {"kind": "mask"} if is_label(value) else {}
        plain = value.as_subclass(torch.Tensor)
        plain = plain[None] if channel and plain.ndim == 3 else plain
        out[key] = MetaTensor(plain, affine=affine.clone(), meta={**meta, **extra})
    if isinstance(data, Mapping):
        return out
    return out[spatial_keys(sample)[0]]


def from_metatensor(data: Any, label_keys: tuple[str, ...] = LABEL_KEYS) -> dict[str, Any]:
    """A dicomml sample (plain tensors, ``affine``, ``meta``) from MetaTensor(s).

    Parameters
    ----------
    data
        A MetaTensor (becomes ``"image"``, or ``"mask"`` when its meta says
        ``kind == "mask"``) or a dict holding MetaTensors.
    label_keys
        Keys whose MetaTensors are label maps whatever their meta (see the
        module docstring); ``()`` leaves only ``meta["kind"]`` and ``bool``.

    Returns
    -------
    dict
        Plain tensors (label maps as :class:`Mask`), ``"affine"`` (4x4 float64
        numpy, from the first MetaTensor, replacing any ``"affine"`` key) and
        ``"meta"`` (kept when present, else the first MetaTensor's).

    Examples
    --------
    >>> from monai.data import MetaTensor
    >>> s = from_metatensor(MetaTensor(torch.zeros(1, 2, 2, 2)))
    >>> sorted(s), s["affine"].dtype
    (['affine', 'image', 'meta'], dtype('float64'))
    >>> type(from_metatensor({"label": MetaTensor(torch.zeros(1, 2, 2, 2))})["label"]).__name__
    'Mask'
    """
    MetaTensor = require("monai.data", extra="monai", feature="MONAI MetaTensors (from_metatensor)").MetaTensor

    if isinstance(data, MetaTensor):
        data = {"mask" if data.meta.get("kind") == "mask" else "image": data}
    out: dict[str, Any] = {k: v for k, v in data.items() if k != "affine"}
    for key, value in data.items():
        if not isinstance(value, MetaTensor):
            continue
        if "affine" not in out:
            out["affine"] = value.affine.detach().cpu().double().numpy()
        if "meta" not in out:
            out["meta"] = {k: v for k, v in value.meta.items() if k not in ("affine", "kind") and not k.startswith("original_")}
        plain = value.as_tensor()
        label = value.meta.get("kind") == "mask" or key in label_keys or plain.dtype == torch.bool
        out[key] = Mask(plain) if label else plain
    return out

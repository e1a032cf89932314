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

import numpy as np
import torch

from dicomml._optional import require
from dicomml.errors import GeometryError
from dicomml.transforms.base import LABEL_KEYS, Mask, is_label, sample_affine, spatial_keys, to_sample

__all__ = ["from_metatensor", "to_metatensor"]


def to_metatensor(data: Any, *, channel: bool = True) -> Any:
    """Spatial entries as MONAI ``MetaTensor`` s carrying the sample's affine.

    Parameters
    ----------
    data
        A sample dict, a tensor or a :class:`~dicomml.Volume`; or a batch from
        :func:`dicomml.data.collate` (entries ``(B, C, i, j, k)``, ``"affine"``
        ``(B, 4, 4)`` or a list of 4x4, ``"meta"`` a list of dicts).
    channel
        Give a 3-axis entry (a 3D Volume, an ``(i, j, k)`` tensor; ``(B, i, j, k)``
        in a batch) a channel axis, ``(1, i, j, k)``: MONAI's transforms take
        the first axis (after the batch's) as channels.

    Returns
    -------
    dict or MetaTensor
        For a dict: the same dict with each spatial entry a MetaTensor
        (``.affine`` float64; label maps get ``meta["kind"] = "mask"``) and no
        ``"affine"`` key; other keys unchanged. For a tensor or Volume: the image (or mask) MetaTensor.
        For a batch, what MONAI's ``list_data_collate`` makes of the samples'
        MetaTensors: ``is_batch``, ``.affine`` ``(B, 4, 4)``, ``meta`` each key
        batched by ``default_collate`` (a key it cannot batch, such as one
        holding None, stays a list), without copying the entries.

    Raises
    ------
    GeometryError
        If an affine is not 4x4, or a batch's entries, affines and metas differ in length.

    Examples
    --------
    >>> to_metatensor({"image": torch.zeros(1, 2, 2, 2)})["image"].affine.shape
    torch.Size([4, 4])
    >>> to_metatensor(torch.zeros(2, 3, 4)).shape
    torch.Size([1, 2, 3, 4])
    """
    MetaTensor = require("monai.data", extra="monai", feature="MONAI MetaTensors (to_metatensor)").MetaTensor

    affines = _batch_affines(data)
    if affines is not None:
        return _batch_to_metatensor(data, affines, channel)
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


def _batch_affines(data: Any) -> torch.Tensor | None:
    """A batch's ``(B, 4, 4)`` affines, or None when ``data`` is not a batch from :func:`dicomml.data.collate`."""
    value = data.get("affine") if isinstance(data, Mapping) else None
    if isinstance(value, (list, tuple)):  # collate keeps numpy affines as a list
        value = torch.stack([torch.as_tensor(np.asarray(v)) for v in value])
    if not isinstance(value, (torch.Tensor, np.ndarray)) or value.ndim != 3:
        return None
    return torch.as_tensor(value).detach().cpu().double()


def _batch_to_metatensor(batch: Mapping[str, Any], affines: torch.Tensor, channel: bool) -> dict[str, Any]:
    """A batch as MONAI's ``collate_meta_tensor_fn`` batches the samples' MetaTensors, without stacking a copy."""
    from monai.data import MetaTensor
    from monai.utils import TraceKeys

    n = len(affines)
    metas = batch.get("meta") or [{}] * n
    keys = spatial_keys(batch)
    lengths = {"affine": n, "meta": len(metas), **{k: len(batch[k]) for k in keys}}
    if isinstance(metas, Mapping) or len(set(lengths.values())) > 1:
        raise GeometryError(f"a batch's entries, affines and metas (a list) must have one length; got {lengths}")
    out = {k: v for k, v in batch.items() if k != "affine"}
    for key in keys:
        value = batch[key]
        # each sample as to_metatensor makes it (views), for the per-sample meta MONAI would batch
        samples = [to_metatensor({key: value[i], "affine": affines[i], "meta": metas[i]}, channel=channel)[key] for i in range(n)]
        plain = value.as_subclass(torch.Tensor)
        plain = plain[:, None] if channel and plain.ndim == 4 else plain
        common = set.intersection(*(set(s.meta) for s in samples))
        meta = {k: _collate([s.meta[k] for s in samples]) for k in samples[0].meta if k in common}
        mt = MetaTensor(plain, meta=meta, applied_operations=[s.applied_operations or TraceKeys.NONE for s in samples])
        mt.is_batch = True
        mt.spatial_ndim = min(min(s.spatial_ndim for s in samples), max(mt.ndim - 1, 1))
        out[key] = mt
    return out


def _collate(values: list[Any]) -> Any:
    """``default_collate(values)`` as MONAI batches a meta key, or ``values`` where it cannot (None, ragged lists)."""
    try:
        return torch.utils.data.default_collate(values)
    except (TypeError, RuntimeError):
        return values


def from_metatensor(data: Any, label_keys: tuple[str, ...] = LABEL_KEYS) -> dict[str, Any]:
    """A dicomml sample (plain tensors, ``affine``, ``meta``) from MetaTensor(s).

    Parameters
    ----------
    data
        A MetaTensor (becomes ``"image"``, or ``"mask"`` when its meta says
        ``kind == "mask"``) or a dict holding MetaTensors; or a batch of them
        (``is_batch``, as MONAI's ``list_data_collate`` or :func:`to_metatensor`
        of a batch make).
    label_keys
        Keys whose MetaTensors are label maps whatever their meta (see the
        module docstring); ``()`` leaves only ``meta["kind"]`` and ``bool``.

    Returns
    -------
    dict
        Plain tensors (label maps as :class:`Mask`), ``"affine"`` (4x4 float64
        numpy, from the first MetaTensor, replacing any ``"affine"`` key) and
        ``"meta"`` (kept when present, else the first MetaTensor's). For a
        batch, what :func:`dicomml.data.collate` gives: ``"affine"``
        ``(B, 4, 4)`` and ``"meta"`` a list of per-sample dicts (MONAI's
        ``decollate_batch``).

    Examples
    --------
    >>> from monai.data import MetaTensor
    >>> s = from_metatensor(MetaTensor(torch.zeros(1, 2, 2, 2)))
    >>> sorted(s), s["affine"].dtype
    (['affine', 'image', 'meta'], dtype('float64'))
    >>> type(from_metatensor({"label": MetaTensor(torch.zeros(1, 2, 2, 2))})["label"]).__name__
    'Mask'
    """
    monai_data = require("monai.data", extra="monai", feature="MONAI MetaTensors (from_metatensor)")
    MetaTensor, decollate_batch = monai_data.MetaTensor, monai_data.decollate_batch

    if isinstance(data, MetaTensor):
        data = {"mask" if _tagged_mask(data) else "image": data}
    out: dict[str, Any] = {k: v for k, v in data.items() if k != "affine"}
    for key, value in data.items():
        if not isinstance(value, MetaTensor):
            continue
        if "affine" not in out:
            out["affine"] = value.affine.detach().cpu().double().numpy()
        if "meta" not in out:
            metas = decollate_batch(value.meta) if value.is_batch else [value.meta]
            kept = [{k: v for k, v in m.items() if k not in ("affine", "kind") and not k.startswith("original_")} for m in metas]
            out["meta"] = kept if value.is_batch else kept[0]
        plain = value.as_tensor()
        label = _tagged_mask(value) or key in label_keys or plain.dtype == torch.bool
        out[key] = Mask(plain) if label else plain
    return out


def _tagged_mask(value: Any) -> bool:
    """Whether a MetaTensor's meta says ``kind == "mask"`` (in a batch: every sample's does)."""
    kind = value.meta.get("kind")
    return bool(kind == "mask" or (value.is_batch and isinstance(kind, list) and kind and all(k == "mask" for k in kind)))

"""Samples, the :class:`Mask` type and the :class:`Transform` base class.

A *sample* is a dict: spatial entries (tensors whose last three axes are
spatial, normally ``(C, i, j, k)``), ``"affine"`` (4x4, the entries' indices to
RAS+ mm, numpy or tensor) and ``"meta"`` (a dict). Every spatial entry of a
sample shares that one grid. Other keys pass through untouched.

Which entries are label maps: a :class:`Mask`, or a ``bool`` tensor. Label
maps are resampled nearest, padded with 0 and never windowed or normalized.
Every other tensor is an image, whatever its dtype (CT stays ``int16`` HU in
dicomml, so an integer dtype does not mean labels). A :class:`~dicomml.Volume`
is a label map when ``volume.meta["kind"] == "mask"``. MONAI ``MetaTensor`` s
carry no such type: :func:`~dicomml.transforms.from_metatensor` takes those
under the keys of :data:`LABEL_KEYS`, or tagged ``meta["kind"] == "mask"``,
as label maps.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils._pytree import tree_map_only

from dicomml.errors import ConfigError, GeometryError
from dicomml.geometry.checks import affine_problem
from dicomml.geometry.directions import reaxis_table
from dicomml.volume import Volume

__all__ = ["Mask", "Transform", "drawing_from", "is_label", "sample_affine", "sample_grid", "spatial_keys", "spatial_shape"]

#: Sample keys that are not spatial entries.
RESERVED = ("affine", "meta")

#: Keys of a MONAI dict whose MetaTensors are label maps (MONAI's own naming: ``LoadImaged(keys=["image", "label"])``).
LABEL_KEYS = ("label", "seg", "mask")


def check_number(owner: str, name: str, value: Any, need: str = "", ok: Callable[[float], bool] | None = None) -> float:
    """``value`` as a float, or a one-line :class:`~dicomml.errors.ConfigError` naming the parameter.

    Accepts Python and numpy numbers (not bools); rejects NaN and infinities.

    Parameters
    ----------
    owner, name
        The transform and parameter, for the message: ``RandomAffine(degrees=nan)``.
    need
        What ``ok`` asks, for the message (``">= 0"``).
    ok
        A further test of the float.

    Raises
    ------
    ConfigError
        For anything else.

    Examples
    --------
    >>> check_number("RandomNoise", "std", np.float32(0.5), ">= 0", lambda v: v >= 0)
    0.5
    """
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not number or not math.isfinite(float(value)) or (ok is not None and not ok(float(value))):
        raise ConfigError(f"{owner}({name}={value!r}): {name} must be a finite number{' ' + need if need else ''}")
    return float(value)


def check_probability(owner: str, p: Any) -> float:
    """``p`` as a float in [0, 1], else :class:`~dicomml.errors.ConfigError`."""
    return check_number(owner, "p", p, "in [0, 1]", lambda v: 0 <= v <= 1)


def check_seed(owner: str, seed: Any) -> int | None:
    """A random transform's ``seed``: None or an int >= 0, else :class:`~dicomml.errors.ConfigError`."""
    return None if seed is None else check_int(owner, "seed", seed, ">= 0", lambda v: v >= 0)


def check_int(owner: str, name: str, value: Any, need: str = "", ok: Callable[[int], bool] | None = None) -> int:
    """``value`` as an int (Python or numpy integer, not a bool), else :class:`~dicomml.errors.ConfigError`."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or (ok is not None and not ok(int(value))):
        raise ConfigError(f"{owner}({name}={value!r}): {name} must be an integer{' ' + need if need else ''}")
    return int(value)


#: Tensor ops that move, copy, cast or slice a :class:`Mask` without changing what it means: they keep the tag.
_KEEPS_MASK = frozenset(
    {
        *(getattr(torch.Tensor, name) for name in ("__getitem__", "__iter__", "select", "unbind", "split", "chunk")),
        *(getattr(torch, name) for name in ("select", "unbind", "split", "chunk", "clone", "detach")),
        *(getattr(torch.Tensor, name) for name in ("to", "cpu", "cuda", "pin_memory", "clone", "detach", "contiguous")),
        torch.Tensor.requires_grad_,
        *(getattr(torch.Tensor, name) for name in ("float", "double", "half", "bfloat16", "long", "int", "short", "byte", "char", "bool")),
    }
)


class Mask(torch.Tensor):
    """A label map: a tensor that spatial transforms resample nearest.

    A thin tag like torchvision's ``tv_tensors.Mask`` or TorchIO's
    ``LabelMap``. As in torchvision, the ops that move, copy, cast or slice it
    keep the tag: indexing and iterating (``batch["mask"][0]``), ``select``,
    ``unbind``, ``split``, ``chunk``, ``to`` (device or dtype), ``cpu``,
    ``cuda``, ``pin_memory``, ``clone``, ``detach``, ``contiguous``,
    ``requires_grad_`` and the dtype casts (``float()``, ``long()``,
    ``byte()``...). Every other op (arithmetic, ``torch.stack``, reshapes)
    returns a plain tensor, at the cost of one set lookup; an in-place op
    returns the Mask it changed. The transforms and
    :func:`dicomml.data.collate` re-tag their outputs.

    Examples
    --------
    >>> m = Mask(torch.zeros(2, 1, 2, 2, 2, dtype=torch.uint8))
    >>> type(m[0]).__name__, type(m.float()).__name__, type(m + 1).__name__
    ('Mask', 'Mask', 'Tensor')
    """

    def __new__(cls, data: Any) -> Mask:
        return torch.as_tensor(data).as_subclass(cls)

    @classmethod
    def __torch_function__(cls, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        if not all(issubclass(cls, t) for t in types):  # beside another subclass (a MetaTensor) be a plain tensor: it decides
            args, kwargs = tree_map_only(Mask, lambda m: m.as_subclass(torch.Tensor), (args, kwargs or {}))
            return func(*args, **kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        # args[0]: only a Mask's own method keeps the tag (plain.to(mask) stays plain)
        return _tag(out) if func in _KEEPS_MASK and isinstance(args[0], cls) else out

    def __deepcopy__(self, memo: dict[int, Any]) -> Mask:  # MONAI's CacheDataset deep-copies samples
        return Mask(copy.deepcopy(self.as_subclass(torch.Tensor), memo))


def _tag(out: Any) -> Any:
    """``out`` of a tag-keeping op as Mask(s): a tensor, a tuple (unbind, split) or an iterator (``__iter__``)."""
    if isinstance(out, torch.Tensor):
        return out.as_subclass(Mask)
    if isinstance(out, tuple):
        return tuple(_tag(part) for part in out)
    return iter(_tag(tuple(out)))


def is_label(value: Any) -> bool:
    """Whether a sample entry is a label map (a :class:`Mask` or a bool tensor).

    Examples
    --------
    >>> is_label(Mask(torch.zeros(1, 2, 2, 2))), is_label(torch.zeros(1, 2, 2, 2, dtype=torch.int16))
    (True, False)
    """
    return isinstance(value, Mask) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def spatial_keys(sample: Mapping[str, Any]) -> list[str]:
    """Keys of the spatial entries: tensors with at least three axes.

    Examples
    --------
    >>> spatial_keys({"image": torch.zeros(1, 2, 2, 2), "label": torch.tensor(3), "affine": torch.eye(4)})
    ['image']
    """
    return [k for k, v in sample.items() if k not in RESERVED and isinstance(v, torch.Tensor) and v.ndim >= 3]


def spatial_shape(sample: Mapping[str, Any]) -> tuple[int, int, int]:
    """The spatial shape that every spatial entry of ``sample`` shares.

    Raises
    ------
    GeometryError
        If there is no spatial entry or two entries differ.
    """
    shapes = {k: tuple(sample[k].shape[-3:]) for k in spatial_keys(sample)}
    if not shapes:
        raise GeometryError(f"sample has no spatial entry (a tensor of >= 3 axes); keys {sorted(sample)}")
    if len(set(shapes.values())) > 1:
        raise GeometryError(f"sample entries lie on different grids {shapes}; resample them to one grid first")
    return next(iter(shapes.values()))  # type: ignore[return-value]


def sample_affine(sample: Mapping[str, Any]) -> np.ndarray:
    """The sample's affine as 4x4 float64 numpy (identity, 1 mm voxels, when absent).

    Raises
    ------
    GeometryError
        If the affine is not 4x4.
    """
    value = sample.get("affine")
    if value is None:
        return np.eye(4)
    affine = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if affine.shape != (4, 4):
        batch = "; dicomml transforms take one sample: index the batch (batch['image'][i]) first" if affine.ndim == 3 else ""
        raise GeometryError(f"sample affine must be 4x4, got {affine.shape}{batch}")
    return affine


def sample_grid(sample: Mapping[str, Any], owner: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The sample's affine and spatial shape, checked as a voxel grid for a spatial transform.

    Parameters
    ----------
    sample
        A sample dict.
    owner
        The transform, for the message.

    Raises
    ------
    GeometryError
        Naming ``owner``: for an affine that is not 4x4, not finite or
        singular, a spatial axis of size 0, or entries on different grids.
    """
    try:
        affine, shape = sample_affine(sample), spatial_shape(sample)
    except GeometryError as exc:
        raise GeometryError(f"{owner}: {exc}") from None
    problem = affine_problem(affine) or (f"spatial shape {shape} has an empty axis" if 0 in shape else None)
    if problem is not None:
        raise GeometryError(f"{owner}: the sample's {problem}; a spatial transform needs a voxel grid")
    return affine, shape


def _like(affine: np.ndarray, previous: Any) -> Any:
    """``affine`` in the type the sample held (tensor or numpy)."""
    return torch.from_numpy(affine) if isinstance(previous, torch.Tensor) else affine


def _from_volume(volume: Volume) -> tuple[dict[str, Any], Callable[[dict[str, Any]], Volume]]:
    array = volume.array if volume.array.flags.writeable else volume.array.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    key, value = ("mask", Mask(tensor)) if volume.meta.get("kind") == "mask" else ("image", tensor)
    sample = {key: value, "affine": volume.affine, "meta": volume.meta}

    def restore(out: dict[str, Any]) -> Volume:
        data = out[key].detach().cpu().as_subclass(torch.Tensor).numpy()
        axes = volume.axes if data.shape[:-3] == volume.array.shape[:-3] else ("channel",) * (data.ndim - 3)
        affine = sample_affine(out)
        return Volume(data, affine, axes, reaxis_table(out.get("meta") or {}, volume.affine, affine))

    return sample, restore


def to_sample(data: Any) -> tuple[dict[str, Any], Callable[[dict[str, Any]], Any]]:
    """A sample dict for ``data`` and the function that turns a result back into ``data``'s kind.

    Parameters
    ----------
    data
        A sample dict, a tensor (``(C, i, j, k)`` or ``(i, j, k)``; identity
        affine) or a :class:`~dicomml.Volume`. MONAI MetaTensors (alone or in
        a dict) are read through :func:`~dicomml.transforms.from_metatensor`
        and given back as MetaTensors.

    Raises
    ------
    GeometryError
        For any other input.
    """
    values = data.values() if isinstance(data, Mapping) else [data]
    if any(isinstance(v, torch.Tensor) and hasattr(v, "affine") and hasattr(v, "meta") for v in values):
        from dicomml.transforms.metatensor import from_metatensor, to_metatensor

        sample = from_metatensor(data)
        if isinstance(data, Mapping):
            given = set(data)  # MONAI's dict gets no key it did not have: the MetaTensors carry affine and meta

            def restore_dict(out: dict[str, Any]) -> dict[str, Any]:
                back = to_metatensor(out, channel=False)
                return {k: v for k, v in back.items() if k in given or k not in RESERVED}

            return sample, restore_dict
        key = spatial_keys(sample)[0]
        return sample, lambda out: to_metatensor(out, channel=False)[key]
    if isinstance(data, Mapping):
        return dict(data), lambda out: out
    if isinstance(data, torch.Tensor):
        return {"image": data}, lambda out: out["image"]
    if isinstance(data, Volume):
        return _from_volume(data)
    raise GeometryError(f"transforms take a sample dict, a tensor or a Volume; got {type(data).__name__}")


class Transform:
    """Base of every dicomml transform: draw parameters once, apply them to every entry.

    Calling a transform accepts a sample dict, a tensor or a Volume and returns
    the same kind. :meth:`make_params` looks at the whole sample once (and
    draws any random numbers); :meth:`apply_image` and :meth:`apply_mask` then
    get each entry as a ``(C, i, j, k)`` tensor with those same parameters, so
    an image and its masks stay aligned. A ``params["affine"]`` becomes the
    sample's new affine; :meth:`record` returns what goes into
    ``meta["transforms"]``.
    """

    #: Whether the output at a voxel is a fixed function of that voxel's value alone (no
    #: random draw, no statistic of the image, no neighbour): then :meth:`lookup_table` answers.
    pointwise = False

    def __call__(self, data: Any) -> Any:
        sample, restore = to_sample(data)
        return restore(self.apply(sample, self.make_params(sample)))

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Parameters for this sample (grids, random draws); none by default."""
        return {}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """Transform one image entry, ``(C, i, j, k)``; unchanged by default."""
        return x

    def apply_mask(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """Transform one label-map entry, ``(C, i, j, k)``; unchanged by default."""
        return x

    def record(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """What to append to ``meta["transforms"]`` (random draws); nothing by default."""
        return None

    def lookup_table(self, dtype: Any) -> np.ndarray | None:
        """This transform as a table to fuse into the cache read of a one-channel ``dtype`` image, or None.

        A :attr:`pointwise` transform of an 8/16-bit integer image is a
        lookup table: ``(C, 2**bits)``, row ``c`` being output channel ``c``
        for every stored value, indexed by the value's bits read as unsigned
        (:meth:`dicomml.cache.CacheEntry.read` ``lookup=``). The Datasets ask
        their first at-load transform; when it answers, the image is mapped
        while its chunks are decoded (one pass) and the transform is skipped.

        Parameters
        ----------
        dtype
            The stored image's dtype.

        Returns
        -------
        numpy.ndarray or None
            None when the transform is not pointwise or the dtype is not an
            integer of at most 16 bits.

        Examples
        --------
        >>> from dicomml.transforms import Window
        >>> Window(40, 80).lookup_table("uint8").shape, Window(40, 80).lookup_table("float32")
        ((1, 256), None)
        """
        dtype = np.dtype(dtype)
        if not self.pointwise or dtype.kind not in "iu" or dtype.itemsize > 2:
            return None
        values = torch.from_numpy(np.arange(2 ** (8 * dtype.itemsize), dtype=f"u{dtype.itemsize}").view(dtype))
        if dtype == np.uint16:  # torch has few kernels for uint16: its values are exact in int32
            values = values.to(torch.int32)
        out = self.apply_image(values.reshape(1, 1, 1, -1), {})
        return np.ascontiguousarray(out.reshape(out.shape[0], -1).numpy())

    def apply(self, sample: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Apply ``params`` to every spatial entry of ``sample``; returns a new dict."""
        out = dict(sample)
        for key in spatial_keys(sample):
            value = sample[key]
            lead = value.shape[:-3]
            x = value.as_subclass(torch.Tensor).reshape(math.prod(lead), *value.shape[-3:])  # not -1: an empty entry has no -1
            label = is_label(value)
            y = self.apply_mask(x, params) if label else self.apply_image(x, params)
            if y.shape[0] == x.shape[0]:
                y = y.reshape(*lead, *y.shape[-3:])
            out[key] = Mask(y) if isinstance(value, Mask) else y
        if "affine" in params:
            out["affine"] = _like(params["affine"], sample.get("affine"))
        entry = self.record(params)
        if entry is not None:
            meta = dict(sample.get("meta") or {})
            meta["transforms"] = [*meta.get("transforms", ()), {"name": type(self).__name__, **entry}]
            out["meta"] = meta
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


#: Per thread: the generator random transforms without a ``seed`` draw from (None: torch's global one); see :func:`drawing_from`.
_draws = threading.local()


@contextlib.contextmanager
def drawing_from(generator: torch.Generator | None) -> Iterator[None]:
    """Within the block, this thread's random transforms without a ``seed`` draw from ``generator`` (None: torch's global one).

    The Datasets set a generator seeded by (seed, epoch, index) around each
    sample, so threads making samples at once draw apart and torch's global
    generator (the training loop's dropout and shuffling) is left alone.

    Parameters
    ----------
    generator
        A CPU ``torch.Generator``, or None.

    Examples
    --------
    >>> from dicomml.transforms import RandomIntensity
    >>> def drawn():
    ...     with drawing_from(torch.Generator().manual_seed(1)):
    ...         return RandomIntensity()({"image": torch.zeros(1, 1, 1, 1)})["meta"]["transforms"]
    >>> drawn() == drawn()
    True
    """
    previous = getattr(_draws, "generator", None)
    _draws.generator = generator
    try:
        yield
    finally:
        _draws.generator = previous


class RandomTransform(Transform):
    """A transform with random parameters, drawn once per sample in :meth:`make_params`.

    Draws come from the thread's generator of :func:`drawing_from` (a
    Dataset's, seeded per sample), else from torch's default generator, which
    DataLoader seeds per worker. Give ``seed`` to a subclass for a private, reproducible stream:
    in the main process it starts from ``seed``; in a DataLoader worker from
    ``seed`` and the worker's id (``torch.utils.data.get_worker_info().id``),
    so each worker repeats its own draws from run to run and no two workers
    draw alike. A worker that starts afresh each epoch (``persistent_workers=False``)
    starts its stream afresh too.
    """

    seed: int | None = None
    _stream_of: int | None
    _generator: torch.Generator | None

    def _uniform(self, low: float, high: float, n: int = 1) -> np.ndarray:
        worker = _worker_id()
        if not hasattr(self, "_generator") or self._stream_of != worker:
            self._stream_of, self._generator = worker, None
            if self.seed is not None:
                start = int(self.seed)
                if worker is not None:  # worker w: seed and w mixed by numpy's SeedSequence, so no two workers share a stream
                    start = int(np.random.SeedSequence([start, worker]).generate_state(1, np.uint64)[0] >> np.uint64(1))
                self._generator = torch.Generator().manual_seed(start)
        generator = self._generator if self._generator is not None else getattr(_draws, "generator", None)
        u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        return low + (high - low) * u


def _worker_id() -> int | None:
    """The DataLoader worker this runs in, or None in the main process."""
    info = torch.utils.data.get_worker_info()
    return None if info is None else int(info.id)

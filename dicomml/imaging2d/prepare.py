"""From a 2D image's manifest row to network-ready planes, and into the cache.

:func:`prepare_image` is the deterministic part (display values, display
convention, scaling to [0, 1], resize or letterbox); :func:`preprocess_image`
keys it by the file's content and the config and stores it as one cache
entry per image x config. :func:`dicomml.preprocess_images` runs many
images per task, so that millions of small images do not become millions of
tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dicomml.cache import Cache, source_fingerprint
from dicomml.cache.key import FORMAT_VERSION
from dicomml.config import did_you_mean, read_yaml_file
from dicomml.errors import ConfigError
from dicomml.imaging2d.choices import DISPLAYS, FACINGS, check_choice, checked_voi, voi_window
from dicomml.imaging2d.resize import RESIZE_MODES, fit
from dicomml.paths import check_unchanged
from dicomml.transforms.base import check_int

if TYPE_CHECKING:
    from dicomml.sources import Remote

__all__ = [
    "IMAGE_RULES",
    "ImageConfig",
    "from_stored",
    "image_key",
    "output_size",
    "prepare_image",
    "preprocess_image",
    "stored_scale",
    "to_stored",
]


@dataclass(frozen=True)
class ImageConfig:
    """How a 2D image becomes a sample; everything here is hashed into the cache key.

    Attributes
    ----------
    size
        Output (rows, columns), or None to keep the image's own.
    resize
        ``"letterbox"`` (keep the aspect ratio, pad with 0), ``"stretch"`` or ``"none"``.
    voi
        ``"header"``, ``"none"``, an index of the header's windows/tables,
        a (center, width) window, or the name of a :data:`~dicomml.transforms.WINDOW_PRESETS` preset.
    display
        None, ``"breast"`` or ``"chest"``: flip to that display convention.
    facing
        For ``"breast"``: the side every nipple points to.
    reduced_decode
        With ``resize="letterbox"``: decode JPEG 2000 images much larger than
        ``size`` at a coarser wavelet level (:mod:`~dicomml.imaging2d.j2k`): several times faster
        for mammograms, values close to but not those of the full-size path.
    dtype
        How samples are kept: ``"uint16"``, [0, 1] in steps of 1/65535 (at
        most 1/131070 off the float32 image, a 32nd of a 12-bit source's grey
        step; the float32 image is itself within about 1e-7 of the exact
        display value; half the bytes of float32, so a cached epoch reads
        faster), or ``"float32"``.
        Samples are float32 either way, the same with or without a cache.
    """

    size: tuple[int, int] | None = (512, 512)
    resize: str = "letterbox"
    voi: str | int | tuple[float, float] = "header"
    display: str | None = None
    facing: str = "right"
    reduced_decode: bool = False
    dtype: str = "uint16"

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            check_choice("ImageConfig", name, getattr(self, name), allowed)
        if not isinstance(self.reduced_decode, bool):
            raise ConfigError(f"ImageConfig(reduced_decode={self.reduced_decode!r}): reduced_decode must be true or false")
        if self.size is not None:
            if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
                raise ConfigError(f"ImageConfig(size={self.size!r}): size must be (rows, columns), two integers >= 1, or None")
            size = tuple(check_int("ImageConfig", f"size[{i}]", n, ">= 1", lambda n: n >= 1) for i, n in enumerate(self.size))
            object.__setattr__(self, "size", size)
        object.__setattr__(self, "voi", checked_voi("ImageConfig", self.voi))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> ImageConfig:
        """A config from plain values (a YAML mapping); unknown keys are an error.

        Raises
        ------
        ConfigError
            If a key is unknown or a value does not fit.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hint = did_you_mean(unknown[0], known)
            raise ConfigError(f"{source}: unknown image config key(s) {unknown}; known: {sorted(known)}{hint}", path=source)
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ImageConfig:
        """A config from a YAML file of :class:`ImageConfig` keys (e.g. ``size: [512, 512]``).

        Raises
        ------
        ConfigError
            If the file cannot be read or holds an invalid config.
        """
        try:
            data = read_yaml_file(path) or {}  # empty: every key at its default
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the image config ({exc.strerror}); check the path", path=str(path)) from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: an image config is a mapping of ImageConfig keys, got {type(data).__name__}", path=str(path))
        return cls.from_dict(data, source=str(path))

    def window(self) -> str | int | tuple[float, float]:
        """``voi`` with a preset name resolved to (center, width)."""
        return voi_window(self.voi)

    def cache_hash(self) -> str:
        """SHA-256 (hex) of the config's canonical JSON."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


#: The values each of these ImageConfig fields may take.
_CHOICES: dict[str, tuple[str | None, ...]] = {
    "resize": RESIZE_MODES,
    "display": DISPLAYS,
    "facing": FACINGS,
    "dtype": ("uint16", "float32"),
}


#: Bumped when what a prepared image holds changes for the same file and config, so that older entries are not
#: served. 2: inverted grey scaled by its range after the inversion, colour by its full scale, films on their
#: side transposed by ``display=``. 3: MONOCHROME1 inverted within the VOI output range, a window's output range
#: its nominal one, a Presentation LUT Sequence's that of its P-values. 4: 1- and 32-bit grey scaled by their
#: stored range like 8- and 16-bit, a palette by its entries' bits, codestream values above Bits Stored kept.
IMAGE_RULES = 4


def image_key(row: Mapping[str, Any], config: ImageConfig | str, masks: Sequence[Mapping[str, Any]] = ()) -> str:
    """Cache key of one image (a manifest ``instances`` row), with the SEG rows of its masks, under a config
    (or its ``cache_hash()``): 32 hex digits."""
    files = [row, *masks]
    fingerprint = source_fingerprint([(f["sop_instance_uid"] or f["path"], f["size"], f["mtime_ns"]) for f in files])
    config_hash = config if isinstance(config, str) else config.cache_hash()
    text = f"dicomml-cache/{FORMAT_VERSION}/image2d/{IMAGE_RULES}\n{fingerprint}\n{config_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def to_stored(planes: torch.Tensor, config: ImageConfig) -> np.ndarray:
    """Planes in [0, 1] as the config keeps them (see ``ImageConfig.dtype``)."""
    array = planes.numpy()
    if config.dtype == "float32":
        return array
    return np.rint(np.clip(array, 0.0, 1.0) * 65535.0).astype(np.uint16)


def stored_scale(dtype: np.dtype[Any] | str) -> float | None:
    """The factor from :func:`to_stored`'s kept values to [0, 1] (None: kept as float32)."""
    return 1.0 / 65535.0 if np.dtype(dtype) == np.uint16 else None


def from_stored(array: np.ndarray) -> torch.Tensor:
    """Float32 planes from :func:`to_stored`'s array (what a cache read with :func:`stored_scale` gives)."""
    scale = stored_scale(array.dtype)
    if scale is None:
        return torch.from_numpy(array)
    return torch.from_numpy(np.multiply(array, np.float32(scale), dtype=np.float32))


def prepare_image(path: str, config: ImageConfig, remote: Remote | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """One image as float32 planes in [0, 1], resized, with its meta (``remote``: how to reach a URL ``path``).

    Values are scaled by ``meta["output_range"]``: grey by the VOI output
    range, colour by its full scale (``2**BitsStored - 1``; a palette's by
    the bits of its entries, its LUT Descriptor's third value). Planes are
    ``(1, H, W)`` for a grey image, ``(3, H, W)`` for colour, ``(T, H, W)`` for grey cine and
    ``(T * 3, H, W)`` (frame-major) for colour cine; ``meta["layout"]`` says which.

    Raises
    ------
    DicomMLError
        If the file cannot be loaded (see :func:`~dicomml.imaging2d.load_image`).
    """
    from dicomml.imaging2d.load import load_image  # pydicom and the codecs: a Dataset reading its cache never needs them

    reduce_to = config.size if config.reduced_decode and config.resize == "letterbox" else None
    # decoding threads: torch's intra-op ones, as the Datasets' reads (the cores in the main process, 1 in workers)
    image = load_image(
        path,
        voi=config.window(),
        display=config.display,
        facing=config.facing,
        reduce_to=reduce_to,
        remote=remote,
        threads=torch.get_num_threads(),
    )
    pixels = image.pixels
    if image.is_colour:
        top = image.meta["output_range"][1]
        planes = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).reshape(-1, *pixels.shape[1:3])).float().div_(top)
        layout = "TCHW" if image.n_frames > 1 else "CHW"
    else:
        low, high = image.meta["output_range"]
        planes = torch.from_numpy(pixels)
        planes = planes.sub_(low).mul_(1.0 / (high - low)) if high > low else planes.zero_()
        layout = "THW" if image.n_frames > 1 else "CHW"
    out, placement = fit(planes, output_size(config), config.resize)
    spacing = (image.spacing.row, image.spacing.column) if image.spacing.known else None
    meta = dict(image.meta)
    meta.update(
        kind="image2d",
        layout=layout,
        source_shape=list(pixels.shape[1:3]),  # of the decoded level (see decode_level)
        scale=list(placement.scale),
        offset=list(placement.offset),
        placed_shape=list(placement.shape),
        spacing=list(placement.spacing(spacing)) if spacing else None,  # type: ignore[arg-type]
        source_spacing=list(spacing) if spacing else None,
    )
    return out.contiguous(), meta


def output_size(config: ImageConfig) -> tuple[int, int] | None:
    """The sample size a config produces (None: each image's own)."""
    return None if config.resize == "none" else config.size


def preprocess_image(
    row: Mapping[str, Any], cache: Cache, config: ImageConfig, masks: Sequence[Mapping[str, Any]] = (), remote: Remote | None = None
) -> str:
    """Compute and publish the cache entry of one image (a manifest ``instances`` row) unless present.

    Parameters
    ----------
    row
        The image's ``instances`` row (``path``, ``sop_instance_uid``, ``size``, ``mtime_ns``).
    cache, config
        Where and how.
    masks
        ``instances`` rows of SEG objects referencing the image: their masks
        are stored with it, ``(S, N, H, W)`` with the labels in ``meta["mask_labels"]``.
    remote
        How to reach remote files (the manifest's ``remote``): a :class:`dicomml.sources.Remote`.

    Returns
    -------
    str
        The entry's key.
    """
    key = image_key(row, config, masks)
    if cache.has(key):
        return key
    planes, meta = prepare_image(row["path"], config, remote)
    check_unchanged([(row["path"], row["size"], row["mtime_ns"])])
    spacing = meta["spacing"] or [1.0, 1.0]  # the affine needs numbers; meta["spacing"] stays None when unknown
    affine = np.diag([1.0, float(spacing[0]), float(spacing[1]), 1.0])
    meta.update(config=asdict(config))
    mask = None
    if masks:
        from dicomml.imaging2d.masks import sample_masks

        labels_mask, meta["mask_labels"] = sample_masks([m["path"] for m in masks], meta, output_size(config), remote)
        mask = np.ascontiguousarray(np.broadcast_to(labels_mask.numpy()[:, None], (labels_mask.shape[0], *planes.shape)))
    # raw: a sample is read whole at every epoch, and decoding Blosc costs more than reading its few bytes
    cache.put(key, to_stored(planes, config), affine, mask=mask, meta=meta, chunks=tuple(planes.shape), codec="raw")
    return key

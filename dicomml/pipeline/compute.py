"""From a series to its cache entry: :func:`preprocess_one` and its array-level core.

:func:`preprocess_one` is the one function that fills the cache: the
Datasets call it on a miss, and distributed preprocessing maps it over a
manifest, so both write the same keys and the same bytes.

Adapter, then core: :func:`preprocess_one` reads the manifest and the
files; :func:`compute_entry` works on Volumes and arrays only.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dicomml.cache import Cache, entry_key, source_fingerprint
from dicomml.config import PipelineConfig
from dicomml.errors import ConfigError, DicomMLError, ManifestError, ResourceLimitError, SeriesNotFoundError
from dicomml.geometry.directions import reaxis_table
from dicomml.pipeline.sources import SeriesSource, series_sources
from dicomml.pipeline.stats import STATS_KEY, intensity_stats
from dicomml.pipeline.steps import deterministic_transforms
from dicomml.volume import Volume

if TYPE_CHECKING:
    from dicomml.indexer.manifest import Manifest
    from dicomml.study import StudyConfig

__all__ = ["EntryInfo", "compute_entry", "open_cache", "preprocess_one", "volume_meta"]


@dataclass(frozen=True)
class EntryInfo:
    """Result of :func:`preprocess_one`: a row of a preprocessing run report.

    Attributes
    ----------
    key, series_key
        Cache key and image series.
    computed
        False when the entry was already in the cache (nothing was done).
    seconds
        Wall time of the call.
    nbytes
        Bytes of the entry on disk.
    shape
        Spatial shape (i, j, k) of the cached image.
    """

    key: str
    series_key: str
    computed: bool
    seconds: float
    nbytes: int
    shape: tuple[int, int, int]


def open_cache(cache: Cache | str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Cache:
    """A :class:`~dicomml.cache.Cache` for a Cache or its URL (opened with fsspec's ``storage_options``).

    Raises
    ------
    ConfigError
        If ``storage_options`` come with a Cache object (they belong to its constructor).
    CacheError
        If the cache cannot be opened or created.
    """
    if isinstance(cache, Cache):
        if storage_options:
            raise ConfigError(f"storage_options given with {cache!r}: pass them to Cache(url, storage_options=...) instead")
        return cache
    return Cache(cache, storage_options=storage_options)


def compute_entry(
    volume: Volume, masks: Sequence[Volume], config: PipelineConfig, *, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Run the deterministic pipeline on a volume and its masks (the array-level core).

    Parameters
    ----------
    volume
        The image: 3D, or N-D with one leading axis (time, echo, diffusion,
        phase), every volume of which goes onto the same grid (select them
        first with :func:`~dicomml.assemble.volumes.apply_selection`).
    masks
        Mask volumes on the image's grid (``meta["kind"] == "mask"``); their
        channels are concatenated in order.
    config
        The pipeline.
    device
        Where the deterministic transforms run (``"cpu"``, ``"cuda"``, ``"cuda:1"``):
        the arrays move there first and come back to the CPU before the cast.
        The cache key does not depend on it; the values agree to float32
        rounding (after the cast to an integer dtype, one unit at most).

    Returns
    -------
    image : numpy.ndarray
        (i, j, k), or (V, i, j, k) when several volumes are kept, in
        ``config.deterministic.dtype`` (integers rounded and clipped).
    mask : numpy.ndarray or None
        (C, i, j, k) uint8 (float32 for fractional masks), None without masks.
    affine : numpy.ndarray
        4x4, (i, j, k) to RAS+ mm.

    Raises
    ------
    ConfigError
        If ``device`` is not a CPU or an available CUDA device.
    ResourceLimitError
        If a step's output grid (``deterministic.spacing`` or ``shape``) would
        hold more than ``deterministic.max_voxels`` voxels, all volumes
        together: checked before it is allocated.
    """
    from dicomml.transforms import Mask

    target = _device(device)
    # integer images go to the resampler as they are: it converts them to float a slab at a time
    array = np.ascontiguousarray(volume.array).reshape(-1, *volume.spatial_shape)  # volumes as channels: one grid for all
    sample: dict[str, Any] = {"image": torch.from_numpy(array).to(target), "affine": volume.affine}
    if masks:
        channels = [m.array.reshape(-1, *m.spatial_shape) for m in masks]
        sample["mask"] = Mask(torch.from_numpy(np.ascontiguousarray(np.concatenate(channels))).to(target))
    for step in deterministic_transforms(config):
        params = step.make_params(sample)  # the output grid, before anything of its size is allocated
        _check_grid(step, params, len(array), volume, config)
        sample = step.apply(sample, params)
    out = sample["image"].cpu().numpy()
    image = _cast(out if volume.axes else out[0], config.deterministic.dtype)
    mask = None
    if masks:
        m = sample["mask"].as_subclass(torch.Tensor).cpu().numpy()
        mask = m.astype(np.float32 if m.dtype.kind == "f" else np.uint8)
    affine = np.asarray(sample["affine"], dtype=np.float64)
    return image, mask, affine


def _check_grid(step: Any, params: dict[str, Any], volumes: int, volume: Volume, config: PipelineConfig) -> None:
    """Refuse a step whose output grid holds more than ``max_voxels`` voxels (the limit of the loads), before it allocates it."""
    shape = params.get("shape", params.get("size"))
    if shape is None:
        return
    det = config.deterministic
    n = volumes * math.prod(int(s) for s in shape)
    if n <= det.max_voxels:
        return
    option = f"deterministic.shape {list(det.shape or ())}" if "size" in params else f"deterministic.spacing {list(det.spacing or ())}"
    grid = "x".join(str(int(s)) for s in shape) + (f" x {volumes} volumes" if volumes > 1 else "")
    uid = volume.meta.get("series_uid")
    raise ResourceLimitError(
        f"{f'series {uid}' if uid else 'the volume'}: {option} makes a grid of {grid} = {n} voxels, over the limit of "
        f"{det.max_voxels} (deterministic.max_voxels); choose a coarser spacing or a smaller shape, or raise max_voxels "
        "(the CLI's --max-voxels) if the machine holds it",
        series_uid=uid,
    )


def _device(device: str) -> torch.device:
    """``device`` as a torch device where the deterministic transforms can run."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        target = None
    if target is None or target.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not 'cpu' or 'cuda[:N]'; the deterministic pipeline runs on one of those")
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available in this process; use device='cpu'")
    return target


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` (owned, may be overwritten) in ``dtype``; to integers, values are rounded and clipped to its range."""
    target = np.dtype(dtype)
    if target.kind in "iu" and array.dtype.kind == "f":
        info = np.iinfo(target)
        np.clip(array, info.min, info.max, out=array)  # integer bounds: clipping first, then rounding, is the same
        return np.rint(array, out=np.empty(array.shape, target), casting="unsafe")  # rounded straight into the target
    if target.kind in "iu" and array.dtype.kind in "iu" and not np.can_cast(array.dtype, target):
        have, want = np.iinfo(array.dtype), np.iinfo(target)  # uint16 above 32767 saturates in int16 instead of wrapping
        return np.clip(array, max(have.min, want.min), min(have.max, want.max), out=np.empty(array.shape, target), casting="unsafe")
    return np.ascontiguousarray(array.astype(target, copy=False))


def preprocess_one(
    row_or_key: Any,
    manifest: Manifest | str | os.PathLike[str],
    config: PipelineConfig | StudyConfig | str | os.PathLike[str],
    cache: Cache | str,
    *,
    device: str = "cpu",
    threads: int | None = None,
) -> EntryInfo:
    """Compute and publish the cache entry of one series, unless it is already there.

    Pure in the sense that matters for distribution: its only effect is the
    entry, which is keyed by content, so running it twice, in any process, in
    any order, gives the same entry.

    Parameters
    ----------
    row_or_key
        A ``series`` row (mapping or pandas row with ``series_key``), a
        series key, a :class:`SeriesSource`, or a
        :class:`~dicomml.study.StudySource` (with a study config).
    manifest
        A :class:`dicomml.Manifest` or its path.
    config
        The pipeline, a :class:`~dicomml.study.StudyConfig`, or the path of its YAML.
    cache
        The cache or its URL.
    device
        Where the deterministic transforms run (:func:`compute_entry`); the
        entry's key does not depend on it, its values only to float32 rounding.
    threads
        Most threads that decode the series' compressed frames
        (:func:`~dicomml.load_series`); None: every core.

    Returns
    -------
    EntryInfo

    Raises
    ------
    ConfigError
        If ``device`` is not a CPU or an available CUDA device.
    ResourceLimitError
        If the series, or the grid the config resamples it onto, holds more
        than ``deterministic.max_voxels`` voxels.
    CacheError
        If the entry cannot be written.
    ManifestError
        If the series' files were rewritten and indexed again since its key
        was resolved (a long-lived Dataset's): the key no longer describes them.
    DicomMLError
        Whatever assembly, volume selection or mask decoding raises for this series.

    Notes
    -----
    An entry whose marker does not parse (:class:`~dicomml.errors.CacheIntegrityError`
    on open) counts as missing: it is computed again and its marker replaced.

    Examples
    --------
    >>> info = preprocess_one("3f2a9c0d1e4b5a67", "manifest/", "ct_1mm", "cache/")  # doctest: +SKIP
    >>> info.computed, info.shape  # doctest: +SKIP
    (True, (350, 350, 240))
    """
    from dicomml.indexer.manifest import Manifest
    from dicomml.study import StudySource, load_any_config, preprocess_study

    start = time.perf_counter()
    _device(device)  # fail before any work
    manifest, config, cache = Manifest.open(manifest), load_any_config(config), open_cache(cache)
    if isinstance(row_or_key, StudySource):  # a study sample: its roles' series on one grid, one entry
        if isinstance(config, PipelineConfig):
            raise ConfigError(f"{config.name} is a pipeline config; a study sample needs a study config (with roles)")
        return preprocess_study(row_or_key, manifest, config, cache, device=device)
    if not isinstance(config, PipelineConfig):
        raise ConfigError(f"{config.name} is a study config; give preprocess_one a StudySource, or a pipeline config for a series")
    if isinstance(row_or_key, SeriesSource):
        source = row_or_key
    else:
        series_key = row_or_key if isinstance(row_or_key, str) else str(row_or_key["series_key"])
        found = series_sources(manifest, config, series_keys=[series_key])
        if not found:
            raise SeriesNotFoundError(
                f"series {series_key} has no annotation, but config {config.name} caches masks; "
                "pair it with a SEG/RTSTRUCT or use a config without masks",
                series_uid=series_key,
            )
        source = found[0]
    entry = cache.published(source.key)  # an invalid marker (cut short by a crash) is computed again, and replaced
    computed = entry is None
    if entry is None:  # DICOM reading (pydicom, nibabel) is imported here: a Dataset over a filled cache never needs it
        from dicomml.assemble import load_series
        from dicomml.assemble.volumes import apply_selection

        volume = load_series(
            manifest,
            source.series_key,
            threads=threads,
            philips_scaling=config.deterministic.philips_scaling,
            on_irregular=config.deterministic.on_irregular,
            max_voxels=config.deterministic.max_voxels,
        )
        volume = apply_selection(volume, config.deterministic.volumes)
        masks, mask_meta = _masks(manifest, source.annotation_keys, volume, config)
        _check_key(manifest, source, config)
        image, mask, affine = compute_entry(volume, masks, config, device=device)
        meta = {
            **volume_meta(volume, affine),
            "series_key": source.series_key,
            "annotation_keys": list(source.annotation_keys),
            "config": config.canonical(),
            "config_name": config.name,
            "modality": volume.meta.get("modality"),
            "series_uid": volume.meta.get("series_uid"),
            "source_files": list(volume.meta.get("source_files", [])),
            "mask_labels": [label for m in masks for label in _labels(m)],
            **mask_meta,
        }
        if config.at_load.normalize == "zscore" and not config.at_load.windows:  # a patch is z-scored with these
            meta[STATS_KEY] = intensity_stats(image)  # (another at-load config computes them once, on first use)
        entry = cache.put(source.key, image, affine, mask=mask, meta=meta, chunks=config.deterministic.chunks)
    return EntryInfo(source.key, source.series_key, computed, time.perf_counter() - start, entry.nbytes(), entry.shape)


def _check_key(manifest: Manifest, source: SeriesSource, config: PipelineConfig) -> None:
    """Refuse to publish under ``source.key`` what its files no longer are: rewritten and indexed again since it was resolved.

    Called after the series and its masks were loaded from the manifest's
    rows, so rows that still give the key are the rows loaded (an index run
    in between would have to change the files, then give them back their
    sizes and mtimes); one Arrow read of the instances table, as
    :func:`series_sources` makes, and no DICOM file.

    Raises
    ------
    ManifestError
        If the manifest's files of the series and its annotations give
        another key now.
    """
    rows = manifest.instance_fingerprints([source.series_key])
    if source.annotation_keys:
        rows += manifest.annotation_fingerprints(list(source.annotation_keys))
    # the fingerprint series_sources keys the entry by: (uid, size, mtime, frames) of these files
    if entry_key(source_fingerprint(row[1:] for row in rows), config) != source.key:
        raise ManifestError(
            f"{manifest.path}: series {source.series_key} changed since its cache key {source.key} was resolved (its files "
            "were rewritten and indexed again); make a new Dataset (or list the series again) to cache what they hold now",
            path=str(manifest.path),
            series_uid=source.series_key,
        )


def volume_meta(volume: Volume, affine: np.ndarray) -> dict[str, Any]:
    """What a cache entry records of an N-D image: its axis names and per-volume table (gradients along
    the cached axes), the volumes kept and any reduction; empty for a 3D series."""
    meta = reaxis_table(volume.meta, volume.affine, affine)
    out: dict[str, Any] = {key: meta[key] for key in ("volumes", "volume_indices", "reduced") if key in meta}
    if volume.axes:
        out["axes"] = list(volume.axes)
    return out


def _masks(
    manifest: Manifest, annotation_keys: Sequence[str], volume: Volume, config: PipelineConfig
) -> tuple[list[Volume], dict[str, Any]]:
    """The series' masks and what the entry's meta records of them.

    With a label map (``annotations.labels``, or ``masks`` names) one mask in
    its channels, the same for every series; with ``masks: ["*"]`` every
    segment of every chosen annotation, in turn.
    """
    from dicomml.seg import load_mask
    from dicomml.seg.labelmap import choose_annotations, dataset_mask

    det = config.deterministic
    # a predicate already chose when the sources were listed (series_sources)
    chosen = (
        list(annotation_keys) if callable(det.annotations.choose) else choose_annotations(manifest, annotation_keys, det.annotations.choose)
    )
    labels = det.labels()
    if labels:
        mask = dataset_mask(manifest, chosen, volume, det.annotations, labels, max_voxels=det.max_voxels)
        return [mask], {
            "mask_present": mask.meta["present"],
            "annotation_keys": mask.meta["annotation_keys"],
            "skipped_annotations": mask.meta["skipped"],
        }
    if not det.masks:
        return [], {}
    masks, skipped = [], {}
    for key in chosen:  # on_bad as a label map reads them: a bad annotation skipped keeps its good siblings
        try:
            masks.append(load_mask(manifest, key, reference=volume, as_channels=True, max_voxels=det.max_voxels))
        except DicomMLError as exc:
            if det.annotations.on_bad == "raise":
                raise
            skipped[key] = f"{type(exc).__name__}: {exc}"
    if not masks:  # an entry without masks would fail every Dataset that reads them: the series fails instead
        reasons = "; ".join(f"{key}: {reason}" for key, reason in list(skipped.items())[:2])
        raise DicomMLError(
            f"no annotation of this series could be read ({len(skipped)} skipped under on_bad: skip: {reasons})"
            if skipped
            else f"annotations.choose {det.annotations.choose!r} chose none of its {len(annotation_keys)} annotation(s)"
        )
    return masks, {"annotation_keys": [key for key in chosen if key not in skipped], "skipped_annotations": skipped}


def _labels(mask: Volume) -> list[str]:
    labels = mask.meta.get("labels") or {}
    return [str(v) for _, v in sorted(labels.items(), key=lambda kv: int(kv[0]))] if isinstance(labels, dict) else [str(v) for v in labels]

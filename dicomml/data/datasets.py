"""PyTorch Datasets over a manifest and the cache: whole series, image + masks, random patches.

Every sample is a dict of plain tensors, the mask tagged :class:`~dicomml.transforms.Mask` (a label map to
transforms applied later)::

    {"image": (C, i, j, k) float32 (or the cached dtype without windows); C = windows x volumes of a 4D series,
     "mask": (S, i, j, k) uint8 Mask       # SegmentationDataset, PatchDataset with masks
     "affine": (4, 4) float64              # (i, j, k) -> RAS+ mm, nibabel/MONAI convention
     "meta": {"series_key", "cache_key", "index", "epoch", "transforms": [drawn parameters],
              "axes": ["window", "time"],   # what C is made of (empty for one 3D image as cached)
              "volumes": {...}, ...}}       # a 4D series' per-volume table (b_value, gradient, times...)

A cache miss, or an entry whose marker is invalid, computes the entry with
:func:`~dicomml.pipeline.preprocess_one` (so the first epoch fills the
cache); ``cache_only=True`` raises :class:`~dicomml.errors.CacheMissError`
(or :class:`~dicomml.errors.CacheIntegrityError`) instead. Random draws
(patch locations, augmentation, a MONAI transform's) come from generators
seeded by (seed, epoch, index), never from worker state, so 0, 2 or 8
DataLoader workers, fork or spawn, yield the same samples; :meth:`set_epoch`
(shared memory, so it reaches persistent workers) gives each epoch new
draws. ``meta`` holds no None, so torch's ``default_collate`` and MONAI's
``list_data_collate`` batch samples as :func:`collate` does.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from dicomml.cache import Cache, CacheEntry
from dicomml.cache.store import Kept
from dicomml.config import Annotations, PipelineConfig, with_options
from dicomml.data.samplers import SAMPLERS, grid_starts, label_balanced_start, uniform_start
from dicomml.errors import CacheIntegrityError, CacheMissError, ConfigError
from dicomml.pipeline import SeriesSource, at_load_transforms, open_cache, preprocess_one, series_sources
from dicomml.pipeline.sources import kept_list
from dicomml.pipeline.stats import STATS_KEY, intensity_stats
from dicomml.study.config import StudyConfig, load_any_config, load_study_config
from dicomml.study.source import StudySource
from dicomml.transforms.base import Mask, RandomTransform, check_int, drawing_from
from dicomml.transforms.functional.grid import shift_grid
from dicomml.transforms.intensity import ZNormalize

if TYPE_CHECKING:  # study samples' code (pandas, pydicom) is imported when a study config is used, the manifest's when read
    from dicomml.indexer.manifest import Manifest
    from dicomml.study import StudyMatch

__all__ = ["PatchDataset", "SegmentationDataset", "SeriesDataset", "StudyDataset", "collate", "reach_epoch"]

_T = TypeVar("_T")


class SeededDataset(Dataset):
    """Random draws of a Dataset's samples from generators seeded by (seed, epoch, index), never by worker state.

    Base of every dicomml Dataset: the same samples with 0, 2 or 8 workers,
    fork or spawn, and new draws each :meth:`set_epoch`.
    """

    def __init__(self, seed: int, name: str, transforms: Sequence[Any]) -> None:
        self.seed = check_int(type(self).__name__, "seed", seed, ">= 0", lambda n: n >= 0)  # numpy's SeedSequence takes no negative
        _refuse_own_seed(name, transforms)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """New random draws for ``epoch`` (an integer >= 0); reaches persistent DataLoader workers (shared memory)."""
        self._epoch.fill_(check_int(f"{type(self).__name__}.set_epoch", "epoch", epoch, ">= 0", lambda n: n >= 0))

    def __len__(self) -> int:  # each Dataset's own
        raise NotImplementedError

    def _position(self, index: Any) -> int:
        """``index`` read as a Python sequence reads it: any integer (numpy, 0-d tensor), negative from the end."""
        position, length = operator.index(index), len(self)
        if not -length <= position < length:
            raise IndexError(f"{type(self).__name__} index {position} is out of range for {length} samples")
        return position % length

    def _stamp(self, index: int) -> dict[str, int]:
        """What every sample's ``meta`` records of its draws: its index (from 0) and the epoch."""
        return {"index": index, "epoch": int(self._epoch)}

    def _random(self, index: int) -> tuple[np.random.Generator, int]:
        seq = np.random.SeedSequence([self.seed, int(self._epoch), index])
        return np.random.default_rng(seq), int(seq.generate_state(1, np.uint64)[0] >> 1)

    @staticmethod
    def _seeded(torch_seed: int, calls: Sequence[Callable[[Any], Any] | None], sample: Any) -> Any:
        """``sample`` through ``calls`` in order, their draws one stream seeded by ``torch_seed``.

        dicomml's transforms draw from this thread's generator
        (:func:`~dicomml.transforms.base.drawing_from`): threads making
        samples at once neither share nor touch torch's global generator.
        Any other call (a MONAI transform, a user's function) may draw from
        the global generator or from state of its own, both shared by every
        thread: it runs under one process-wide lock, the global generator
        carrying the stream meanwhile (restored after) and a MONAI
        transform's own (``set_random_state``) seeded by ``torch_seed``.
        """
        generator = torch.Generator().manual_seed(torch_seed)
        with drawing_from(generator):
            for call in calls:
                if call is None:
                    continue
                if _draws_privately(call):
                    sample = call(sample)
                    continue
                with _global_draws, torch.random.fork_rng(devices=[]), drawing_from(None):
                    torch.random.default_generator.set_state(generator.get_state())  # the CPU one: fork_rng restores no other
                    if hasattr(call, "set_random_state"):  # MONAI's Randomizable / Compose draw from their own generators
                        call.set_random_state(seed=torch_seed % 2**32)
                    sample = call(sample)
                    generator.set_state(torch.random.default_generator.get_state())
        return sample


class _CachedDataset(SeededDataset):
    """Shared part: series selection, cache fill on miss, at-load transforms, seeding."""

    _with_masks = False

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        config: PipelineConfig | StudyConfig | Mapping[str, Any] | str | os.PathLike[str],
        cache: Cache | str | os.PathLike[str],
        *,
        where: str | None = None,
        series_keys: Sequence[str] | None = None,
        cache_only: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int = 0,
        on_irregular: str | None = None,
        annotations: Annotations | Mapping[str, Any] | None = None,
    ) -> None:
        self._manifest = manifest
        loaded = load_any_config(config)
        if isinstance(loaded, StudyConfig) and (on_irregular is not None or annotations is not None):
            raise ConfigError(f"{loaded.name}: on_irregular= and annotations= go in a study config's deterministic part")
        self.config = (
            loaded if isinstance(loaded, StudyConfig) else with_options(loaded, on_irregular=on_irregular, annotations=annotations)
        )
        if self._with_masks and not (self.config.deterministic.masks or self.config.deterministic.annotations.labels):
            raise ConfigError(
                f"{self.config.name}: deterministic.masks is empty, so the cache holds no masks; "
                f"{type(self).__name__} needs a config that caches masks (e.g. the ct_seg preset)"
            )
        self.cache = open_cache(cache)
        self.sources: list[SeriesSource] | list[StudySource]
        if isinstance(self.config, StudyConfig):  # one sample per study: the roles' series, on one grid
            if where is not None or series_keys is not None:
                raise ConfigError(f"{self.config.name}: a study config selects its series by its roles; drop where= and series_keys=")
            arguments = ["study", self.config.cache_hash()]
            self.sources = kept_list(self.cache, manifest, arguments, self._study_sources, StudySource.to_json, StudySource.from_json)
            pipeline = self.config.pipeline
        else:
            self.sources = series_sources(manifest, self.config, where=where, series_keys=series_keys, cache=self.cache)
            pipeline = self.config
        self.cache_only = cache_only
        self.transform = transform
        steps = at_load_transforms(pipeline)
        super().__init__(seed, self.config.name, [*steps, transform])
        # a first step that maps each stored value on its own runs inside the chunk decoding (one pass)
        self._lookup = steps[0].lookup_table(self.config.deterministic.dtype) if steps else None
        self._steps = steps[1:] if self._lookup is not None else steps

    def _study_sources(self) -> list[StudySource]:
        from dicomml.study import study_sources  # pandas: only when the kept list does not answer

        assert isinstance(self.config, StudyConfig)
        return study_sources(self.manifest, self.config)

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The :class:`~dicomml.Manifest`, opened on first use: a series list kept in the cache needs none of its tables."""
        from dicomml.indexer.manifest import Manifest

        return Manifest.open(self._manifest)

    def entry(self, series_index: int) -> CacheEntry:
        """The cache entry of ``self.sources[series_index]``, computed on a miss.

        Raises
        ------
        CacheMissError
            If it is absent and ``cache_only=True``.
        CacheIntegrityError
            If its marker is invalid and ``cache_only=True`` (else it is computed again, as on a miss).
        """
        source = self.sources[series_index]
        try:
            return self.cache.open(source.key)
        except CacheIntegrityError:
            if self.cache_only:
                raise
            # an invalid marker publishes nothing (Cache.published): computed again, and put replaces the marker
        except CacheMissError:
            if self.cache_only:
                raise CacheMissError(
                    f"{self.cache.url}: no entry for {_name(source)} (key {source.key}) and "
                    f"cache_only=True; run `dicomml preprocess MANIFEST --config ... --cache {self.cache.url}` "
                    "or pass cache_only=False",
                    path=self.cache.url,
                    series_uid=source.series_key,
                ) from None
        # decoding threads as for the cache read below: torch's intra-op ones (1 in DataLoader workers)
        preprocess_one(source, self.manifest, self.config, self.cache, threads=torch.get_num_threads())
        return self.cache.open(source.key)

    def _read(self, series_index: int, read: Callable[[CacheEntry], _T]) -> _T:
        """``read`` of the series' entry (see :func:`read_entry`)."""
        return read_entry(self.cache, lambda: self.entry(series_index), read)

    def _image(self, entry: CacheEntry, start: Sequence[int] | None = None, size: Sequence[int] | None = None) -> torch.Tensor:
        """(C, i, j, k): windowed through the lookup table while decoding, or as cached with C = 1.

        The volumes of an N-D entry (time, echo, diffusion...) are channels too,
        window-major (``meta["axes"]`` names them).
        """
        layout = entry.layouts["image"]
        shape = [*layout.shape[:-3], *(layout.shape[-3:] if size is None else size)]
        if self._lookup is not None:
            shape.insert(0, len(self._lookup))
        out = _empty(shape, np.dtype(layout.dtype) if self._lookup is None else self._lookup.dtype)
        # as many decoding threads as torch's intra-op ones (the cores in the main process, 1 in DataLoader workers);
        # a patch on one thread: for its few dozen chunks, handing them over and waiting for the GIL cost more than a thread gains
        threads = torch.get_num_threads() if size is None else 1
        entry.read("image", start, size, lookup=self._lookup, threads=threads, out=out.numpy())
        return out.reshape(-1, *shape[-3:])

    def _axes(self, entry: CacheEntry) -> dict[str, Any]:
        """Names of the axes folded into the image's channels (window-major), and the per-volume table."""
        axes = (["window"] if self._lookup is not None else []) + list(entry.meta.get("axes", []))
        return {"axes": axes, **({"volumes": entry.meta["volumes"]} if "volumes" in entry.meta else {})}

    def _present(self, entry: CacheEntry) -> list[bool]:
        """Which mask channels hold a voxel: the entry's record (a label map), else read off its foreground index."""
        if entry.meta.get("mask_present") is not None:
            return list(entry.meta["mask_present"])
        channels = np.unique(_foreground(entry)[:, 0])  # every non-empty channel has rows in the index
        return np.isin(np.arange(entry.layouts["mask"].shape[0]), channels).tolist()

    def _sample(
        self,
        index: int,
        series_index: int,
        entry: CacheEntry,
        image: torch.Tensor,  # (C, i, j, k)
        mask: np.ndarray | None,
        affine: np.ndarray,
        torch_seed: int,
        steps: Sequence[Callable[[Any], Any]] | None = None,
        **meta: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """The sample (a list of samples when ``transform`` returns one, as MONAI's croppers with ``num_samples`` do)."""
        source = self.sources[series_index]
        sample: dict[str, Any] = {
            "image": image,
            "affine": torch.from_numpy(np.asarray(affine, dtype=np.float64)),
            "meta": {
                **_identity(source, entry),
                "cache_key": entry.key,
                **self._stamp(index),
                **self._axes(entry),
                **meta,
            },
        }
        if mask is not None:
            sample["mask"] = Mask(torch.from_numpy(mask))
            # the label map's channels, and which of them this series' annotations have (a loss can skip the others)
            sample["meta"].update(
                labels=entry.meta.get("mask_labels"),
                present=self._present(entry),
                skipped_annotations=entry.meta.get("skipped_annotations", {}),
            )
        drawn = self._seeded(torch_seed, [*(self._steps if steps is None else steps), self.transform], sample)
        if isinstance(drawn, (list, tuple)):  # MONAI's croppers with num_samples: a list of samples, as its Datasets give
            return [_finished(one) for one in drawn]
        return _finished(drawn)


class SeriesDataset(_CachedDataset):
    """One sample per series: the whole cached volume after the at-load pipeline.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its path.
    config
        A :class:`~dicomml.config.PipelineConfig` or the path of its YAML.
    cache
        A :class:`~dicomml.Cache` or its URL.
    where
        SQL predicate on the manifest's ``series`` table (usable series only).
    series_keys
        Explicit series instead of ``where``.
    cache_only
        Raise :class:`~dicomml.errors.CacheMissError` on a miss instead of computing.
    transform
        Applied after the config's at-load part (e.g. a MONAI ``Compose``).
        Before each sample, a transform with ``set_random_state`` (MONAI's
        ``Randomizable``, ``Compose``) is seeded from (seed, epoch, index),
        and so is torch's global generator while a transform not dicomml's
        runs (under a process-wide lock: threads reading samples take turns
        through it); one drawing from numpy's or Python's global generator
        is not. When
        it returns the image as a MONAI ``MetaTensor`` (a MONAI spatial
        transform does), ``affine`` follows the change it records.
    seed
        Base of every random draw (with the epoch and the index). A dicomml
        random transform with its own ``seed`` (in the config or in
        ``transform``) is refused with a :class:`~dicomml.errors.ConfigError`:
        its draws would follow the DataLoader worker, not the sample.
    on_irregular
        Overrides the config's ``deterministic.on_irregular`` (``"raise"``,
        ``"resample"``, ``"keep"``), the remedy assembly errors name.
    annotations
        Overrides the config's ``deterministic.annotations``: an
        :class:`~dicomml.config.Annotations` or its YAML form
        (``{"labels": {"liver": 1}, "on_bad": "skip"}``). With masks, a
        sample's ``meta`` holds ``labels`` (its channels), ``present`` (one
        bool per label: whether the series' mask has a voxel of it) and
        ``skipped_annotations``.

    Examples
    --------
    >>> ds = SeriesDataset("manifest/", "ct_1mm", cache="cache/", where="modality = 'CT'")  # doctest: +SKIP
    >>> ds[0]["image"].shape  # doctest: +SKIP
    torch.Size([1, 350, 350, 240])
    """

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> dict[str, Any] | list[dict[str, Any]]:
        index = self._position(index)
        entry, image, mask = self._read(index, lambda entry: (entry, self._image(entry), entry.read("mask") if self._with_masks else None))
        _, torch_seed = self._random(index)
        return self._sample(index, index, entry, image, mask, entry.affine, torch_seed)


class SegmentationDataset(SeriesDataset):
    """Like :class:`SeriesDataset`, plus ``"mask"``: the paired SEG/RTSTRUCT masks, (S, i, j, k).

    The config must cache masks (``deterministic.masks``); only series with
    an annotation (``dicomml.pairs``) are selected. Random augmentations draw
    once and move image and masks alike.
    """

    _with_masks = True


class StudyDataset(SeriesDataset):
    """One sample per study: each role's series on the reference grid, one channel per role.

    ``image`` is (roles, i, j, k) on the reference role's grid (after the
    config's orientation / spacing / shape); ``mask`` (with
    ``deterministic.masks``) holds the masks of every role's SEG / RTSTRUCT on
    that grid. ``meta["roles"]`` names the roles, ``meta["channels"]`` the
    channels (``"dwi/1"`` for channel 1 of a 4D role, the same in every study), ``meta["role_present"]``
    says which roles the study has (a missing role is a zero channel under
    ``missing: empty``). A study is one cache entry: the first epoch fills it.
    For patches across all channels, give the study config to
    :class:`PatchDataset`.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its path.
    config
        A :class:`~dicomml.study.StudyConfig`, its dict, or its YAML file.
    cache
        A :class:`~dicomml.Cache` or its URL.
    cache_only, transform, seed
        As for :class:`SeriesDataset`.

    Attributes
    ----------
    match
        :class:`~dicomml.study.StudyMatch`: the series each role picked;
        ``match.skipped`` lists the studies left out and why.

    Examples
    --------
    >>> ds = StudyDataset("manifest/", "configs/brain_roles.yaml", cache="cache/")  # doctest: +SKIP
    >>> ds[0]["image"].shape, ds[0]["meta"]["roles"]  # doctest: +SKIP
    (torch.Size([4, 182, 218, 182]), ['t1', 't1c', 't2', 'flair'])
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        config: StudyConfig | Mapping[str, Any] | str | os.PathLike[str],
        cache: Cache | str | os.PathLike[str],
        *,
        cache_only: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        study = load_study_config(config)
        self._with_masks = bool(study.pipeline.deterministic.masks)
        super().__init__(manifest, study, cache, cache_only=cache_only, transform=transform, seed=seed)

    @functools.cached_property
    def match(self) -> StudyMatch:
        """The series each role picked, found on first use (``match.skipped``: the studies left out and why)."""
        from dicomml.study import match_studies

        assert isinstance(self.config, StudyConfig)
        return match_studies(self.manifest, self.config)


class PatchDataset(_CachedDataset):
    """Random or tiled patches, reading only the cache chunks each patch touches.

    Parameters
    ----------
    manifest, config, cache
        As for :class:`SeriesDataset`.
    patch_size
        (i, j, k) voxels; a volume smaller than the patch is padded at its
        far end (image with the patch minimum, masks with 0).
    samples_per_volume
        Patches per series per epoch (``uniform`` and ``label_balanced``).
    sampler
        ``"uniform"``, ``"label_balanced"`` (needs cached masks; uses the
        foreground index computed at cache time) or ``"grid"`` (every tile,
        in order; the dataset's length is the number of tiles).
    positive_fraction
        ``label_balanced``: probability that a patch is centred on foreground
        (of a mask channel drawn uniformly; ``meta["positive_channel"]`` says
        which). Every sampler sets ``meta["positive_channel"]``: -1 for a
        patch not centred on foreground (all ``uniform`` and ``grid`` patches).
    **kwargs
        ``where``, ``series_keys``, ``cache_only``, ``transform``, ``seed``,
        ``on_irregular``, ``annotations``: as for :class:`SeriesDataset`.

    Examples
    --------
    >>> ds = PatchDataset("manifest/", "ct_seg", "cache/", patch_size=(96, 96, 96),
    ...                   samples_per_volume=8, sampler="label_balanced")  # doctest: +SKIP
    >>> ds[0]["image"].shape, ds[0]["meta"]["patch_start"]  # doctest: +SKIP
    (torch.Size([1, 96, 96, 96]), (112, 40, 87))
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        config: PipelineConfig | StudyConfig | Mapping[str, Any] | str | os.PathLike[str],
        cache: Cache | str | os.PathLike[str],
        *,
        patch_size: Sequence[int],
        samples_per_volume: int = 1,
        sampler: str = "uniform",
        positive_fraction: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(manifest, config, cache, **kwargs)
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")
        if sampler == "label_balanced" and not (self.config.deterministic.masks or self.config.deterministic.annotations.labels):
            raise ConfigError(f"{self.config.name}: sampler 'label_balanced' needs cached masks (deterministic.masks)")
        if len(patch_size) != 3 or min(patch_size) < 1 or samples_per_volume < 1 or not 0 <= positive_fraction <= 1:
            raise ConfigError(
                f"patch_size {list(patch_size)} must be 3 positive ints, samples_per_volume {samples_per_volume} >= 1, "
                f"positive_fraction {positive_fraction} in [0, 1]"
            )
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_volume = int(samples_per_volume)
        self.sampler = sampler
        self.positive_fraction = float(positive_fraction)
        self._zscore = next((i for i, step in enumerate(self._steps) if isinstance(step, ZNormalize)), None)
        self._stats: dict[str, dict[str, list[float | None]]] = {}
        self._tiles = (
            [(s, start) for s in range(len(self.sources)) for start in grid_starts(self.entry(s).shape, self.patch_size)]
            if sampler == "grid"
            else []
        )

    def __len__(self) -> int:
        return len(self._tiles) if self.sampler == "grid" else len(self.sources) * self.samples_per_volume

    def __getitem__(self, index: int) -> dict[str, Any] | list[dict[str, Any]]:
        index = self._position(index)
        series_index = self._tiles[index][0] if self.sampler == "grid" else index // self.samples_per_volume
        return self._read(series_index, lambda entry: self._patch(index, series_index, entry))

    def _patch(self, index: int, series_index: int, entry: CacheEntry) -> dict[str, Any] | list[dict[str, Any]]:
        """Sample ``index``, a patch of ``entry`` (its draws made anew: the same on a second try)."""
        rng, torch_seed = self._random(index)
        drawn: dict[str, Any] = {"positive_channel": -1}
        if self.sampler == "grid":
            start = self._tiles[index][1]
        elif self.sampler == "label_balanced":
            start, channel = label_balanced_start(entry.shape, self.patch_size, _foreground(entry), self.positive_fraction, rng)
            drawn["positive_channel"] = -1 if channel is None else channel
        else:
            start = uniform_start(entry.shape, self.patch_size, rng)
        size = tuple(min(p, s) for p, s in zip(self.patch_size, entry.shape))
        image = self._image(entry, start, size)
        if size != self.patch_size:  # else the tensor itself: in a worker, it is in shared memory
            image = torch.from_numpy(_pad(image.numpy(), self.patch_size, None))
        mask = _pad(entry.read("mask", start, size), self.patch_size, 0) if entry.has_mask else None
        affine = shift_grid(entry.affine, start)
        steps = None
        if self._zscore is not None:  # z-scored with the volume's statistics, not the patch's own
            steps = [*self._steps]
            steps[self._zscore] = self._volume_zscore(entry, steps[self._zscore])
        return self._sample(index, series_index, entry, image, mask, affine, torch_seed, steps, patch_start=start, **drawn)

    def _volume_zscore(self, entry: CacheEntry, step: ZNormalize) -> ZNormalize:
        """``step`` with the whole volume's per-channel statistics, so a patch equals that crop of the z-scored volume.

        They are the entry's meta (recorded when it was computed) when the
        z-score sees the image as cached; else (windows before it, or an
        entry of an older dicomml) computed once per entry and process from
        the whole volume.
        """
        if entry.key not in self._stats:  # per process; a few floats per channel
            stats = entry.meta.get(STATS_KEY)
            channels = math.prod(entry.layouts["image"].shape[:-3])
            if stats is None or self._zscore or self._lookup is not None or len(stats["mean"]) != channels:
                image: Any = self._image(entry)
                for earlier in self._steps[: self._zscore]:
                    image = earlier(image)
                stats = intensity_stats(image)
            self._stats[entry.key] = stats
        stats = self._stats[entry.key]
        prefix = "nonzero_" if step.nonzero else ""
        return ZNormalize(step.nonzero, mean=stats[f"{prefix}mean"], std=stats[f"{prefix}std"])


def read_entry(cache: Cache, entry: Callable[[], CacheEntry], read: Callable[[CacheEntry], _T]) -> _T:
    """``read`` of the entry that ``entry()`` opens, again of the one it opens then if that copy was unpublished or replaced meanwhile.

    An entry deleted while read (``dicomml cache verify --delete`` and
    ``gc`` in another process) is a miss by then, computed (or refused with
    ``cache_only=True``) by ``entry()`` as any miss; a published entry whose
    files are broken raises.

    Raises
    ------
    CacheIntegrityError
        If the entry read is still the one published and its files are missing or damaged.
    """
    opened = entry()
    try:
        return read(opened)
    except CacheIntegrityError:
        now = cache.published(opened.key)
        if now is not None and now._path == opened._path:  # still the entry read: broken (`dicomml cache verify --delete`)
            raise
    return read(entry())


#: Bytes of entries' foreground indexes (``label_balanced`` patches) this process keeps for the next patches, every
#: Dataset together: an entry's is up to FOREGROUND_MAX x 4 int32 (3 MiB), so a few thousand series would fill memory.
FOREGROUND_KEPT = 256 << 20
_foregrounds: Kept[str, np.ndarray] = Kept(lambda: FOREGROUND_KEPT, lambda rows: rows.nbytes)


def _foreground(entry: CacheEntry) -> np.ndarray:
    """The entry's foreground index, (N, 4) int32 rows (channel, i, j, k), kept for the next patches while it fits."""
    rows = _foregrounds.get(entry._path)  # by the copy read: a key's entry may be published anew
    if rows is None:
        rows = entry.read("foreground")
        _foregrounds.put(entry._path, rows)
    return rows


def _finished(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A sample as the Datasets return it: the affine moved as a MONAI transform recorded, plain tensors, the mask
    tagged, no None in ``meta``."""
    moved = _moved_affine(dict(sample))
    out = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in moved.items()}
    recorded = out.get("meta")
    if isinstance(recorded, Mapping):  # torch's default_collate and MONAI's list_data_collate refuse None
        out["meta"] = without_none(recorded)
    if "mask" in out:  # the label map stays one for transforms after the loader (a tag: torch ops return plain tensors)
        out["mask"] = Mask(out["mask"])
    return out


def _name(source: SeriesSource | StudySource) -> str:
    return f"series {source.series_key}" if isinstance(source, SeriesSource) else f"study {source.study_uid}"


def _identity(source: SeriesSource | StudySource, entry: CacheEntry) -> dict[str, Any]:
    """The sample's series key, or a study's UID, roles (channels) and which of them are present."""
    if isinstance(source, SeriesSource):
        return {"series_key": source.series_key}
    roles = entry.meta.get("roles", {})
    return {
        "study_uid": source.study_uid,
        "roles": list(entry.meta.get("role_names", [])),
        "channels": list(entry.meta.get("channel_names", entry.meta.get("role_names", []))),
        "role_present": {name: bool(info.get("present")) for name, info in roles.items()},
        "series_keys": {name: info.get("series_key") or "" for name, info in roles.items()},  # "": the role is missing
    }


def _refuse_own_seed(name: str, transforms: Sequence[Any]) -> None:
    """Refuse a dicomml random transform with its own ``seed``: its stream follows the worker, not the sample.

    Raises
    ------
    ConfigError
        Naming the transform and the way out, the Dataset's ``seed=``.
    """
    for transform in transforms:
        if isinstance(transform, RandomTransform) and transform.seed is not None:
            raise ConfigError(
                f"{name}: {type(transform).__name__}(seed={transform.seed}) in a Dataset would draw by DataLoader worker and "
                "repeat each epoch; drop its seed and pass seed= to the Dataset (draws follow seed, epoch and index)"
            )
        inner = getattr(transform, "transforms", None)  # a Compose (dicomml's, MONAI's, torchvision's)
        if isinstance(inner, Sequence):
            _refuse_own_seed(name, inner)
        wrapped = getattr(transform, "transform", None)  # a wrapper (dicomml's Planar)
        if wrapped is not None:
            _refuse_own_seed(name, [wrapped])


def _draws_privately(call: Any) -> bool:
    """Whether ``call`` is dicomml's own transform (or Compose, Planar of such), drawing only through ``drawing_from``.

    Judged by the class's module: a user's subclass may draw from torch's global generator itself.
    """
    if not type(call).__module__.startswith("dicomml."):
        return False
    inner = [*getattr(call, "transforms", ()), *([call.transform] if hasattr(call, "transform") else [])]
    return all(_draws_privately(one) for one in inner)


def _moved_affine(sample: Any) -> Any:
    """``sample`` whose ``affine`` follows the spatial changes a MONAI transform recorded in its image's MetaTensor.

    A MONAI transform makes the plain image a MetaTensor with the identity
    affine (array indices) and composes its flips, rotations and zooms onto
    it, so the world affine is the sample's times that one; a dict without
    ``"affine"`` (made by :func:`~dicomml.transforms.to_metatensor`) has the
    world affine in the MetaTensor itself.
    """
    meta_tensor = getattr(sys.modules.get("monai.data"), "MetaTensor", None)  # MONAI is imported only by a user of it
    image = sample.get("image") if isinstance(sample, dict) else None
    if meta_tensor is None or not isinstance(image, meta_tensor):
        return sample
    moved = image.affine.as_subclass(torch.Tensor).to("cpu", torch.float64)
    before = sample.get("affine")
    return {**sample, "affine": moved if before is None else torch.as_tensor(before, dtype=torch.float64) @ moved}


def reach_epoch(dataset: Dataset, epoch: int) -> None:
    """``set_epoch`` on ``dataset`` and on every dataset it wraps (``Subset``, ``ConcatDataset``, nested).

    What a training loop calls each epoch (:class:`~dicomml.data.DataModule`'s
    sampler does): a ``random_split`` of a PatchDataset whose own
    ``set_epoch`` is never called draws the same patches every epoch.

    Examples
    --------
    >>> train, val = torch.utils.data.random_split(patches, [0.8, 0.2])  # doctest: +SKIP
    >>> reach_epoch(train, 3)  # doctest: +SKIP
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    for inner in [getattr(dataset, "dataset", None), *getattr(dataset, "datasets", ())]:
        if isinstance(inner, Dataset):
            reach_epoch(inner, epoch)


def without_none(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` without its keys whose value is None (in nested dicts too): torch's and MONAI's collates refuse None.

    Examples
    --------
    >>> without_none({"view": None, "config": {"size": [2, 2], "display": None}})
    {'config': {'size': [2, 2]}}
    """
    return {k: without_none(v) if isinstance(v, Mapping) else v for k, v in meta.items() if v is not None}


def _empty(shape: Sequence[int], dtype: np.dtype[Any]) -> torch.Tensor:
    """A new tensor; in a DataLoader worker, in shared memory, so it reaches the main process without a copy.

    The DataLoader moves a worker's tensors to shared memory when it sends
    them, a copy of the whole sample; torch's own ``default_collate`` avoids
    it the same way, with ``_new_shared``. In the main process a large
    sample reuses the memory of one dropped earlier (:func:`_recycled`).
    """
    if get_worker_info() is None:
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < RECYCLE_FROM:
            return torch.from_numpy(np.empty(shape, dtype))
        return torch.from_numpy(_recycled(nbytes)[:nbytes].view(dtype).reshape(shape))
    kind = torch.from_numpy(np.empty(0, dtype)).dtype
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * kind.itemsize)
    return torch.empty(0, dtype=kind).set_(storage).view(*shape)


#: Samples of at least this many bytes reuse dropped samples' memory: the C allocator maps a block this large anew
#: each time (above glibc's largest mmap threshold), and faulting in fresh pages costs as much as a third of decoding.
RECYCLE_FROM = 32 << 20
#: Dropped samples' memory kept for the next ones (each about one sample).
RECYCLE_KEPT = 2
_free: list[np.ndarray] = []
_free_lock = threading.Lock()
#: Held while a transform that may draw from torch's global generator, or from a MONAI object's own, makes a sample;
#: reentrant: such a transform may read another sample (mixup).
_global_draws = threading.RLock()


def _recycled(nbytes: int) -> np.ndarray:
    """``nbytes`` or more of memory (uint8) whose pages are already in, returned to a free list once no view of it is left.

    The memory comes back when the last tensor or array using it is freed
    (the sample a training step dropped), so nothing still reachable is
    ever written; a user who keeps every sample just gets new memory.
    """
    with _free_lock:
        fitting = [i for i, b in enumerate(_free) if len(b) >= nbytes]  # kept sorted by size
        # else numpy's memory (advised huge pages), an eighth more: the next series is often a few slices longer
        memory = _free.pop(fitting[0]) if fitting else np.empty(nbytes + nbytes // 8, np.uint8)
    # every view of ``lent`` has ``lent`` as its base (numpy stops at an array over a non-array buffer), so
    # ``lent`` lives exactly as long as the sample's last view; the finalizer holds ``memory`` until then
    lent = np.frombuffer(memory.data, np.uint8)
    weakref.finalize(lent, _give_back, memory).atexit = False
    return lent


def _give_back(memory: np.ndarray) -> None:
    with _free_lock:
        _free.append(memory)
        _free.sort(key=len)
        if len(_free) > RECYCLE_KEPT:  # the smallest is freed: a sample that size fits in a larger one
            del _free[0]


def _after_fork() -> None:
    """A forked child (a DataLoader worker) starts with an empty free list and locks no parent thread can be holding."""
    global _free, _free_lock, _global_draws
    _free, _free_lock, _global_draws = [], threading.Lock(), threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _pad(array: np.ndarray, patch: tuple[int, ...], value: float | None) -> np.ndarray:
    missing = [p - s for p, s in zip(patch, array.shape[-3:])]
    if not any(missing):
        return array
    widths = [(0, 0)] * (array.ndim - 3) + [(0, m) for m in missing]
    fill = array.min() if value is None else value
    return np.pad(array, widths, constant_values=fill)


def collate(batch: Sequence[Mapping[str, Any] | Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Stack tensors of equal shape (a batch of :class:`~dicomml.transforms.Mask` is one); keep ``meta`` (and
    anything not a tensor) as a list.

    A sample that is a list of samples (a MONAI cropper with ``num_samples``
    as the Dataset's ``transform``) adds each of them, as MONAI's
    ``list_data_collate`` does.

    A batch of one sample gets views of its tensors with a leading axis of 1
    (nothing is copied).

    Raises
    ------
    ConfigError
        (a ValueError) If images of one batch differ in shape (whole series without a
        ``deterministic.shape``, 2D images without an ``ImageConfig`` size):
        set one, or use ``batch_size=1``; or if samples differ in their
        entries (a mask in some only).

    Examples
    --------
    >>> out = collate([{"image": torch.zeros(1, 2, 2, 2), "meta": {"i": 0}}] * 2)
    >>> out["image"].shape, out["meta"]
    (torch.Size([2, 1, 2, 2, 2]), [{'i': 0}, {'i': 0}])
    """
    samples: list[Mapping[str, Any]] = []
    for item in batch:  # a list is the crops of one sample
        if isinstance(item, Mapping):
            samples.append(item)
        else:
            samples.extend(item)
    keys = list(samples[0])
    odd = next((sample for sample in samples if set(sample) != set(keys)), None)
    if odd is not None:
        differ = sorted(set(keys) ^ set(odd))
        raise ConfigError(
            f"cannot batch samples with different entries ({', '.join(map(repr, differ))} in some only, e.g. a mask); "
            "batch samples of one Dataset kind, or give each the same entries"
        )
    out: dict[str, Any] = {}
    for key in keys:
        values = [sample[key] for sample in samples]
        if not all(isinstance(v, torch.Tensor) for v in values):
            out[key] = values
            continue
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            images2d = all(isinstance(s.get("meta"), Mapping) and s["meta"].get("kind") == "image2d" for s in samples)
            channels_only = len({shape[1:] for shape in shapes}) == 1  # 3D and 4D series mixed, or masks of each annotation
            way_out = (
                "set ImageConfig(size=(rows, columns), resize='letterbox' or 'stretch')"
                if images2d
                else "give every series the same mask channels: one per label (deterministic.annotations.labels)"
                if channels_only and key == "mask"
                else "keep as many volumes of every series (deterministic.volumes), or select series of one kind (where='n_volumes = 1')"
                if channels_only
                else "set deterministic.shape in the config (crop/pad), use a PatchDataset"
            )
            raise ConfigError(f"cannot batch {key!r}: shapes {sorted(shapes)} differ; {way_out}, or batch_size=1")
        # a batch of one is a view: a copy of a whole volume would cost page faults for nothing
        stacked = values[0][None] if len(values) == 1 else torch.stack(values)
        out[key] = Mask(stacked) if all(isinstance(v, Mask) for v in values) else stacked  # torch ops drop the tag
    return out

"""``ImageDataset``: 2D images of a manifest as samples, cached one entry per image x config."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from dicomml.cache import Cache, CacheEntry
from dicomml.data.datasets import SeededDataset, _empty, read_entry, without_none
from dicomml.errors import CacheIntegrityError, CacheMissError, ManifestError
from dicomml.imaging2d.modalities import IMAGE_MODALITIES
from dicomml.imaging2d.prepare import (
    ImageConfig,
    from_stored,
    image_key,
    output_size,
    prepare_image,
    preprocess_image,
    stored_scale,
    to_stored,
)
from dicomml.imaging2d.selection import mask_rows, referencing_segs, select_images
from dicomml.paths import check_unchanged
from dicomml.pipeline.sources import kept_list
from dicomml.transforms.base import Mask

if TYPE_CHECKING:  # the manifest's rows (pandas, DuckDB) are read only when the kept keys do not answer
    import pandas as pd

    from dicomml.indexer.manifest import Manifest

__all__ = ["ImageDataset"]

#: Cache entries an ImageDataset remembers (the first this many opened; each a few KB of parsed marker).
ENTRIES_KEPT = 200_000
#: Types of the meta's values that a sample gets copies of.
_NESTED = frozenset((dict, list))


class ImageDataset(SeededDataset):
    """2D images (CR, DX, MG, IO, XA/RF, US, OT, SC...; single frame or cine) as PyTorch samples.

    Reconstructed volumes of these modalities (:data:`~dicomml.imaging2d.modalities.VOLUME_SOP_CLASSES`:
    Breast Tomosynthesis...) are not samples: ``load_series`` and the
    volume Datasets read them.

    Each sample is a dict: ``image`` float32 in [0, 1] (``(1, H, W)`` grey,
    ``(3, H, W)`` colour, ``(T, H, W)`` grey cine, ``(T, 3, H, W)`` colour
    cine), ``spacing`` (row, column mm of the output pixels; NaN when the
    header has none, and ``meta["spacing_missing"]`` is True),
    ``frame_times`` (ms, cine only), ``meta`` (laterality, view, flips,
    VOI applied, placement of the letterbox..., the sample's ``index`` and
    ``epoch`` as the volume Datasets record them; a key with no value, such as
    the laterality of a chest film, is left out, so torch's ``default_collate``
    and MONAI's ``list_data_collate`` batch samples whose meta have the same
    keys; a batch mixing chest films and mammograms needs
    :func:`dicomml.data.collate`, which keeps ``meta`` a list) and ``key``.

    Parameters
    ----------
    manifest
        A :class:`~dicomml.Manifest` or its folder.
    cache
        A :class:`~dicomml.Cache` or its URL: samples are read from it, and
        computed into it on a miss. None computes every sample from the file.
    config
        Size, resize mode, VOI/window and display convention.
    where
        Extra SQL predicate on the ``instances`` table, e.g.
        ``"view = 'CC' AND NOT burned_in"``.
    modalities
        Modalities taken as 2D images.
    transforms
        Called on each sample dict (augmentation), after the cache. Its
        random draws follow (``seed``, epoch, index), never the DataLoader
        worker: dicomml's transforms draw from a generator of the thread's
        own; torch's global generator, and a MONAI transform's own
        (``set_random_state``), are seeded for a transform not dicomml's, run
        under a process-wide lock (threads take turns through it).
    cache_only
        Raise :class:`~dicomml.errors.CacheMissError` instead of computing a missing entry.
        Entries opened once are remembered (the first :data:`ENTRIES_KEPT`)
        and read again without their publish marker, every chunk still
        checked; a remembered copy that is gone (``gc``) or fails its check
        is looked up again. An entry unpublished with ``Cache.delete`` is thus
        read from its data until ``gc`` removes it (a key's content never changes).
    masks
        Add ``mask``: a :class:`~dicomml.transforms.Mask` ``(S, H, W)`` of the
        segments of every DICOM SEG, and the ROIs of every RTSTRUCT, that
        references the image (empty ``S = 0`` when none does), flipped and
        resized with the image (nearest), labels in ``meta["mask_labels"]``
        (see :mod:`~dicomml.imaging2d.masks` for how contours map to pixels).
    seed
        Base of the random draws; :meth:`set_epoch` gives each epoch new
        ones. A dicomml random transform with its own ``seed`` is refused
        (:class:`~dicomml.errors.ConfigError`): it would draw by worker.

    Examples
    --------
    >>> ds = ImageDataset("manifest/", "cache/", ImageConfig(display="breast"), where="modality = 'MG'")  # doctest: +SKIP
    >>> ds[0]["image"].shape  # doctest: +SKIP
    torch.Size([1, 512, 512])
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        cache: Cache | str | os.PathLike[str] | None = None,
        config: ImageConfig | None = None,
        *,
        where: str | None = None,
        modalities: tuple[str, ...] = IMAGE_MODALITIES,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        cache_only: bool = False,
        masks: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed, "ImageDataset", [transforms])
        self._manifest = manifest
        self.cache = cache if cache is None or isinstance(cache, Cache) else Cache(cache)
        self.config = config or ImageConfig()
        self.transforms = transforms
        self.cache_only = cache_only
        self._where, self._modalities, self._masks = where, tuple(modalities), masks
        self._config_hash = self.config.cache_hash()
        # made here in one pass (per sample, between reads of its pixels, hashing costs several times as much), and kept
        # in the cache for the unchanged manifest: a Dataset reading a filled cache needs none of the manifest's rows
        arguments = ["images", self._config_hash, where, list(self._modalities), masks]
        self._keys = kept_list(self.cache, manifest, arguments, self._row_keys, str, str)
        # entries are content-addressed and a published copy never changes: a remembered one is read without its marker
        self._entries: dict[str, tuple[CacheEntry, tuple[str, ...]]] = {}  # with the names of the meta's nested values

    @functools.cached_property
    def manifest(self) -> Manifest:
        """The :class:`~dicomml.Manifest`, opened on first use."""
        from dicomml.indexer.manifest import Manifest

        return Manifest.open(self._manifest)

    @functools.cached_property
    def rows(self) -> pd.DataFrame:
        """The manifest's ``instances`` rows of the samples, in order (read on first use when the keys were kept).

        Raises
        ------
        ManifestError
            If the manifest changed since the Dataset was opened (its images are not the samples' any more).
        """
        rows = select_images(self.manifest, self._where, self._modalities)
        if self._keys_of(rows) != self._keys:
            raise ManifestError(f"{self.manifest.path}: the manifest changed since this ImageDataset was opened; open it again")
        return rows

    @functools.cached_property
    def _records(self) -> list[dict[str, Any]]:
        return self.rows.to_dict("records")

    @functools.cached_property
    def _segs(self) -> dict[str, list[dict[str, Any]]] | None:
        return referencing_segs(self.manifest) if self._masks else None

    def _row_keys(self) -> list[str]:
        """Every sample's cache key, from the manifest's rows (when the cache keeps no list for them)."""
        self.rows = select_images(self.manifest, self._where, self._modalities)
        return self._keys_of(self.rows)

    def _keys_of(self, rows: pd.DataFrame) -> list[str]:
        return [image_key(row, self._config_hash, self._row_segs(row)) for row in rows.to_dict("records")]

    def _row_segs(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The SEG and RTSTRUCT rows of an image's masks (none without ``masks=True``)."""
        return mask_rows(self._segs, row)

    def _cached(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        """Image planes, mask and a copy of the meta of sample ``index``'s entry: a remembered entry is read without its marker."""
        assert self.cache is not None  # only called with a cache
        key = self._keys[index]
        kept = self._entries.get(key)
        if kept is not None:
            entry, nested = kept
            try:
                return (*_arrays(entry), _copied(entry.meta, nested))
            except CacheIntegrityError:  # its copy was removed since (gc, a rewrite) or is damaged: ask the marker again
                del self._entries[key]
        entry, arrays = read_entry(self.cache, lambda: self._open(key, index), lambda entry: (entry, _arrays(entry)))
        nested = tuple(name for name, value in entry.meta.items() if type(value) in _NESTED)
        if len(self._entries) < ENTRIES_KEPT:
            self._entries[key] = (entry, nested)
        return (*arrays, _copied(entry.meta, nested))

    def _open(self, key: str, index: int) -> CacheEntry:
        """The published entry of ``key`` (read from its marker), computed first on a miss unless ``cache_only``."""
        assert self.cache is not None
        try:
            return self.cache.open(key)
        except CacheMissError:
            row = self._records[index]
            if self.cache_only:
                raise CacheMissError(
                    f"{self.cache.url}: no entry {key} for {row['path']}; run dicomml.preprocess_images first", path=row["path"]
                ) from None
        preprocess_image(row, self.cache, self.config, self._row_segs(row), self.manifest.remote)
        return self.cache.open(key)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._position(index)
        if self.cache is None:
            planes, mask, meta = self._computed(self._records[index])
        else:
            planes, mask, meta = self._cached(index)
        if meta["layout"] == "TCHW":
            planes = planes.reshape(-1, 3, *planes.shape[-2:])
        spacing = meta["spacing"] if meta["spacing"] is not None else [float("nan")] * 2
        meta = {**without_none(meta), **self._stamp(index)}  # torch's default_collate and MONAI's list_data_collate refuse None
        sample = {"image": planes, "spacing": torch.from_numpy(np.array(spacing, dtype=np.float64)), "meta": meta, "key": self._keys[index]}
        if self._masks:
            sample["mask"] = Mask(mask if mask is not None else torch.zeros((0, *planes.shape[-2:]), dtype=torch.uint8))
            meta.setdefault("mask_labels", [])
        if meta.get("frame_times_ms"):
            sample["frame_times"] = torch.from_numpy(np.asarray(meta["frame_times_ms"], dtype=np.float64))
        return self._seeded(self._random(index)[1], [self.transforms], sample) if self.transforms is not None else sample

    def _computed(self, row: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        """Image planes, mask and meta of ``row`` computed from its file, with the values a cache would give."""
        planes, meta = prepare_image(row["path"], self.config, self.manifest.remote)
        check_unchanged([(row["path"], row["size"], row["mtime_ns"])])
        planes = from_stored(to_stored(planes, self.config))
        segs, mask = self._row_segs(row), None
        if segs:
            from dicomml.imaging2d.masks import sample_masks  # pydicom: only where masks are drawn from files

            mask, meta["mask_labels"] = sample_masks([s["path"] for s in segs], meta, output_size(self.config), self.manifest.remote)
        return planes, mask, meta


def _arrays(entry: CacheEntry) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A cached entry's image planes and mask (None when it has none); every chunk's CRC32C checked."""
    return _planes(entry), torch.from_numpy(entry.read("mask")[:, 0]) if entry.has_mask else None


def _copied(meta: dict[str, Any], nested: tuple[str, ...]) -> dict[str, Any]:
    """A copy of a remembered entry's JSON meta, whose ``nested`` lists and dicts are copied too: each sample's meta is the caller's to change."""
    copy = meta.copy()
    for name in nested:
        copy[name] = _deep(meta[name])
    return copy


def _deep(value: Any) -> Any:
    """A copy of a JSON list or dict, its nested lists and dicts too."""
    if type(value) is dict:
        return {k: _deep(v) if type(v) in _NESTED else v for k, v in value.items()}
    return [_deep(v) if type(v) in _NESTED else v for v in value]


def _planes(entry: CacheEntry) -> torch.Tensor:
    """A cached entry's image as float32 planes, cast and scaled on the one copy out of the cache (into shared memory in a DataLoader worker)."""
    layout = entry.layouts["image"]
    scale = stored_scale(layout.dtype)
    if get_worker_info() is None:  # a new numpy array, wrapped once it is filled: fewer steps than _empty's
        return torch.from_numpy(entry.read(scale=scale))
    out = _empty(layout.shape, np.dtype(np.float32))
    entry.read(out=out.numpy(), scale=scale)
    return out

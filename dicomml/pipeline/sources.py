"""Which series a pipeline runs on, and the cache key of each (adapter from the manifest)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dicomml.cache import entry_key, source_fingerprint
from dicomml.config import PipelineConfig
from dicomml.errors import SeriesNotFoundError
from dicomml.indexer.manifest import Manifest

__all__ = ["SeriesSource", "series_sources"]


@dataclass(frozen=True)
class SeriesSource:
    """What one cache entry is made from.

    Attributes
    ----------
    series_key
        The image series (a manifest ``series_key``).
    key
        Its cache key under the config (:func:`~dicomml.cache.entry_key`).
    annotation_keys
        Manifest ``annotation_key`` of the SEG / RTSTRUCT objects whose masks
        the entry holds (empty when the config caches no masks).
    """

    series_key: str
    key: str
    annotation_keys: tuple[str, ...] = ()


def series_sources(
    manifest: Manifest | str | os.PathLike[str],
    config: PipelineConfig,
    *,
    where: str | None = None,
    series_keys: Sequence[str] | None = None,
) -> list[SeriesSource]:
    """The series a pipeline runs on, with their cache keys.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or its folder.
    config
        The pipeline; when it caches masks, only series with at least one
        annotation are selected, with all their annotations (one source
        per annotation under ``annotations.choose: each``; those a
        ``choose`` predicate keeps, and only series where it keeps one).
    where
        SQL predicate on the ``series`` table (DuckDB), e.g. ``"modality = 'CT'"``.
    series_keys
        Explicit series keys (in this order) instead of every usable series.

    Returns
    -------
    list of SeriesSource
        Sorted by series key unless ``series_keys`` gives the order.

    Raises
    ------
    SeriesNotFoundError
        If a key in ``series_keys`` is not in the manifest.
    ManifestError
        If ``where`` is not a valid predicate on the ``series`` table.
    """
    manifest = Manifest.open(manifest)
    keys = manifest.usable_series_keys(where) if series_keys is None else [str(k) for k in series_keys]
    files = _group(manifest.instance_fingerprints(keys)) if keys else {}
    for k in keys:
        if k not in files:
            raise SeriesNotFoundError(f"series key {k} is not in the manifest; list keys with Manifest.series", series_uid=k)
    annotations: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {}
    det = config.deterministic
    if det.masks or det.annotations.labels:
        annotations = _annotations(manifest, keys)
        if callable(det.annotations.choose):  # a predicate chooses here, so the cache key holds the chosen files
            from dicomml.seg.labelmap import choose_annotations

            for k, anns in annotations.items():
                kept = set(choose_annotations(manifest, [a for a, _ in anns], det.annotations.choose))
                annotations[k] = [a for a in anns if a[0] in kept]
        keys = [k for k in keys if annotations.get(k)]
    out = []
    for k in keys:
        anns = annotations.get(k, [])
        # choose "each": one entry per annotation, each keyed by its own files
        groups = [[a] for a in anns] if det.annotations.choose == "each" else [anns]
        for group in groups:
            sources = files[k] + [f for _, ann_files in group for f in ann_files]
            out.append(SeriesSource(k, entry_key(source_fingerprint(sources), config), tuple(a for a, _ in group)))
    return out


def _annotations(manifest: Manifest, keys: Sequence[str]) -> dict[str, list[tuple[str, list[tuple[Any, ...]]]]]:
    """series key -> [(annotation key, its files as fingerprint tuples)], sorted by annotation key."""
    paired = manifest.pairs()
    paired = paired[paired["series_key"].isin(list(keys))]
    if paired.empty:
        return {}
    files = _group(manifest.annotation_fingerprints(list(paired["annotation_key"])))
    out: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {}
    for series_key, group in paired.sort_values("annotation_key").groupby("series_key"):
        out[str(series_key)] = [(str(a), files.get(str(a), [])) for a in group["annotation_key"]]
    return out


def _group(rows: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    """Key -> its files as (SOP Instance UID, size, mtime_ns, frames) tuples, the cache key's input, from fingerprint rows."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for key, uid, size, mtime, frames in rows:
        out.setdefault(str(key), []).append((uid, size, mtime, None if frames is None else list(frames)))
    return out

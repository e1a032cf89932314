"""Which series a pipeline runs on, and the cache key of each (adapter from the manifest)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import dicomml
from dicomml.cache import Cache, entry_key, source_fingerprint
from dicomml.config import PipelineConfig
from dicomml.errors import SeriesNotFoundError
from dicomml.indexer.folder import manifest_state

if TYPE_CHECKING:  # the manifest's tables (pyarrow) are read only when no kept list answers
    from dicomml.indexer.manifest import Manifest

__all__ = ["SeriesSource", "kept_list", "series_sources"]

#: Bump when the way sources are resolved changes: lists kept by earlier code are then ignored.
_LIST_VERSION = 1

_T = TypeVar("_T")


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

    def to_json(self) -> list[Any]:
        """A JSON-able list that :meth:`from_json` reads back."""
        return [self.series_key, self.key, list(self.annotation_keys)]

    @classmethod
    def from_json(cls, row: list[Any]) -> SeriesSource:
        """The source :meth:`to_json` wrote."""
        series_key, key, annotation_keys = row
        return cls(series_key, key, tuple(annotation_keys))


def series_sources(
    manifest: Manifest | str | os.PathLike[str],
    config: PipelineConfig,
    *,
    where: str | None = None,
    series_keys: Sequence[str] | None = None,
    cache: Cache | None = None,
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
    cache
        Keep the result in this cache (``lists/``), with the size, mtime and
        inode of every file of the manifest: a later call with the same
        arguments over the unchanged manifest reads it back instead of the
        manifest's tables (so a Dataset in a fresh interpreter imports
        neither pyarrow nor DuckDB). Not with a ``choose`` predicate (a
        function cannot be keyed).

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
    if callable(config.deterministic.annotations.choose):  # a function cannot be keyed
        cache = None
    return kept_list(
        cache,
        manifest,
        ["series", config.cache_hash(), where, series_keys and list(series_keys)],
        lambda: _resolve(manifest, config, where, series_keys),
        SeriesSource.to_json,
        SeriesSource.from_json,
    )


def kept_list(
    cache: Cache | None,
    manifest: Manifest | str | os.PathLike[str],
    arguments: list[Any],
    resolve: Callable[[], list[_T]],
    dump: Callable[[_T], Any],
    load: Callable[[Any], _T],
) -> list[_T]:
    """``resolve()``, kept in ``cache`` for the unchanged manifest and the same ``arguments``.

    The list is stored as JSON (``dump`` of each item; ``load`` reads one
    back) under a name hashed from the manifest folder and
    ``arguments``, with the manifest's
    :func:`~dicomml.indexer.folder.manifest_state`, taken before ``resolve``
    reads the tables (a manifest rewritten meanwhile fails the next
    comparison). Without a cache or a manifest.json, just ``resolve()``; an
    unreadable list is resolved again, and a cache that cannot be written
    keeps none.
    """
    root = Path(manifest).expanduser().absolute() if isinstance(manifest, (str, os.PathLike)) else manifest.path
    state = manifest_state(root) if cache is not None else None
    if cache is None or state is None:
        return resolve()
    text = json.dumps([_LIST_VERSION, dicomml.__version__, str(root), *arguments])
    name = hashlib.sha256(text.encode()).hexdigest()[:32]
    kept = cache.read_list(name)
    if isinstance(kept, dict) and kept.get("manifest") == state:
        try:
            return [load(item) for item in kept["items"]]
        except (KeyError, TypeError, ValueError):  # a list of another shape: resolved again below
            pass
    out = resolve()
    try:
        cache.write_list(name, {"manifest": state, "items": [dump(item) for item in out]})
    except OSError:  # a read-only cache keeps no list: the next call resolves again
        pass
    return out


def _resolve(
    manifest: Manifest | str | os.PathLike[str], config: PipelineConfig, where: str | None, series_keys: Sequence[str] | None
) -> list[SeriesSource]:
    """:func:`series_sources` from the manifest's tables."""
    from dicomml.indexer.manifest import Manifest

    manifest = Manifest.open(manifest)
    keys = manifest.usable_series_keys(where) if series_keys is None else [str(k) for k in series_keys]
    files = _group(manifest.instance_fingerprints(keys)) if keys else {}
    for k in keys:
        if k not in files:
            raise SeriesNotFoundError(
                f"{manifest.path}: no series_key {k!r} in the manifest; list them with `dicomml list {manifest.path} series` "
                "or Manifest(...).series",
                path=str(manifest.path),
                series_uid=k,
            )
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

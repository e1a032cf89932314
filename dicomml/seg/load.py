"""Masks from a manifest: ``load_mask`` and the image <-> annotation ``pairs``."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import pandas as pd

from dicomml.dicom.io import is_url, read_dataset
from dicomml.errors import ConfigError, SegReferenceError
from dicomml.indexer.manifest import Manifest
from dicomml.limits import DEFAULT_MAX_VOXELS
from dicomml.paths import check_unchanged
from dicomml.seg.rtstruct import rtstruct_to_grid
from dicomml.volume import Volume

if TYPE_CHECKING:
    from dicomml.seg.dicomseg import SegmentSelector

__all__ = ["load_mask", "pairs"]


def load_mask(
    manifest: Manifest | str | PathLike[str],
    annotation_key: str,
    *,
    reference: Volume | None = None,
    segments: SegmentSelector | Sequence[SegmentSelector] | None = None,
    as_channels: bool = False,
    on_irregular: str = "raise",
    threshold: float | None = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Load a SEG or RTSTRUCT of a manifest as a mask on its image's grid.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or the path of its folder.
    annotation_key
        A row of the manifest's ``annotations`` table.
    reference
        The image Volume to put the mask on. ``None`` loads the series the
        annotation references (``referenced_series_key``) with
        :func:`dicomml.load_series`.
    segments
        SEG: segment numbers, labels or property type codes; RTSTRUCT: ROI
        names or numbers. All when ``None``.
    as_channels
        One channel per segment / ROI (axes ``("segment",)``) instead of one
        label map of segment / ROI numbers.
    on_irregular
        Passed to :func:`dicomml.load_series` when ``reference`` is ``None``,
        so the mask is on exactly the grid that call gives (``"resample"``
        puts it on the regular grid).
    threshold
        FRACTIONAL SEGs: binarize at this probability.
    max_voxels
        Most voxels of the series loaded as ``reference`` and of a SEG's mask
        (channels included) and own grid (see :func:`dicomml.load_series`).

    Returns
    -------
    Volume
        ``spatial_shape`` and ``affine`` equal to the image's; ``meta`` as
        :func:`dicomml.seg.seg_to_grid` / :func:`dicomml.seg.rtstruct_to_grid`
        give it, plus ``annotation_key``, ``series_key`` and ``link_method``.

    Raises
    ------
    SeriesNotFoundError
        If the manifest has no such annotation key.
    SegReferenceError
        If the referenced series is not in the manifest (and no ``reference``
        is given), or the geometry cannot be matched; the message names both.
    ConfigError
        If ``threshold`` is given for an RTSTRUCT.
    ManifestError
        If the annotation's file (or the series' files) changed since they were indexed.
    ResourceLimitError
        If the series or a SEG's mask would exceed ``max_voxels``.

    Examples
    --------
    >>> row = dicomml.pairs("manifest/").iloc[0]  # doctest: +SKIP
    >>> mask = dicomml.load_mask("manifest/", row.annotation_key, as_channels=True)  # doctest: +SKIP
    """
    manifest = Manifest.open(manifest)
    row = manifest.annotation(annotation_key)
    path = str(row["path"])
    if reference is None:
        if not row["referenced_series_key"]:
            raise SegReferenceError(
                f"{path}: {row['modality']} {annotation_key} references series "
                f"{row['referenced_series_uid'] or '(none named)'}, which is not in the manifest "
                f"({row['link_problem'] or 'no link'}); index that series too, or pass reference=",
                path=path,
                series_uid=row["referenced_series_uid"],
            )
        from dicomml.assemble import load_series

        reference = load_series(manifest, row["referenced_series_key"], on_irregular=on_irregular, max_voxels=max_voxels)  # type: ignore[arg-type]
    # a remote annotation is fetched here, through the manifest's Remote (its options and credentials)
    source: Any = read_dataset(path, pixels=True, remote=manifest.remote) if is_url(path) else path
    if row["modality"] == "RTSTRUCT":
        if threshold is not None:
            raise ConfigError(f"{path}: threshold= applies to FRACTIONAL SEGs, not to an RTSTRUCT", path=path)
        mask = rtstruct_to_grid(source, reference, rois=segments, as_channels=as_channels)  # type: ignore[arg-type]
    else:
        from dicomml.seg.dicomseg import seg_to_grid  # highdicom (the [seg] extra): imported for a SEG only

        mask = seg_to_grid(source, reference, segments=segments, as_channels=as_channels, threshold=threshold, max_voxels=max_voxels)
    indexed = manifest.table("instances", ["size", "mtime_ns"], [("path", "==", path)]).to_pylist()
    check_unchanged([(path, found["size"], found["mtime_ns"]) for found in indexed[:1]])
    mask.meta.update(
        annotation_key=annotation_key,
        series_key=reference.meta.get("series_key", row["referenced_series_key"]),
        link_method=row["link_method"],
    )
    return mask


def pairs(manifest: Manifest | str | PathLike[str]) -> pd.DataFrame:
    """Image series and the annotations (SEG, RTSTRUCT) linked to them.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or the path of its folder.

    Returns
    -------
    pandas.DataFrame
        One row per linked (image series, annotation): ``series_key``,
        ``annotation_key``, ``modality``, ``segmentation_type``, ``labels``,
        ``annotation_path``, ``link_method``, ``link_problem``, and the
        series' ``usable`` flag and ``reason``. Annotations whose series is
        not in the manifest are left out (the ``annotations`` table keeps them
        with their ``link_problem``).

    Examples
    --------
    >>> for row in dicomml.pairs("manifest/").itertuples():  # doctest: +SKIP
    ...     image = dicomml.load_series("manifest/", row.series_key)
    ...     mask = dicomml.load_mask("manifest/", row.annotation_key, reference=image)
    """
    return Manifest.open(manifest).pairs()

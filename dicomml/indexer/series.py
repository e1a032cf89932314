"""The ``series`` table (one row per volume group) and the ``annotations`` table, from ``instances``.

Both are rebuilt whole after each run that changed something, by DuckDB over
the ``instances`` partitions, streamed in record batches. Whether a group is
usable is decided from headers alone: the stack geometry of
:func:`dicomml.geometry.analyze_stack` (gap, duplicate positions, gantry tilt,
non-uniform spacing) plus the rules here (no geometry, mixed pixel spacing, a
single slice, several images at one position). A group of 2D images (a
modality of :data:`~dicomml.imaging2d.modalities.IMAGE_MODALITIES`) that makes
no stack is not usable as a volume for the reason
:data:`~dicomml.imaging2d.modalities.IMAGES_2D`, whatever its geometry.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from dicomml.geometry import analyze_stack, axcodes, dicom_affine, geometry_problem
from dicomml.geometry.checks import spacing_problem
from dicomml.imaging2d.modalities import IMAGE_MODALITIES, IMAGES_2D
from dicomml.indexer.annotations import link_annotations
from dicomml.indexer.schema import ANNOTATION_MODALITIES, ANNOTATIONS, SERIES
from dicomml.indexer.tables import empty, from_rows

__all__ = ["annotations_table", "series_table", "usability"]

_GROUPS = """
SELECT series_key,
       any_value(series_instance_uid) AS series_instance_uid,
       any_value(study_instance_uid) AS study_instance_uid,
       any_value(frame_of_reference_uid) AS frame_of_reference_uid,
       any_value(patient_key) AS patient_key,
       any_value(modality) AS modality,
       any_value(sop_class_uid) AS sop_class_uid,
       any_value(series_number) AS series_number,
       any_value(series_description) AS series_description,
       any_value(manufacturer) AS manufacturer,
       any_value(folder) AS folder,
       count(DISTINCT path) AS n_files,
       sum(n_frames)::BIGINT AS n_frames,  -- a sum is HUGEINT in DuckDB
       any_value(rows // coalesce(mosaic_tiles, 1)) AS rows,
       any_value("columns" // coalesce(mosaic_tiles, 1)) AS "columns",
       list(coalesce(frame_positions, image_position) ORDER BY path) AS positions,
       list(DISTINCT pixel_spacing) AS spacings,
       any_value(image_orientation) AS orientation,
       list(DISTINCT transfer_syntax_uid) AS transfer_syntaxes
FROM instances
WHERE series_key IS NOT NULL
GROUP BY series_key
ORDER BY series_key
"""


@functools.lru_cache(maxsize=1024)
def _axcodes(rotation_zoom: tuple[float, ...]) -> str:
    """:func:`~dicomml.geometry.axcodes` of an affine's 3x3 part (the code ignores translation); groups of a scan repeat it."""
    affine = np.eye(4)
    affine[:3, :3] = np.reshape(rotation_zoom, (3, 3))
    return axcodes(affine)


def usability(
    positions: np.ndarray | None, orientation: list[float] | None, spacings: list[list[float] | None]
) -> tuple[dict[str, Any], str | None]:
    """Stack statistics of one group and the reason it is not usable (None when it is).

    Parameters
    ----------
    positions
        (n, 3) ImagePositionPatient of every plane, LPS+ mm, or None when any is absent.
    orientation
        The group's ImageOrientationPatient, or None.
    spacings
        The distinct PixelSpacing values of the group.

    Returns
    -------
    (dict, str or None)
        ``n_slices``, ``n_volumes``, ``slice_spacing``, ``uniform_spacing``,
        ``missing_slices``, ``duplicate_slices``, ``tilt_deg``,
        ``first_position``, ``orientation_code``; and the reason.

    Examples
    --------
    >>> stats, reason = usability(np.array([[0, 0, 0.0]]), [1, 0, 0, 0, 1, 0], [[1.0, 1.0]])
    >>> reason
    'single slice'
    """
    known = [s for s in spacings if s is not None]
    if positions is None or orientation is None or not known or len(known) < len(spacings):
        return {}, "no geometry (ImagePositionPatient, ImageOrientationPatient or PixelSpacing absent)"
    try:
        found = geometry_problem(orientation, known, positions)
    except ValueError:  # ragged values: a tag of the wrong multiplicity
        return {}, "invalid geometry: PixelSpacing or ImageOrientationPatient has the wrong number of values"
    if found is not None:
        return {}, f"invalid geometry: {found.problem}"
    g = analyze_stack(positions, orientation)
    first = positions[g.order[0]]
    stats = {
        "n_slices": g.n_positions,
        "n_volumes": g.n_volumes,
        "slice_spacing": g.spacing,
        "uniform_spacing": g.uniform,
        "missing_slices": g.missing,
        "duplicate_slices": g.duplicates,
        "tilt_deg": g.tilt_deg,
        "first_position": [float(v) for v in first],
    }
    step = g.step if g.n_positions > 1 else g.step * known[0][0]
    stats["orientation_code"] = _axcodes(tuple(dicom_affine(orientation, known[0], first, step)[:3, :3].ravel()))
    if len(known) > 1:
        return stats, f"mixed pixel spacing ({', '.join(str(s) for s in known)} mm)"
    far = spacing_problem(np.array([g.spacing]), "slice spacing from (0020,0032) ImagePositionPatient") if g.n_positions > 1 else None
    if far:
        return stats, f"invalid geometry: {far}"
    if g.n_positions == 1:
        n = len(positions)
        return stats, "single slice" if n == 1 else f"{n} images at one position (not a volume)"
    return stats, g.problem()


#: Error kinds of a file that may have been a slice (not a DICOMDIR, not a file that is no DICOM at all).
_LOST_SLICE_ERRORS = ("invalid", "timeout", "crashed", "unreadable")
_LOST = f"""
SELECT folder, count(*) AS n, min(path) AS example FROM errors
WHERE stage = 'read' AND error_type IN ({", ".join("?" for _ in _LOST_SLICE_ERRORS)})
GROUP BY folder
"""


def _lost_slices(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Per folder holding files that could not be read, the reason its groups are not usable.

    A file that cannot be read may have been a slice of any group of its folder; a lost end slice
    leaves no gap to see, so the groups are marked rather than trusted.
    """
    return {
        folder: f"{n} file(s) of its folder could not be read (e.g. {example.rsplit('/', 1)[-1]}); a slice may be lost"
        for folder, n, example in con.execute(_LOST, list(_LOST_SLICE_ERRORS)).fetchall()
    }


def _series_rows(batch: pa.RecordBatch, shared: dict[str, list[str]], lost: dict[str, str]) -> Iterator[dict[str, Any]]:
    for group in batch.to_pylist():
        flat = group.pop("positions")
        spacings = group.pop("spacings")
        positions = None if any(p is None for p in flat) else np.asarray([v for p in flat for v in p]).reshape(-1, 3)
        stats, reason = usability(positions, group["orientation"], spacings)
        if reason is not None and group["modality"] in IMAGE_MODALITIES and stats.get("n_slices", 1) == 1:
            reason = IMAGES_2D  # radiographs, mammograms, captures: not a broken volume
        group.update(stats)
        group["pixel_spacing"] = spacings[0] if spacings else None
        group["shape"] = [stats["n_slices"], group["rows"], group["columns"]] if stats else None
        group["transfer_syntaxes"] = sorted(t for t in group["transfer_syntaxes"] if t)
        group["shared_uid_keys"] = [k for k in shared.get(group["series_instance_uid"], []) if k != group["series_key"]]
        reason = reason or lost.get(group["folder"])
        group["usable"] = reason is None
        group["reason"] = reason
        yield group


def series_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The ``series`` table from a connection with an ``instances`` view."""
    shared = {
        uid: keys
        for uid, keys in con.execute(
            "SELECT series_instance_uid, list(DISTINCT series_key ORDER BY series_key) FROM instances "
            "WHERE series_key IS NOT NULL GROUP BY series_instance_uid HAVING count(DISTINCT series_key) > 1"
        ).fetchall()
    }
    lost = _lost_slices(con)
    rows: list[dict[str, Any]] = []
    for batch in con.sql(_GROUPS).to_arrow_reader(1024):
        rows.extend(_series_rows(batch, shared, lost))
    return from_rows(rows, SERIES)


def annotations_table(con: duckdb.DuckDBPyConnection, series: pa.Table) -> pa.Table:
    """The ``annotations`` table from a connection with an ``instances`` view and the series table."""
    modalities = ", ".join(f"'{m}'" for m in ANNOTATION_MODALITIES)
    if not con.execute(f"SELECT count(*) FROM instances WHERE modality IN ({modalities})").fetchall()[0][0]:
        return empty(ANNOTATIONS)
    annotations = con.execute(f"SELECT * FROM instances WHERE modality IN ({modalities}) ORDER BY path").df()
    annotations = annotations.astype(object).where(annotations.notna(), None)  # SQL NULL as None (df() gives pd.NA in lists)
    hits = con.execute(
        f"""
        WITH refs AS (SELECT path, unnest(referenced_sop_uids) AS uid FROM instances WHERE modality IN ({modalities}))
        SELECT refs.path, i.series_key, count(DISTINCT refs.uid) AS hits
        FROM refs JOIN instances i ON i.sop_instance_uid = refs.uid
        WHERE i.series_key IS NOT NULL
        GROUP BY refs.path, i.series_key
        """
    ).df()
    linked = link_annotations(annotations, series.to_pandas(), hits)
    return pa.Table.from_pandas(linked, schema=ANNOTATIONS, preserve_index=False)

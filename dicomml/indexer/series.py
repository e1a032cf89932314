"""The ``series`` table (one row per volume group) and the ``annotations`` table, from ``instances``.

Both are rebuilt whole after each run that changed something, by DuckDB over
the ``instances`` partitions, streamed in record batches. Whether a group is
usable is decided from headers alone: the stack geometry of
:func:`dicomml.geometry.analyze_stack` (gap, duplicate positions, gantry tilt,
non-uniform spacing) plus the rules here (no geometry, mixed pixel spacing, a
single slice, several images at one position, a file of its folder lost, a
series split across folders, across transfer syntaxes or by the rounding of its orientation). A group of 2D images (a
modality of :data:`~dicomml.imaging2d.modalities.IMAGE_MODALITIES`) that makes
no stack is not usable as a volume for the reason
:data:`~dicomml.imaging2d.modalities.IMAGES_2D`, whatever its geometry; any
other group of colour images (Samples per Pixel above 1, or PALETTE COLOR), which
:func:`dicomml.load_series` does not read, for the reason :data:`COLOUR_IMAGES`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from dicomml.dicom.series_key import ORIENTATION_TOLERANCE, orientation_bins
from dicomml.geometry import analyze_stack, axcodes, dicom_affine, geometry_problem
from dicomml.geometry.checks import spacing_problem
from dicomml.imaging2d.modalities import IMAGE_MODALITIES, IMAGES_2D, is_colour
from dicomml.indexer.annotations import link_annotations
from dicomml.indexer.schema import ANNOTATION_MODALITIES, ANNOTATIONS, SERIES
from dicomml.indexer.tables import empty, from_rows
from dicomml.paths import printable

__all__ = ["COLOUR_IMAGES", "annotations_table", "series_table", "usability"]

#: The ``series`` reason of a group of colour images: volumes hold one sample per voxel.
COLOUR_IMAGES = (
    "colour images ((0028,0002) Samples per Pixel > 1 or (0028,0004) PALETTE COLOR), not a volume (ImageDataset and load_image read them)"
)

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
       list(DISTINCT transfer_syntax_uid) AS transfer_syntaxes,
       max(samples_per_pixel) AS samples_per_pixel,
       list(DISTINCT photometric_interpretation) AS photometrics
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
    if g.n_volumes == 0 and int(np.min(g.counts)) > 1:  # time points with a slice lost or repeated: load_series' words
        return stats, (
            f"positions hold unequal numbers of slices ({np.unique(g.counts).tolist()}; {g.duplicates} extra), "
            "so they are neither one volume nor a time series"
        )
    return stats, g.problem()


#: Error kinds of a file that may have been a slice (not a DICOMDIR, not a file that is no DICOM at all).
_LOST_SLICE_ERRORS = ("invalid", "timeout", "crashed", "unreadable")
#: A file shorter than the preamble and 'DICM' (an empty file, a transfer cut short) cannot be told from a lost slice.
_DICOM_PREFIX_BYTES = 132
_LOST = f"""
SELECT folder, count(*) AS n, min(path) AS example FROM errors
WHERE stage = 'read'
  AND (error_type IN ({", ".join("?" for _ in _LOST_SLICE_ERRORS)})
       OR (error_type = 'not_dicom' AND size >= 0 AND size < {_DICOM_PREFIX_BYTES}))
GROUP BY folder
"""


def _lost_slices(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Per folder holding files that could not be read, the reason its groups are not usable.

    A file that cannot be read may have been a slice of any group of its folder; a lost end slice
    leaves no gap to see, so the groups are marked rather than trusted.
    """
    return {
        folder: f"{n} file(s) of its folder could not be read (e.g. {printable(example.rsplit('/', 1)[-1])}); a slice may be lost"
        for folder, n, example in con.execute(_LOST, list(_LOST_SLICE_ERRORS)).fetchall()
    }


#: The rows of SeriesInstanceUIDs that several groups share; they are few.
_SHARED_ROWS = """
SELECT * FROM instances WHERE series_key IS NOT NULL AND series_instance_uid IN (
    SELECT series_instance_uid FROM instances WHERE series_key IS NOT NULL AND series_instance_uid <> ''
    GROUP BY series_instance_uid HAVING count(DISTINCT series_key) > 1)
"""
#: Those groups, compared in Python.
_SHARING = f"""
SELECT series_key, any_value(series_instance_uid) AS uid, any_value(series_number) AS number,
       any_value(sop_class_uid) AS sop_class, any_value(folder) AS folder, any_value(transfer_syntax_uid) AS syntax,
       any_value(rows) AS rows, any_value("columns") AS "columns", any_value(image_orientation) AS orientation,
       list(DISTINCT list_transform(image_position, lambda v: round(v, 2))) FILTER (WHERE image_position IS NOT NULL) AS positions
FROM ({_SHARED_ROWS})
GROUP BY series_key
ORDER BY series_key
"""
#: Pairs of those groups that hold a same SOP instance: copies (or frames of one object), not parts.
_COPIES = f"""
WITH s AS ({_SHARED_ROWS})
SELECT DISTINCT a.series_key, b.series_key FROM s a JOIN s b
  ON a.series_instance_uid = b.series_instance_uid AND a.sop_instance_uid = b.sop_instance_uid AND a.series_key < b.series_key
"""


class _Group(NamedTuple):
    key: str
    uid: str
    number: int | None
    sop_class: str | None
    folder: str
    syntax: str | None
    rows: int | None
    columns: int | None
    orientation: list[float] | None
    positions: list[list[float]] | None


def _one_volume(a: _Group, b: _Group) -> bool:
    """Whether two groups of one SeriesInstanceUID would make one volume but for the folder, the transfer syntax or
    the key's rounding.

    Parts hold other slices: a group at a position of the other (a copy re-encoded with new SOP Instance UIDs) is
    not a part.
    """
    if (a.number, a.sop_class, a.rows, a.columns) != (b.number, b.sop_class, b.rows, b.columns):
        return False
    if {tuple(p) for p in a.positions or []} & {tuple(p) for p in b.positions or []}:
        return False
    if a.orientation is None or b.orientation is None or len(a.orientation) != 6 or len(b.orientation) != 6:
        return False
    return float(np.max(np.abs(np.subtract(a.orientation, b.orientation)))) <= ORIENTATION_TOLERANCE


def _named(groups: list[_Group], where: bool) -> str:
    shown = ", ".join(f"{g.key} ({g.folder})" if where else g.key for g in groups[:3])
    return shown + (f" and {len(groups) - 3} more" if len(groups) > 3 else "")


def _sharing(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per SeriesInstanceUID of several groups their keys; per group split from others of its volume, the reason.

    A group is a part when a group of the same series, matrix and orientation holds none of its SOP instances
    (copies hold the same ones) and sits in another folder, or in the same folder in another transfer syntax,
    or with an orientation that differs by less than the tolerance yet rounds otherwise in the key.
    """
    copies = set(con.execute(_COPIES).fetchall())
    by_uid: dict[str, list[_Group]] = {}
    for row in con.execute(_SHARING).fetchall():
        group = _Group(*row)
        by_uid.setdefault(group.uid, []).append(group)
    reasons: dict[str, str] = {}
    for siblings in by_uid.values():
        for a in siblings:
            others = [b for b in siblings if b.key != a.key and _one_volume(a, b) and tuple(sorted((a.key, b.key))) not in copies]
            apart = [b for b in others if b.folder != a.folder]
            recoded = [b for b in others if b.folder == a.folder and b.syntax != a.syntax]
            rounded = [
                b
                for b in others
                if b.folder == a.folder
                and b.syntax == a.syntax
                and orientation_bins(b.orientation or []) != orientation_bins(a.orientation or [])
            ]
            if apart:
                syntaxes = " in one transfer syntax" if any(b.syntax != a.syntax for b in apart) else ""
                reasons[a.key] = (
                    f"series split across folders: other instances of its SeriesInstanceUID are in series_key "
                    f"{_named(apart, True)}; put them in one folder{syntaxes} and index again"
                )
            elif recoded:
                reasons[a.key] = (
                    f"one volume stored in several transfer syntaxes: its other slices, in "
                    f"{', '.join(sorted({str(b.syntax) for b in recoded}))}, are in series_key {_named(recoded, False)}; "
                    "convert the files to one transfer syntax (e.g. gdcmconv --raw) and index again"
                )
            elif rounded:
                reasons[a.key] = (
                    f"one volume split by the rounding of (0020,0037) ImageOrientationPatient in the series_key: "
                    f"its other slices, at an orientation within {ORIENTATION_TOLERANCE:g}, are in series_key {_named(rounded, False)}"
                )
    return {uid: [g.key for g in siblings] for uid, siblings in by_uid.items()}, reasons


def _series_rows(
    batch: pa.RecordBatch, shared: dict[str, list[str]], split: dict[str, str], lost: dict[str, str]
) -> Iterator[dict[str, Any]]:
    for group in batch.to_pylist():
        flat = group.pop("positions")
        spacings = group.pop("spacings")
        positions = None if any(p is None for p in flat) else np.asarray([v for p in flat for v in p]).reshape(-1, 3)
        samples = group.pop("samples_per_pixel")
        colour = any(is_colour(samples, photometric) for photometric in group.pop("photometrics") or [None])
        stats, reason = usability(positions, group["orientation"], spacings)
        if reason is not None and group["modality"] in IMAGE_MODALITIES and stats.get("n_slices", 1) == 1:
            reason = IMAGES_2D  # radiographs, mammograms, captures: not a broken volume
        elif colour:  # load_series refuses them whatever their geometry
            reason = COLOUR_IMAGES
        group.update(stats)
        group["pixel_spacing"] = spacings[0] if spacings else None
        group["shape"] = [stats["n_slices"], group["rows"], group["columns"]] if stats else None
        group["transfer_syntaxes"] = sorted(t for t in group["transfer_syntaxes"] if t)
        group["shared_uid_keys"] = [k for k in shared.get(group["series_instance_uid"], []) if k != group["series_key"]]
        if reason not in (IMAGES_2D, COLOUR_IMAGES):  # a part's own geometry describes only the part
            reason = split.get(group["series_key"]) or reason or lost.get(group["folder"])
        group["usable"] = reason is None
        group["reason"] = reason
        yield group


def series_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The ``series`` table from a connection with an ``instances`` view."""
    shared, split = _sharing(con)
    lost = _lost_slices(con)
    rows: list[dict[str, Any]] = []
    for batch in con.sql(_GROUPS).to_arrow_reader(1024):
        rows.extend(_series_rows(batch, shared, split, lost))
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

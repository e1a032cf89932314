"""SEG and RTSTRUCT objects: what they say they reference, and which volume group that is.

Reading (:func:`annotation_fields`) happens per file in the scan; linking
(:func:`link_annotations`) runs once over the whole manifest, because the
referenced series may be anywhere in it.

Linking rule, in order:

1. ``referenced_series``: the SeriesInstanceUID of ReferencedSeriesSequence
   (SEG) or RTReferencedSeriesSequence (RTSTRUCT) names image groups; among
   them, those holding the most referenced SOP instances win.
2. ``referenced_instances``: no series UID, but referenced SOP Instance UIDs.
3. ``frame_of_reference``: neither resolves; groups with the same
   FrameOfReferenceUID and, for a SEG, the same orientation and slice planes.

When several groups tie (the same UIDs copied into several folders, as the
derived-dcmtk re-encodings do), the one whose folder is nearest the
annotation file wins and the others are kept in ``other_series_keys``.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import TYPE_CHECKING, Any

import numpy as np

from dicomml.geometry import slice_normal

if TYPE_CHECKING:
    import pandas as pd
    from pydicom.dataset import Dataset

__all__ = ["annotation_fields", "annotation_key", "link_annotations"]

#: A SEG frame lies on an image plane when its offset along the normal is this close (mm).
PLANE_TOLERANCE_MM = 0.1


def _uids(items: Any, keyword: str) -> list[str]:
    return [str(item.get(keyword)) for item in items or [] if item.get(keyword)]


def annotation_fields(ds: Dataset) -> dict[str, Any]:
    """The annotation columns of a SEG or RTSTRUCT dataset.

    Parameters
    ----------
    ds
        The object's header (pixel data not needed).

    Returns
    -------
    dict
        ``frame_of_reference_uid`` (an RTSTRUCT's from its
        ReferencedFrameOfReferenceSequence), ``segmentation_type``, ``n_segments``, ``labels`` (segment labels or
        ROI names), ``referenced_series_uids`` and ``referenced_sop_uids``.

    Examples
    --------
    >>> annotation_fields(pydicom.dcmread("liver.dcm"))["labels"]  # doctest: +SKIP
    ['Liver']
    """
    if ds.get("Modality") == "RTSTRUCT":
        rois = ds.get("StructureSetROISequence") or []
        series_items = [
            series
            for frame in ds.get("ReferencedFrameOfReferenceSequence") or []
            for study in frame.get("RTReferencedStudySequence") or []
            for series in study.get("RTReferencedSeriesSequence") or []
        ]
        images = [image for series in series_items for image in series.get("ContourImageSequence") or []]
        frames = _uids(ds.get("ReferencedFrameOfReferenceSequence"), "FrameOfReferenceUID")
        return {
            "frame_of_reference_uid": ds.get("FrameOfReferenceUID") or (frames[0] if frames else None),
            "segmentation_type": None,
            "n_segments": len(rois),
            "labels": [str(roi.get("ROIName", "")) for roi in rois],
            "referenced_series_uids": _uids(series_items, "SeriesInstanceUID"),
            "referenced_sop_uids": _uids(images, "ReferencedSOPInstanceUID"),
        }
    segments = ds.get("SegmentSequence") or []
    series_items = ds.get("ReferencedSeriesSequence") or []
    images = [image for series in series_items for image in series.get("ReferencedInstanceSequence") or []]
    return {
        "frame_of_reference_uid": ds.get("FrameOfReferenceUID"),
        "segmentation_type": str(ds.get("SegmentationType", "")) or None,
        "n_segments": len(segments),
        "labels": [str(segment.get("SegmentLabel", "")) for segment in segments],
        "referenced_series_uids": _uids(series_items, "SeriesInstanceUID"),
        "referenced_sop_uids": _uids(images, "ReferencedSOPInstanceUID"),
    }


def annotation_key(path: str, sop_instance_uid: str | None) -> str:
    """Stable key of an annotation object: 16 hex digits of SHA-256 of path and SOP Instance UID."""
    return hashlib.sha256(f"{path}\x1f{sop_instance_uid or ''}".encode()).hexdigest()[:16]


def _folder_distance(a: str, b: str) -> int:
    pa, pb = a.rstrip("/").split("/"), b.rstrip("/").split("/")
    common = len(posixpath.commonprefix([pa, pb]))
    return len(pa) + len(pb) - 2 * common


def _on_planes(annotation: pd.Series, series: pd.Series) -> bool:
    """Whether a SEG's frames share the series' orientation and lie on its slice planes."""
    if annotation["image_orientation"] is None or series["orientation"] is None:
        return False
    a_iop, s_iop = np.asarray(annotation["image_orientation"]), np.asarray(series["orientation"])
    if not np.allclose(a_iop, s_iop, atol=1e-3):
        return False
    flat = annotation["frame_positions"] if annotation["frame_positions"] is not None else annotation["image_position"]
    if flat is None or series["first_position"] is None:
        return False
    positions = np.asarray(flat, dtype=np.float64).reshape(-1, 3)
    offsets = (positions - np.asarray(series["first_position"])) @ slice_normal(s_iop)
    spacing = series["slice_spacing"] or 0.0
    if spacing <= 0:
        return bool(np.all(np.abs(offsets) <= PLANE_TOLERANCE_MM))
    steps = offsets / spacing
    on_plane = np.abs(steps - np.rint(steps)) * spacing <= PLANE_TOLERANCE_MM
    inside = (np.rint(steps) >= 0) & (np.rint(steps) < series["n_slices"])
    return bool(np.all(on_plane & inside))


def link_annotations(annotations: pd.DataFrame, series: pd.DataFrame, sop_hits: pd.DataFrame) -> pd.DataFrame:
    """Resolve each annotation's ``referenced_series_key``.

    Parameters
    ----------
    annotations
        ``instances`` rows of SEG / RTSTRUCT objects.
    series
        The ``series`` table.
    sop_hits
        (``path``, ``series_key``, ``hits``): per annotation path, how many of
        its referenced SOP instances each image group holds.

    Returns
    -------
    pandas.DataFrame
        The ``annotations`` table (columns in :data:`dicomml.indexer.schema.ANNOTATIONS`).
    """
    import pandas as pd  # only a manifest holding annotation objects pays its import

    rows = []
    hits_by_path = {path: group for path, group in sop_hits.groupby("path")} if len(sop_hits) else {}
    for _, ann in annotations.iterrows():
        folder = posixpath.dirname(ann["path"])
        ref_uids = list(ann["referenced_series_uids"] if ann["referenced_series_uids"] is not None else [])
        ref_sops = list(ann["referenced_sop_uids"] if ann["referenced_sop_uids"] is not None else [])
        hits = hits_by_path.get(ann["path"])
        hit_count = dict(zip(hits["series_key"], hits["hits"])) if hits is not None else {}
        method, problem = None, None
        candidates = series[series["series_instance_uid"].isin(ref_uids)] if ref_uids else series.iloc[:0]
        if len(candidates):
            method = "referenced_series"
        elif hit_count:
            candidates = series[series["series_key"].isin(list(hit_count))]
            method = "referenced_instances"
        else:
            same_for = series[series["frame_of_reference_uid"] == ann["frame_of_reference_uid"]]
            if ann["modality"] == "SEG":
                same_for = same_for[[_on_planes(ann, s) for _, s in same_for.iterrows()]]
            candidates = same_for
            method = "frame_of_reference" if len(candidates) else None
        if len(candidates) == 0:
            what = f"series {', '.join(ref_uids)}" if ref_uids else "no series UID"
            problem = f"referenced image series not found in the manifest ({what}, FrameOfReferenceUID {ann['frame_of_reference_uid']})"
            chosen, others = None, []
        else:
            scored = sorted(
                candidates.itertuples(index=False),
                key=lambda s: (-hit_count.get(s.series_key, 0), _folder_distance(s.folder, folder), s.series_key),
            )
            best = scored[0]
            chosen = best.series_key
            best_score = (hit_count.get(chosen, 0),)
            others = [s.series_key for s in scored[1:]]
            if ref_sops and best_score[0] < len(set(ref_sops)):
                problem = (
                    f"{len(set(ref_sops)) - best_score[0]} of {len(set(ref_sops))} referenced SOP instances are not in series_key {chosen}"
                )
            if others and method != "frame_of_reference":
                tie = [k for k in others if hit_count.get(k, 0) == best_score[0]]
                if tie:
                    extra = f"{len(tie)} other group(s) share the referenced UIDs; chose the nearest folder"
                    problem = f"{problem}; {extra}" if problem else extra
        rows.append(
            {
                "annotation_key": annotation_key(ann["path"], ann["sop_instance_uid"]),
                "path": ann["path"],
                "frame_numbers": ann["frame_numbers"],
                "modality": ann["modality"],
                "sop_class_uid": ann["sop_class_uid"],
                "sop_instance_uid": ann["sop_instance_uid"],
                "series_instance_uid": ann["series_instance_uid"],
                "frame_of_reference_uid": ann["frame_of_reference_uid"],
                "segmentation_type": ann["segmentation_type"],
                "n_segments": ann["n_segments"],
                "labels": ann["labels"],
                "referenced_series_uid": ref_uids[0] if ref_uids else None,
                "referenced_series_key": chosen,
                "other_series_keys": others,
                "link_method": method if chosen else None,
                "link_problem": problem,
            }
        )
    return pd.DataFrame(rows)

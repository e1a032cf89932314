"""One label map per dataset: what each annotation calls its segments, and which label that is.

Annotations name the same structure differently (``Liver``, ``liver``,
``LIVER_1``) and code it, or not, with a segmented property type
(``SCT:10200004``). :func:`segment_names` reads both from an annotation's
header; :func:`match_label` maps a segment to the dataset's
:class:`~dicomml.config.Label` by code first, when the code identifies it,
then by name or alias (case-insensitive); :func:`label_table` counts every
label and code across a manifest, as a table to turn into the config's
``labels``. A property type is not an identity when it is generic (Tissue,
:data:`~dicomml.config.GENERIC_CODES`) or shared by several segments of one
annotation (left and right kidney, told apart by a modifier or by name
only): then the SegmentLabel decides, as highdicom and dcmqi users expect.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydicom.dataset import Dataset

from dicomml.config import GENERIC_CODES, Label
from dicomml.dicom.io import read_dataset

if TYPE_CHECKING:
    from dicomml.indexer.manifest import Manifest
    from dicomml.sources import Remote

__all__ = ["SegmentName", "identifying_code", "label_table", "match_label", "segment_names"]


@dataclass(frozen=True)
class SegmentName:
    """How one annotation names one of its segments (SEG) or ROIs (RTSTRUCT).

    Attributes
    ----------
    number
        SegmentNumber or ROINumber.
    label
        SegmentLabel or ROIName.
    code
        Segmented property type (SEG) or RT ROI identification code
        (RTSTRUCT) as ``"SCHEME:VALUE"``, or ``""`` when not coded.
    meaning
        The code's meaning (``""`` when not coded).
    """

    number: int
    label: str
    code: str = ""
    meaning: str = ""


def _code(items: Any) -> tuple[str, str]:
    for item in items or []:
        return f"{item.get('CodingSchemeDesignator', '')}:{item.get('CodeValue', '')}", str(item.get("CodeMeaning", ""))
    return "", ""


def segment_names(annotation: str | os.PathLike[str] | Dataset, remote: Remote | None = None) -> list[SegmentName]:
    """The segments of a SEG, or the ROIs of an RTSTRUCT, with their codes (header only).

    Parameters
    ----------
    annotation
        A path, fsspec URL or pydicom Dataset.
    remote
        How to reach a URL (storage options, credentials): a
        :class:`dicomml.sources.Remote`, usually the manifest's ``remote``.

    Returns
    -------
    list of SegmentName
        In the file's order.

    Examples
    --------
    >>> segment_names(data_file("dcmqi/data/segmentations/liver.dcm"))  # doctest: +SKIP
    [SegmentName(number=1, label='Liver', code='SCT:10200004', meaning='Liver')]
    """
    ds = annotation if isinstance(annotation, Dataset) else read_dataset(annotation, pixels=False, remote=remote)
    if ds.get("Modality") == "RTSTRUCT":
        codes = {
            int(item.ReferencedROINumber): _code(item.get("RTROIIdentificationCodeSequence"))
            for item in ds.get("RTROIObservationsSequence") or []
            if "ReferencedROINumber" in item
        }
        return [
            SegmentName(int(roi.ROINumber), str(roi.get("ROIName", "")), *codes.get(int(roi.ROINumber), ("", "")))
            for roi in ds.get("StructureSetROISequence") or []
        ]
    return [
        SegmentName(int(item.SegmentNumber), str(item.get("SegmentLabel", "")), *_code(item.get("SegmentedPropertyTypeCodeSequence")))
        for item in ds.get("SegmentSequence") or []
    ]


def identifying_code(segment: SegmentName, siblings: Sequence[SegmentName] = ()) -> str:
    """The segment's code if it tells the segment apart, else ``""``.

    Parameters
    ----------
    segment
        One segment or ROI of an annotation.
    siblings
        Every segment of that annotation (``segment`` among them).

    Returns
    -------
    str
        ``segment.code``, or ``""`` when it is absent, generic
        (:data:`dicomml.config.GENERIC_CODES`) or shared by another of
        ``siblings``.

    Examples
    --------
    >>> left, right = SegmentName(1, "left kidney", "SCT:64033007"), SegmentName(2, "right kidney", "SCT:64033007")
    >>> identifying_code(left, [left, right]), identifying_code(left, [left])
    ('', 'SCT:64033007')
    >>> identifying_code(SegmentName(1, "organ", "SCT:85756007"))
    ''
    """
    if not segment.code or segment.code in GENERIC_CODES:
        return ""
    shared = any(other.code == segment.code and other.number != segment.number for other in siblings)
    return "" if shared else segment.code


def match_label(labels: Sequence[Label], segment: SegmentName, siblings: Sequence[SegmentName] = ()) -> Label | None:
    """The label a segment is: by its identifying code first, then by name or alias (case-insensitive).

    Parameters
    ----------
    labels
        The dataset's label map.
    segment
        One segment or ROI of an annotation.
    siblings
        Every segment of that annotation: a code several of them share does
        not decide (see :func:`identifying_code`), nor does one that several
        labels have.

    Returns
    -------
    Label or None
        None when no label claims it (the segment is left out).

    Examples
    --------
    >>> liver = Label("liver", 1, codes=("SCT:10200004",), aliases=("leber",))
    >>> match_label([liver], SegmentName(3, "LEBER")).name
    'liver'
    >>> match_label([liver], SegmentName(1, "organ", "SCT:10200004")).name
    'liver'
    """
    code = identifying_code(segment, siblings)
    claimed = [label for label in labels if code and code in label.codes]
    if len(claimed) == 1:
        return claimed[0]
    name = segment.label.strip().lower()
    for label in labels:
        if name in {label.name.lower(), *(alias.lower() for alias in label.aliases)}:
            return label
    return None


def label_table(manifest: Manifest | str | os.PathLike[str]) -> pd.DataFrame:
    """Every label and code found across a manifest's annotations, with counts.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest` or the path of its folder.

    Returns
    -------
    pandas.DataFrame
        One row per (label, code, modality): ``label``, ``code``,
        ``meaning``, ``modality``, ``identifies`` (whether the code tells
        the segment apart, :func:`identifying_code`: a label's ``codes``
        should hold only those), ``annotations`` (how many objects have it)
        and ``series`` (how many image series those annotate), most
        frequent first. Unreadable annotations are left out.

    Examples
    --------
    >>> label_table("manifest/")  # doctest: +SKIP
         label          code meaning modality  identifies  annotations  series
    0    Liver  SCT:10200004   Liver      SEG        True            3       1
    """
    from dicomml.errors import DicomMLError
    from dicomml.indexer.manifest import Manifest

    opened = Manifest.open(manifest)
    rows = []
    for item in opened.annotations.itertuples():
        try:
            names = segment_names(str(item.path), opened.remote)
        except (DicomMLError, OSError, ValueError):
            continue
        for name in names:
            identifies = bool(identifying_code(name, names))
            rows.append((name.label, name.code, name.meaning, item.modality, identifies, item.annotation_key, item.referenced_series_key))
    columns = ["label", "code", "meaning", "modality", "identifies", "annotation_key", "series_key"]
    found = pd.DataFrame(rows, columns=columns)
    counted = found.groupby(["label", "code", "meaning", "modality", "identifies"], as_index=False, dropna=False).agg(
        annotations=("annotation_key", "nunique"), series=("series_key", "nunique")
    )
    return counted.sort_values(["annotations", "label"], ascending=[False, True], ignore_index=True)

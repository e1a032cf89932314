"""A series' annotations as one mask in the dataset's label map (the same channels for every sample).

Each chosen annotation is decoded with one channel per segment; each segment
is matched to a :class:`~dicomml.config.Label` (:func:`match_label`) and
merged (union) into that label's channel. A label no annotation has stays an
empty channel with ``present`` False, so a loss can ignore it. An annotation
that fails is skipped under ``on_bad="skip"`` (and listed in the meta), so it
never fails its good siblings.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicomml.config import Annotations, Label
from dicomml.errors import ConfigError, DicomMLError
from dicomml.indexer.manifest import Manifest
from dicomml.limits import DEFAULT_MAX_VOXELS
from dicomml.seg.labels import SegmentName, match_label, segment_names
from dicomml.volume import Volume

__all__ = ["AnnotationRecord", "annotation_records", "choose_annotations", "dataset_mask", "overlay_channels"]


@dataclass(frozen=True)
class AnnotationRecord:
    """What a ``choose`` predicate sees of one annotation (read from its header).

    Attributes
    ----------
    annotation_key
        The manifest's ``annotation_key``.
    modality
        ``"SEG"`` or ``"RTSTRUCT"``.
    description
        SeriesDescription (else StructureSetLabel / ContentLabel), ``""`` if none.
    series_number
        SeriesNumber, or None.
    datetime
        When it was made: series, else content, instance creation or
        structure set date and time; None when the header has none.
    creator
        ContentCreatorName, else OperatorsName, else Manufacturer (``""`` if none).
    segments
        Its segments (SEG) or ROIs (RTSTRUCT): number, label, code.
    header
        The pydicom Dataset (no pixel data), for anything else.
    """

    annotation_key: str
    modality: str
    description: str
    series_number: int | None
    datetime: datetime.datetime | None
    creator: str
    segments: tuple[SegmentName, ...]
    header: Dataset = field(repr=False, compare=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """The segment labels / ROI names."""
        return tuple(s.label for s in self.segments)

    @property
    def codes(self) -> tuple[str, ...]:
        """The coded segments' ``"SCHEME:VALUE"`` codes."""
        return tuple(s.code for s in self.segments if s.code)


def _made(header: Dataset) -> datetime.datetime | None:
    """When an annotation was made: series, then content, instance creation, structure set date and time."""
    for date, time in (
        ("SeriesDate", "SeriesTime"),
        ("ContentDate", "ContentTime"),
        ("InstanceCreationDate", "InstanceCreationTime"),
        ("StructureSetDate", "StructureSetTime"),
    ):
        if header.get(date):
            stamp = f"{str(header.get(date)).strip()}{str(header.get(time) or '').split('.')[0].strip():0<6}"
            try:
                return datetime.datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")
            except ValueError:
                continue  # a malformed date: try the next one
    return None


def annotation_records(manifest: Manifest, annotation_keys: Sequence[str]) -> list[AnnotationRecord]:
    """The headers of annotations as :class:`AnnotationRecord`, in the order given.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest`.
    annotation_keys
        Manifest ``annotation_key`` values.
    """
    from dicomml.dicom.io import read_dataset

    wanted = set(annotation_keys)
    paths = {
        row["annotation_key"]: row["path"]
        for row in manifest.table("annotations", ["annotation_key", "path"]).to_pylist()
        if row["annotation_key"] in wanted
    }
    out = []
    for key in annotation_keys:
        header = read_dataset(str(paths[key]), pixels=False, remote=manifest.remote)
        texts = (header.get(name) for name in ("SeriesDescription", "StructureSetLabel", "ContentLabel"))
        creators = (header.get(name) for name in ("ContentCreatorName", "OperatorsName", "Manufacturer"))
        number = header.get("SeriesNumber")
        out.append(
            AnnotationRecord(
                annotation_key=key,
                modality=str(header.get("Modality", "")),
                description=str(next((t for t in texts if t), "")),
                series_number=None if number in (None, "") else int(number),
                datetime=_made(header),
                creator=str(next((c for c in creators if c), "")),
                segments=tuple(segment_names(header)),
                header=header,
            )
        )
    return out


def choose_annotations(manifest: Manifest, annotation_keys: Sequence[str], choose: str | Callable[[AnnotationRecord], Any]) -> list[str]:
    """The annotations of one series that the ``choose`` policy keeps.

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest`.
    annotation_keys
        The series' annotations.
    choose
        ``"all"`` / ``"union"`` / ``"each"``: every one; ``"newest"``: the
        latest by series (else content) date and time; ``"description:TEXT"``:
        those whose SeriesDescription contains TEXT (case-insensitive); a
        callable: given each annotation's :class:`AnnotationRecord`, it returns
        a bool (every annotation it is True for is kept, maybe none) or a
        sort key (the one with the largest is kept; ties go to the larger
        annotation key).

    Returns
    -------
    list of str
        Annotation keys, in the order given.

    Raises
    ------
    ConfigError
        If a predicate's sort keys cannot be compared with each other.

    Examples
    --------
    >>> by_expert = lambda record: record.creator.startswith("Expert")  # doctest: +SKIP
    >>> most_segments = lambda record: len(record.segments)  # doctest: +SKIP
    """
    if (isinstance(choose, str) and choose in ("all", "union", "each")) or len(annotation_keys) == 0:
        return list(annotation_keys)
    records = annotation_records(manifest, annotation_keys)
    if choose == "newest":
        return [max(records, key=lambda r: (r.datetime or datetime.datetime.min, r.annotation_key)).annotation_key]
    if isinstance(choose, str):
        text = choose.split(":", 1)[1].lower()
        return [r.annotation_key for r in records if text in str(r.header.get("SeriesDescription", "")).lower()]
    results = [choose(record) for record in records]
    if all(isinstance(result, (bool, np.bool_)) for result in results):
        return [r.annotation_key for r, keep in zip(records, results) if keep]
    try:
        return [max(zip(results, annotation_keys))[1]]
    except TypeError as exc:
        raise ConfigError(f"annotations.choose {getattr(choose, '__name__', choose)!r}: its sort keys cannot be compared ({exc})") from None


def overlay_channels(channels: np.ndarray, values: Iterable[int], dtype: Any = None) -> np.ndarray:
    """Multi-hot channels as one label map: where labels overlap the higher value wins.

    The rule of ``mode: label_map`` (a tumour inside its organ stays a
    tumour, as nnU-Net's regions do), shared by :func:`dataset_mask` and
    write-back's ``kind="labelmap"``.

    Parameters
    ----------
    channels
        ``(C, ...)``: a voxel is in label ``c`` where ``channels[c]`` is
        nonzero (True).
    values
        The ``C`` label values (>= 1), in the order of the channels, in any
        order of value.
    dtype
        Of the result; default uint8, or uint16 for a value above 255.

    Returns
    -------
    numpy.ndarray
        ``channels.shape[1:]``: each voxel's highest value among the channels
        it is in, 0 where it is in none.

    Examples
    --------
    >>> liver, tumour = np.array([1, 1, 1, 0]), np.array([0, 1, 0, 0])
    >>> overlay_channels(np.stack([liver, tumour]), [1, 2])
    array([1, 2, 1, 0], dtype=uint8)
    """
    values = [int(value) for value in values]
    out = np.zeros(channels.shape[1:], dtype or (np.uint8 if max(values, default=0) < 256 else np.uint16))
    for c in np.argsort(values, kind="stable"):  # the higher value last, so it is the one left
        out[channels[c] != 0] = values[c]
    return out


def dataset_mask(
    manifest: Manifest,
    annotation_keys: Sequence[str],
    reference: Volume,
    annotations: Annotations,
    labels: Sequence[Label],
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """One series' chosen annotations as a mask with one channel per label (or one label map).

    Parameters
    ----------
    manifest
        A :class:`dicomml.Manifest`.
    annotation_keys
        The series' annotations (already chosen, see :func:`choose_annotations`).
    reference
        The image Volume the masks go on.
    annotations
        The options: ``mode`` and ``on_bad``. FRACTIONAL segments count
        where their probability is 0.5 or more.
    labels
        The dataset's label map.
    max_voxels
        Most voxels of each annotation's mask (see :func:`dicomml.load_mask`).

    Returns
    -------
    Volume
        ``"channels"``: (label, i, j, k) uint8 in the order of ``labels``;
        ``"label_map"``: (1, i, j, k) of label values, the higher value
        where labels overlap. Axes ``("segment",)``;
        ``meta``: ``kind="mask"``, ``labels`` (value -> name), ``present``
        (one bool per label), ``annotation_keys`` (those that loaded),
        ``skipped`` (``{annotation_key: one-line reason}``), ``unmatched``
        (segment labels no label claimed).

    Raises
    ------
    DicomMLError
        What reading an annotation raises, under ``on_bad="raise"``.
    """
    from dicomml.seg.load import load_mask

    channels = np.zeros((len(labels),) + reference.spatial_shape, np.uint8)
    index = {label.value: i for i, label in enumerate(labels)}
    loaded: list[str] = []
    skipped: dict[str, str] = {}
    unmatched: set[str] = set()
    for key in annotation_keys:
        try:
            mask = load_mask(manifest, key, reference=reference, as_channels=True, max_voxels=max_voxels)
            names = {s.number: s for s in segment_names(mask.meta["source"], manifest.remote)}
        except DicomMLError as exc:
            if annotations.on_bad == "raise":
                raise
            skipped[key] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.append(key)
        for channel, number in enumerate(mask.meta["labels"]):
            label = match_label(labels, names[int(number)], list(names.values()))
            if label is None:
                unmatched.add(names[int(number)].label)
                continue
            inside = mask.array[channel] >= 0.5 if mask.array.dtype.kind == "f" else mask.array[channel] != 0
            np.maximum(channels[index[label.value]], inside, out=channels[index[label.value]])
    present = [bool(channels[i].any()) for i in range(len(labels))]
    array = channels
    if annotations.mode == "label_map":
        array = overlay_channels(channels, [label.value for label in labels])[None]
    meta = {
        "kind": "mask",
        "labels": {label.value: label.name for label in labels},
        "present": present,
        "annotation_keys": loaded,
        "skipped": skipped,
        "unmatched": sorted(unmatched),
    }
    return Volume(array, reference.affine.copy(), ("segment",), meta)

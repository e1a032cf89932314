"""A series' annotations as one mask in the dataset's label map (the same channels for every sample).

Each chosen annotation is decoded with one channel per segment; each segment
is matched to a :class:`~dicomml.config.Label` (:func:`match_label`) and
merged (union) into that label's channel. A label no annotation has stays an
empty channel with ``present`` False, so a loss can ignore it. An annotation
that fails is skipped under ``on_bad="skip"`` (and listed in the meta), so it
never fails its good siblings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dicomml.config import Annotations, Label
from dicomml.errors import DicomMLError
from dicomml.indexer.manifest import Manifest
from dicomml.seg.labels import match_label, segment_names
from dicomml.volume import Volume

__all__ = ["choose_annotations", "dataset_mask"]


def _stamp(header: Any) -> str:
    """When an annotation was made: series, then content, then instance creation date and time."""
    for date, time in (
        ("SeriesDate", "SeriesTime"),
        ("ContentDate", "ContentTime"),
        ("InstanceCreationDate", "InstanceCreationTime"),
        ("StructureSetDate", "StructureSetTime"),
    ):
        if header.get(date):
            return f"{header.get(date)}{str(header.get(time) or '').split('.')[0]:0<6}"
    return ""


def choose_annotations(manifest: Manifest, annotation_keys: Sequence[str], choose: str) -> list[str]:
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
        those whose SeriesDescription contains TEXT (case-insensitive).

    Returns
    -------
    list of str
        Annotation keys, in the order given.
    """
    if choose in ("all", "union", "each") or len(annotation_keys) == 0:
        return list(annotation_keys)
    from dicomml.dicom.io import read_dataset

    rows = {
        row["annotation_key"]: row
        for row in manifest.table("annotations", ["annotation_key", "path"]).to_pylist()
        if row["annotation_key"] in set(annotation_keys)
    }
    headers = {key: read_dataset(str(rows[key]["path"]), pixels=False, remote=manifest.remote) for key in annotation_keys}
    if choose == "newest":
        return [max(annotation_keys, key=lambda key: (_stamp(headers[key]), key))]
    text = choose.split(":", 1)[1].lower()
    return [key for key in annotation_keys if text in str(headers[key].get("SeriesDescription", "")).lower()]


def dataset_mask(
    manifest: Manifest,
    annotation_keys: Sequence[str],
    reference: Volume,
    annotations: Annotations,
    labels: Sequence[Label],
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
            mask = load_mask(manifest, key, reference=reference, as_channels=True)
            names = {s.number: s for s in segment_names(mask.meta["source"])}
        except DicomMLError as exc:
            if annotations.on_bad == "raise":
                raise
            skipped[key] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.append(key)
        for channel, number in enumerate(mask.meta["labels"]):
            label = match_label(labels, names[int(number)])
            if label is None:
                unmatched.add(names[int(number)].label)
                continue
            inside = mask.array[channel] >= 0.5 if mask.array.dtype.kind == "f" else mask.array[channel] != 0
            np.maximum(channels[index[label.value]], inside, out=channels[index[label.value]])
    present = [bool(channels[i].any()) for i in range(len(labels))]
    array = channels
    if annotations.mode == "label_map":
        # where labels overlap the higher value wins (a tumour inside its organ), as nnU-Net's regions do
        array = np.zeros((1,) + reference.spatial_shape, np.uint8 if max(index, default=0) < 256 else np.uint16)
        for i, label in enumerate(labels):
            array[0][channels[i] != 0] = label.value
    meta = {
        "kind": "mask",
        "labels": {label.value: label.name for label in labels},
        "present": present,
        "annotation_keys": loaded,
        "skipped": skipped,
        "unmatched": sorted(unmatched),
    }
    return Volume(array, reference.affine.copy(), ("segment",), meta)

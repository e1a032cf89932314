"""Which frames form one volume: the ``series_key`` rule.

A DICOM series is not always one volume. ``group_keys`` gives every frame
(every slice of a mosaic) a ``series_key``: the first 16 hex digits of the
SHA-256 of

- the SeriesInstanceUID, the SeriesNumber and the SOP Class UID,
- the transfer syntax,
- the folder that holds the file,
- Rows and Columns,
- ImageOrientationPatient rounded to 1e-4,
- the echo (EchoNumbers, or an enhanced frame's EffectiveEchoTime),
- the image kind (value 3 of ImageType / FrameType: ``M``, ``P``, ...).

So echoes and image kinds are split, as dcm2niix splits ``_e1``/``_e2`` and
magnitude/phase; a change of orientation or matrix (a localizer inside a
series) is split. Time points and acquisitions are **not** split: slices that
repeat a position become the leading ``time`` axis when the group is loaded.
Copies of one series are not time points either: a SeriesNumber of its own
(dcm2niix splits on it too), another transfer syntax (a re-encoded copy keeps
the UIDs) or another folder each make a group of their own, so the nine
encodings of one volume in ``dcm_qa_ts`` are nine volumes, as dcm2niix makes.

A key is made from one file alone, so orientations a hair either side of a
rounding boundary (0.7071499 and 0.7071501) get two keys. No rounding avoids
that; the indexer's ``series`` table finds such groups (same series, folder
and matrix, orientations within :data:`ORIENTATION_TOLERANCE`, other rounded
values) and marks them not usable, naming each other.

Both the indexer and assembly import this rule; it is pure: it works on
:class:`~dicomml.dicom.frames.FrameTable` arrays and never reads a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from dicomml.dicom.frames import FrameTable

__all__ = ["dataset_group_keys", "group_keys", "orientation_bins", "ORIENTATION_DECIMALS", "ORIENTATION_TOLERANCE"]

#: ImageOrientationPatient is rounded to this many decimals (1e-4) in the key.
ORIENTATION_DECIMALS = 4
#: Orientations closer than this (largest cosine difference) are one volume's, as assembly allows.
ORIENTATION_TOLERANCE = 1e-3


def _number_text(value: float, decimals: int) -> str:
    if not np.isfinite(value):
        return "nan"
    rounded = round(float(value), decimals)
    return f"{rounded + 0.0:.{decimals}f}"  # + 0.0 turns -0.0 into 0.0


def orientation_bins(orientation: Sequence[float]) -> tuple[str, ...]:
    """The ImageOrientationPatient values as the key hashes them (rounded to 1e-4).

    Examples
    --------
    >>> orientation_bins([1, 0, 0, 0, 0.7071499, -0.7071]) == orientation_bins([1, 0, 0, 0, 0.7071501, -0.7071])
    False
    """
    return tuple(_number_text(v, ORIENTATION_DECIMALS) for v in orientation)


def group_keys(
    table: FrameTable,
    *,
    series_uid: str,
    series_number: int | None,
    sop_class: str,
    transfer_syntax: str,
    folder: str,
) -> list[str]:
    """One ``series_key`` (16 hex digits) per row of a frame table.

    Parameters
    ----------
    table
        The object's :func:`~dicomml.dicom.frames.frame_table`.
    series_uid
        SeriesInstanceUID of the object.
    series_number
        SeriesNumber of the object, None when absent.
    sop_class
        SOPClassUID of the object.
    transfer_syntax
        TransferSyntaxUID of the file ("" when unknown).
    folder
        The folder (or URL prefix) that holds the file, as the manifest records it.

    Returns
    -------
    list of str
        ``len(table)`` keys; frames that belong in one volume share a key.

    Examples
    --------
    >>> keys = group_keys(
    ...     table, series_uid="1.2.3", series_number=4, sop_class="1.2.840.10008.5.1.4.1.1.4",
    ...     transfer_syntax="1.2.840.10008.1.2.1", folder="/data/s1",
    ... )  # doctest: +SKIP
    >>> len(keys[0])  # doctest: +SKIP
    16
    """
    cache: dict[tuple[str, ...], str] = {}
    keys = []
    for i in range(len(table)):
        parts = (
            series_uid,
            "" if series_number is None else str(series_number),
            sop_class,
            transfer_syntax,
            folder,
            str(table.rows),
            str(table.columns),
            *orientation_bins(table.orientations[i]),
            _number_text(table.echo[i], 3),
            table.kind[i],
        )
        if parts not in cache:
            cache[parts] = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        keys.append(cache[parts])
    return keys


def dataset_group_keys(ds: Dataset, folder: str, table: FrameTable | None = None) -> list[str]:
    """:func:`group_keys` of a pydicom dataset, with its identity read from the header.

    Parameters
    ----------
    ds
        The object's dataset (pixel data may be absent).
    folder
        The folder (or URL prefix) that holds the file.
    table
        The dataset's frame table, when already made.

    Returns
    -------
    list of str
        One key per frame.

    Examples
    --------
    >>> dataset_group_keys(pydicom.dcmread(path, stop_before_pixels=True), "/data/s1")  # doctest: +SKIP
    ['5d1c0e4f9a2b3c7d']
    """
    from dicomml.dicom.frames import frame_table, header_value  # pydicom: the series table imports this module without it

    number = header_value(ds, "SeriesNumber")
    meta = getattr(ds, "file_meta", None)
    return group_keys(
        frame_table(ds) if table is None else table,
        series_uid=str(header_value(ds, "SeriesInstanceUID") or ""),
        series_number=None if number is None else int(number),
        sop_class=str(header_value(ds, "SOPClassUID") or ""),
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")) if meta is not None else "",
        folder=folder,
    )

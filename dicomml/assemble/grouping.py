"""Which frames form one volume: the ``series_key`` rule.

A DICOM series is not always one volume. ``group_keys`` gives every frame
(every slice of a mosaic) a ``series_key``: the first 16 hex digits of the
SHA-256 of

- the SeriesInstanceUID and the SOP Class UID,
- the folder that holds the file,
- Rows and Columns,
- ImageOrientationPatient rounded to 1e-4,
- the echo (EchoNumbers, or an enhanced frame's EffectiveEchoTime),
- the image kind (value 3 of ImageType / FrameType: ``M``, ``P``, ...).

So echoes and image kinds are split, as dcm2niix splits ``_e1``/``_e2`` and
magnitude/phase; a change of orientation or matrix (a localizer inside a
series) is split. Time points and acquisitions are **not** split: slices that
repeat a position become the leading ``time`` axis when the group is loaded.
The folder is part of the key, so copies of one series in other encodings
(same UIDs, other folder) stay separate groups.

This module is pure: it works on :class:`~dicomml.dicom.frames.FrameTable`
arrays and never reads a file.
"""

from __future__ import annotations

import hashlib

import numpy as np

from dicomml.dicom.frames import FrameTable

__all__ = ["group_keys", "ORIENTATION_DECIMALS"]

#: ImageOrientationPatient is rounded to this many decimals (1e-4) in the key.
ORIENTATION_DECIMALS = 4


def _number_text(value: float, decimals: int) -> str:
    if not np.isfinite(value):
        return "nan"
    rounded = round(float(value), decimals)
    return f"{rounded + 0.0:.{decimals}f}"  # + 0.0 turns -0.0 into 0.0


def group_keys(series_uid: str, sop_class: str, folder: str, table: FrameTable) -> list[str]:
    """One ``series_key`` (16 hex digits) per row of a frame table.

    Parameters
    ----------
    series_uid
        SeriesInstanceUID of the object.
    sop_class
        SOPClassUID of the object.
    folder
        The folder (or URL prefix) that holds the file, as the manifest records it.
    table
        The object's :func:`~dicomml.dicom.frames.frame_table`.

    Returns
    -------
    list of str
        ``len(table)`` keys; frames that belong in one volume share a key.

    Examples
    --------
    >>> keys = group_keys("1.2.3", "1.2.840.10008.5.1.4.1.1.4", "/data/s1", table)  # doctest: +SKIP
    >>> len(keys[0])  # doctest: +SKIP
    16
    """
    cache: dict[tuple[str, ...], str] = {}
    keys = []
    for i in range(len(table)):
        parts = (
            series_uid,
            sop_class,
            folder,
            str(table.rows),
            str(table.columns),
            *(_number_text(v, ORIENTATION_DECIMALS) for v in table.orientations[i]),
            _number_text(table.echo[i], 3),
            table.kind[i],
        )
        if parts not in cache:
            cache[parts] = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        keys.append(cache[parts])
    return keys

"""The volumes of an N-D series: their table, the name of their axis, selection and reduction.

A series whose slices repeat their positions is loaded as a Volume with one
leading axis. This module says what each volume is — a row of
``meta["volumes"]``, one list per column, from the volume's first slice in
array order (whatever order the files came in):

``acquisition_time``
    Seconds since midnight (FrameAcquisitionDateTime, else AcquisitionTime).
``trigger_time``
    Cardiac trigger delay, ms (NominalCardiacTriggerDelayTime, else TriggerTime);
    left out where the slices of a volume differ in it by about as much as
    volumes do (GE fMRI: each slice's time since the start of the run).
``echo_time``
    ms (EffectiveEchoTime, else EchoTime). ``echo_number``: EchoNumbers.
``repetition_time``
    ms (RepetitionTime, of the frame's MR Timing and Related Parameters or the
    file's); NIfTI export writes it as the time step, as dcm2niix does.
``b_value``
    s/mm² (DiffusionBValue; Siemens CSA ``B_value``; GE (0043,1039)).
``gradient``
    Unit diffusion gradient per volume, as components along the array's three
    spatial axes, in array order (``[0, 0, 0]`` for b = 0). It is dcm2niix's
    ``.bvec`` convention before its FSL flip: :func:`dicomml.geometry.directions.fsl_bvecs` gives the file's
    numbers for an image in NIfTI axis order.
``flip_angle``
    Degrees; kept only where it varies between volumes.

The leading axis is named from what varies: ``diffusion`` (b-value or
gradient), ``echo`` (echo time), ``phase`` (cardiac trigger time), else ``time``.

A 3D volume has no table; its own ``echo_number``, ``echo_time`` and
``b_value``, where its header gives them (:func:`volume_values`), sit in its
meta, so that a selection by echo or b-value refuses a volume of another one,
or of an echo with no number (Enhanced MR), rather than passing it through (the
manifest holds each echo as a series of its own).

Pure apart from reading header values of already-read datasets.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicomml.config import REDUCE, SELECT_BY, VolumeSelection
from dicomml.dicom.frames import functional_item, header_numbers, header_value, source_name
from dicomml.errors import ConfigError
from dicomml.geometry.directions import gradients_in_axes
from dicomml.volume import Volume

with warnings.catch_warnings():  # nibabel.nicom warns on import that its readers are experimental
    warnings.simplefilter("ignore", UserWarning)
    from nibabel.nicom import csareader

__all__ = [
    "apply_selection",
    "axis_name",
    "matching_volumes",
    "reduce_volumes",
    "select_volumes",
    "shared_values",
    "volume_table",
    "volume_values",
]


_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def volume_table(volumes: Sequence[Sequence[tuple[Dataset, int]]], affine: np.ndarray) -> dict[str, list[Any]]:
    """The per-volume table of a series: each volume's values are those of its first frame in array order.

    Parameters
    ----------
    volumes
        For each volume in array order, its frames in array order: the
        dataset and the 0-based frame index inside it.
    affine
        4x4 of the assembled volume: maps its three spatial indices to RAS+ mm;
        gradients are given along those axes.

    Returns
    -------
    dict
        Column name to one value per volume (None where a volume lacks it);
        columns no volume has are left out, ``flip_angle`` unless it varies, ``b_value`` when all are 0,
        ``trigger_time`` when it is not each volume's own (:func:`_slice_timing`).
    """
    rows = [_frame_values(*frames[0]) for frames in volumes]
    table: dict[str, list[Any]] = {}
    for column in ("acquisition_time", "trigger_time", "echo_time", "echo_number", "repetition_time", "b_value", "flip_angle"):
        values = [row.get(column) for row in rows]
        if any(v is not None for v in values):
            table[column] = values
    if "trigger_time" in table and _slice_timing([[_trigger(ds, frame) for ds, frame in frames] for frames in volumes]):
        del table["trigger_time"]
    if "flip_angle" in table and len(set(table["flip_angle"])) < 2:
        del table["flip_angle"]
    if "b_value" in table and not any(table["b_value"]):  # vendors write b = 0 on every fMRI volume
        del table["b_value"]
    world = [row.get("gradient_lps") for row in rows]
    if "b_value" in table and any(g is not None for g in world):
        lps = np.array([np.zeros(3) if g is None or not b else g for g, b in zip(world, table["b_value"])])
        table["gradient"] = gradients_in_axes(lps * _LPS_TO_RAS, affine).round(6).tolist()
    return table


def axis_name(table: Mapping[str, Sequence[Any]]) -> str:
    """``diffusion``, ``echo``, ``phase`` or ``time``: what varies along the leading axis."""

    def varies(column: str) -> bool:
        values = table.get(column) or []
        return len({repr(v) for v in values}) > 1

    if varies("b_value") or varies("gradient"):
        return "diffusion"
    if varies("echo_time") or varies("echo_number"):
        return "echo"
    if varies("trigger_time"):
        return "phase"
    return "time"


def select_volumes(volume: Volume, by: str, values: Sequence[float]) -> Volume:
    """The volumes of ``volume`` that a selection keeps.

    Parameters
    ----------
    volume
        A Volume with one leading axis, or a 3D one: that is returned as is,
        unless it is refused (below).
    by
        ``"all"``, ``"index"`` (0-based, negative from the end), ``"echo"``
        (EchoNumbers, within 0.5), ``"b_value"`` (within 1 s/mm²) or ``"range"``
        (``[start, stop]`` or ``[start, stop, step]``, Python slice semantics).
    values
        What to keep. ``index``, ``echo`` and ``b_value`` keep the volumes in
        the order of ``values`` (a value's several matches in their own order).

    Returns
    -------
    Volume
        3D when one volume is kept, else with the axis and the table subset;
        ``meta["volume_indices"]`` the kept volumes' indices.

    Raises
    ------
    ConfigError
        If ``by`` is unknown, the table lacks the column, or nothing is kept;
        for a 3D volume under ``echo`` or ``b_value``, if its own echo number
        or b-value (:func:`volume_values`, else its one-row table) is known
        and none of ``values``, or under ``echo`` if its echo number is
        unknown but its echo time is not (Enhanced MR): the manifest holds
        each echo as a series of its own, which the message says how to choose.

    Examples
    --------
    >>> select_volumes(dwi, "b_value", [0, 1000]).meta["volume_indices"]  # doctest: +SKIP
    [0, 1]
    """
    if by not in SELECT_BY:
        raise ConfigError(f"volumes.by {by!r} is not one of {', '.join(SELECT_BY)}")
    name = volume.meta.get("series_key", "?")
    if not volume.axes:
        if by in _COLUMN:
            _check_own(volume, by, values)
        return volume
    if by == "all":
        return volume
    n = volume.array.shape[0]
    table = dict(volume.meta.get("volumes") or {})
    if by == "index":
        picked = [int(v) % n if -n <= int(v) < n else -1 for v in values]
        if -1 in picked:
            raise ConfigError(f"series {name}: volumes.index {list(values)} leaves the {n} volumes of its {volume.axes[0]} axis")
    elif by == "range":
        if not 2 <= len(values) <= 3:
            raise ConfigError(f"volumes.range {list(values)}: give [start, stop] or [start, stop, step]")
        picked = list(range(n))[slice(*(int(v) for v in values))]
    else:
        column = _COLUMN[by]
        have = table.get(column)
        if not have:
            raise ConfigError(f"series {name}: volumes.by={by!r}, but its volumes carry no {column}; select by index instead")
        picked = list(dict.fromkeys(i for w in values for i, v in enumerate(have) if _near(v, w, by)))  # values' order
    if not picked:
        raise ConfigError(f"series {name}: volumes.{by} {list(values)} keeps none of its {n} volumes")
    kept = {k: [v[i] for i in picked] for k, v in table.items()}
    meta = {**volume.meta, "volumes": kept, "volume_indices": picked}
    if len(picked) == 1:
        return Volume(volume.array[picked[0]], volume.affine, (), meta)
    return Volume(volume.array[picked], volume.affine, volume.axes, meta)


def matching_volumes(volume: Volume, by: str, values: Sequence[float]) -> list[list[int]] | None:
    """For each echo number or b-value of ``values``, the volumes of ``volume`` it matches, as :func:`select_volumes` matches.

    Positions in ``meta["volumes"]`` (for a selected volume: the kept ones,
    those a reduction averaged included), else ``[0]`` or ``[]`` for a 3D
    volume's own value (:func:`volume_values`); None where neither says, or
    ``by`` is not ``"echo"`` or ``"b_value"``.
    """
    column = _COLUMN.get(by)
    have = None if column is None else _own_column(volume, column)
    if have is None:
        return None
    return [[i for i, v in enumerate(have) if _near(v, w, by)] for w in values]


def shared_values(ds: Dataset, frame: int) -> list[float]:
    """What every slice of one volume shares: the b-value and unit gradient (LPS) of a frame, NaN where absent.

    Read from the standard attributes only (a vendor's private ones cost a CSA parse per file): the
    enhanced objects whose frames come in any order carry them. Assembly matches each position's
    frames to volumes by them (:func:`dicomml.assemble.plan.plan_stack`).

    Parameters
    ----------
    ds
        The frame's dataset.
    frame
        0-based frame index inside ``ds``.

    Returns
    -------
    list of float
        ``[b_value, gx, gy, gz]``.

    Raises
    ------
    InvalidDicomFileError
        Naming the file and the tag, if the b-value is not a finite number or the gradient not three.
    """
    b_value, gradient = _standard_diffusion(ds, functional_item(ds, frame, "MRDiffusionSequence"))
    return [np.nan if b_value is None else b_value, *(np.full(3, np.nan) if gradient is None else gradient)]


def volume_values(ds: Dataset, frame: int) -> dict[str, float]:
    """A 3D volume's own ``echo_number``, ``echo_time`` and ``b_value``, those its header gives (its first frame's, in array order).

    Assembly records them in a 3D volume's meta, so that a selection by echo
    or b-value can tell a volume of another echo from the one asked for
    (:func:`select_volumes`). Enhanced MR has no echo number (its MR Echo
    macro holds EffectiveEchoTime only): there the echo time says that the
    echo number is unknown rather than absent.

    Parameters
    ----------
    ds
        The dataset of the volume's first frame.
    frame
        0-based frame index inside ``ds``.
    """
    echo = _number(ds, ds, "EchoNumbers")
    echo_time = _first(_number(ds, functional_item(ds, frame, "MREchoSequence"), "EffectiveEchoTime"), _number(ds, ds, "EchoTime"))
    b_value = _diffusion(ds, functional_item(ds, frame, "MRDiffusionSequence"))[0]
    values = (("echo_number", echo), ("echo_time", echo_time), ("b_value", b_value))
    return {k: v for k, v in values if v is not None}


#: The table column a selection by echo or b-value reads.
_COLUMN = {"echo": "echo_number", "b_value": "b_value"}


def _near(value: Any, wanted: float, by: str) -> bool:
    """Whether a volume's echo number (within 0.5) or b-value (within 1 s/mm²) is the one ``wanted``."""
    return value is not None and abs(float(value) - float(wanted)) <= (0.5 if by == "echo" else 1.0)


def _own_column(volume: Volume, column: str) -> list[Any] | None:
    """``column`` of each of ``volume``'s volumes: its table's, else a 3D volume's own value; None if unknown."""
    table = volume.meta.get("volumes") or {}
    if table.get(column):
        return list(table[column])
    own = volume.meta.get(column)
    return [own] if not volume.axes and own is not None else None


def _check_own(volume: Volume, by: str, values: Sequence[float]) -> None:
    """Refuse a 3D volume whose own echo number or b-value is known and none of ``values``, or of an echo with no number."""
    have = _own_column(volume, _COLUMN[by])
    name = volume.meta.get("series_key", "?")
    asked = ", ".join(f"{float(w):g}" for w in values)
    echo_time = volume.meta.get("echo_time")
    if by == "echo" and not have and echo_time is not None:
        raise ConfigError(
            f"series {name}: its echo number is unknown (no EchoNumbers, as in Enhanced MR; echo time {float(echo_time):g} ms), "
            f"so volumes.echo [{asked}] cannot be checked: drop volumes.echo and choose the series by its echo time, "
            'e.g. where: "series_key IN (SELECT series_key FROM instances WHERE round(echo_time, 2) = <ms>)"',
            series_uid=volume.meta.get("series_uid"),
        )
    if not have or any(_near(v, w, by) for v in have for w in values):
        return
    if by == "echo":
        test = f"= {asked}" if len(values) == 1 else f"IN ({asked})"
        raise ConfigError(
            f"series {name} is echo {float(have[0]):g} (EchoNumbers), not volumes.echo [{asked}]: the manifest holds each echo "
            "as a series of its own (by: echo selects along the echo axis of a volume assembled with one); choose the series "
            f'of that echo instead, e.g. where: "series_key IN (SELECT series_key FROM instances WHERE echo_number {test})"',
            series_uid=volume.meta.get("series_uid"),
        )
    raise ConfigError(
        f"series {name} is one volume of b = {float(have[0]):g} s/mm², not volumes.b_value [{asked}]; choose the series "
        "of that b-value by its where (series_description, series_number)",
        series_uid=volume.meta.get("series_uid"),
    )


def apply_selection(volume: Volume, selection: VolumeSelection) -> Volume:
    """The volumes a config's :class:`~dicomml.config.VolumeSelection` keeps: selected, then reduced."""
    return reduce_volumes(select_volumes(volume, selection.by, selection.values), selection.reduce)


def reduce_volumes(volume: Volume, how: str) -> Volume:
    """One 3D volume from all of them: ``"mean"`` (float32) or ``"max"`` (dtype kept); ``"none"`` keeps them."""
    if how not in REDUCE:
        raise ConfigError(f"volumes.reduce {how!r} is not one of {', '.join(REDUCE)}")
    if how == "none" or not volume.axes:
        return volume
    array = volume.array.mean(axis=0, dtype=np.float64).astype(np.float32) if how == "mean" else volume.array.max(axis=0)
    meta = {**volume.meta, "reduced": {"how": how, "axis": volume.axes[0], "volumes": int(volume.array.shape[0])}}
    return Volume(array, volume.affine, (), meta)


# -- reading one frame's values ----------------------------------------------------------------


def _number(ds: Dataset, item: Dataset | None, keyword: str) -> float | None:
    """The first value of a numeric element of ``item`` (``ds`` or one of its functional group items); None if absent.

    Checked finite, so that a name in the wrong element is refused (naming ``ds``'s file, the value not shown).
    """
    numbers = None if item is None else header_numbers(item, keyword, path=source_name(ds))
    return numbers[0] if numbers else None


def _seconds(item: Dataset | None, keyword: str) -> float | None:
    value = None if item is None else header_value(item, keyword)
    if value is None:
        return None
    text = str(value).strip()
    text = (text[8:] if keyword.endswith("DateTime") else text).split("+")[0].split("-")[0].replace(":", "")
    try:
        return int(text[0:2]) * 3600.0 + int(text[2:4] or 0) * 60.0 + float(text[4:] or 0)
    except ValueError:
        return None


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def _trigger(ds: Dataset, frame: int) -> float | None:
    return _first(
        _number(ds, functional_item(ds, frame, "CardiacSynchronizationSequence"), "NominalCardiacTriggerDelayTime"),
        _number(ds, ds, "TriggerTime"),
    )


def _slice_timing(volumes: list[list[float | None]]) -> bool:
    """Whether trigger times are each slice's own time rather than the volume's cardiac phase.

    GE writes the time of each slice since the start of the run in TriggerTime
    (fMRI): its slices differ within a volume by about as much as volumes
    differ. A cardiac phase is the same on a volume's slices, up to jitter
    well below the step between phases.
    """
    known = [[t for t in times if t is not None] for times in volumes]
    spread = max((max(times) - min(times) for times in known if times), default=0.0)
    firsts = sorted({times[0] for times in known if times})
    step = float(np.min(np.diff(firsts))) if len(firsts) > 1 else np.inf
    return spread >= step / 2


def _frame_values(ds: Dataset, frame: int) -> dict[str, Any]:
    """acquisition/trigger/echo/repetition time, echo number, b-value, gradient (LPS) and flip angle of one frame."""
    content = functional_item(ds, frame, "FrameContentSequence")
    echo = functional_item(ds, frame, "MREchoSequence")
    timing = functional_item(ds, frame, "MRTimingAndRelatedParametersSequence")
    diffusion = functional_item(ds, frame, "MRDiffusionSequence")
    out: dict[str, Any] = {
        "acquisition_time": _first(
            _seconds(content, "FrameAcquisitionDateTime"), _seconds(ds, "AcquisitionDateTime"), _seconds(ds, "AcquisitionTime")
        ),
        "trigger_time": _trigger(ds, frame),
        "echo_time": _first(_number(ds, echo, "EffectiveEchoTime"), _number(ds, ds, "EchoTime")),
        "echo_number": _number(ds, ds, "EchoNumbers"),
        "repetition_time": _first(_number(ds, timing, "RepetitionTime"), _number(ds, ds, "RepetitionTime")),
        "flip_angle": _first(_number(ds, timing, "FlipAngle"), _number(ds, ds, "FlipAngle")),
    }
    out["b_value"], out["gradient_lps"] = _diffusion(ds, diffusion)
    return out


def _standard_diffusion(ds: Dataset, item: Dataset | None) -> tuple[float | None, np.ndarray | None]:
    """(b-value, unit gradient in LPS) from the standard attributes: the frame's MR Diffusion item, else the file's.

    Both checked: finite numbers, three of the gradient; a malformed one raises InvalidDicomFileError naming the file.
    """
    holder = item if item is not None else ds
    sequence = holder.get("DiffusionGradientDirectionSequence")
    vector = header_numbers(sequence[0] if sequence else holder, "DiffusionGradientOrientation", 3, path=source_name(ds))
    return _number(ds, holder, "DiffusionBValue"), None if vector is None else np.asarray(vector)


def _diffusion(ds: Dataset, item: Dataset | None) -> tuple[float | None, np.ndarray | None]:
    """(b-value, unit gradient in LPS) from the standard attributes, else a vendor's."""
    standard = _standard_diffusion(ds, item)
    manufacturer = str(ds.get("Manufacturer", "")).upper()
    vendor: tuple[float | None, np.ndarray | None] = (None, None)
    if "SIEMENS" in manufacturer:
        vendor = _siemens(ds)
    elif manufacturer.split()[:1] == ["GE"]:  # some GE files carry the standard b-value on diffusion-weighted volumes only
        vendor = _ge(ds)
    return _first(standard[0], vendor[0]), standard[1] if standard[1] is not None else vendor[1]


def _siemens(ds: Dataset) -> tuple[float | None, np.ndarray | None]:
    try:
        header = csareader.get_csa_header(ds, "image")
    except (csareader.CSAReadError, ValueError, TypeError, IndexError):
        return None, None
    if not header:
        return None, None
    b = csareader.get_b_value(header)
    vector = csareader.get_g_vector(header)
    return (None if b is None else float(b)), (None if vector is None else np.asarray(vector, dtype=np.float64))


def _ge(ds: Dataset) -> tuple[float | None, np.ndarray | None]:
    """GE's private b-value (0043,1039) and gradient (0019,10BB-BD), the latter in the image's own axes.

    GE records the gradient along (row, column, slice normal) with the in-plane
    components negated for column phase encoding; for row phase encoding the
    in-plane components are swapped as well (dcm2niix reads both so).
    """
    private = ds.get((0x0043, 0x1039))
    if private is None:
        return None, None
    try:
        raw = private.value
        values = (
            raw.decode("latin-1").split("\\") if isinstance(raw, bytes) else str(raw).split("\\") if isinstance(raw, str) else list(raw)
        )
        b = float(values[0]) % 1_000_000_000  # GE adds 10^9 to b-values of some sequences
    except (TypeError, ValueError, IndexError):
        return None, None
    parts = [ds.get((0x0019, tag)) for tag in (0x10BB, 0x10BC, 0x10BD)]
    iop = header_value(ds, "ImageOrientationPatient")
    phase = str(ds.get("InPlanePhaseEncodingDirection", "")).upper()
    if any(p is None for p in parts) or iop is None or phase not in ("COL", "ROW"):
        return b, None
    try:
        g = [float(p.value) for p in parts]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return b, None
    row, col = np.asarray(iop[:3], dtype=np.float64), np.asarray(iop[3:], dtype=np.float64)
    along_row, along_col = (-g[0], -g[1]) if phase == "COL" else (-g[1], g[0])
    return b, along_row * row + along_col * col + g[2] * np.cross(row, col)

"""Where each frame goes: sorting along the slice normal, time axis, affine, irregularities.

Pure: arrays in (the per-frame geometry of one volume group), a
:class:`StackPlan` out. The irregular-geometry policy lives here:
``"raise"`` raises the typed error, ``"resample"`` asks for a regular grid,
``"keep"`` records the problem in ``irregularities`` and goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dicomml.errors import (
    DuplicateSliceError,
    GantryTiltError,
    GeometryError,
    InconsistentGeometryError,
    MixedSeriesError,
    SeriesAssemblyError,
    SliceGapError,
)
from dicomml.geometry import analyze_stack, dicom_affine, geometry_problem, slice_normal
from dicomml.geometry.checks import spacing_problem
from dicomml.geometry.stack import TILT_TOLERANCE_DEG, StackGeometry

__all__ = ["OnIrregular", "StackPlan", "plan_stack"]

OnIrregular = Literal["raise", "resample", "keep"]
_POLICIES = ("raise", "resample", "keep")
#: Direction cosines of one group may differ by this much (grouping rounds to 1e-4).
ORIENTATION_TOLERANCE = 1e-3
#: Pixel spacings of one group may differ by this fraction.
PIXEL_SPACING_TOLERANCE = 1e-3


@dataclass(frozen=True)
class StackPlan:
    """How the frames of one group fill a (volumes, positions, rows, columns) array.

    Attributes
    ----------
    slots
        (n,) for each input frame, its index in the flattened
        (volumes x positions) stack; -1 for a frame left out (a duplicate copy).
    n_volumes, n_positions
        Leading shape; ``n_volumes`` is 1 for a plain 3D stack.
    affine
        4x4, maps (slice, row, column) of the stack as filled to RAS+ mm.
    geometry
        The stack analysis, or None when the frames carry no geometry.
    irregularities
        One phrase per problem found (kept or resampled).
    resample
        What the caller must do for a regular grid: subset of
        ``{"equidistant", "tilt"}``; empty when the stack is regular or kept.
    """

    slots: np.ndarray
    n_volumes: int
    n_positions: int
    affine: np.ndarray
    geometry: StackGeometry | None
    irregularities: tuple[str, ...]
    resample: frozenset[str]


def plan_stack(
    positions: np.ndarray,
    orientations: np.ndarray,
    pixel_spacing: np.ndarray,
    time_order: np.ndarray,
    identities: Sequence[str],
    *,
    thickness: float,
    on_irregular: OnIrregular,
    series: str,
    labels: Sequence[str],
    shared: Callable[[], np.ndarray] | None = None,
) -> StackPlan:
    """Sort the frames of one group and check their geometry.

    Parameters
    ----------
    positions
        (n, 3) ImagePositionPatient, LPS+ mm (NaN when absent).
    orientations
        (n, 6) ImageOrientationPatient.
    pixel_spacing
        (n, 2) PixelSpacing (between rows, between columns), mm.
    time_order
        (n,) rank of each frame in time order; frames at one position are
        stacked along the leading axis in this order.
    identities
        (n,) one string per source plane (SOP Instance UID, frame, tile); two
        equal ones are the same plane given twice.
    thickness
        Slice step (mm) to use when there is a single position.
    on_irregular
        ``"raise"``, ``"resample"`` or ``"keep"``.
    series
        Name of the group, for messages.
    labels
        (n,) name of each frame (file and frame), for messages.
    shared
        Gives the (n, k) values every slice of one volume shares (b-value,
        gradient; NaN where absent), read only when positions repeat; or None:
        a position's frames go to the volumes whose values they hold, taken in
        time order where several do.

    Returns
    -------
    StackPlan

    Raises
    ------
    DuplicateSliceError, SliceGapError, GantryTiltError, InconsistentGeometryError
        With ``on_irregular="raise"`` (duplicates and inconsistent in-plane
        geometry also with ``"resample"``, which cannot fix them).
    MixedSeriesError
        With ``"raise"`` or ``"resample"``, if positions hold different
        ``shared`` values, so that no volume has one of them at every slice.
    SeriesAssemblyError
        If ``on_irregular`` is not one of the three policies.

    Examples
    --------
    >>> pos = np.array([[0, 0, 2.0], [0, 0, 0.0]])
    >>> p = plan_stack(pos, np.tile([1.0, 0, 0, 0, 1, 0], (2, 1)), np.ones((2, 2)), np.arange(2),
    ...                ["a", "b"], thickness=1.0, on_irregular="raise", series="s", labels=["a", "b"])
    >>> p.slots.tolist()
    [1, 0]
    """
    if on_irregular not in _POLICIES:
        raise SeriesAssemblyError(f"on_irregular={on_irregular!r}; expected one of {_POLICIES}", series_uid=series)
    n = len(identities)
    found: list[str] = []
    keep_rows = _drop_duplicate_planes(identities, on_irregular, series, labels, found)
    if not np.all(np.isfinite(positions[keep_rows])) or not np.all(np.isfinite(orientations[keep_rows])):
        located = np.isfinite(positions[keep_rows]).all(axis=1) & np.isfinite(orientations[keep_rows]).all(axis=1)
        where = "on any frame" if not located.any() else f"on {int((~located).sum())} of {len(located)} frames"
        return _plan_without_geometry(n, keep_rows, time_order, pixel_spacing, on_irregular, series, found, where)
    found_bad = geometry_problem(orientations[keep_rows], pixel_spacing[keep_rows], positions[keep_rows])
    if found_bad is not None:
        label = labels[keep_rows[found_bad.frame]]
        raise GeometryError(
            f"{label}: {found_bad.problem}; the header's geometry is invalid, fix or exclude the file",
            path=label,
            series_uid=series,
            tag=found_bad.tag,
        )
    iop = orientations[keep_rows[0]]
    spacing = pixel_spacing[keep_rows[0]]
    _check_in_plane(orientations[keep_rows], pixel_spacing[keep_rows], iop, spacing, on_irregular, series, found)
    if not np.all(np.isfinite(spacing)):
        spacing = np.ones(2)
        _irregular(InconsistentGeometryError, "no PixelSpacing (0028,0030); 1 mm assumed", on_irregular, series, found)
    # Pre-order by time so that analyze_stack's tie-break (input order) is time order.
    by_time = keep_rows[np.argsort(time_order[keep_rows], kind="stable")]
    geometry = analyze_stack(positions[by_time], iop)
    far = (
        spacing_problem(np.array([geometry.spacing]), "slice spacing from (0020,0032) ImagePositionPatient")
        if geometry.n_positions > 1
        else None
    )
    if far:
        raise GeometryError(
            f"series {series}: {far} (positions along the normal {geometry.offsets[[0, -1]].tolist()} mm); "
            "the header's geometry is invalid",
            series_uid=series,
            tag="(0020,0032)",
        )
    resample = _check_stack(geometry, [labels[i] for i in by_time], on_irregular, series, found)
    starts = np.concatenate([[0], np.cumsum(geometry.counts)[:-1]])
    n_positions = geometry.n_positions
    n_volumes = geometry.n_volumes or 1
    slots = np.full(n, -1, dtype=np.int64)
    if geometry.n_volumes:
        position_of = np.repeat(np.arange(n_positions), geometry.counts)
        volume_of = np.arange(len(geometry.order)) - np.repeat(starts, geometry.counts)
        if shared is not None and geometry.n_volumes > 1:  # a 3D stack has one volume: nothing to match
            keys = shared()[by_time[geometry.order]]
            matched = _match_volumes(keys, position_of, geometry.order, geometry.offsets, on_irregular, series, found)
            volume_of = volume_of if matched is None else matched
        slots[by_time[geometry.order]] = volume_of * n_positions + position_of
    else:  # kept duplicates: one slice per frame, in position order
        n_positions = len(geometry.order)
        slots[by_time[geometry.order]] = np.arange(n_positions)
    if n_positions == 1:
        step = slice_normal(iop) * thickness
    elif geometry.n_volumes:
        step = geometry.step
    else:
        span = positions[by_time[geometry.order[-1]]] - positions[by_time[geometry.order[0]]]
        step = span / (n_positions - 1)
    origin = positions[by_time[geometry.order[0]]]
    affine = dicom_affine(iop, spacing, origin, step)
    return StackPlan(slots, n_volumes, n_positions, affine, geometry, tuple(found), frozenset(resample))


_RESAMPLE_OR_KEEP = (
    "pass on_irregular='resample' for a regular grid or on_irregular='keep' to stack the slices as they are "
    "(the CLI's --on-irregular resample / keep)"
)
_NOT_RESAMPLABLE = (
    "remove or split off the odd slices, or pass on_irregular='keep' to stack the slices as they are (the CLI's --on-irregular keep)"
)


def _irregular(
    error: type[SeriesAssemblyError],
    problem: str,
    on_irregular: str,
    series: str,
    found: list[str],
    remedy: str = _RESAMPLE_OR_KEEP,
) -> None:
    """Raise under "raise", else record the problem."""
    if on_irregular == "raise":
        raise error(f"series {series}: {problem}; {remedy}", series_uid=series)
    found.append(problem)


def _drop_duplicate_planes(
    identities: Sequence[str], on_irregular: str, series: str, labels: Sequence[str], found: list[str]
) -> np.ndarray:
    seen: dict[str, int] = {}
    rows = []
    for i, identity in enumerate(identities):
        if identity in seen:
            if on_irregular != "keep":
                raise DuplicateSliceError(
                    f"series {series}: {labels[i]} repeats {labels[seen[identity]]} (same SOP Instance UID "
                    "and frame); remove the copy, or pass on_irregular='keep' to drop it (the CLI's --on-irregular keep)",
                    series_uid=series,
                )
            found.append(f"duplicate copy {labels[i]} of {labels[seen[identity]]} dropped")
            continue
        seen[identity] = i
        rows.append(i)
    return np.asarray(rows, dtype=np.int64)


def _plan_without_geometry(
    n: int,
    rows: np.ndarray,
    time_order: np.ndarray,
    pixel_spacing: np.ndarray,
    on_irregular: str,
    series: str,
    found: list[str],
    where: str,
) -> StackPlan:
    problem = f"no ImagePositionPatient (0020,0032) / ImageOrientationPatient (0020,0037) {where}"
    if on_irregular != "keep":
        raise InconsistentGeometryError(
            f"series {series}: {problem}, so slices cannot be placed in the patient; "
            "pass on_irregular='keep' to stack them in time/instance order with a nominal affine (the CLI's --on-irregular keep)",
            series_uid=series,
        )
    found.append(problem + "; stacked in instance order, affine is nominal")
    slots = np.full(n, -1, dtype=np.int64)
    slots[rows[np.argsort(time_order[rows], kind="stable")]] = np.arange(len(rows))
    spacing = pixel_spacing[rows[0]]
    spacing = spacing if np.all(np.isfinite(spacing)) else np.ones(2)
    affine = dicom_affine([1, 0, 0, 0, 1, 0], spacing, [0, 0, 0], [0, 0, 1])
    return StackPlan(slots, 1, len(rows), affine, None, tuple(found), frozenset())


def _match_volumes(
    keys: np.ndarray,
    position_of: np.ndarray,
    time_rank: np.ndarray,
    offsets: np.ndarray,
    on_irregular: str,
    series: str,
    found: list[str],
) -> np.ndarray | None:
    """Each frame's volume such that a volume's slices share their ``keys``; None to keep time order.

    Frames come grouped by position, each group in time order (``time_rank``). A frame is
    the j-th of its key at its position, and goes to the volume of the j-th frame of that
    key everywhere; volumes are ordered by their earliest frame. Where keys agree with time
    order at every position this is time order itself.
    """
    if np.array_equal(keys, np.broadcast_to(keys[0], keys.shape), equal_nan=True):
        return None
    # Python's round keeps 1e308 finite (numpy's overflows to inf); None for an absent value: NaN never equals itself
    rounded = [tuple(None if math.isnan(v) else round(v, 3) for v in row) for row in keys.tolist()]
    seen: dict[tuple[int, tuple[float | None, ...]], int] = {}
    identities = []
    for position, row in zip(position_of.tolist(), rounded):
        j = seen.get((position, row), 0)
        seen[position, row] = j + 1
        identities.append((row, j))
    held: list[set[tuple[tuple[float | None, ...], int]]] = [set() for _ in range(int(position_of.max()) + 1)]
    for position, identity in zip(position_of.tolist(), identities):
        held[position].add(identity)
    odd = next((p for p, h in enumerate(held) if h != held[0]), None)
    if odd is not None:
        values, _ = min(held[odd] ^ held[0], key=repr)  # one (key, occurrence) that only one of the two positions holds
        _irregular(
            MixedSeriesError,
            f"the slices at {offsets[0]:.4g} mm and at {offsets[odd]:.4g} mm differ in their b-values and gradients "
            f"([b, gx, gy, gz] = {list(values)} at one only), so no volume has one b-value and gradient at every slice",
            "raise" if on_irregular == "resample" else on_irregular,
            series,
            found,
            _NOT_RESAMPLABLE,
        )
        return None
    first: dict[tuple[tuple[float | None, ...], int], int] = {}
    for identity, rank in zip(identities, time_rank.tolist()):
        first[identity] = min(first.get(identity, rank), rank)
    volume = {identity: v for v, identity in enumerate(sorted(first, key=first.__getitem__))}
    return np.array([volume[identity] for identity in identities], dtype=np.int64)


def _check_in_plane(
    orientations: np.ndarray,
    pixel_spacing: np.ndarray,
    iop: np.ndarray,
    spacing: np.ndarray,
    on_irregular: str,
    series: str,
    found: list[str],
) -> None:
    worst = float(np.max(np.abs(orientations - iop)))
    if worst > ORIENTATION_TOLERANCE:
        _irregular(
            InconsistentGeometryError,
            f"(0020,0037) ImageOrientationPatient varies by {worst:.2g} between slices",
            "raise" if on_irregular == "resample" else on_irregular,
            series,
            found,
            _NOT_RESAMPLABLE,
        )
    if np.all(np.isfinite(pixel_spacing)):
        ratio = float(np.max(np.abs(pixel_spacing / spacing - 1)))
        if ratio > PIXEL_SPACING_TOLERANCE:
            _irregular(
                InconsistentGeometryError,
                f"(0028,0030) PixelSpacing varies between slices ({np.unique(pixel_spacing, axis=0).tolist()} mm)",
                "raise" if on_irregular == "resample" else on_irregular,
                series,
                found,
                _NOT_RESAMPLABLE,
            )


def _check_stack(geometry: StackGeometry, labels: Sequence[str], on_irregular: str, series: str, found: list[str]) -> set[str]:
    """Raise or record each stack irregularity; ``labels`` name the frames in analyze_stack's input order."""
    resample: set[str] = set()
    sorted_labels = [labels[i] for i in geometry.order]
    starts = np.concatenate([[0], np.cumsum(geometry.counts)[:-1]])
    steps = np.diff(geometry.offsets)
    if geometry.n_volumes == 0:
        crowded = int(np.argmax(geometry.counts))
        at = sorted_labels[starts[crowded] : starts[crowded] + geometry.counts[crowded]]
        _irregular(
            DuplicateSliceError,
            f"positions hold unequal numbers of slices ({np.unique(geometry.counts).tolist()}; "
            f"{geometry.duplicates} extra, e.g. {', '.join(at[:4])} at {geometry.offsets[crowded]:.4g} mm), "
            "so they are neither one volume nor a time series",
            "raise" if on_irregular == "resample" else on_irregular,
            series,
            found,
            _NOT_RESAMPLABLE,
        )
        return resample
    if geometry.tilt_deg > TILT_TOLERANCE_DEG:
        _irregular(
            GantryTiltError,
            f"slice positions progress {geometry.tilt_deg:.2f} deg off the slice normal (gantry tilt) "
            f"from {sorted_labels[0]} to {sorted_labels[-1]}",
            on_irregular,
            series,
            found,
        )
        resample.add("tilt")
    if geometry.missing or not geometry.uniform:
        worst = int(np.argmax(np.abs(steps - geometry.spacing)))
        where = (
            f"steps {np.round(steps, 4).tolist()} mm; the largest deviation is between "
            f"{sorted_labels[starts[worst]]} and {sorted_labels[starts[worst + 1]]}"
        )
        if geometry.missing:
            problem = (
                f"{geometry.missing} slice(s) missing: a step along the normal exceeds the {geometry.spacing:.4g} mm spacing ({where})"
            )
            _irregular(SliceGapError, problem, on_irregular, series, found)
        else:
            _irregular(InconsistentGeometryError, f"slice spacing is not uniform ({where})", on_irregular, series, found)
        resample.add("equidistant")
    return resample if on_irregular == "resample" else set()

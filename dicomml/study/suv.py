"""PET activity to body-weight SUV, by QIBA's vendor-neutral formula.

``SUVbw = activity concentration (Bq/mL) x weight (g) / decay-corrected injected dose (Bq)``,
with the dose decayed from the radiopharmaceutical start to the scan start:
SeriesDate/SeriesTime, unless the series time is later than the series'
earliest acquisition (a post-processed series), then GE's private scan time
(0009,100D) or that earliest AcquisitionDate/AcquisitionTime. A start time
without a date is on the scan start's day, or the day before when it would
come more than 12 h after the scan start (an injection before midnight). Images in ``GML``
are SUV already; Philips ``CNTS`` images carry their own factor (7053,1000).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from dicomml.dicom.frames import source_name
from dicomml.errors import SUVError

__all__ = ["first_acquired", "suv_factor"]

#: Decay over more than this many half-lives (the dose below a thousandth) is no scan anyone
#: reconstructs: the injection or scan date and time in the header are wrong.
MAX_HALF_LIVES = 10.0
#: A dynamic scan may start before the injection: a decay time down to minus this many seconds is kept.
SCAN_BEFORE_INJECTION_S = 300.0

#: The tags the formula reads, for messages.
_TAGS = {
    "Units": "(0054,1001)",
    "PatientWeight": "(0010,1030)",
    "RadiopharmaceuticalInformationSequence": "(0054,0016)",
    "RadionuclideTotalDose": "(0018,1074)",
    "RadionuclideHalfLife": "(0018,1075)",
    "RadiopharmaceuticalStartDateTime": "(0018,1078)",
    "RadiopharmaceuticalStartTime": "(0018,1072)",
    "SeriesDate": "(0008,0021)",
    "SeriesTime": "(0008,0031)",
    "AcquisitionDate": "(0008,0022)",
    "AcquisitionTime": "(0008,0032)",
    "DecayCorrection": "(0054,1102)",
}


def suv_factor(ds: Dataset) -> float:
    """The factor that turns a PET image's rescaled values into body-weight SUV (g/mL).

    Parameters
    ----------
    ds
        A header of the PET series (pixel data not needed): the instance
        acquired first (:func:`first_acquired`), whose AcquisitionDate and
        AcquisitionTime are the scan start when the series was made after its
        acquisition.

    Returns
    -------
    float
        Multiply the rescaled voxel values by it.

    Raises
    ------
    SUVError
        Naming the file and the missing or unusable tag, e.g. ``(0010,1030)
        PatientWeight``; for units that cannot be converted; or when the
        injection comes more than :data:`SCAN_BEFORE_INJECTION_S` after the
        scan start, or more than :data:`MAX_HALF_LIVES` half-lives before it.

    Examples
    --------
    >>> factor = suv_factor(pydicom.dcmread("pet/IM0001.dcm", stop_before_pixels=True))  # doctest: +SKIP
    """
    units = str(_required(ds, ds, "Units")).upper()
    if units == "GML":
        return 1.0
    if units == "CNTS":
        private = ds.get((0x7053, 0x1000))
        if private is None:
            raise _error(ds, "(7053,1000) Philips SUV Scale Factor", "is missing, and Units is CNTS")
        return float(private.value)
    if units != "BQML":
        raise _error(ds, "(0054,1001) Units", f"is {units!r}; SUV needs BQML, CNTS (Philips) or GML")
    correction = str(ds.get("DecayCorrection", "START")).upper()
    if correction not in ("START", "ADMIN"):
        raise _error(ds, "(0054,1102) DecayCorrection", f"is {correction!r}; the formula needs START or ADMIN")
    weight = _positive(ds, ds, "PatientWeight")
    info = _required(ds, ds, "RadiopharmaceuticalInformationSequence")
    if not len(info):
        raise _error(ds, "(0054,0016) RadiopharmaceuticalInformationSequence", "is empty")
    drug = info[0]
    dose = _positive(ds, drug, "RadionuclideTotalDose")
    if correction == "ADMIN":  # the image is decay-corrected to the administration time already
        return weight * 1000.0 / dose
    half_life = _positive(ds, drug, "RadionuclideHalfLife")
    scan, scan_tags = _scan_start(ds)
    injection, injection_tag = _injection(ds, drug, scan)
    elapsed = (scan - injection).total_seconds()
    if not -SCAN_BEFORE_INJECTION_S <= elapsed <= MAX_HALF_LIVES * half_life:
        problem = f"{injection:%Y-%m-%d %H:%M:%S} is {abs(elapsed) / 3600:.1f} h {'after' if elapsed < 0 else 'before'}"
        raise _error(
            ds,
            injection_tag,
            f"{problem} the scan start {scan:%Y-%m-%d %H:%M:%S} ({scan_tags}), "
            f"{'a negative decay time' if elapsed < 0 else f'over {MAX_HALF_LIVES:g} half-lives of {half_life:g} s'}",
        )
    return weight * 1000.0 / (dose * math.pow(2.0, -elapsed / half_life))


def first_acquired(times: Sequence[str | None]) -> int | None:
    """Which of a series' instances was acquired first, from their AcquisitionTime (0008,0032) values.

    A series acquired across midnight is read as one run: its first instance
    is the one after the longest pause between consecutive times of day.

    Parameters
    ----------
    times
        One DICOM TM (``HHMMSS.FFFFFF``) per instance, None or ``""`` where absent.

    Returns
    -------
    int or None
        The position in ``times`` of the first acquisition (the first such
        position on a tie), or None when no time can be read.

    Examples
    --------
    >>> first_acquired(["102100", "101800", None, "100000"])
    3
    >>> first_acquired(["000500", "235500", "001500"])  # across midnight
    1
    """
    seconds = {i: t for i, t in ((i, _seconds_of_day(str(v))) for i, v in enumerate(times) if v) if t is not None}
    if not seconds:
        return None
    ordered = sorted(set(seconds.values()))
    gaps = [(ordered[0] + 86400.0 - ordered[-1], 0)] + [(b - a, k + 1) for k, (a, b) in enumerate(zip(ordered, ordered[1:]))]
    start = ordered[max(gaps, key=lambda gap: gap[0])[1]]  # the time after the longest pause (ties: by time of day)
    return min(i for i, t in seconds.items() if t == start)


def _error(ds: Dataset, tag: str, problem: str) -> SUVError:
    path = source_name(ds)
    return SUVError(
        f"{path}: {tag} {problem}; SUV cannot be computed (fix the header, or drop suv from the role)", path=path, tag=tag.split()[0]
    )


def _required(ds: Dataset, item: Dataset, keyword: str) -> Any:
    value = item.get(keyword)
    if value is None or value == "":
        raise _error(ds, f"{_TAGS[keyword]} {keyword}", "is missing")
    return value


def _positive(ds: Dataset, item: Dataset, keyword: str) -> float:
    value = _required(ds, item, keyword)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise _error(ds, f"{_TAGS[keyword]} {keyword}", f"is {value!r}, expected a positive number")
    return number


def _datetime(date: str, time: str) -> dt.datetime | None:
    """A DICOM DA + TM (or a DT when ``time`` is empty) as a naive datetime; None if unparsable."""
    text = (date + time).split("+")[0].split("-")[0].strip()
    whole, _, fraction = text.partition(".")
    try:
        base = dt.datetime.strptime(whole[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    return base + dt.timedelta(seconds=float(f"0.{fraction}") if fraction.isdigit() else 0.0)


def _seconds_of_day(time: str) -> float | None:
    """A DICOM TM as seconds since midnight; None if unparsable."""
    parsed = _datetime("19700101", time.replace(":", ""))
    return None if parsed is None else (parsed - dt.datetime(1970, 1, 1)).total_seconds()


def _scan_start(ds: Dataset) -> tuple[dt.datetime, str]:
    """When the scan started, and the tags that said so."""
    series = _datetime(str(_required(ds, ds, "SeriesDate")), str(_required(ds, ds, "SeriesTime")))
    if series is None:
        raise _error(ds, "(0008,0031) SeriesTime", f"{ds.get('SeriesDate')!r} {ds.get('SeriesTime')!r} is not a date and time")
    acquisition = _datetime(str(ds.get("AcquisitionDate", ds.SeriesDate)), str(ds.get("AcquisitionTime", "")))
    if acquisition is None or series <= acquisition:
        return series, "(0008,0021) SeriesDate, (0008,0031) SeriesTime"
    ge = ds.get((0x0009, 0x100D))  # GE's scan start, kept when a series is post-processed
    started = _datetime(str(ge.value), "") if ge is not None else None
    if started is not None:
        return started, "(0009,100D) GE private scan date and time"
    return acquisition, "(0008,0022) AcquisitionDate, (0008,0032) AcquisitionTime"


def _injection(ds: Dataset, drug: Dataset, scan: dt.datetime) -> tuple[dt.datetime, str]:
    """When the radiopharmaceutical was injected, and the tag that said so.

    A start time without a date is on the scan start's day, or the day before
    when that would put it more than 12 h after the scan start (an injection
    before midnight; a dynamic scan may start a little before its injection).
    """
    start = drug.get("RadiopharmaceuticalStartDateTime")
    if start:
        tag = "(0018,1078) RadiopharmaceuticalStartDateTime"
        when = _datetime(str(start), "")
        if when is None:
            raise _error(ds, tag, f"{str(start)!r} is not a date and time")
        return when, tag
    tag = "(0018,1072) RadiopharmaceuticalStartTime"
    when = _datetime(f"{scan:%Y%m%d}", str(_required(ds, drug, "RadiopharmaceuticalStartTime")))
    if when is None:
        raise _error(ds, tag, "is not a time")
    return (when - dt.timedelta(days=1) if when - scan > dt.timedelta(hours=12) else when), tag

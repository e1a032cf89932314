"""PET activity to body-weight SUV, by QIBA's vendor-neutral formula.

``SUVbw = activity concentration (Bq/mL) x weight (g) / decay-corrected injected dose (Bq)``,
with the dose decayed from the radiopharmaceutical start time to the scan
start: SeriesDate/SeriesTime, unless the series time is later than the
acquisition (a post-processed series), then GE's private scan time
(0009,100D) or the acquisition time. Images in ``GML`` are SUV already;
Philips ``CNTS`` images carry their own factor (7053,1000).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from pydicom.dataset import Dataset

from dicomml.dicom.frames import source_name
from dicomml.errors import SUVError

__all__ = ["suv_factor"]

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
    "DecayCorrection": "(0054,1102)",
}


def suv_factor(ds: Dataset) -> float:
    """The factor that turns a PET image's rescaled values into body-weight SUV (g/mL).

    Parameters
    ----------
    ds
        A header of the PET series (one instance; pixel data not needed).

    Returns
    -------
    float
        Multiply the rescaled voxel values by it.

    Raises
    ------
    SUVError
        Naming the file and the missing or unusable tag, e.g. ``(0010,1030)
        PatientWeight``, or units that cannot be converted.

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
    elapsed = (_scan_start(ds) - _injection(ds, drug)).total_seconds()
    return weight * 1000.0 / (dose * math.pow(2.0, -elapsed / half_life))


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


def _scan_start(ds: Dataset) -> dt.datetime:
    series = _datetime(str(_required(ds, ds, "SeriesDate")), str(_required(ds, ds, "SeriesTime")))
    if series is None:
        raise _error(ds, "(0008,0031) SeriesTime", f"{ds.get('SeriesDate')!r} {ds.get('SeriesTime')!r} is not a date and time")
    acquisition = _datetime(str(ds.get("AcquisitionDate", ds.SeriesDate)), str(ds.get("AcquisitionTime", "")))
    if acquisition is None or series <= acquisition:
        return series
    ge = ds.get((0x0009, 0x100D))  # GE's scan start, kept when a series is post-processed
    started = _datetime(str(ge.value), "") if ge is not None else None
    return started or acquisition


def _injection(ds: Dataset, drug: Dataset) -> dt.datetime:
    start = drug.get("RadiopharmaceuticalStartDateTime")
    if start:
        when = _datetime(str(start), "")
    else:
        when = _datetime(str(_required(ds, ds, "SeriesDate")), str(_required(ds, drug, "RadiopharmaceuticalStartTime")))
    if when is None:
        raise _error(ds, "(0018,1072) RadiopharmaceuticalStartTime", "is not a time")
    return when

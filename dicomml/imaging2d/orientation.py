"""Laterality, view and display orientation of projection images.

Patient Orientation (0020,0020) names the patient direction along the
image's rows (left to right) and columns (top to bottom), e.g. ``A\\R`` for a
left cranio-caudal mammogram whose nipple points right. :func:`display_flips`
says which flips bring an image to one display convention:

- ``"breast"``: every breast faces the same side (nipple towards ``facing``),
  top towards the head (views whose plane holds the head-foot axis: MLO,
  ML, LM, LMO, SIO, ISO) or laterally (views across it: CC, XCCL, XCCM, FB);
- ``"chest"`` (and other projections): the patient's right on the image's
  left, head at the top (the radiologist's view of a PA/AP film).

A film stored on its side (rows running head to foot for ``"chest"``, or
the columns rather than the rows running towards the nipple for
``"breast"``) cannot be brought to either convention by flips:
:func:`display_transpose` says so, and :func:`display_flips` then gives the
flips of the transposed image (rows and columns swapped first).

Pure functions of header values; :func:`projection_header` is the adapter
from a pydicom Dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomml.dicom.frames import functional_item
from dicomml.errors import ConfigError
from dicomml.imaging2d.spacing import HeaderValues

__all__ = [
    "ProjectionHeader",
    "display_flips",
    "display_transpose",
    "edge_sides",
    "flipped_orientation",
    "is_patient_orientation",
    "normalize_view",
    "projection_header",
    "transposed_orientation",
]

_OPPOSITE = str.maketrans("LRAPHF", "RLPAFH")
#: Patient Orientation's axes (PS3.3 C.7.6.1.1.1): a value names one or more of them by one letter each ("A", "AF").
_AXES = ("AP", "RL", "HF")
#: Image Laterality's defined terms: left, right, both, unpaired (Laterality's are L and R).
_LATERALITIES = frozenset({"L", "R", "B", "U"})
#: CID 4014 (View for Mammography) code values -> ACR MQCM abbreviation: SNOMED CT, then the SNOMED-RT
#: (SRT) value older files carry. The code decides: meanings vary in wording ("medial-lateral", "medio-lateral").
_VIEW_CODES = {
    **dict.fromkeys(("399162004", "R-10242"), "CC"),
    **dict.fromkeys(("399368009", "R-10226"), "MLO"),
    **dict.fromkeys(("399260004", "R-10224"), "ML"),
    **dict.fromkeys(("399352003", "R-10228"), "LM"),
    **dict.fromkeys(("399099002", "R-10230"), "LMO"),
    **dict.fromkeys(("399192008", "R-1024A"), "XCCL"),
    **dict.fromkeys(("399101009", "R-1024B"), "XCCM"),
    **dict.fromkeys(("399196006", "R-10244"), "FB"),
    **dict.fromkeys(("399188001", "R-102D0"), "SIO"),
    **dict.fromkeys(("441555000", "R-40AAA"), "ISO"),
}
#: Normalized Code Meaning / View Position text -> view.
_VIEW_TEXT = {
    "cc": "CC",
    "craniocaudal": "CC",
    "mlo": "MLO",
    "mediolateraloblique": "MLO",
    "ml": "ML",
    "mediolateral": "ML",
    "mediallateral": "ML",
    "lm": "LM",
    "lateromedial": "LM",
    "lmo": "LMO",
    "lateromedialoblique": "LMO",
    "xccl": "XCCL",
    "craniocaudalexaggeratedlaterally": "XCCL",
    "xccm": "XCCM",
    "craniocaudalexaggeratedmedially": "XCCM",
    "exaggeratedcraniocaudal": "XCC",
    "xcc": "XCC",
    "fb": "FB",
    "caudocranial": "FB",
    "caudocranialfrombelow": "FB",
    "sio": "SIO",
    "superolateraltoinferomedialoblique": "SIO",
    "iso": "ISO",
    "inferomedialtosuperolateraloblique": "ISO",
    "pa": "PA",
    "posteroanterior": "PA",
    "ap": "AP",
    "anteroposterior": "AP",
    "lat": "LAT",
    "lateral": "LAT",
    "ll": "LAT",
    "rl": "LAT",
    "leftlateral": "LAT",
    "rightlateral": "LAT",
}
#: Breast views whose image plane holds the head-foot axis (top towards the head), and those across it (top lateral).
_HEAD_UP_VIEWS = frozenset(("MLO", "ML", "LM", "LMO", "SIO", "ISO"))
_LATERAL_UP_VIEWS = frozenset(("CC", "XCC", "XCCL", "XCCM", "FB"))


@dataclass(frozen=True)
class ProjectionHeader:
    """The orientation facts of a projection image.

    Attributes
    ----------
    laterality
        ``"L"``, ``"R"``, ``"B"`` (both), ``"U"`` (unpaired) or None (absent, or other text).
    view
        Normalized view or None: the ACR MQCM abbreviation of a mammography
        view (``CC``, ``MLO``, ``ML``, ``LM``, ``LMO``, ``XCCL``, ``XCCM``,
        ``FB``, ``SIO``, ``ISO``), or ``PA``, ``AP``, ``LAT``...; other
        header text is kept upper-cased.
    patient_orientation
        ``(row direction, column direction)``, e.g. ``("A", "R")``, or None (absent, or not a
        value :func:`is_patient_orientation` allows).
    burned_in
        Burned In Annotation (0028,0301): True, False, or None when absent.
    """

    laterality: str | None
    view: str | None
    patient_orientation: tuple[str, str] | None
    burned_in: bool | None


def normalize_view(text: str | None) -> str | None:
    """A view name from View Position or a code meaning/value (``"medio-lateral oblique"`` -> ``"MLO"``).

    Examples
    --------
    >>> normalize_view("cranio-caudal"), normalize_view("LL"), normalize_view("399368009"), normalize_view("399192008")
    ('CC', 'LAT', 'MLO', 'XCCL')
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text in _VIEW_CODES:
        return _VIEW_CODES[text]
    key = re.sub(r"[^a-z]", "", text.lower())
    return _VIEW_TEXT.get(key, text.upper())


def projection_header(ds: HeaderValues) -> ProjectionHeader:
    """Laterality, view, Patient Orientation and Burned In Annotation of a header.

    Laterality is Image Laterality (0020,0062), else the first frame's Frame
    Laterality (0020,9072) in the Frame Anatomy functional group (enhanced
    objects: Breast Tomosynthesis, Breast Projection X-Ray), else the
    series' Laterality (0020,0060). The view is View Position (0018,5101),
    else the first View Code Sequence (0054,0220) item's code value (CID
    4014), else its meaning. A laterality or Patient Orientation the
    standard does not allow is taken as absent: header text that names no
    side is neither drawn nor a reason to flip.
    """
    anatomy = functional_item(cast(Dataset, ds), 0, "FrameAnatomySequence")  # reads the header's values by keyword only
    laterality = None
    for source, keyword in ((ds, "ImageLaterality"), (anatomy, "FrameLaterality"), (ds, "Laterality")):
        value = str(source.get(keyword, "") or "").strip().upper() if source is not None else ""
        if value in _LATERALITIES:  # other text is no side: never drawn, never a reason to flip
            laterality = value
            break
    view = normalize_view(str(ds.get("ViewPosition", "") or "") or None)
    if view is None and "ViewCodeSequence" in ds:
        for item in ds.get("ViewCodeSequence") or []:
            code = str(item.get("CodeValue", "") or "").strip()
            view = _VIEW_CODES.get(code) or normalize_view(str(item.get("CodeMeaning", "") or "") or None) or normalize_view(code or None)
            if view:
                break
    orientation = None
    value = ds.get("PatientOrientation")
    if value is not None:
        parts = [str(v).strip().upper() for v in (value if isinstance(value, MultiValue) else str(value).split("\\"))]
        if len(parts) == 2 and is_patient_orientation((parts[0], parts[1])):  # else no side is known: no label, no flip
            orientation = (parts[0], parts[1])
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    return ProjectionHeader(laterality, view, orientation, {"YES": True, "NO": False}.get(burned))


def is_patient_orientation(orientation: tuple[str, str]) -> bool:
    """Whether ``(row direction, column direction)`` is a Patient Orientation the standard allows.

    Each direction is letters of A, P, R, L, H, F, at most one per axis (the
    dominant first: ``"AF"`` for an oblique), and the two run along different
    dominant axes (PS3.3 C.7.6.1.1.1).

    Examples
    --------
    >>> is_patient_orientation(("A", "FR")), is_patient_orientation(("LEAKPOA", "LEAKPOB")), is_patient_orientation(("A", "P"))
    (True, False, False)
    """

    def axis(letter: str) -> int:
        return next(i for i, pair in enumerate(_AXES) if letter in pair)

    for direction in orientation:
        if not direction or not set(direction) <= set("APRLHF") or len({axis(c) for c in direction}) != len(direction):
            return False
    return axis(orientation[0][0]) != axis(orientation[1][0])


def flipped_orientation(orientation: tuple[str, str], horizontal: bool, vertical: bool) -> tuple[str, str]:
    """Patient Orientation after flipping the image (a flip reverses that axis' direction)."""
    rows, columns = orientation
    return (rows.translate(_OPPOSITE) if horizontal else rows, columns.translate(_OPPOSITE) if vertical else columns)


def transposed_orientation(orientation: tuple[str, str]) -> tuple[str, str]:
    """Patient Orientation after transposing the image (rows become columns)."""
    return orientation[1], orientation[0]


def display_transpose(header: ProjectionHeader, convention: str) -> bool:
    """Whether an image must be transposed (rows and columns swapped) before flips can bring it to ``convention``.

    ``"chest"``: the rows run head to foot and the columns do not. ``"breast"``:
    the columns run anterior/posterior (towards or away from the nipple) and
    the rows do not. False without Patient Orientation.

    Examples
    --------
    >>> display_transpose(ProjectionHeader(None, "PA", ("F", "L"), None), "chest")
    True
    """
    po = header.patient_orientation
    if po is None:
        return False
    along = ("H", "F") if convention == "chest" else ("A", "P")
    if convention == "chest":
        return any(d in po[0] for d in along) and not any(d in po[1] for d in along)
    return any(d in po[1] for d in along) and not any(d in po[0] for d in along)


def edge_sides(orientation: tuple[str, str] | None) -> dict[str, str]:
    """The patient side at each edge of an image (keys ``left``, ``right``, ``top``, ``bottom``).

    Patient Orientation names where the rows run (the right edge) and where
    the columns run (the bottom edge); the opposite edges face the other way.
    Without it, or with a value the standard does not allow (header text
    that names no side), every side is ``""``.

    Examples
    --------
    >>> edge_sides(("P", "L"))
    {'left': 'A', 'right': 'P', 'top': 'R', 'bottom': 'L'}
    """
    if orientation is None or not is_patient_orientation(orientation):
        return dict.fromkeys(("left", "right", "top", "bottom"), "")
    rows, columns = orientation
    return {"left": rows.translate(_OPPOSITE), "right": rows, "top": columns.translate(_OPPOSITE), "bottom": columns}


def display_flips(header: ProjectionHeader, convention: str, *, facing: str = "right") -> tuple[bool, bool, str]:
    """Which flips bring an image to a display convention, and what they were based on.

    Parameters
    ----------
    header
        From :func:`projection_header`.
    convention
        ``"breast"`` or ``"chest"`` (see the module docstring).
    facing
        For ``"breast"``: the side the nipple points to, ``"right"`` or ``"left"``.

    Returns
    -------
    (horizontal, vertical, basis)
        The flips of the image after the transpose :func:`display_transpose`
        asks for, if any (applied first). ``basis`` is ``"patient_orientation"``, ``"laterality"`` (no Patient
        Orientation: the usual hanging, right breast facing left, is assumed)
        or ``"unknown"`` (nothing to go by: no flip).

    Examples
    --------
    >>> h = ProjectionHeader("R", "CC", ("P", "L"), None)
    >>> display_flips(h, "breast")
    (True, False, 'patient_orientation')
    """
    if convention not in ("breast", "chest"):
        raise ConfigError(f"convention must be 'breast' or 'chest', got {convention!r}")
    if facing not in ("right", "left"):
        raise ConfigError(f"facing must be 'right' or 'left', got {facing!r}")
    po = header.patient_orientation
    if po is not None and display_transpose(header, convention):
        po = transposed_orientation(po)
    if convention == "chest":
        if po is None:
            return False, False, "unknown"
        horizontal = "R" in po[0] and header.view != "LAT"
        vertical = "H" in po[1]
        return horizontal, vertical, "patient_orientation"
    nipple = "A" if facing == "right" else "P"  # the row direction the nipple side must have
    if po is not None and ("A" in po[0] or "P" in po[0]):
        horizontal = nipple not in po[0]
        rows, columns = flipped_orientation(po, horizontal, False)
        if header.view in _HEAD_UP_VIEWS:
            vertical = "H" in columns
        elif header.laterality in ("L", "R") and header.view in _LATERAL_UP_VIEWS:
            vertical = header.laterality in columns  # top should be lateral: going down leads medially
        else:
            vertical = False
        return horizontal, vertical, "patient_orientation"
    if header.laterality in ("L", "R"):
        # Usual hanging without Patient Orientation: left breasts face right, right breasts face left.
        native = "right" if header.laterality == "L" else "left"
        return native != facing, False, "laterality"
    return False, False, "unknown"

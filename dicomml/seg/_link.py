"""Whether an annotation's coordinates are those of a reference image."""

from __future__ import annotations

from collections.abc import Iterable

from dicomml.errors import SegReferenceError
from dicomml.volume import Volume

__all__ = ["check_frame_of_reference", "describe"]


def describe(reference: Volume) -> str:
    """How messages name the reference: its series key and UID when known, and its grid shape."""
    key, uid = reference.meta.get("series_key"), reference.meta.get("series_uid")
    named = " ".join(f"{label} {value}" for label, value in (("series", key), ("UID", uid)) if value)
    return f"{named or 'the reference'} (grid {tuple(reference.spatial_shape)})"


def check_frame_of_reference(
    name: str, frames_of_reference: Iterable[str], referenced_series: Iterable[str], reference: Volume, tag: str
) -> None:
    """Raise unless the annotation and the reference share a frame of reference.

    Masks are placed by patient coordinates, which only mean the same thing
    within one FrameOfReferenceUID. Some writers (rt-utils 1.2) mint a new one
    for the annotation; when the annotation names the reference's series
    explicitly, that link is trusted instead.

    Parameters
    ----------
    name
        The annotation file, for the message.
    frames_of_reference
        FrameOfReferenceUIDs the annotation declares.
    referenced_series
        SeriesInstanceUIDs the annotation references.
    reference
        The image Volume (``meta["frame_of_reference_uid"]``, ``meta["series_uid"]``).
    tag
        The annotation's tag holding its frame of reference, for the message.

    Raises
    ------
    SegReferenceError
        If both sides name frames of reference, they differ, and the
        annotation does not name the reference's series.
    """
    theirs = str(reference.meta.get("frame_of_reference_uid") or "")
    ours = {str(uid) for uid in frames_of_reference if uid}
    if not theirs or not ours or theirs in ours:
        return
    if str(reference.meta.get("series_uid") or "") in {str(uid) for uid in referenced_series}:
        return
    raise SegReferenceError(
        f"{name}: {tag} Frame of Reference UID {', '.join(sorted(ours))} differs from the image series' {theirs} "
        f"of {describe(reference)}, and it does not "
        "reference that series; their coordinates cannot be matched",
        path=name,
        series_uid=str(reference.meta.get("series_uid") or "") or None,
        tag=tag,
    )

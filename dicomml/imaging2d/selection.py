"""Which instances of a manifest an ImageDataset reads, and the SEG and RTSTRUCT rows of each (no Dataset, no torch:
``dicomml preprocess --images`` selects with them too)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dicomml.imaging2d.modalities import IMAGE_MODALITIES, VOLUME_SOP_CLASSES

if TYPE_CHECKING:
    import pandas as pd

    from dicomml.indexer.manifest import Manifest

__all__ = ["mask_rows", "referencing_segs", "select_images"]


def referencing_segs(manifest: Manifest) -> dict[str, list[dict[str, Any]]]:
    """SEG and RTSTRUCT rows of the manifest by the SOP Instance UID of each image they reference.

    An RTSTRUCT that names no image (no Contour Image Sequence) is listed under
    each series it references, as ``"series:UID"``: its contours are matched
    to each image of the series by plane.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for record in manifest.seg_instances(("SEG", "RTSTRUCT")).to_dict("records"):
        uids, series = (record.pop(column) for column in ("referenced_sop_uids", "referenced_series_uids"))
        uids = [] if uids is None else list(uids)
        for uid in uids or [f"series:{s}" for s in ([] if series is None else series)]:
            out.setdefault(str(uid), []).append(record)
    return out


def mask_rows(segs: Mapping[str, list[dict[str, Any]]] | None, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SEG and RTSTRUCT rows of an image's masks (of :func:`referencing_segs`; none when ``segs`` is None)."""
    if segs is None:
        return []
    return segs.get(row["sop_instance_uid"], []) + segs.get(f"series:{row['series_instance_uid']}", [])


def select_images(manifest: Manifest, where: str | None = None, modalities: tuple[str, ...] = IMAGE_MODALITIES) -> pd.DataFrame:
    """The ``instances`` rows of the manifest's 2D images, ordered by path.

    Objects of :data:`~dicomml.imaging2d.modalities.VOLUME_SOP_CLASSES` (a Breast Tomosynthesis stack...)
    are left out: they are volumes, not 2D images or cine loops.

    Raises
    ------
    ManifestError
        If ``where`` is not a valid predicate on the ``instances`` table.
    """
    return manifest.image_instances(modalities, where, without_sop_classes=VOLUME_SOP_CLASSES)

"""Comparing a manifest built over a remote source with the one built from the same files on disk."""

from __future__ import annotations

import numpy as np
import pandas as pd

import dicomml

#: Geometry columns of the series table.
GEOMETRY = (
    "shape",
    "pixel_spacing",
    "slice_spacing",
    "orientation",
    "first_position",
    "tilt_deg",
    "n_slices",
    "n_volumes",
    "missing_slices",
    "duplicate_slices",
    "uniform_spacing",
    "orientation_code",
)


def by_uid(manifest: dicomml.Manifest) -> pd.DataFrame:
    return manifest.series.sort_values(["series_instance_uid", "n_frames"]).reset_index(drop=True)


def assert_same_manifest(remote: dicomml.Manifest, local: dicomml.Manifest) -> dict[str, str]:
    """Same series (by UID), usable flags, reasons and geometry; returns remote -> local series keys."""
    a, b = by_uid(remote), by_uid(local)
    assert a.series_instance_uid.tolist() == b.series_instance_uid.tolist()
    assert a.usable.tolist() == b.usable.tolist()
    assert a.reason.fillna("").tolist() == b.reason.fillna("").tolist()
    for column in GEOMETRY:
        for x, y in zip(a[column], b[column]):
            if isinstance(y, str):
                assert x == y, column
            else:
                # Orthanc writes DS values as JSON numbers and drops what lies below ~1e-14 (2e-16 -> 0)
                np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=0, atol=1e-9, err_msg=column)
    assert a.transfer_syntaxes.map(list).tolist() == b.transfer_syntaxes.map(list).tolist()
    ia, ib = (m.instances.sort_values(["sop_instance_uid", "series_key"]) for m in (remote, local))
    assert ia.transfer_syntax_uid.tolist() == ib.transfer_syntax_uid.tolist()
    assert set(ib.transfer_syntax_uid) == {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"}
    keys = dict(zip(a.series_key, b.series_key))
    # series keys name the source's folder; links from annotations map the same way
    ra = remote.annotations.sort_values("sop_instance_uid" if "sop_instance_uid" in remote.annotations else "path")
    la = local.annotations.sort_values("sop_instance_uid" if "sop_instance_uid" in local.annotations else "path")
    assert [keys.get(k) for k in ra.referenced_series_key] == la.referenced_series_key.tolist()
    return keys


def assert_same_volumes(remote: dicomml.Manifest, local: dicomml.Manifest, keys: dict[str, str]) -> None:
    for remote_key, local_key in keys.items():
        x, y = dicomml.load_series(remote, remote_key), dicomml.load_series(local, local_key)
        assert x.array.dtype == y.array.dtype and x.array.tobytes() == y.array.tobytes()
        assert x.affine.tobytes() == y.affine.tobytes()

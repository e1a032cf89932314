"""Instances stored big endian or deflated, served by a real Orthanc: rows name their transfer syntax, loads equal local ones."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian
from remote_compare import GEOMETRY, assert_same_volumes, by_uid

import dicomml
from dicomml.dicom.synthetic import write_series
from dicomml.testing.servers import orthanc


def _reencode(files, syntax):
    """The files rewritten by pydicom in ``syntax`` (big endian pixel words swapped, as the standard stores them)."""
    for path in files:
        ds = pydicom.dcmread(path)
        if syntax == ExplicitVRBigEndian:
            ds.PixelData = ds.pixel_array.astype(">u2").tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return files


def test_big_endian_and_deflated_instances_over_dicomweb_equal_local(tmp_path):
    rng = np.random.default_rng(3)
    files = []
    for name, syntax in (("be", ExplicitVRBigEndian), ("deflated", DeflatedExplicitVRLittleEndian)):
        volume = rng.integers(0, 3000, size=(3, 20, 16), dtype=np.uint16)
        files += _reencode(write_series(tmp_path / "files" / name, volume, orientation=(0.8, 0.6, 0, -0.6, 0.8, 0)), syntax)
    stored = {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}
    assert stored == {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
    local = dicomml.index(str(tmp_path / "files"), tmp_path / "local", workers=1, progress=False)
    with orthanc(tmp_path / "server", files) as root:
        web = dicomml.index(f"dicomweb+{root}/dicom-web", tmp_path / "web", progress=False)
        assert web.meta["counts"]["errors"] == 0
        a, b = by_uid(web), by_uid(local)
        assert a.series_instance_uid.tolist() == b.series_instance_uid.tolist()
        assert a.usable.tolist() == b.usable.tolist() == [True, True]
        for column in GEOMETRY:
            assert [str(x) for x in a[column]] == [str(y) for y in b[column]], column
        assert a.transfer_syntaxes.map(list).tolist() == b.transfer_syntaxes.map(list).tolist()
        ia, ib = (m.instances.sort_values("sop_instance_uid") for m in (web, local))
        assert ia.transfer_syntax_uid.tolist() == ib.transfer_syntax_uid.tolist()
        assert set(ia.transfer_syntax_uid) == {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
        assert_same_volumes(web, local, dict(zip(a.series_key, b.series_key)))

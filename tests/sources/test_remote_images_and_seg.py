"""2D images and SEG write-back read over an authenticated DICOMweb server through an explicit `Remote`."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import dicomml
from dicomml.errors import RemoteSourceError
from dicomml.imaging2d import ImageConfig, ImageDataset, load_image
from dicomml.imaging2d.synthetic import write_image2d, write_seg2d
from dicomml.seg.labels import label_table, segment_names
from dicomml.testing.servers import orthanc

USERS = {"reader": "s3cret-pw"}


def _url(root: str) -> str:
    return f"dicomweb+{root}/dicom-web"


def _by_uid(manifest: dicomml.Manifest) -> dict[str, str]:
    return dict(zip(manifest.instances.sop_instance_uid, manifest.instances.path))


def test_images_segments_and_seg_write_back_take_the_remote(tmp_path, corpus_files):
    files = [p for k, p in corpus_files.items() if "24x38x3" in k]  # a CT of 3 slices and its SEG
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4000, (40, 32), dtype=np.uint16)
    files.append(write_image2d(tmp_path / "dx" / "dx.dcm", pixels, modality="DX"))
    files.append(write_seg2d(files[-1], pixels > 3000, tmp_path / "dx" / "dx_seg.dcm", label="bright"))
    local = dicomml.index([str(p) for p in files], tmp_path / "local", workers=1, progress=False)
    with orthanc(tmp_path / "server", files, users=USERS) as root:
        remote_manifest = dicomml.index(_url(root), tmp_path / "m", progress=False, auth=("reader", "s3cret-pw"))
        remote = remote_manifest.remote
        urls, paths = _by_uid(remote_manifest), _by_uid(local)
        dx_uid = next(uid for uid, p in paths.items() if p.endswith("dx.dcm"))

        # 2D: load_image, the dataset (no cache) and preprocess_images (the manifest's Remote)
        with pytest.raises(RemoteSourceError, match="HTTP 401"):
            load_image(urls[dx_uid])
        assert load_image(urls[dx_uid], remote=remote).pixels.tobytes() == load_image(paths[dx_uid]).pixels.tobytes()
        config = ImageConfig(size=(32, 32))
        a, b = (ImageDataset(m, None, config, masks=True)[0] for m in (remote_manifest, local))
        assert a["image"].numpy().tobytes() == b["image"].numpy().tobytes()
        assert a["meta"]["mask_labels"] == ["bright"] and a["mask"].numpy().tobytes() == b["mask"].numpy().tobytes()
        report = dicomml.preprocess_images(remote_manifest, config, tmp_path / "cache", workers=0, progress=False)
        assert list(report.table.status) == ["done"], report.failed

        # SEG: segment names and the label table
        seg_uid = next(uid for uid, p in paths.items() if "24x38x3/seg/" in p)
        with pytest.raises(RemoteSourceError, match="HTTP 401"):
            segment_names(urls[seg_uid])
        assert segment_names(urls[seg_uid], remote) == segment_names(paths[seg_uid])
        assert label_table(remote_manifest).drop(columns="series").equals(label_table(local).drop(columns="series"))

        # write-back onto the remote CT's grid: the source headers come through the Remote
        ct = local.series[local.series.modality == "CT"].series_key.iloc[0]
        ct_paths = list(local.series_files(ct).path)
        ct_uids = [uid for path in ct_paths for uid, p in paths.items() if p == path]
        ct_urls = [urls[uid] for uid in ct_uids]
        volume = dicomml.load_series(local, ct)
        labels = (volume.array > np.median(volume.array)).astype(np.uint8)
        with pytest.raises(RemoteSourceError, match="HTTP 401"):
            dicomml.write_seg(labels, ct_urls, {"bright": 1}, tmp_path / "refused.dcm", affine=volume.affine)
        over_web = dicomml.write_seg(labels, ct_urls, {"bright": 1}, tmp_path / "web.dcm", affine=volume.affine, remote=remote)
        on_disk = dicomml.write_seg(labels, ct_paths, {"bright": 1}, tmp_path / "disk.dcm", affine=volume.affine)
        web, disk = pydicom.dcmread(over_web), pydicom.dcmread(on_disk)
        assert web.PixelData == disk.PixelData and web.NumberOfFrames == disk.NumberOfFrames
        refs = [str(i.ReferencedSOPInstanceUID) for i in web.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
        assert sorted(refs) == sorted(ct_uids)

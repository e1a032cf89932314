"""`dicomml preprocess --images` runs on the shared executor: a report row per image, --max-voxels, --device, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.imaging2d import ImageConfig
from dicomml.imaging2d.prepare import image_key
from dicomml.imaging2d.synthetic import write_image2d


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    source = tmp_path / "source"
    write_image2d(source / "dx.dcm", rng.integers(0, 4096, (300, 200)).astype(np.uint16), modality="DX", bits_stored=12)
    write_image2d(source / "us.dcm", rng.integers(0, 255, (4, 60, 80)).astype(np.uint8), modality="US", extra={"FrameTime": 40})
    write_image2d(source / "sc.dcm", rng.integers(0, 255, (50, 100, 3)).astype(np.uint8), modality="SC", photometric="RGB")
    dicomml.index(source, tmp_path / "manifest", workers=1, progress=False)
    (tmp_path / "cxr.yaml").write_text("size: [32, 32]\n")
    return tmp_path


def test_images_honour_max_voxels_device_and_report_then_resume(images: Path) -> None:
    base = ["preprocess", str(images / "manifest"), "--images", "--config", str(images / "cxr.yaml"), "--cache", str(images / "c")]
    # 10,000 pixels: the 300x200 DX and the 4x60x80 US cine are over it, the 50x100 SC is not
    main([*base, "--workers", "0", "--max-voxels", "10000", "--device", "cuda", "--report", str(images / "r1.parquet"), "--quiet"])
    first = pd.read_parquet(images / "r1.parquet").set_index("series_key")
    uids = dicomml.Manifest.open(images / "manifest").sql("SELECT modality, sop_instance_uid FROM instances")
    by_modality = dict(zip(uids["modality"], uids["sop_instance_uid"]))
    assert first.loc[by_modality["SC"], "status"] == "done"
    for modality in ("DX", "US"):
        row = first.loc[by_modality[modality]]
        assert (row["status"], row["error_type"]) == ("failed", "ResourceLimitError") and "10000" in row["message"]
    assert set(first["device"].dropna()) == {"cpu"}  # the 2D pipeline runs on the CPU, and says so
    # on a LocalCluster, without the ceiling: the two are done, the SC entry is skipped, not recomputed
    main([*base, "--workers", "1", "--retries", "0", "--report", str(images / "r2.parquet"), "--quiet"])
    second = pd.read_parquet(images / "r2.parquet").set_index("series_key")
    assert second["status"].to_dict() == {by_modality["SC"]: "skipped", by_modality["DX"]: "done", by_modality["US"]: "done"}
    rows = dicomml.Manifest.open(images / "manifest").sql("SELECT * FROM instances").to_dict("records")
    expected = {image_key(r, ImageConfig(size=(32, 32))) for r in rows}
    assert set(Cache(images / "c").keys()) == expected == set(second["cache_key"])


def test_images_all_failed_exits_1_after_writing_the_report(images: Path) -> None:
    base = ["preprocess", str(images / "manifest"), "--images", "--config", str(images / "cxr.yaml"), "--cache", str(images / "c")]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--workers", "0", "--max-voxels", "10", "--report", str(images / "r.parquet"), "--quiet"])
    assert exit_info.value.code == 1
    assert (pd.read_parquet(images / "r.parquet")["status"] == "failed").all()

"""preprocess_images fills the entries an ImageDataset reads, whatever its modalities= and masks= (a NM image was
left out, masked images' keys never filled), from Python and from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.distributed.images import preprocess_images
from dicomml.imaging2d import ImageConfig, ImageDataset
from dicomml.imaging2d.modalities import IMAGE_MODALITIES
from dicomml.imaging2d.synthetic import write_image2d, write_seg2d

MODALITIES = (*IMAGE_MODALITIES, "NM")
CONFIG = ImageConfig(size=(32, 32))


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """A chest film with a SEG of a nodule, another film, and a planar NM image."""
    pixels = np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) % 4000
    film = write_image2d(tmp_path / "src" / "dx0.dcm", pixels, bits_stored=12)
    write_image2d(tmp_path / "src" / "dx1.dcm", pixels[::-1], bits_stored=12)
    write_image2d(tmp_path / "src" / "nm.dcm", pixels, modality="SC", bits_stored=12, extra={"Modality": "NM"})
    nodule = np.zeros((40, 48), bool)
    nodule[10:20, 12:30] = True
    write_seg2d(film, nodule, tmp_path / "src" / "seg.dcm")
    dicomml.index(tmp_path / "src", tmp_path / "manifest", workers=1, progress=False)
    return tmp_path


def _read_all(cohort: Path) -> list[dict]:
    data = ImageDataset(cohort / "manifest", cohort / "cache", CONFIG, modalities=MODALITIES, masks=True, cache_only=True)
    return [data[i] for i in range(len(data))]


def test_the_run_fills_what_a_dataset_with_modalities_and_masks_reads(cohort):
    report = preprocess_images(cohort / "manifest", CONFIG, cohort / "cache", modalities=MODALITIES, masks=True, workers=0, progress=False)
    assert report.counts == {"done": 3, "skipped": 0, "failed": 0}
    samples = _read_all(cohort)
    assert sorted(s["meta"]["modality"] for s in samples) == ["DX", "DX", "NM"]
    assert sorted(int(s["mask"].sum() > 0) for s in samples) == [0, 0, 1]  # the nodule, on its film only
    computed = ImageDataset(cohort / "manifest", None, CONFIG, modalities=MODALITIES, masks=True)
    by_key = {s["key"]: s for s in samples}
    for i in range(len(computed)):
        fresh = computed[i]
        assert np.array_equal(fresh["mask"], by_key[fresh["key"]]["mask"]) and np.allclose(fresh["image"], by_key[fresh["key"]]["image"])


def test_the_cli_takes_modalities_and_masks_with_images(cohort):
    (cohort / "cfg.yaml").write_text("size: [32, 32]\n")
    args = ["preprocess", str(cohort / "manifest"), "--images", "--config", str(cohort / "cfg.yaml"), "--cache", str(cohort / "cache")]
    main([*args, "--modalities", ",".join(MODALITIES).lower(), "--masks", "--workers", "0", "--quiet"])
    assert len(_read_all(cohort)) == 3
    with pytest.raises(SystemExit) as usage:
        main(["preprocess", str(cohort / "manifest"), "--config", "ct_1mm", "--cache", str(cohort / "c2"), "--masks"])
    assert usage.value.code == 2

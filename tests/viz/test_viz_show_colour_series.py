"""``dicomml show`` draws a stack of colour images (a fused PET/CT capture labelled CT) image by image, in colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread
from pydicom.uid import generate_uid

import dicomml
from dicomml.cli.main import main
from dicomml.imaging2d.synthetic import write_image2d


def test_show_draws_a_colour_stack_with_geometry_image_by_image(tmp_path: Path) -> None:
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, 24:] = [255, 0, 0]
    for k in range(3):
        geometry = {
            "ImagePositionPatient": [0.0, 0.0, 2.0 * k],
            "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
            "PixelSpacing": [1, 1],
            "FrameOfReferenceUID": frame,
            "InstanceNumber": k + 1,
            "Modality": "CT",  # not a 2D modality: only its colour says it is no volume
        }
        write_image2d(
            tmp_path / "src" / f"{k}.dcm", pixels, modality="SC", photometric="RGB", study_uid=study, series_uid=series, extra=geometry
        )
    manifest = dicomml.index(tmp_path / "src", tmp_path / "manifest", workers=1, salt="colour", progress=False)
    out = tmp_path / "rgb.png"
    try:
        main(["show", str(tmp_path / "manifest"), str(manifest.series.series_key[0]), "-o", str(out)])
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml show exited {exc.code}") from exc
    png = imread(out)[..., :3]
    red = (png[..., 0] > 0.9) & (png[..., 1] < 0.1) & (png[..., 2] < 0.1)
    assert png.shape[:2] == (460, 1200)  # three images side by side, not a volume's views and montage
    assert red.sum() > 3 * 500

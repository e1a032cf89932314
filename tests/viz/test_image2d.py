"""Pictures of 2D images: a right CC mammogram drawn in the breast convention, its sides from Patient Orientation,
its SEG on the same (flipped) pixels; ``dicomml show`` draws a 2D series so instead of refusing it as a volume."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

import dicomml
from dicomml.cli.main import main
from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d import load_image
from dicomml.imaging2d.masks import displayed_masks
from dicomml.imaging2d.synthetic import write_image2d, write_seg2d
from dicomml.viz import render_images

ROWS, COLUMNS = 256, 200
#: A bright marker near the stored left edge, where this right breast's nipple (anterior) points.
MARKER = (slice(100, 150), slice(10, 40))


@pytest.fixture(scope="module")
def mammogram(tmp_path_factory):
    root = tmp_path_factory.mktemp("mg")
    stored = np.full((ROWS, COLUMNS), 500, np.uint16)
    stored[MARKER] = 3000
    header = {"ImageLaterality": "R", "ViewPosition": "CC", "PatientOrientation": ["P", "L"], "ImagerPixelSpacing": [0.1, 0.1]}
    image = write_image2d(root / "dicom" / "r_cc.dcm", stored, modality="MG", extra=header)
    mask = np.zeros((ROWS, COLUMNS), bool)
    mask[MARKER] = True
    seg = write_seg2d(image, mask, root / "dicom" / "seg.dcm", label="mass")
    manifest = dicomml.index(root / "dicom", root / "manifest", workers=1, salt="mg", progress=False)
    return root, image, seg, manifest


def _texts(ax) -> dict[tuple[float, float], str]:
    return {tuple(round(v, 2) for v in t.get_position()): t.get_text() for t in ax.texts}


def test_the_breast_convention_puts_the_nipple_right_and_the_mask_on_it(mammogram):
    _, image_path, seg_path, _ = mammogram
    image = load_image(image_path, display="breast")
    masks, labels = displayed_masks([str(seg_path)], image.meta)
    ax = render_images([image], masks=[masks], labels=labels).axes[0]
    assert ax.get_label() == "image-0" and ax.get_title() == "MG R CC"
    sides = _texts(ax)
    assert (sides[(0.98, 0.5)], sides[(0.02, 0.5)], sides[(0.5, 0.98)], sides[(0.5, 0.02)]) == ("A", "P", "R", "L")
    shown, overlay = (np.asarray(im.get_array()) for im in ax.images)
    flipped = (MARKER[0], slice(COLUMNS - 40, COLUMNS - 10))  # the marker, mirrored onto the right
    assert shown[flipped].min() == 3000 and shown[:, : COLUMNS // 2].max() == 500
    alpha = overlay[..., 3] > 0
    assert alpha[flipped].all() and alpha.sum() == 50 * 30


def test_show_draws_a_2d_series_with_its_seg(mammogram):
    root, _, _, manifest = mammogram
    out = root / "mg.png"
    try:
        main(
            [
                "show",
                str(root / "manifest"),
                manifest.series.series_key[0],
                "--mask",
                manifest.annotations.annotation_key[0],
                "-o",
                str(out),
            ]
        )
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml show exited {exc.code}") from exc
    png = imread(out)[40:, :, :3]  # below the legend
    blue = np.flatnonzero((png[..., 2] - png[..., 0] > 0.2).any(axis=0))  # columns holding the overlay (letters are yellow)
    assert blue.size and blue.min() > png.shape[1] // 2  # on the right: the breast faces right


def test_a_seg_highdicom_cannot_read_is_one_typed_error(tmp_path):
    """highdicom writes a SEG of an image with Pixel Spacing but no Slice Thickness that it cannot read back."""
    image = write_image2d(tmp_path / "dx.dcm", np.zeros((32, 32), np.uint16), modality="DX", extra={"PixelSpacing": [0.2, 0.2]})
    seg = write_seg2d(image, np.ones((32, 32), bool), tmp_path / "seg.dcm")
    with pytest.raises(InvalidDicomFileError, match=f"^{seg}: not a Segmentation that highdicom can parse"):
        displayed_masks([str(seg)], load_image(image).meta)

"""``dicomml show`` on an indexed sample study: a PNG with the lesion on the patient's right."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

import dicomml
from dicomml.cli.main import main
from dicomml.sample import write_sample_study
from dicomml.viz import render


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("show")
    write_sample_study(root / "dicom")
    manifest = dicomml.index([str(root / "dicom")], str(root / "manifest"), workers=1)
    series = manifest.series.set_index("modality")
    return root, series.loc["CT", "series_key"], series.loc["MR", "series_key"], manifest.annotations.annotation_key.iloc[0]


def run(argv: list[str]) -> None:
    try:
        main(argv)
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml {' '.join(argv)} exited {exc.code}") from exc


def test_show_writes_a_png_of_each_series(indexed):
    root, ct_key, mr_key, _ = indexed
    for key, window in ((ct_key, "lung"), (mr_key, "500,1000")):
        out = root / f"{key}.png"
        run(["show", str(root / "manifest"), key, "-o", str(out), "--window", window])
        png = imread(out)
        assert png.shape[:2] == (900, 1200)  # 12 in, 100 dpi; views plus a two-row montage
        assert png[..., :3].std() > 0.05  # not blank


def test_show_with_mask_draws_the_segments_on_the_patients_right(indexed):
    """Lesion and liver both lie in the patient's right half: the viewer's left in the axial view."""
    root, ct_key, _, annotation = indexed
    out = root / "mask.png"
    argv = ["show", str(root / "manifest"), ct_key, "-o", str(out), "--mask", annotation, "--window", "lung", "--montage", "0"]
    run(argv)
    png = imread(out)
    manifest = dicomml.Manifest(root / "manifest")
    volume = dicomml.load_series(manifest, ct_key)
    layout = render(volume, mask=dicomml.load_mask(manifest, annotation, reference=volume), window="lung", montage=0)
    axial = next(ax for ax in layout.axes if ax.get_label() == "axial")
    box = axial.get_window_extent()
    panel = png[int(png.shape[0] - box.y1) : int(png.shape[0] - box.y0), int(box.x0) : int(box.x1)]
    r, g, b = panel[..., 0], panel[..., 1], panel[..., 2]
    overlay = (np.ptp(panel[..., :3], axis=-1) > 0.15) & ~((np.abs(r - g) < 0.12) & (b < r - 0.1))
    assert overlay.sum() > 500
    assert np.argwhere(overlay)[:, 1].mean() < panel.shape[1] / 2
    legend = [t.get_text() for t in layout.legends[0].get_texts()]
    assert legend == ["1 lesion", "2 liver"]


def test_show_errors_exit_one_with_one_line(indexed, capsys):
    root, _, _, _ = indexed
    with pytest.raises(SystemExit) as exc:
        main(["show", str(root / "manifest"), "no-such-key", "-o", str(root / "x.png")])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dicomml: error:") and "no-such-key" in err and "\n" not in err
    capsys.readouterr()
    for window in ("40,abc", "40", "40,-5", "nan,400", "lungs"):  # one usage error, exit 2, whatever is wrong
        with pytest.raises(SystemExit) as exc:
            main(["show", str(root / "manifest"), "k", "-o", str(root / "x.png"), "--window", window])
        assert exc.value.code == 2, window
        assert f"'{window}': expected a preset (brain, " in capsys.readouterr().err


def test_show_creates_missing_folders(indexed):
    root, ct_key, _, _ = indexed
    out = root / "missing" / "dir" / "x.png"
    run(["show", str(root / "manifest"), ct_key, "-o", str(out), "--montage", "0"])
    assert imread(out).shape[0] > 0

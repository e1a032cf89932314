"""The cohort picture of the real corpus: its bars are the manifest's counts, its histograms the usable series."""

from __future__ import annotations

import pytest
from matplotlib.image import imread

import dicomml
from dicomml.cli.main import main
from dicomml.viz import render_cohort
from dicomml.viz.cohort import MAX_BARS


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    return dicomml.index(data_dir, tmp_path_factory.mktemp("cohort") / "manifest", workers=2, salt="cohort", progress=False)


def _panels(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes}


def _bars(ax) -> list[float]:
    return [patch.get_width() for patch in ax.patches]


def test_bars_are_the_counts_and_histograms_the_usable_series(corpus):
    panels = _panels(render_cohort(corpus))
    assert set(panels) == {"modality", "usable", "manufacturer", "in-plane spacing", "slice spacing", "slices"}
    series = corpus.series
    modalities = series.modality.fillna("?").value_counts()
    assert sorted(_bars(panels["modality"]), reverse=True) == sorted(modalities.tolist(), reverse=True)
    assert sum(_bars(panels["usable"])) == sum(_bars(panels["manufacturer"])) == len(series)
    assert len(_bars(panels["manufacturer"])) <= MAX_BARS < series.manufacturer.fillna("?").nunique()  # the rest is one bar
    usable = series[series.usable]
    assert _bars(panels["usable"])[0] == len(usable)  # the largest bar comes first: most of the corpus is usable
    for label, column in (("slice spacing", usable.slice_spacing), ("slices", usable.n_slices)):
        assert sum(patch.get_height() for patch in panels[label].patches) == column.notna().sum(), label
    in_plane = [patch.get_x() for patch in panels["in-plane spacing"].patches if patch.get_height()]
    assert min(in_plane) <= min(v[0] for v in usable.pixel_spacing) < max(in_plane) + 1


def test_cli_info_plot_writes_the_picture(corpus, tmp_path):
    out = tmp_path / "pictures" / "cohort.png"
    try:
        main(["info", str(corpus.path), "--plot", str(out)])
    except SystemExit as exc:  # main exits only on failure
        raise AssertionError(f"dicomml info --plot exited {exc.code}") from exc
    png = imread(out)
    assert png.shape[:2] == (800, 1400) and png[..., :3].std() > 0.05


def test_an_empty_manifest_draws_empty_panels(tmp_path):
    (tmp_path / "empty").mkdir()
    manifest = dicomml.index(tmp_path / "empty", tmp_path / "manifest", workers=1, salt="cohort", progress=False)
    panels = _panels(render_cohort(manifest))
    assert all(not ax.patches and [t.get_text() for t in ax.texts] == ["(none)"] for ax in panels.values())
    assert len(panels) == 6


def test_title_counts_read_in_the_singular_and_bars_stand_apart(tmp_path):
    from dicomml.sample import write_sample_study

    write_sample_study(tmp_path / "dicom")  # one SEG: "1 annotation"; slice spacings 2.5 and 5 mm: two bars
    fig = render_cohort(dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, salt="cohort", progress=False))
    assert "1 annotation," in fig.get_suptitle() and "0 errors" in fig.get_suptitle()
    bars = [p for p in _panels(fig)["slice spacing"].patches if p.get_height()]
    assert len(bars) == 2 and all(p.get_edgecolor()[:3] == (1.0, 1.0, 1.0) for p in bars)

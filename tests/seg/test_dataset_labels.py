"""The label map through the pipeline: every sample the same channels; a bad annotation skipped; on_irregular."""

from __future__ import annotations

import numpy as np
import pytest
from seg_refs import write_annotated_series, write_ct

import dicomml
from dicomml.config import Annotations, Deterministic, PipelineConfig, parse_labels
from dicomml.errors import SegReferenceError, SliceGapError

LABELS = parse_labels(
    {
        "liver": {"value": 1, "codes": ["SCT:10200004", "SRT:T-62000"], "aliases": ["leber"]},
        "tumor": {"value": 2, "aliases": ["tumour"]},
        "spleen": {"value": 3},
    }
)


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotated_ds")
    paths = write_annotated_series(folder)
    return paths, dicomml.index(folder, folder / "manifest")


def _config(**annotations) -> PipelineConfig:
    return PipelineConfig("labels", Deterministic(orientation="RAS", annotations=Annotations(labels=LABELS, **annotations)))


def test_segmentation_dataset_gives_the_label_map_channels_and_skips_the_bad_rtstruct(annotated, tmp_path) -> None:
    _, manifest = annotated
    ds = dicomml.SegmentationDataset(manifest, _config(on_bad="skip"), tmp_path / "cache")
    assert len(ds) == 1
    sample = ds[0]
    assert sample["mask"].shape[0] == 3 and sample["mask"].shape[1:] == sample["image"].shape[1:]
    assert sample["meta"]["labels"] == ["liver", "tumor", "spleen"]
    assert sample["meta"]["present"] == [True, True, False]
    assert not sample["mask"][2].any() and sample["mask"][0].sum() > sample["mask"][1].sum() > 0
    assert len(sample["meta"]["skipped_annotations"]) == 1
    assert "SegReferenceError" in next(iter(sample["meta"]["skipped_annotations"].values()))
    with pytest.raises(SegReferenceError):
        dicomml.SegmentationDataset(manifest, _config(on_bad="raise"), tmp_path / "cache2")[0]


def test_one_sample_per_annotation_and_the_dataset_overrides(annotated, tmp_path) -> None:
    _, manifest = annotated
    each = dicomml.SegmentationDataset(
        manifest, _config(on_bad="skip"), tmp_path / "cache", annotations={"labels": {"liver": 1}, "choose": "each", "on_bad": "skip"}
    )
    assert len(each) == 5  # three SEGs, two RTSTRUCTs
    presents = sorted(tuple(each[i]["meta"]["present"]) for i in range(len(each)))
    # the override's liver has no alias: seg_c's "leber" is not it; the bad RTSTRUCT is skipped, so empty
    assert presents == [(False,), (False,), (True,), (True,), (True,)]
    described = dicomml.SegmentationDataset(manifest, _config(choose="description:SEG_C"), tmp_path / "cache")
    assert described[0]["meta"]["present"] == [True, False, False]  # seg_c: the liver only


def _expert(record) -> bool:
    return record.creator.startswith("Expert")


def test_datasets_choose_by_a_predicate(annotated, tmp_path) -> None:
    _, manifest = annotated
    every = dicomml.SegmentationDataset(manifest, _config(), tmp_path / "cache")
    experts = dicomml.SegmentationDataset(manifest, _config(choose=_expert), tmp_path / "cache")
    assert experts.sources[0].series_key == every.sources[0].series_key
    assert len(experts.sources[0].annotation_keys) == 2  # seg_a and seg_b, not seg_c nor the RTSTRUCTs
    assert experts.sources[0].key != every.sources[0].key  # other annotations, another cache entry
    sample = experts[0]
    assert sample["meta"]["present"] == [True, True, False]
    # a sort key: the annotation with the most segments (seg_b: liver and tumour), through the annotations= override
    most = dicomml.PatchDataset(
        manifest, _config(), tmp_path / "cache", patch_size=(8, 8, 4), annotations={"labels": LABELS, "choose": lambda r: len(r.segments)}
    )
    assert len(most.sources[0].annotation_keys) == 1
    assert most[0]["meta"]["present"] == [True, True, False]
    # the leber SEG only: its liver is the liver label's alias, no tumour
    leber = dicomml.SeriesDataset(manifest, _config(choose=lambda r: "leber" in r.labels), tmp_path / "cache")
    assert len(leber.sources[0].annotation_keys) == 1
    # nothing kept: the series is left out, as a series without annotations
    assert len(dicomml.SegmentationDataset(manifest, _config(choose=lambda r: False), tmp_path / "cache")) == 0


def test_on_irregular_reaches_the_dataset(tmp_path) -> None:
    files = write_ct(tmp_path / "ct", (8, 16, 16), 1.0, seed=3)
    files[4].unlink()  # a gap
    manifest = dicomml.index(tmp_path / "ct", tmp_path / "manifest")
    config = PipelineConfig("gap", Deterministic(orientation="LPS"))  # LPS: axis 2 runs along the slices
    keys = list(manifest.series.series_key)  # not usable (a gap), so named explicitly
    with pytest.raises(SliceGapError, match="on_irregular"):
        dicomml.SeriesDataset(manifest, config, tmp_path / "cache", series_keys=keys)[0]
    sample = dicomml.SeriesDataset(manifest, config, tmp_path / "cache", series_keys=keys, on_irregular="resample")[0]
    assert sample["image"].shape[1:] == (16, 16, 8)  # the gap filled on the regular grid
    assert np.isfinite(sample["image"].numpy()).all()

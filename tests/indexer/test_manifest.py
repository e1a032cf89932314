"""`Manifest`: pandas, DuckDB and polars read the same tables; sources beyond local folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import pandas as pd
import polars as pl
import pytest

import dicomml
from dicomml.errors import ManifestError, SeriesNotFoundError, SourceNotFoundError
from dicomml.indexer import Manifest


def test_sql_runs_in_duckdb_with_parameters(corpus_manifest: Manifest):
    counts = corpus_manifest.sql("SELECT modality, count(*) AS n FROM series GROUP BY 1 ORDER BY 1")
    assert counts.set_index("modality").n.sum() == len(corpus_manifest.series)
    ct = corpus_manifest.sql("SELECT count(*) AS n FROM instances WHERE modality = ?", "CT")
    assert ct.n[0] == (corpus_manifest.instances.modality == "CT").sum()


def test_polars_reads_the_same_tables(corpus_manifest: Manifest):
    frame = pl.read_parquet(str(corpus_manifest.path / "series" / "*.parquet"))
    assert frame.height == len(corpus_manifest.series)
    assert set(frame["series_key"]) == set(corpus_manifest.series.series_key)


def test_series_files_are_ordered_by_path(corpus_manifest: Manifest, data_dir: Path):
    series = corpus_manifest.series
    key = series[series.folder == str(data_dir / "dcm_qa_decubitus/In/HFS/3_t1_fl2d_sag")].series_key.iloc[0]
    files = corpus_manifest.series_files(key)
    assert list(files.columns) == ["path", "frame_numbers", "size", "mtime_ns"]
    assert len(files) == 35 and list(files.path) == sorted(files.path)
    assert files.frame_numbers.isna().all()


def test_unknown_series_key_raises_a_typed_error(corpus_manifest: Manifest):
    with pytest.raises(SeriesNotFoundError, match="no series_key 'ffff'.*`dicomml list .* series`"):
        corpus_manifest.series_files("ffff")


def test_a_folder_without_manifest_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="manifest.json missing"):
        Manifest(tmp_path)


def test_missing_source_is_a_typed_error(tmp_path: Path, salt: str):
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        dicomml.index(tmp_path / "nowhere", tmp_path / "m", salt=salt, progress=False)


def test_memory_url_source(data_dir: Path, tmp_path: Path, salt: str):
    fs = fsspec.filesystem("memory")
    source = data_dir / "dcmqi/data/segmentations/24x38x3/image"
    for path in sorted(source.iterdir()):
        fs.pipe(f"/dicomml-test/ct/{path.name}", path.read_bytes())
    fs.pipe("/dicomml-test/ct/junk.dcm", b"junk, not DICOM\n" * 16)  # long enough to be judged: not a lost slice
    try:
        m = dicomml.index("memory://dicomml-test", tmp_path / "m", salt=salt, progress=False)
    finally:
        fs.rm("/dicomml-test", recursive=True)
    assert sorted(m.instances.path) == [f"memory:///dicomml-test/ct/IMG000{i}.dcm" for i in (1, 2, 3)]
    assert list(m.errors.path) == ["memory:///dicomml-test/ct/junk.dcm"]
    series = m.series.iloc[0]
    assert series.n_slices == 3 and series.usable and series.folder == "memory:///dicomml-test/ct"


def test_dask_scheduler_reads_on_the_cluster(data_dir: Path, tmp_path: Path, salt: str):
    from distributed import LocalCluster

    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dcm_qa_philips_enh/In/cl", tree)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        m = dicomml.index(tree, tmp_path / "m", scheduler=cluster.scheduler_address, salt=salt, progress=False)
    local = dicomml.index(tree, tmp_path / "local", workers=1, salt=salt, progress=False)
    assert len(m.instances) == 40
    columns = ["path", "series_key", "sop_instance_uid", "image_position"]
    dask_rows = m.instances.sort_values("path")[columns].reset_index(drop=True)
    local_rows = local.instances.sort_values("path")[columns].reset_index(drop=True)
    assert dask_rows.equals(local_rows)


def test_usable_series_keys_filter_with_pandas_as_the_oracle(corpus_manifest: Manifest):
    series = corpus_manifest.series
    expected = sorted(series[series.usable & (series.modality == "CT")].series_key)
    assert corpus_manifest.usable_series_keys("modality = 'CT'") == expected
    assert corpus_manifest.usable_series_keys() == sorted(series[series.usable].series_key)


@pytest.mark.parametrize("where", ["no_such_column = 1", "1 = 1; SELECT 1", "modality = 'CT'))"])
def test_usable_series_keys_refuse_what_is_not_one_predicate(corpus_manifest: Manifest, where: str):
    with pytest.raises(ManifestError, match="not a valid predicate on the series table"):
        corpus_manifest.usable_series_keys(where)


def test_a_predicate_that_closes_its_parenthesis_still_sees_only_usable_series(corpus_manifest: Manifest):
    series = corpus_manifest.series
    assert not series.usable.all()  # so the check below can fail
    assert corpus_manifest.usable_series_keys("modality = 'CT') OR (1 = 1") == sorted(series[series.usable].series_key)


def test_fingerprints_hold_one_row_per_file(corpus_manifest: Manifest):
    instances = corpus_manifest.instances
    key = instances.series_key.dropna().iloc[0]
    rows = corpus_manifest.instance_fingerprints([key, "not-a-key"])
    chosen = instances[instances.series_key == key]
    assert {row[0] for row in rows} == {key} and all(len(row) == 5 for row in rows)
    assert sorted(row[1] for row in rows) == sorted(chosen.sop_instance_uid)
    assert {(row[1], row[2], row[3]) for row in rows} == set(zip(chosen.sop_instance_uid, chosen["size"], chosen.mtime_ns))
    annotations = corpus_manifest.annotations
    ann = annotations.annotation_key.iloc[0]
    files = corpus_manifest.annotation_fingerprints([ann])
    assert {row[0] for row in files} == {ann}
    assert {row[1] for row in files} == set(annotations[annotations.annotation_key == ann].sop_instance_uid)


def test_image_instances_keep_their_modalities_and_the_predicate(corpus_manifest: Manifest):
    instances = corpus_manifest.instances
    chosen = instances[instances.modality.isin(["CT", "MR"])]
    rows = corpus_manifest.image_instances(("CT", "MR"))
    assert list(rows.path) == sorted(chosen.path.unique()) and set(rows.modality) <= {"CT", "MR"}
    assert list(rows.columns)[:3] == ["path", "folder", "sop_instance_uid"]
    ct = corpus_manifest.image_instances(("CT", "MR"), "modality = 'CT'")
    assert list(ct.path) == sorted(chosen[chosen.modality == "CT"].path.unique())
    # a predicate that closes its parenthesis still sees only the chosen modalities
    assert set(corpus_manifest.image_instances(("CT",), "1 = 0) OR (1 = 1").modality) == {"CT"}
    assert corpus_manifest.image_instances(()).empty


@pytest.mark.parametrize("where", ["no_such_column = 1", "1 = 1; SELECT 1"])
def test_image_instances_refuse_what_is_not_one_predicate(corpus_manifest: Manifest, where: str):
    with pytest.raises(ManifestError, match="not a valid predicate on the instances table"):
        corpus_manifest.image_instances(("CT",), where)


def test_seg_instances_studies_and_acquisitions_match_pandas(corpus_manifest: Manifest):
    instances, series = corpus_manifest.instances, corpus_manifest.series
    segs = corpus_manifest.seg_instances()
    assert list(segs.columns) == ["path", "sop_instance_uid", "size", "mtime_ns", "referenced_sop_uids", "referenced_series_uids"]
    assert list(segs.path) == sorted(instances[instances.modality == "SEG"].path.unique()) and len(segs) > 0
    studies = corpus_manifest.usable_studies()
    assert list(studies.study_instance_uid) == sorted(series[series.usable].study_instance_uid.unique())
    keys = list(series.series_key[:3])
    acquired = corpus_manifest.series_acquired([*keys, "no-such-key"])
    assert sorted(acquired.series_key) == sorted(keys)
    for row in acquired.itertuples():
        times = instances[instances.series_key == row.series_key].acquisition_time.dropna()
        assert row.acquired == times.max() if len(times) else pd.isna(row.acquired)


def test_summary_counts_match_pandas(corpus_manifest: Manifest):
    summary = corpus_manifest.summary()
    by_modality = summary["series by modality"].set_index("modality").n
    assert by_modality.sum() == len(corpus_manifest.series)
    assert summary["errors by type"].n.sum() == len(corpus_manifest.errors)

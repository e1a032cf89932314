"""`dicomml.preprocess` meeting trouble: a damaged marker (of a series or an image), an unwritable cache, a report
path that is a folder, a grid past max_voxels, a result lost with its worker, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import fsspec
import numpy as np
import pandas as pd
import pytest

import dicomml
from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.config import PipelineConfig
from dicomml.distributed import run
from dicomml.distributed.images import preprocess_images
from dicomml.distributed.report import write_report
from dicomml.errors import CacheError, DicomMLError, OutputError
from dicomml.imaging2d import ImageConfig
from dicomml.imaging2d.synthetic import write_image2d


@pytest.fixture(scope="module")
def one(cohort) -> str:
    """A ``where`` selecting the smallest series of the cohort (a dcmqi CT of 38 x 24 x 3 voxels of 0.7 x 0.7 x 2.5 mm)."""
    (key,) = cohort.sql("SELECT series_key FROM series WHERE usable ORDER BY rows * columns * n_slices, series_key LIMIT 1")["series_key"]
    return f"series_key = '{key}'"


def _coarse() -> PipelineConfig:
    return PipelineConfig.from_dict({"name": "coarse", "deterministic": {"spacing": [4, 4, 4]}})


def test_a_rerun_computes_again_the_entry_whose_marker_is_empty_and_skips_the_others(cohort, tmp_path):
    first = dicomml.preprocess(cohort, _coarse(), tmp_path / "c", workers=0, progress=False)
    published = first.table.loc[first.table["status"] == "done", "cache_key"].tolist()
    assert len(published) >= 2
    (tmp_path / "c" / "entries" / f"{published[0]}.json").write_bytes(b"")  # a crash on a store without atomic renames
    again = dicomml.preprocess(cohort, _coarse(), tmp_path / "c", workers=0, progress=False).table.set_index("cache_key")
    assert again.loc[published[0], "status"] == "done"
    assert (again.loc[published[1:], "status"] == "skipped").all()
    cache = Cache(tmp_path / "c")
    cache.verify(published[0])
    assert cache.info()["invalid_entries"] == 0


def test_a_read_only_cache_stops_the_run_before_any_series_with_one_cache_error(cohort, one, read_only, tmp_path, monkeypatch, capsys):
    folder, make_read_only = read_only
    cache_dir = folder / "c"
    dicomml.preprocess(cohort, _coarse(), cache_dir, where=one, workers=0, progress=False)
    make_read_only()
    calls: list[str] = []
    real = run.preprocess_one
    monkeypatch.setattr(run, "preprocess_one", lambda source, *a, **k: calls.append(source.series_key) or real(source, *a, **k))
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    with pytest.raises(CacheError, match=rf"^{cache_dir}: the cache cannot be written \({reason}\); make it writable"):
        dicomml.preprocess(cohort, _coarse(), cache_dir, workers=0, progress=False, report=tmp_path / "r.parquet")
    assert calls == [] and not (tmp_path / "r.parquet").exists()
    # everything there already: nothing to compute, so the report it cannot write is no error (a check in CI)
    complete = dicomml.preprocess(cohort, _coarse(), cache_dir, where=one, workers=0, progress=True)
    assert complete.path is None and complete.counts == {"done": 0, "skipped": 1, "failed": 0}
    assert re.search(
        rf"no report written\n.*cannot write the run report \({reason}\); every entry was in the cache already", capsys.readouterr().err
    )


def test_a_report_path_that_is_a_folder_is_refused_before_the_run(cohort, one, tmp_path, capsys):
    folder = tmp_path / "reports"
    folder.mkdir()
    message = f"{folder}: is a folder; give the run report a file name, e.g. {folder}/report.parquet"
    with pytest.raises(OutputError, match=f"^{re.escape(message)}$"):
        dicomml.preprocess(cohort, _coarse(), tmp_path / "c", where=one, workers=0, progress=False, report=folder)
    assert list(folder.iterdir()) == [] and Cache(tmp_path / "c").keys() == []  # nothing ran
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", str(cohort.path), "--config", "ct_1mm", "--cache", str(tmp_path / "c"), "--report", str(folder), "--quiet"])
    assert exit_info.value.code == 1 and capsys.readouterr().err.strip().splitlines() == [f"dicomml: error: {message}"]
    with pytest.raises(OutputError, match="is a folder"):  # the writer refuses it too: a rename would move the report into it
        write_report([{"series_key": "k", "status": "done"}], fsspec.filesystem("file"), str(folder))
    assert list(folder.iterdir()) == []


def test_a_spacing_whose_grid_exceeds_max_voxels_fails_once_naming_the_option_and_the_count(cohort, one, tmp_path, monkeypatch):
    # 0.1 mm makes a grid of millions of voxels from the series' thousands: past a ceiling of one million,
    # which the series itself is under (a grid of terabytes was the report; this one is allocated without the check)
    fine = PipelineConfig.from_dict({"name": "fine", "deterministic": {"spacing": [0.1, 0.1, 0.1]}})
    calls: list[str] = []
    real = run.preprocess_one
    monkeypatch.setattr(run, "preprocess_one", lambda source, *a, **k: calls.append(source.series_key) or real(source, *a, **k))
    report = tmp_path / "r.parquet"
    with pytest.raises(DicomMLError, match="all 1 series failed"):
        dicomml.preprocess(cohort, fine, tmp_path / "c", where=one, workers=0, retries=2, progress=False, report=report, max_voxels=10**6)
    row = pd.read_parquet(report).iloc[0]
    assert row["error_type"] == "ResourceLimitError"
    assert re.search(
        r"deterministic\.spacing \[0\.1, 0\.1, 0\.1\] makes a grid of \d+x\d+x\d+ = \d+ voxels, over the limit of 1000000 "
        r"\(deterministic\.max_voxels\)",
        row["message"],
    ), row["message"]
    assert len(calls) == 1  # a property of the config, not an I/O hiccup: not retried


def test_a_series_computed_again_after_its_result_was_lost_is_done_not_skipped(cohort, one, tmp_path, monkeypatch):
    # As Dask does when a worker dies holding a finished task's result: the task runs again and finds its entry.
    real, lost = run._task, set()

    def result_lost_once(context, sources, started):
        rows = real(context, sources, started)
        if sources[0].key not in lost:
            lost.add(sources[0].key)
            raise OSError("the worker died holding the result")
        return rows

    monkeypatch.setattr(run, "_task", result_lost_once)
    report = dicomml.preprocess(cohort, _coarse(), tmp_path / "c", where=one, workers=0, retries=1, progress=False)
    assert len(lost) == 1 and report.counts == {"done": 1, "skipped": 0, "failed": 0}
    rerun = dicomml.preprocess(cohort, _coarse(), tmp_path / "c", where=one, workers=0, progress=False)
    assert rerun.counts == {"done": 0, "skipped": 1, "failed": 0}  # complete when the run started


def test_ctrl_c_of_a_dask_run_prints_one_line_and_leaves_the_cache_sound(cohort, tmp_path):
    cache_dir = tmp_path / "c"
    config = tmp_path / "half_mm.yaml"
    config.write_text("name: half_mm\ndeterministic: {spacing: [0.5, 0.5, 0.5]}\n")  # seconds per series: the run is mid-way
    argv = ["preprocess", str(cohort.path), "--config", str(config), "--cache", str(cache_dir), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dicomml.cli.main import main; main()", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not (cache_dir / "entries").is_dir() or not any((cache_dir / "entries").iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before publishing anything"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the run and its Dask workers, all of its group
    out, _ = proc.communicate(timeout=120)
    text = out.decode(errors="replace")
    assert proc.returncode == 130 and [line for line in text.splitlines() if line.strip()] == ["dicomml: aborted"], text
    cache = Cache(cache_dir)
    assert 0 < len(cache.keys()) < len(cohort.sql("SELECT series_key FROM series WHERE usable"))
    for key in cache.keys():
        cache.verify(key)


def test_an_image_whose_marker_is_empty_is_computed_again(tmp_path):
    rng = np.random.default_rng(5)
    write_image2d(tmp_path / "source" / "dx.dcm", rng.integers(0, 4096, (60, 40)).astype(np.uint16), modality="DX", bits_stored=12)
    manifest = dicomml.index(tmp_path / "source", tmp_path / "manifest", workers=1, progress=False)
    config = ImageConfig(size=(16, 16))
    (key,) = preprocess_images(manifest, config, tmp_path / "c", workers=0, progress=False).table["cache_key"]
    (tmp_path / "c" / "entries" / f"{key}.json").write_bytes(b"")
    again = preprocess_images(manifest, config, tmp_path / "c", workers=0, progress=False)
    assert again.counts == {"done": 1, "skipped": 0, "failed": 0}
    Cache(tmp_path / "c").verify(key)


def test_a_masks_config_says_how_many_matching_series_it_leaves_out_for_lack_of_an_annotation(cohort, ct_seg, tmp_path, capsys):
    from dicomml.distributed import preprocess

    annotated = set(cohort.pairs()["series_key"])
    unannotated = [k for k in cohort.usable_series_keys() if k not in annotated]
    assert unannotated and annotated  # the cohort has both
    preprocess(cohort, ct_seg, tmp_path / "c", workers=0, where="modality = 'CT'", report=tmp_path / "r.parquet")
    matching = set(cohort.usable_series_keys("modality = 'CT'"))
    left_out = len(matching - annotated)
    assert left_out > 0
    err = capsys.readouterr().err
    assert f"preprocess: {left_out} usable series matching \"modality = 'CT'\" have no annotation; config ct_seg caches masks" in err


def test_a_report_that_cannot_be_written_comes_after_the_summary_of_the_failures(cohort, read_only, tmp_path, capsys):
    folder, make_read_only = read_only
    make_read_only()
    with pytest.raises(OutputError, match=r"cannot write the run report .*; this run computed no entry"):
        dicomml.preprocess(cohort, _coarse(), tmp_path / "c", workers=0, progress=True, max_voxels=10, report=folder / "r.parquet")
    err = capsys.readouterr().err
    assert re.search(r"\d+ failed; .*no report written", err) and "ResourceLimitError" in err

"""`dicomml.preprocess` on a real cohort: Dask LocalCluster, shards, failures, the run report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import dicomml
import dicomml.pipeline
from dicomml.cache import Cache
from dicomml.cli.main import main
from dicomml.config import PRESET_DIR, PipelineConfig
from dicomml.distributed import REPORT_SCHEMA
from dicomml.errors import ConfigError, DicomMLError, ManifestError, SeriesNotFoundError


def _data_files(cache: Cache, key: str) -> dict[str, bytes]:
    """Bytes of the files of an entry's arrays (the folder its publish marker names)."""
    folder = f"{cache.root}/" + json.loads(cache.fs.cat_file(f"{cache.root}/entries/{key}.json"))["data"]
    return {p[len(folder) :]: cache.fs.cat_file(p) for p in cache.fs.find(folder) if p != f"{folder}/zarr.json"}


def test_two_worker_cluster_entries_equal_those_a_dataset_builds_in_process(cohort, ct_seg, tmp_path):
    report = dicomml.preprocess(cohort, ct_seg, tmp_path / "dask", workers=2, progress=False)
    dataset = dicomml.SegmentationDataset(cohort, ct_seg, tmp_path / "inproc")
    for i in range(len(dataset.sources)):
        dataset.entry(i)  # a miss computes the entry in this process
    dask_cache, local_cache = Cache(tmp_path / "dask"), Cache(tmp_path / "inproc")

    assert report.counts == {"done": len(dataset.sources), "skipped": 0, "failed": 0}
    assert set(dask_cache.keys()) == set(local_cache.keys()) == {s.key for s in dataset.sources} == set(report.table["cache_key"])
    for key in dask_cache.keys():
        a, b = dask_cache.open(key), local_cache.open(key)
        assert a.has_mask and a.layouts == b.layouts and a.checksums == b.checksums
        assert (a.affine == b.affine).all()
        assert _data_files(dask_cache, key) == _data_files(local_cache, key)  # same bytes on disk
        dask_cache.verify(key)
    row = report.table.set_index("cache_key").loc[key]
    assert row["bytes"] == dask_cache.open(key).nbytes() and row["seconds"] > 0 and row["device"] == "cpu"


def test_a_failing_series_is_recorded_and_the_rerun_skips_complete_entries(cohort, fails_4d, four_d_key, tmp_path):
    first = dicomml.preprocess(cohort, fails_4d, tmp_path / "c", workers=0, progress=False)
    table = first.table.set_index("series_key")
    assert len(table) == 6 and first.counts == {"done": 5, "skipped": 0, "failed": 1}
    failed = table.loc[four_d_key]
    assert failed["status"] == "failed" and failed["error_type"] == ConfigError.__name__
    assert "carry no b_value" in failed["message"] and pd.isna(failed["bytes"])
    # the report on disk: Parquet with the documented schema, next to the cache
    assert first.path.startswith(str(tmp_path / "c" / "reports")) and first.path.endswith(".parquet")
    assert pq.read_schema(first.path).remove_metadata().equals(REPORT_SCHEMA)
    pd.testing.assert_frame_equal(pd.read_parquet(first.path), first.table)

    again = dicomml.preprocess(cohort, fails_4d, tmp_path / "c", workers=0, progress=False)
    assert again.counts == {"done": 0, "skipped": 5, "failed": 1}
    assert again.path != first.path  # each run keeps its report


def test_where_selects_series_and_the_summary_counts_them(cohort, ct_1mm, tmp_path, capsys):
    report = dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where="modality = 'CT' AND n_slices >= 80", workers=0)
    assert (
        report.table["series_key"].tolist()
        == cohort.sql("SELECT series_key FROM series WHERE n_slices >= 80 AND modality = 'CT'")["series_key"].tolist()
    )
    err = capsys.readouterr().err
    assert "dicomml preprocess: 1 series in" in err and "1 done, 0 skipped, 0 failed" in err and "series/s" in err


def test_max_voxels_overrides_the_config_and_keeps_the_cache_key(cohort, ct_1mm, tmp_path):
    where = "modality = 'CT' AND n_slices >= 80"
    with pytest.raises(DicomMLError, match=r"all 1 series failed.*ResourceLimitError.*exceeds the limit of 1000"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where=where, workers=0, max_voxels=1000, progress=False)
    report = dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where=where, workers=0, max_voxels=10**9, progress=False)
    assert report.counts["done"] == 1
    again = dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where=where, workers=0, progress=False)
    assert again.counts["skipped"] == 1  # the same entry under the config's default ceiling


def test_nothing_to_do_and_bad_options_raise_dicomml_errors(cohort, ct_1mm, tmp_path):
    with pytest.raises(SeriesNotFoundError, match="no usable series matches"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where="modality = 'PET'", workers=0)
    with pytest.raises(ManifestError, match="not a valid predicate"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where="no_such_column = 1", workers=0)
    with pytest.raises(ConfigError, match="give one"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="device"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", device="tpu")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(DicomMLError, match="cannot open the cache"):
        dicomml.preprocess(cohort, ct_1mm, not_a_folder / "cache", workers=0)
    with pytest.raises(DicomMLError, match="cannot write the run report"):
        dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where="n_slices = 3", workers=0, report=not_a_folder / "r.parquet")


def test_cli_exits_1_with_one_line_when_every_series_fails(cohort, ct_1mm, four_d_key, tmp_path, capsys):
    config = tmp_path / "ct.yaml"
    config.write_text("name: ct\ndeterministic: {spacing: [1, 1, 1], volumes: {by: b_value, values: [1000]}}\n")
    argv = [
        "preprocess",
        str(cohort.path),
        "--config",
        str(config),
        "--cache",
        str(tmp_path / "c"),
        "--where",
        f"series_key = '{four_d_key}'",
        "--workers",
        "0",
        "--quiet",
        "--report",
        str(tmp_path / "r.parquet"),
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("dicomml: error:") and "all 1 series failed" in last and "carry no b_value" in last
    assert pd.read_parquet(tmp_path / "r.parquet")["status"].tolist() == ["failed"]  # written before exiting


def test_three_shards_together_cover_every_series_exactly_once(cohort, ct_1mm, tmp_path):
    # The 3D series only: which shard a series lands in depends on its key, which holds the
    # cohort's folder, and a shard that held only the 4D MR would fail as a whole (and raise).
    where = "n_volumes = 1"
    reports = [dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where=where, shard=(i, 3), progress=False) for i in range(3)]
    keys = [k for r in reports for k in r.table["series_key"]]
    assert sorted(keys) == sorted(cohort.sql(f"SELECT series_key FROM series WHERE usable AND {where}")["series_key"])
    statuses = pd.concat([r.table for r in reports])["status"]
    assert set(statuses) == {"done"}  # no shard found another's work: no overlap
    assert all("shard-" in r.path for r in reports)


def _a_proper_shard(sources, four_d_key: str) -> tuple[int, int]:
    """A shard holding some but not all of ``sources``, not only the 4D MR (which series land where depends on their keys)."""
    for count in range(2, len(sources) + 1):
        for index in range(count):
            keys = {s.series_key for s in dicomml.distributed.select_shard(sources, index, count)}
            if 0 < len(keys) < len(sources) and keys - {four_d_key}:
                return index, count
    raise AssertionError("every split puts all series in one shard")


def test_device_cuda_resamples_on_the_gpu_when_the_worker_has_one(cohort, ct_1mm, tmp_path):
    # on a GPU machine this is the end-to-end check of `--device cuda`: a Dask worker resamples on its
    # GPU and its entries match those of a CPU run (same keys; int16 values within one unit, the
    # CPU's separable path and CUDA's fused kernel agreeing to float32 rounding); here both run on the CPU
    cpu = dicomml.preprocess(cohort, ct_1mm, tmp_path / "cpu", where="modality = 'CT'", workers=0, progress=False)
    gpu = dicomml.preprocess(cohort, ct_1mm, tmp_path / "gpu", where="modality = 'CT'", device="cuda", workers=1, progress=False)
    assert gpu.counts["failed"] == 0 and set(gpu.table["device"]) == {"cuda" if torch.cuda.is_available() else "cpu"}
    assert sorted(gpu.table["cache_key"]) == sorted(cpu.table["cache_key"])
    for key in cpu.table["cache_key"]:
        on_cpu, on_gpu = Cache(tmp_path / "cpu").open(key), Cache(tmp_path / "gpu").open(key)
        np.testing.assert_array_equal(on_gpu.affine, on_cpu.affine)
        diff = np.abs(on_gpu.read().astype(np.int32) - on_cpu.read())
        assert diff.max() <= (1 if torch.cuda.is_available() else 0)


def test_killing_one_worker_mid_run_still_completes_the_run(cohort, four_d_key, with_b1000, tmp_path):
    from distributed import Client, LocalCluster

    # At 0.5 mm the sample CT (512 x 512 x 400 voxels) is the longest task by seconds, so its
    # worker is surely still holding it when it is killed, even on a loaded machine.
    ct_half_mm = with_b1000(PipelineConfig.from_dict({"name": "ct_half_mm", "deterministic": {"spacing": [0.5, 0.5, 0.5]}}))
    (ct_key,) = cohort.sql("SELECT series_key FROM series WHERE modality = 'CT' AND n_slices = 80")["series_key"]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: __import__("dicomml.pipeline"))  # warm both workers
        outcome: dict = {}
        run = threading.Thread(
            target=lambda: outcome.update(
                report=dicomml.preprocess(cohort, ct_half_mm, tmp_path / "c", scheduler=cluster.scheduler_address, progress=False)
            )
        )
        run.start()
        pids = client.run(os.getpid)
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            holding = [w for w, tasks in client.processing().items() if any(str(t).endswith(ct_key) for t in tasks)]
            if holding:
                victim = holding[0]
                os.kill(pids[victim], signal.SIGKILL)
            time.sleep(0.005)
        run.join(timeout=300)
    assert victim is not None, "the CT's task was never seen on a worker"
    report = outcome["report"].table.set_index("series_key")
    assert report.loc[four_d_key, "status"] == "failed"
    # the run completed; a task the victim had finished but not yet reported is run again, and skips
    assert report.drop(index=four_d_key)["status"].isin(["done", "skipped"]).all()
    assert report.loc[ct_key, "status"] == "done"
    assert not str(report.loc[ct_key, "worker"]).endswith(f":{pids[victim]}")  # Dask ran the CT again elsewhere
    cache = Cache(tmp_path / "c")
    assert set(report.drop(index=four_d_key)["cache_key"]) <= set(cache.keys())
    for key in cache.keys():
        cache.verify(key)


@pytest.mark.parametrize("fetch_every_s", [0.0, 60.0])
def test_rows_are_fetched_in_batches_and_a_task_that_keeps_raising_is_a_failed_row(
    cohort, fails_4d, four_d_key, tmp_path, monkeypatch, fetch_every_s
):
    # 0 s: a fetch per finished task; 60 s: one fetch at the end, for every row at once
    from distributed import Client

    from dicomml import executor
    from dicomml.distributed import run

    (mr_key,) = cohort.sql("SELECT series_key FROM series WHERE modality = 'MR' AND n_volumes = 1")["series_key"]
    real_task, real_gather = run._task, Client.gather
    gathered: list[int] = []

    def flaky(context, sources, started):  # pickled by value: the workers run this, not the module's _task
        if sources[0].series_key == mr_key:
            raise OSError(f"{sources[0].series_key}: read timed out")
        return real_task(context, sources, started)

    def gather(client, futures, *args, **kwargs):
        gathered.append(len(futures))
        return real_gather(client, futures, *args, **kwargs)

    monkeypatch.setattr(run, "_task", flaky)
    monkeypatch.setattr(executor, "FETCH_EVERY_S", fetch_every_s)
    monkeypatch.setattr(Client, "gather", gather)
    report = dicomml.preprocess(cohort, fails_4d, tmp_path / "c", workers=1, retries=1, progress=False)
    table = report.table.set_index("series_key")
    assert sorted(table.index) == sorted(cohort.sql("SELECT series_key FROM series WHERE usable")["series_key"])
    assert report.counts == {"done": 4, "skipped": 0, "failed": 2}
    assert table.loc[mr_key, "error_type"] == "OSError" and "read timed out" in table.loc[mr_key, "message"]
    assert table.loc[four_d_key, "error_type"] == ConfigError.__name__
    # the five tasks that returned (the 4D series' failure is a returned row), gathered once or one at a time
    assert gathered == [5] if fetch_every_s else (sum(gathered) == 5 and max(gathered) == 1)


def test_cli_takes_the_shard_from_the_launcher_unless_given(cohort, ct_1mm, four_d_key, tmp_path, capsys, monkeypatch):
    everything = dicomml.pipeline.series_sources(cohort, ct_1mm)
    rank, world_size = _a_proper_shard(everything, four_d_key)
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))
    config = PRESET_DIR / "ct_1mm.yaml"
    base = ["preprocess", str(cohort.path), "--config", str(config), "--cache", str(tmp_path / "c"), "--quiet"]
    # The shard may hold the 4D MR, which fails, and then the run exits 1 after
    # writing its report. The exit status is tested elsewhere.
    with contextlib.suppress(SystemExit):
        main([*base, "--report", str(tmp_path / "env.parquet")])
    assert f"shard {rank}/{world_size} from RANK/WORLD_SIZE" in capsys.readouterr().err
    expected = [s.series_key for s in dicomml.distributed.select_shard(everything, rank, world_size)]
    assert sorted(pd.read_parquet(tmp_path / "env.parquet")["series_key"]) == sorted(expected)  # run largest first
    main([*base, "--shard", "0/1", "--report", str(tmp_path / "flag.parquet")])  # an explicit --shard wins
    assert "from RANK" not in capsys.readouterr().err
    assert len(pd.read_parquet(tmp_path / "flag.parquet")) == len(everything)


def test_local_cluster_workers_keep_glibc_malloc_defaults(monkeypatch):
    # Dask's nanny spawns workers with MALLOC_TRIM_THRESHOLD_=65536 and leaves it in its own process's
    # environment; that setting made preprocessing tasks slower (benchmarks/bench_preprocess.py)
    from distributed import Client, LocalCluster

    from dicomml.distributed.run import local_cluster

    def trim() -> str | None:
        return os.environ.get("MALLOC_TRIM_THRESHOLD_")

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # as in a fresh process (the CLI's)
    with local_cluster(1) as client:
        assert set(client.run(trim).values()) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ  # the library edits no environment variable
    with local_cluster(1, worker_env={"MALLOC_TRIM_THRESHOLD_": "131072"}) as client:  # asked for explicitly
        assert set(client.run(trim).values()) == {"131072"}
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # Dask's nanny left it here
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        assert set(client.run(trim).values()) == {"65536"}  # Dask's default, so the first check can fail


def test_local_cluster_workers_import_the_pipeline_and_freeze_it_out_of_the_gc():
    # a full collection walked the ~300,000 objects of the imports (125-150 ms, about every 16 series)
    import gc
    import sys

    from dicomml.distributed.run import WORKER_MODULES, local_cluster

    def state() -> tuple[bool, int, int]:
        return all(m in sys.modules for m in WORKER_MODULES), gc.get_freeze_count(), len(gc.get_objects())

    with local_cluster(1) as client:
        [(imported, frozen, tracked)] = client.run(state).values()
    assert imported and frozen > 100_000 and tracked < frozen / 10


def test_tasks_start_largest_first(cohort, ct_1mm, four_d_key, tmp_path):
    # the last tasks to start are the cheapest, so no worker ends the run alone on a large series
    from dicomml.distributed.run import _largest_first

    sources = dicomml.pipeline.series_sources(cohort, ct_1mm, where=f"series_key <> '{four_d_key}'")
    ordered = _largest_first(cohort, ct_1mm, sources)
    assert sorted(s.series_key for s in ordered) == sorted(s.series_key for s in sources)
    report = dicomml.preprocess(cohort, ct_1mm, tmp_path / "c", where=f"series_key <> '{four_d_key}'", workers=0, progress=False)
    cache = Cache(tmp_path / "c")
    series = cohort.series.set_index("series_key")
    actual = {  # voxels read plus voxels written, from the entries the run made
        key: int(series.loc[key, "rows"] * series.loc[key, "columns"] * series.loc[key, "n_slices"]) + int(np.prod(cache.open(c).shape))
        for key, c in zip(report.table["series_key"], report.table["cache_key"])
    }
    costs = [actual[s.series_key] for s in ordered]
    assert costs[0] == max(costs) and costs[-1] == min(costs) and costs != sorted(costs)


def test_a_rerun_with_everything_cached_says_so_and_starts_no_cluster(cohort, ct_1mm, four_d_key, tmp_path, capsys, monkeypatch):
    import dicomml.distributed.run

    argv = [
        "preprocess",
        str(cohort.path),
        "--config",
        "ct_1mm",
        "--cache",
        str(tmp_path / "c"),
        "--where",
        f"series_key <> '{four_d_key}'",
    ]
    main([*argv, "--workers", "0", "--quiet"])
    capsys.readouterr()

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started with nothing to do")

    monkeypatch.setattr(dicomml.distributed.run, "local_cluster", no_cluster)
    started = time.perf_counter()
    main(argv)  # the default, a local cluster, when there is work
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    n = len(dicomml.pipeline.series_sources(cohort, ct_1mm, where=f"series_key <> '{four_d_key}'"))
    assert f"all {n} selected series are already in the cache" in err and f"0 done, {n} skipped, 0 failed" in err
    assert seconds < 5  # a cluster's start alone takes longer; well under a second on an idle machine


def test_the_cli_fills_threads_and_worker_env_from_the_environment(cohort, tmp_path, monkeypatch):
    import dicomml.distributed

    seen = {}  # the CLI imports preprocess from the package when it runs
    monkeypatch.setattr(dicomml.distributed, "preprocess", lambda *args, **kwargs: seen.update(kwargs) or _Report())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    argv = ["preprocess", str(cohort.path), "--config", "x.yaml", "--cache", str(tmp_path / "c")]
    main(argv)
    assert seen["threads"] == 3 and seen["worker_env"] == {"MALLOC_TRIM_THRESHOLD_": "131072"}
    main([*argv, "--threads", "2"])  # an explicit argument wins
    assert seen["threads"] == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    main(argv)
    assert seen["threads"] is None and seen["worker_env"] == {}
    assert seen["max_voxels"] is None  # the config's max_voxels stays
    monkeypatch.setenv("DICOMML_MAX_VOXELS", "4000000000")
    main(argv)
    assert seen["max_voxels"] == 4_000_000_000
    main([*argv, "--max-voxels", "5"])  # an explicit argument wins
    assert seen["max_voxels"] == 5


class _Report:
    def summary(self) -> str:
        return ""


def test_cli_takes_a_preset_name_from_any_folder(cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository root: the preset ships inside the package
    key = cohort.sql("SELECT series_key FROM series WHERE modality = 'CT' AND n_slices = 80")["series_key"].iloc[0]
    where = f"series_key = '{key}'"
    main(["preprocess", str(cohort.path), "--config", "ct_seg", "--cache", "c", "--workers", "0", "--where", where, "--quiet"])
    entries = Cache(tmp_path / "c").keys()
    entry = Cache(tmp_path / "c").open(entries[0])
    assert len(entries) == 1 and entry.meta["config_name"] == "ct_seg" and entry.has_mask


# A file may hold at most 4096 bytes in the child (RLIMIT_FSIZE, SIGXFSZ ignored): a real failed write, as a full disk.
_REPORT_TOO_BIG = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
import fsspec
from dicomml.distributed.report import write_report
from dicomml.errors import OutputError
fs, path = fsspec.core.url_to_fs(sys.argv[1])
try:
    write_report([{"series_key": os.urandom(8).hex(), "status": "failed", "message": os.urandom(64).hex()} for _ in range(100)], fs, path)
except OutputError as exc:
    print(exc)
"""


def test_a_report_that_cannot_be_written_is_one_output_error_and_leaves_nothing(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "reports" / "report.parquet"
    result = subprocess.run([sys.executable, "-c", _REPORT_TOO_BIG, str(path)], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == f"{path}: cannot write the run report (File too large)", result.stdout + result.stderr
    assert list(path.parent.iterdir()) == []

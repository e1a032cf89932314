"""Runs that do not finish, runs that overlap, manifests that are damaged, and sources that change between runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import dicomml
import dicomml.indexer.series as series_module
from dicomml.cli.main import main
from dicomml.errors import ManifestError

SERIES = "dcm_qa_philips_enh/In/cl"  # 40 classic MR files, one series
CT = "dcmqi/data/segmentations/ct-3slice"  # 3 CT files
SMALL = "dcmqi/data/segmentations/24x38x3/image"  # 3 CT files


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``dicomml ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_rerun_after_one_interrupted_while_deriving_series_rebuilds_them(
    data_dir: Path, tmp_path: Path, salt: str, monkeypatch: pytest.MonkeyPatch
):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    for gone in sorted(tree.iterdir())[:2]:
        gone.unlink()

    def interrupted(con: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C once the instance rows are updated, before the series are

    with monkeypatch.context() as patch:
        patch.setattr(series_module, "series_table", interrupted)
        with pytest.raises(KeyboardInterrupt):
            dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert not dicomml.Manifest(out).complete
    rerun = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert rerun.meta["last_run"]["files_read"] == 0 and rerun.meta["last_run"]["rows_removed"] == 0
    assert rerun.complete and len(rerun.instances) == 38
    assert list(rerun.series.n_files) == [38] and rerun.meta["counts"]["series"] == 1


# Ctrl-C (a real SIGINT, from a timer thread) while DuckDB derives the series. One DuckDB thread: the calling
# thread then runs the query's tasks and checks for a signal between them (other threads' tasks run uninterrupted).
_CTRL_C_IN_QUERY = """
import os, signal, sys, threading
import dicomml.indexer.series as series
from dicomml.cli.main import main
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even if this job started with SIGINT ignored
def slow(con):
    con.execute("SET threads = 1")
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    con.execute("SELECT count(*) FROM range(1000000000000)").fetchall()
series.series_table = slow
main(["index", sys.argv[1], "-o", sys.argv[2], "--salt", sys.argv[3], "--quiet", "--workers", "1"])
"""


def test_ctrl_c_while_deriving_series_aborts_with_130_and_info_says_incomplete(
    data_dir: Path, tmp_path: Path, salt: str, capsys: pytest.CaptureFixture[str]
):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / SERIES, tree)
    result = subprocess.run([sys.executable, "-c", _CTRL_C_IN_QUERY, str(tree), str(out), salt], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "dicomml: aborted" and "Traceback" not in result.stderr
    status, text, _ = _cli(capsys, "info", str(out))
    assert status == 0 and "incomplete: the last dicomml index into it has not finished" in text
    rerun = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert list(rerun.series.n_files) == [40]
    status, text, _ = _cli(capsys, "info", str(out))
    assert status == 0 and "incomplete" not in text


# Holds the manifest's lock as a run does, and forks a worker as a run does, until killed.
_HOLDER = """
import multiprocessing, sys, time
from dicomml.indexer.privacy import resolve_salt, salt_id
from dicomml.indexer.store import ManifestStore
store = ManifestStore.open(sys.argv[1], include_phi=False, salt_id=salt_id(resolve_salt(sys.argv[2])))
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(120,), daemon=True)
worker.start()
print(worker.pid, flush=True)
sys.stdin.read()
"""


def test_a_second_run_into_a_manifest_being_updated_is_refused_until_the_first_process_ends(
    data_dir: Path, tmp_path: Path, salt: str, capsys: pytest.CaptureFixture[str]
):
    tree, out = tmp_path / "tree", tmp_path / "m"
    shutil.copytree(data_dir / CT, tree)
    dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    (tree / "01.dcm").touch()  # a change: a run that got through would read it again
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), salt], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    worker = int(holder.stdout.readline())
    try:
        with pytest.raises(ManifestError, match="another dicomml index is updating it"):
            dicomml.index(tree, out, workers=1, salt=salt, progress=False)
        status, _, err = _cli(capsys, "index", str(tree), "-o", str(out), "--salt", salt, "--quiet", "--workers", "1")
        assert status == 1 and err.strip() == (
            f"dicomml: error: {out}: another dicomml index is updating it; wait until that run ends, or index into another folder"
        )
        assert len(dicomml.Manifest(out).instances) == 3  # readers take no lock
    finally:
        holder.send_signal(signal.SIGKILL)  # killed, not closed: the OS releases its lock
        holder.wait()
    try:
        os.kill(worker, 0)  # its forked worker lives on, without the lock
        rerun = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    finally:
        os.kill(worker, signal.SIGKILL)
    assert rerun.meta["last_run"]["files_read"] == 1
    assert len(rerun.instances) == 3 and rerun.instances.path.is_unique


@pytest.fixture(scope="module")
def built(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete manifest of the 40 MR files (copied by each test that damages it)."""
    root = tmp_path_factory.mktemp("built")
    shutil.copytree(data_dir / SERIES, root / "tree")
    dicomml.index(root / "tree", root / "m", workers=1, salt="dicomml tests", progress=False)
    return root / "m"


def _broken_json(m: Path) -> Path:
    (m / "manifest.json").write_text('{"schema_version": 4, "include_phi": fa')
    return m / "manifest.json"


def _json_list(m: Path) -> Path:
    (m / "manifest.json").write_text("[]")
    return m / "manifest.json"


def _truncated_instances(m: Path) -> Path:
    part = sorted((m / "instances").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:300])
    return part


def _garbage_series(m: Path) -> Path:
    part = m / "series" / "part-0.parquet"
    part.write_text("garbage\n")
    return part


@pytest.mark.parametrize("damage", [_broken_json, _json_list, _truncated_instances, _garbage_series])
def test_a_damaged_manifest_is_one_error_naming_the_file_and_the_way_out(
    built: Path, data_dir: Path, tmp_path: Path, salt: str, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], Path]
):
    m = tmp_path / "m"
    shutil.copytree(built, m)
    damaged = damage(m)
    expected = f"{damaged}: the manifest is damaged ("
    way_out = f"delete the manifest folder {m} and index again"
    with pytest.raises(ManifestError) as caught:
        manifest = dicomml.Manifest(m)
        manifest.table("instances"), manifest.table("series")
    assert str(caught.value).startswith(expected) and str(caught.value).endswith(way_out)
    shutil.copytree(data_dir / SERIES, tmp_path / "tree")  # new paths: the rerun diffs against every partition
    for args in (["info", str(m)], ["list", str(m)], ["index", str(tmp_path / "tree"), "-o", str(m), "--salt", salt, "--quiet"]):
        status, _, err = _cli(capsys, *args)
        [line] = err.strip().splitlines()
        assert status == 1 and line.startswith(f"dicomml: error: {expected}") and line.endswith(way_out), (args, err)


def test_a_run_naming_other_sources_says_how_many_rows_of_the_old_ones_it_dropped(
    data_dir: Path, tmp_path: Path, salt: str, capsys: pytest.CaptureFixture[str]
):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "m"
    shutil.copytree(data_dir / CT, first)
    shutil.copytree(data_dir / SMALL, second)
    index = ["-o", str(out), "--salt", salt, "--quiet", "--workers", "1"]
    assert _cli(capsys, "index", str(first), str(second), *index)[0] == 0
    sorted(second.iterdir())[0].unlink()  # one file deleted, and the first folder no longer named
    status, text, _ = _cli(capsys, "index", str(second), *index)
    assert status == 0 and "4 stale rows dropped" in text and "; 3 rows of sources no longer named dropped" in text
    assert {Path(p).parent for p in dicomml.Manifest(out).instances.path} == {second}
    sorted(second.iterdir())[0].unlink()  # the same source again: a deleted file only
    status, text, _ = _cli(capsys, "index", str(second), *index)
    assert status == 0 and "1 stale rows dropped" in text and "no longer named" not in text

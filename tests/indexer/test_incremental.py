"""Reruns read only what changed; an interrupted run resumes; sources are never written to."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dicomml

SERIES = "dcm_qa_philips_enh/In/cl"  # 40 classic MR files


def _copy(data_dir: Path, tree: Path) -> Path:
    shutil.copytree(data_dir / SERIES, tree)
    return tree


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_rerun_reads_only_new_and_changed_files_and_drops_deleted(data_dir: Path, tmp_path: Path, salt: str):
    tree = _copy(data_dir, tmp_path / "tree")
    out = tmp_path / "m"
    first = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert first.meta["last_run"]["files_read"] == 40 and len(first.instances) == 40
    again = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert again.meta["last_run"]["files_read"] == 0 and len(again.instances) == 40

    files = sorted(tree.iterdir())
    files[0].unlink()  # deleted
    stat = files[1].stat()
    os.utime(files[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: mtime changed
    shutil.copy(data_dir / "dcmqi/data/segmentations/24x38x3/image/IMG0001.dcm", tree / "new.dcm")  # new
    (tree / "junk.dcm").write_bytes(b"not dicom")  # new and bad
    third = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    run = third.meta["last_run"]
    assert run["files_read"] == 3 and run["rows_removed"] == 2
    paths = set(third.instances.path)
    assert str(files[0]) not in paths and str(files[1]) in paths and str(tree / "new.dcm") in paths
    assert len(third.instances) == 40 and third.instances.path.is_unique
    assert list(third.errors.path) == [str(tree / "junk.dcm")]
    assert set(third.series.n_files) == {39, 1}

    (tree / "junk.dcm").unlink()  # an error row leaves with its file
    fourth = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert fourth.errors.empty and fourth.meta["last_run"]["files_read"] == 0


_INTERRUPTIBLE = """
import sys
import dicomml.indexer.run as run
import dicomml.indexer.scan as scan
run.PARTITION_ROWS = 20  # flush often, so that a kill leaves finished partitions
run.BATCH_FILES = 10
slow = scan.scan_batch
def paced(*args):
    import time; time.sleep(0.3)
    return slow(*args)
scan.scan_batch = paced
run.index(sys.argv[1], sys.argv[2], workers=1, salt=sys.argv[3], progress=False)
"""


def test_interrupted_run_resumes_without_reading_finished_files(data_dir: Path, tmp_path: Path, salt: str):
    tree = tmp_path / "tree"
    for name in ("a", "b", "c"):
        _copy(data_dir, tree / name)  # 120 files
    out = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE, str(tree), str(out), salt])
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "instances").glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "instances").glob("part-*.parquet")))
    assert done >= 2 and not (out / "series" / "part-0.parquet").exists()
    resumed = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    run = resumed.meta["last_run"]
    assert 0 < run["files_read"] <= 120 - 20 * done
    assert len(resumed.instances) == 120 and resumed.instances.path.is_unique
    assert len(resumed.series) == 3 and resumed.series.usable.all()


# The child may write files of at most FSIZE bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so a longer write fails with EFBIG):
# a real write failure of the manifest's own files, as on a full disk.
_SMALL_FILES = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[4]), int(sys.argv[4])))
from dicomml.cli.main import main
main(["index", sys.argv[1], "-o", sys.argv[2], "--salt", sys.argv[3], "--quiet", "--workers", "1"])
"""


def test_a_manifest_that_cannot_be_written_is_one_error_and_a_rerun_completes(data_dir: Path, tmp_path: Path, salt: str):
    tree = _copy(data_dir, tmp_path / "tree")
    out = tmp_path / "m"
    failed = subprocess.run([sys.executable, "-c", _SMALL_FILES, str(tree), str(out), salt, "4096"], capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith(f"dicomml: error: {out}: the manifest could not be updated (") and "rerun" in line
    assert not [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]  # no fragment left
    resumed = dicomml.index(tree, out, workers=1, salt=salt, progress=False)
    assert len(resumed.instances) == 40 and resumed.instances.path.is_unique and resumed.series.usable.all()


def test_source_tree_is_never_written(data_dir: Path, tmp_path: Path, salt: str):
    tree = _copy(data_dir, tmp_path / "tree")
    before = _snapshot(tree)
    dicomml.index(tree, tmp_path / "m", workers=2, salt=salt, progress=False)
    dicomml.index(tree, tmp_path / "m", workers=2, salt=salt, progress=False)
    assert _snapshot(tree) == before
    assert sorted(p.name for p in tree.iterdir()) == sorted(Path(p).name for p in before)


def test_index_of_the_read_only_corpus_leaves_it_unchanged(corpus_manifest, data_dir: Path):
    # The corpus folder is read-only (r-x); indexing it (the session fixture) wrote nothing there.
    assert not os.access(data_dir / "dcmqi", os.W_OK) or os.geteuid() == 0
    assert not list(data_dir.rglob("*.parquet")) and not list(data_dir.rglob("manifest.json"))


def test_other_include_phi_or_salt_is_refused(data_dir: Path, tmp_path: Path, salt: str):
    tree = _copy(data_dir, tmp_path / "tree")
    dicomml.index(tree, tmp_path / "m", workers=1, salt=salt, progress=False)
    with pytest.raises(dicomml.errors.ManifestError, match="include_phi"):
        dicomml.index(tree, tmp_path / "m", workers=1, salt=salt, include_phi=True, progress=False)
    with pytest.raises(dicomml.errors.ManifestError, match="salt_id"):
        dicomml.index(tree, tmp_path / "m", workers=1, salt="another", progress=False)


def test_sources_named_twice_or_nested_list_each_file_once(data_dir: Path, tmp_path: Path):
    """A folder named twice, with its parent, or with file:// URLs of its files gave every such file two rows."""
    from dicomml.sources import ObjectList

    tree = tmp_path / "tree"
    shutil.copytree(data_dir / "dcm_qa_philips_enh/In/cl", tree / "cl")
    files = sorted((tree / "cl").iterdir())
    once = dicomml.index(tree, tmp_path / "once", workers=1, salt="s", progress=False)
    for name, sources in {
        "twice": [tree, f"{tree}/./"],
        "nested": [tree / "cl", tree],
        "urls": [tree, ObjectList([f"file://{p}" for p in files[:5]])],
    }.items():
        m = dicomml.index(sources, tmp_path / name, workers=1, salt="s", progress=False)
        assert len(m.instances) == len(once.instances) == m.meta["last_run"]["files_listed"] == 40, name
        assert m.instances.path.is_unique and m.series.usable.all() and (m.series.n_volumes == 1).all(), name

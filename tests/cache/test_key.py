"""The cache key follows the source files' content and the deterministic config, nothing else."""

from __future__ import annotations

import os
import shutil

import pydicom

from dicomml.cache import entry_key, source_fingerprint
from dicomml.config import PRESET_DIR, PipelineConfig, load_config


def _files(paths):
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID, st.st_size, st.st_mtime))
    return out


def _series(data_dir, corpus_index, n=3):
    row = corpus_index[(corpus_index.modality == "CT") & (corpus_index.n_files.astype(int) >= n)].iloc[0]
    return sorted(p for p in (data_dir / row.folder).iterdir() if p.is_file())[:n]


def test_changed_mtime_gives_a_new_key(tmp_path, data_dir, corpus_index):
    config = load_config(PRESET_DIR / "ct_1mm.yaml")
    copies = [shutil.copy2(p, tmp_path / p.name) for p in _series(data_dir, corpus_index)]
    before = entry_key(source_fingerprint(_files(copies)), config)
    assert before == entry_key(source_fingerprint(_files(copies)), config)
    st = os.stat(copies[1])
    os.utime(copies[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert entry_key(source_fingerprint(_files(copies)), config) != before


def test_key_ignores_path_and_order_but_not_size(tmp_path, data_dir, corpus_index):
    config = load_config(PRESET_DIR / "ct_1mm.yaml")
    originals = _series(data_dir, corpus_index)
    files = _files(originals)
    moved = [shutil.copy2(p, tmp_path / f"renamed_{i}.dcm") for i, p in enumerate(originals)]
    assert entry_key(source_fingerprint(_files(moved)[::-1]), config) == entry_key(source_fingerprint(files), config)
    uid, size, mtime = files[0]
    assert source_fingerprint([(uid, size + 1, mtime), *files[1:]]) != source_fingerprint(files)


def test_key_follows_the_deterministic_config_only():
    fp = source_fingerprint([("1.2.3", 10, 1.0)])
    ct = load_config(PRESET_DIR / "ct_1mm.yaml")
    head = load_config(PRESET_DIR / "head_ct_3window.yaml")  # same geometry and dtype, other windows
    assert entry_key(fp, ct) == entry_key(fp, head)
    other = PipelineConfig.from_dict({**ct.to_dict(), "deterministic": {**ct.to_dict()["deterministic"], "spacing": [1.5, 1.5, 1.5]}})
    assert entry_key(fp, other) != entry_key(fp, ct)

"""A cache URL whose protocol is unknown, or whose fsspec package is missing, is one line of a dicomml error (the
bucket source's, from one place), never fsspec's ValueError or ImportError with a traceback."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import dicomml
from dicomml.cli.main import main
from dicomml.errors import CacheError, MissingDependencyError
from dicomml.imaging2d.synthetic import write_image2d

UNKNOWN = "s4://bucket/c: fsspec cannot open it (Protocol not known: s4); check the URL and its options"


def _without(monkeypatch, package: str, *protocols: str) -> None:
    """Act as if ``package`` were not installed, and fsspec had not imported it yet."""
    monkeypatch.setitem(sys.modules, package, None)
    for protocol in protocols:
        monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, protocol, raising=False)


def _error_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1, err
    [line] = err.strip().splitlines()
    return line


def test_an_unknown_protocol_is_a_cache_error():
    with pytest.raises(CacheError, match=f"^{re.escape(UNKNOWN)}$") as raised:
        dicomml.Cache("s4://bucket/c")
    assert raised.value.path == "s4://bucket/c"


@pytest.mark.parametrize(
    ("package", "protocols", "url", "extra"),
    [("s3fs", ("s3", "s3a"), "s3://bucket/c", "s3"), ("gcsfs", ("gs", "gcs"), "gs://bucket/c", "gcs")],
)
def test_a_missing_bucket_package_names_its_extra(monkeypatch, package, protocols, url, extra):
    _without(monkeypatch, package, *protocols)
    with pytest.raises(
        MissingDependencyError, match=f"^{url}: reading .* needs a package that is not installed; pip install 'dicomml\\[{extra}\\]'$"
    ):
        dicomml.Cache(url)


@pytest.mark.parametrize("action", ["info", "verify", "gc"])
def test_cache_commands_say_an_unknown_protocol_in_one_line(action, capsys):
    assert _error_line(["cache", action, "s4://bucket/c"], capsys) == f"dicomml: error: {UNKNOWN}"


def test_cache_info_says_a_missing_gcsfs_in_one_line(monkeypatch, capsys):
    _without(monkeypatch, "gcsfs", "gs", "gcs")
    assert _error_line(["cache", "info", "gs://bucket/c"], capsys).endswith("pip install 'dicomml[gcs]'")


def test_preprocess_says_a_missing_s3fs_of_its_cache_in_one_line(monkeypatch, tmp_path, capsys):
    write_image2d(tmp_path / "dicom" / "dx.dcm", np.zeros((16, 16), np.uint16), modality="DX")
    dicomml.index(tmp_path / "dicom", tmp_path / "manifest", workers=1, progress=False)
    _without(monkeypatch, "s3fs", "s3", "s3a")
    argv = ["preprocess", str(tmp_path / "manifest"), "--config", "ct_seg", "--workers", "0", "--quiet", "--cache"]
    line = _error_line([*argv, "s3://bucket/c"], capsys)
    assert line == "dicomml: error: s3://bucket/c: reading s3:// URLs needs a package that is not installed; pip install 'dicomml[s3]'"
    assert _error_line([*argv, "s4://bucket/c"], capsys) == f"dicomml: error: {UNKNOWN}"

"""An empty salt makes ``patient_key`` a plain hash of the PatientID, which anyone can recompute from guessed IDs: it is
refused, given or stored, and the CLI says so of an empty ``$DICOMML_SALT``. The salt never shows in a repr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dicomml
from dicomml.errors import ConfigError
from dicomml.indexer.privacy import resolve_salt
from dicomml.indexer.scan import ScanOptions

FOLDER = "dcmqi/data/segmentations/24x38x3/image"


@pytest.mark.parametrize("salt", ["", b"", "  "])
def test_an_empty_salt_is_refused(salt, tmp_path):
    with pytest.raises(ConfigError, match="the salt is empty"):
        resolve_salt(salt, config_dir=tmp_path)


@pytest.mark.parametrize("stored", [b"", b" \n"])
def test_an_empty_stored_salt_is_refused_naming_its_file(stored, tmp_path):
    (tmp_path / "salt").write_bytes(stored)
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'salt'}: the stored salt is empty.*delete the file"):
        resolve_salt(config_dir=tmp_path)


def test_index_refuses_an_empty_salt_before_writing_a_manifest(data_dir, tmp_path):
    with pytest.raises(ConfigError):
        dicomml.index(data_dir / FOLDER, tmp_path / "m", workers=1, salt="", progress=False)
    assert not (tmp_path / "m").exists()


def _index_cli(data_dir, tmp_path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", "index", str(data_dir / FOLDER)]
    command += ["-o", str(tmp_path / "m"), "--workers", "1", "--quiet", *args]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def test_the_cli_refuses_an_empty_salt_option_and_an_empty_environment_variable(data_dir, tmp_path):
    home = {"HOME": str(tmp_path / "home")}  # a stored salt would be made there, never in the user's home
    given = _index_cli(data_dir, tmp_path, "--salt", "", env=home)
    assert given.returncode == 1 and "the salt is empty" in given.stderr and given.stderr.strip().count("\n") == 0
    empty = _index_cli(data_dir, tmp_path, env={**home, "DICOMML_SALT": ""})
    assert empty.returncode == 1 and "$DICOMML_SALT is set but empty" in empty.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "home").exists()


def test_scan_options_do_not_show_the_salt():
    assert "LEAKSALT" not in repr(ScanOptions(include_phi=False, salt=b"LEAKSALT"))


def test_the_stored_salt_is_named_only_once_written_whole(tmp_path, monkeypatch):
    """The file was created empty, then written: a second process finding it in between read an empty salt."""
    from dicomml.indexer import privacy

    seen: list[bytes] = []
    real_link = os.link

    def link(draft, path):
        seen.append(open(draft, "rb").read())  # what a reader would find, the moment the name appears
        return real_link(draft, path)

    monkeypatch.setattr(privacy.os, "link", link)
    salt = resolve_salt(config_dir=tmp_path)
    assert seen == [salt] and len(salt) == 64
    assert [p.name for p in tmp_path.iterdir()] == ["salt"]  # no draft left beside it

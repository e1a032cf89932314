"""`dicomml studies`: per-role counts on the cohort, a one-line error for a bad predicate."""

from __future__ import annotations

import subprocess
import sys

import yaml


def _run(*args):
    command = [sys.executable, "-c", "from dicomml.cli.main import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)


def _config(tmp_path, where_t2="series_description LIKE 't2%'"):
    path = tmp_path / "roles.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "brain",
                "roles": {
                    "t1": {"where": "series_description = 't1'"},
                    "t2": {"where": where_t2},
                    "flair": {"where": "series_description = 'flair'"},
                },
                "reference": "t1",
            },
            sort_keys=False,
        )
    )  # roles are channels in the file's order
    return path


def test_prints_matched_ambiguous_missing_per_role(cohort, tmp_path):
    out = _run("studies", str(cohort.path), "--config", str(_config(tmp_path)))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("brain: 3 studies, 1 make a sample")
    assert lines[2].split() == ["t1", "2", "0", "0", "1"]
    assert lines[3].split() == ["t2", "2", "1", "0", "0"]
    assert lines[4].split() == ["flair", "2", "0", "0", "1"]
    assert "flair missing" in out.stdout and "t1 missing" in out.stdout


def test_bad_predicate_is_one_line_and_exit_1(cohort, tmp_path):
    out = _run("studies", str(cohort.path), "--config", str(_config(tmp_path, "nope = 1")))
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "roles.t2.where" in out.stderr


def test_a_cut_list_of_left_out_studies_says_how_many_more(cohort, tmp_path):
    out = _run("studies", str(cohort.path), "--config", str(_config(tmp_path)), "--show-skipped", "1")
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split("left out (2):\n")[1].splitlines()
    assert len(listed) == 2 and listed[1] == "  ... and 1 more (--show-skipped 2 lists them all)"

"""``dicomml --help`` and every ``dicomml <command> --help`` import no heavy library: they are imported to run, not for --help."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from dicomml.cli.main import cli
from dicomml.viz import CONVENTIONS

#: What a ``--help`` must not import: the DICOM, image, dataframe, Parquet, SQL, array-store, tensor and cluster
#: libraries, and the dicomml modules that import them at module level.
HEAVY = [
    "PIL",
    "dask",
    "distributed",
    "duckdb",
    "fsspec",
    "highdicom",
    "matplotlib",
    "monai",
    "nibabel",
    "numcodecs",
    "pandas",
    "pyarrow",
    "pydicom",
    "torch",
    "yaml",
    "zarr",
    "dicomml.assemble",
    "dicomml.cache.store",
    "dicomml.data",
    "dicomml.export",
    "dicomml.imaging2d",
    "dicomml.indexer.manifest",
    "dicomml.pipeline",
    "dicomml.seg",
    "dicomml.sources",
    "dicomml.study",
    "dicomml.viz",
]

#: Runs ``dicomml <command> --help`` for every command and subcommand, then ``dicomml --help``, in one fresh
#: interpreter, and prints as JSON the heavy modules each loaded (modules stay loaded: each call lists the
#: new ones, so a failure names the command whose module imports them).
_HELPS = """
import contextlib, io, json, sys
import click
from dicomml.cli.main import SUBCOMMANDS, cli, main

heavy = json.loads(sys.argv[1])
loaded = {}

def run(argv):
    before = {m for m in heavy if m in sys.modules}
    with contextlib.redirect_stdout(io.StringIO()):
        main([*argv, "--help"])
    loaded[" ".join(argv) or "(dicomml)"] = [m for m in heavy if m in sys.modules and m not in before]

for name in sorted(SUBCOMMANDS):
    run([name])
    command = cli.get_command(click.Context(cli), name)
    if isinstance(command, click.Group):
        for sub in command.list_commands(click.Context(command)):
            run([name, sub])
run([])
print(json.dumps(loaded))
"""


def test_help_of_the_cli_and_of_every_command_imports_no_heavy_library():
    result = subprocess.run([sys.executable, "-c", _HELPS, json.dumps(HEAVY)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert len(loaded) > 12  # the top level, every command, the cache subcommands
    offenders = {argv: modules for argv, modules in loaded.items() if modules}
    assert not offenders, f"--help imported heavy modules: {offenders}"


def test_show_offers_the_display_conventions_that_viz_draws():
    show = cli.get_command(click.Context(cli), "show")
    assert show is not None
    (convention,) = [p for p in show.params if p.name == "convention"]
    assert isinstance(convention.type, click.Choice)
    assert sorted(convention.type.choices) == sorted(CONVENTIONS)

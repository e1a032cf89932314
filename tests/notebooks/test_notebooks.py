"""The notebooks run top to bottom in a real ipykernel (nbclient), on CPU, on the sample data.

Each runs in its own temporary working directory; any cell error fails the
test with that cell's traceback (``CellExecutionError``), including the
training notebook's own check that the loss went down. The committed files
must be exactly what ``notebooks/build.py`` writes: no outputs, no execution
counts.
"""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import matplotlib.image
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
BUILD: dict[str, Any] = runpy.run_path(str(NOTEBOOKS / "build.py"))
#: Seconds one cell may take; the whole of both notebooks takes about 1.5 min on a shared 2-core machine.
CELL_TIMEOUT_S = 600


def _execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in _outputs(nb))


@pytest.mark.parametrize("name", sorted(BUILD["NOTEBOOKS"]))
def test_committed_notebook_is_build_output_without_outputs(name: str) -> None:
    on_disk = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(on_disk)
    code = [cell for cell in on_disk.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert on_disk == BUILD["notebook"](name), f"{name} differs from notebooks/build.py; run `python notebooks/build.py`"


def test_explore_notebook_runs_and_finds_the_damage_it_made(tmp_path: Path) -> None:
    nb = _execute("01_explore_cohort.ipynb", tmp_path)
    out = tmp_path / "nb-out" / "01_explore"
    # three patients, one of whose CTs lost a slice on purpose: exactly that one is not usable
    cohort = pd.read_csv(out / "cohort.csv")
    assert len(cohort) == 3 and cohort.all_usable.tolist().count(False) == 1
    assert set(cohort.modalities) == {"CT, MR"}
    text = _text(nb)
    assert "1 missing slices (gap)" in text and "not_dicom" in text  # unusable reason, errors table
    height, width = matplotlib.image.imread(out / "ct_lesion.png").shape[:2]
    assert height >= 600 and width >= 1000
    assert _figures(nb) == 4  # geometry plots, CT with SEG, three windows, MR


def test_training_notebook_runs_and_its_loss_goes_down(tmp_path: Path) -> None:
    nb = _execute("02_train_segmentation.ipynb", tmp_path)  # the notebook asserts last-5 < first-5 mean loss
    text = _text(nb)
    assert "40 iterations, loss" in text and "Dice on the held-out patient" in text
    assert _figures(nb) == 4  # patches, loss curve, prediction overlay, reference SEG
    assert (tmp_path / "nb-out" / "02_train" / "cache").is_dir()


def test_write_back_notebook_writes_a_seg_highdicom_reads_back(tmp_path: Path) -> None:
    nb = _execute("03_write_back.ipynb", tmp_path)  # the notebook asserts Dice > 0.5 against the reference SEG
    text = _text(nb)
    assert "segment: liver" in text and "Dice against the reference liver" in text
    out = tmp_path / "nb-out" / "03_write_back"
    assert (out / "liver_seg.dcm").is_file() and (out / "liver_rtstruct.dcm").is_file()
    assert _figures(nb) == 1  # the overlay

"""The lazily re-exported names: what type checkers see (TYPE_CHECKING imports) is what runs (``_EXPORTS``)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = [
    "dicomml",
    "dicomml.seg",
    "dicomml.imaging2d",
    "dicomml.dicom",
    "dicomml.geometry",
    "dicomml.study",
    "dicomml.indexer",
    "dicomml.pipeline",
    "dicomml.distributed",
]


def _type_checking_imports(package: str) -> dict[str, str]:
    path = Path(importlib.import_module(package).__file__ or "")
    tree = ast.parse(path.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
    return {alias.name: node.module or "" for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


def _literal_all(package: str) -> list[str]:
    """``__all__`` as written: mkdocstrings reads it without running the module, so it must be a literal list."""
    path = Path(importlib.import_module(package).__file__ or "")
    node = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "__all__")
    return ast.literal_eval(node.value)


@pytest.mark.parametrize("package", PACKAGES)
def test_type_checking_imports_and_lazy_exports_agree(package):
    module = importlib.import_module(package)
    assert _type_checking_imports(package) == module._EXPORTS
    assert module.__all__ == sorted(module._EXPORTS) == _literal_all(package)  # what the API reference reads
    for name in module._EXPORTS:
        assert getattr(module, name) is getattr(importlib.import_module(module._EXPORTS[name]), name)
    assert set(module._EXPORTS) <= set(dir(module))
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_importing_the_packages_imports_none_of_their_names():
    code = "import sys, dicomml, dicomml.seg, dicomml.imaging2d; print(sorted(m for m in ('torch', 'pydicom', 'highdicom') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_a_dataset_over_a_filled_cache_imports_no_dicom_sql_arrow_or_dataframe_library(study, make_config, tmp_path):
    from dicomml.data import SeriesDataset

    _, manifest = study
    config = make_config("ct_1mm")
    filled = SeriesDataset(manifest, config, tmp_path / "cache")
    assert len(filled) >= 1 and all(filled[i]["image"].numel() for i in range(len(filled)))
    code = (
        "import json, sys\nfrom dicomml.data import SeriesDataset\n"
        "ds = SeriesDataset(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], cache_only=True)\n"
        "assert ds[0]['image'].numel()\n"
        "print(sorted(m for m in ('pandas', 'pydicom', 'duckdb', 'nibabel', 'pyarrow') if m in sys.modules))"
    )
    args = [str(manifest.path), json.dumps(config.to_dict()), str(tmp_path / "cache")]
    assert subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout.strip() == "[]"

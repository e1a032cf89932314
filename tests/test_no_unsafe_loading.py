"""Nothing in dicomml unpickles or evaluates stored data (issue: hostile input)."""

from __future__ import annotations

import ast
from pathlib import Path

import dicomml

PACKAGE = Path(dicomml.__file__).parent

#: (module, attribute) calls that deserialize arbitrary objects or run code.
FORBIDDEN_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cPickle", "load"),
    ("cPickle", "loads"),
    ("dill", "load"),
    ("dill", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("joblib", "load"),
    ("marshal", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("torch", "load"),
}
FORBIDDEN_NAMES = {"eval", "exec", "__import__"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
            found.append(f"{path.name}:{node.lineno} {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if (func.value.id, func.attr) in FORBIDDEN_CALLS:
                found.append(f"{path.name}:{node.lineno} {func.value.id}.{func.attr}()")
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{path.name}:{node.lineno} allow_pickle")
    return found


def test_scanner_catches_an_unpickle(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle, numpy as np\npickle.loads(b'')\nnp.load('x', allow_pickle=True)\neval('1')\n")
    assert len(_violations(bad)) == 3


def test_package_never_unpickles_or_evaluates():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 5
    found = [v for f in files for v in _violations(f)]
    assert found == []

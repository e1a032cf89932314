"""Every Python example in README.md and docs/ runs as written, so none can rot.

The ```python blocks of one page run in order, in one namespace, in a fresh
temporary working directory that holds what the pages say a reader has: the
sample study in ``dicom/`` and its manifest in ``manifest/`` (configs are the
presets shipped in the package, named like ``"ct_seg"``). A block on the line
after ``<!-- no-run -->`` is skipped (it
needs a server, a GPU or the reader's own files). A ```text block right after
a Python block is that block's output: what the block prints must equal it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NO_RUN = "<!-- no-run -->"
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, first code line (1-based), code, skip mark."""

    lang: str
    line: int
    code: str
    no_run: bool


def fenced_blocks(text: str) -> list[Block]:
    """The fenced blocks of a Markdown page, dedented to their fence's indentation."""
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        start = _FENCE.match(lines[i])
        if not start or not start.group("lang"):
            i += 1
            continue
        indent = start.group("indent")
        no_run = i > 0 and lines[i - 1].strip() == NO_RUN
        body = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != indent + "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        first = i - len(body) + 1
        blocks.append(Block(start.group("lang"), first, "\n".join(body), no_run))
        i += 1
    return blocks


def _runnable(page: Path) -> bool:
    return any(b.lang == "python" and not b.no_run for b in fenced_blocks(page.read_text()))


def test_fenced_blocks_reads_indented_fences_and_marks() -> None:
    text = "a\n<!-- no-run -->\n```python\nx = 1\n```\n- item\n  ```python\n  y = 2\n  ```\n```text\n3\n```\n"
    blocks = fenced_blocks(text)
    assert [(b.lang, b.line, b.code, b.no_run) for b in blocks] == [
        ("python", 4, "x = 1", True),
        ("python", 8, "y = 2", False),
        ("text", 11, "3", False),
    ]


def test_readme_is_a_short_user_page() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_readme_links_to_pages_that_exist() -> None:
    targets = re.findall(r"\]\(((?:docs/)[^)#\s]+)", (ROOT / "README.md").read_text())
    assert targets, "the README links into the documentation"
    missing = [t for t in targets if not (ROOT / t).is_file()]
    assert not missing, f"README.md links to missing pages: {missing}"


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample study and its manifest, made once per session."""
    import dicomml
    from dicomml.sample import write_sample_study

    root = tmp_path_factory.mktemp("docs-sample")
    write_sample_study(root / "dicom")
    dicomml.index([str(root / "dicom")], str(root / "manifest"), workers=1, progress=False)
    return root


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dicom").symlink_to(sample_root / "dicom", target_is_directory=True)
    shutil.copytree(sample_root / "manifest", tmp_path / "manifest")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    blocks = fenced_blocks(page.read_text())
    where = page.relative_to(ROOT)
    for n, block in enumerate(blocks):
        if block.lang != "python" or block.no_run:
            continue
        # pad with blank lines so a traceback names the page's own line numbers
        code = compile("\n" * (block.line - 1) + block.code, str(where), "exec")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)
        following = blocks[n + 1] if n + 1 < len(blocks) else None
        if following is not None and following.lang == "text" and _adjacent(page, block, following):
            assert printed.getvalue().strip() == following.code.strip(), (
                f"{where}:{following.line}: the shown output differs from what the block prints"
            )


def _adjacent(page: Path, block: Block, following: Block) -> bool:
    """Whether only blank lines separate a block's closing fence from the next block's fence."""
    lines = page.read_text().split("\n")
    end = block.line - 1 + len(block.code.split("\n"))  # index of the closing fence
    return all(not line.strip() for line in lines[end + 1 : following.line - 2])


def test_docstring_sections_have_numpydoc_names() -> None:
    # numpydoc and the API reference's parser know "Examples", not "Example": the latter renders as prose
    wrong = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in sorted((ROOT / "dicomml").rglob("*.py"))
        for text in [path.read_text()]
        for m in re.finditer(r"^ *Example\n *-+$", text, flags=re.M)
    ]
    assert not wrong, f"rename these docstring sections to 'Examples': {wrong}"


def _resolves(dotted: str) -> bool:
    """Whether ``dicomml.a.b.c`` names a module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_dotted_dicomml_names_in_the_docs_exist() -> None:
    pattern = re.compile(r"`(dicomml(?:\.[A-Za-z_]\w*)+)")
    missing = sorted(
        f"{page.relative_to(ROOT)}: {name}" for page in PAGES for name in set(pattern.findall(page.read_text())) if not _resolves(name)
    )
    assert not missing, f"the documentation names objects that do not exist: {missing}"


def test_no_measured_timings_in_the_code() -> None:
    # timings go stale with the next change: they belong in benchmarks/ and docs/benchmarks.md
    timing = re.compile(r"#.*[0-9.]+ ?(ms|s) (vs|->|instead of)|this (2-core )?machine")
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "dicomml").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if timing.search(line)
    ]
    assert not found, f"measured timings in code comments: {found}"

"""What the benchmarks share: the one Markdown table each prints last, in the form docs/benchmarks.md quotes.

The heading names the benchmark; the line under it the machine and the UTC
date, so a table pasted into the documentation says where and when it was
measured. :func:`compile_dicomml` puts dicomml on the footing of installed
peers before processes are timed from interpreter start.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path


def machine() -> str:
    """CPUs, load average, Python and OS of this run, and today's UTC date."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return f"{os.cpu_count()} CPUs, load average {load:.1f} at the end, Python {platform.python_version()}, {platform.system()}, {today}"


def compile_dicomml() -> None:
    """Byte-compile dicomml's modules, as pip does when it installs a wheel (as every peer here was installed).

    An editable checkout may have no ``.pyc`` (``PYTHONDONTWRITEBYTECODE``), and
    then compiles each module at every interpreter start.
    """
    import compileall

    import dicomml

    compileall.compile_dir(Path(dicomml.__file__).parent, quiet=1)


def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print ``### title``, the machine line and a Markdown table (``None`` cells print empty)."""
    print(f"\n### {title}\n\n{machine()}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |")


def ratio(value: float, target: float | None = None, *, at_most: bool = False, of: str = "") -> tuple[str, str]:
    """A ratio cell (``3.32x`` or ``3.32x the loop``) and its target cell (``>= 2.5x: met`` or ``MISSED``)."""
    cell = f"{value:.2f}x" + (f" {of}" if of else "")
    if target is None:
        return cell, ""
    met = value <= target if at_most else value >= target
    return cell, f"{'<=' if at_most else '>='} {target:.3g}x: {'met' if met else 'MISSED'}"

"""The one Markdown table each benchmark prints last, in the form docs/benchmarks.md quotes.

The heading names the benchmark; the line under it the machine and the UTC
date, so a table pasted into the documentation says where and when it was
measured.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterable, Sequence


def machine() -> str:
    """CPUs, load average, Python and OS of this run, and today's UTC date."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return f"{os.cpu_count()} CPUs, load average {load:.1f} at the end, Python {platform.python_version()}, {platform.system()}, {today}"


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

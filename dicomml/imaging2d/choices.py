"""The values a 2D image's display options take (``voi``, ``display``, ``facing``), checked in one place for
:func:`~dicomml.imaging2d.load_image` and :class:`~dicomml.imaging2d.ImageConfig` alike.

Free of pydicom, so that a Dataset reading its cache checks its config without loading the codecs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dicomml.config import did_you_mean
from dicomml.errors import ConfigError

__all__ = ["DISPLAYS", "FACINGS", "check_choice", "checked_voi", "voi_window"]

#: The display conventions ``display=`` takes, and the sides ``facing=`` takes (load_image and ImageConfig alike).
DISPLAYS: tuple[str | None, ...] = (None, "breast", "chest")
FACINGS: tuple[str, ...] = ("right", "left")


def check_choice(owner: str, name: str, value: Any, allowed: tuple[str | None, ...]) -> None:
    """A one-line :class:`~dicomml.errors.ConfigError` naming ``owner``'s parameter ``name`` unless ``value`` is allowed."""
    if value not in allowed:
        raise ConfigError(f"{owner}({name}={value!r}): {name} must be one of {', '.join(map(repr, allowed))}{did_you_mean(value, allowed)}")


def checked_voi(owner: str, voi: Any) -> str | int | tuple[float, float]:
    """``voi`` checked for ``owner`` (``"load_image"``, ``"ImageConfig"``), a window as two floats (a YAML list and a
    Python tuple hash alike); a preset name stays a name (:func:`voi_window` resolves it).

    Raises
    ------
    ConfigError
        Unless ``voi`` is ``"header"``, ``"none"``, a preset name, an index >= 0 or (center, width) with width > 0.
    """
    from dicomml.transforms import WINDOW_PRESETS  # torch: imported when a config is checked, not with this module
    from dicomml.transforms.base import check_int, check_number

    if isinstance(voi, str):
        if voi not in ("header", "none", *WINDOW_PRESETS):
            raise ConfigError(f"{owner}(voi={voi!r}): voi must be 'header', 'none' or a preset of {sorted(WINDOW_PRESETS)}")
        return voi
    if isinstance(voi, (tuple, list)) and len(voi) == 2:
        center = check_number(owner, "voi[0]", voi[0], "(the window center)")
        return center, check_number(owner, "voi[1]", voi[1], "> 0 (the window width)", lambda w: w > 0)
    if isinstance(voi, (int, np.integer)) and not isinstance(voi, bool):
        return check_int(owner, "voi", voi, ">= 0 (an index of the header's windows and tables)", lambda n: n >= 0)
    raise ConfigError(f"{owner}(voi={voi!r}): voi must be 'header', 'none', a preset name, an index >= 0 or (center, width)")


def voi_window(voi: str | int | tuple[float, float]) -> str | int | tuple[float, float]:
    """A checked ``voi`` with a preset name resolved to its (center, width)."""
    if isinstance(voi, str) and voi not in ("header", "none"):
        from dicomml.transforms import WINDOW_PRESETS

        spec = WINDOW_PRESETS[voi]
        return (spec.center, spec.width)
    return voi

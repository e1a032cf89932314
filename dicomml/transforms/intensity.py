"""Intensity transforms: windows, HU clipping and scaling, z-normalization, jitter.

They change image entries only; label maps (:class:`~dicomml.transforms.Mask`)
pass through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dicomml.config import WindowSpec
from dicomml.errors import ConfigError
from dicomml.transforms.base import RandomTransform, Transform, check_int, check_number, check_probability, check_seed
from dicomml.transforms.functional.intensity import VOI_FUNCTIONS, clip_integers, floating, scale_intensity, to_uint8, window, znormalize

__all__ = [
    "ClipIntensity",
    "HeaderWindow",
    "MultiWindow",
    "RandomIntensity",
    "RandomNoise",
    "ScaleIntensity",
    "WINDOW_PRESETS",
    "Window",
    "ZNormalize",
]

#: Named CT windows (center, width in HU), after Radiopaedia's "Windowing (CT)".
WINDOW_PRESETS: dict[str, WindowSpec] = {
    spec.name: spec
    for spec in (
        WindowSpec(40, 80, "brain"),
        WindowSpec(80, 200, "subdural"),
        WindowSpec(40, 40, "stroke"),
        WindowSpec(600, 2800, "bone"),
        WindowSpec(-600, 1500, "lung"),
        WindowSpec(50, 350, "mediastinum"),
        WindowSpec(50, 400, "abdomen"),
        WindowSpec(30, 150, "liver"),
        WindowSpec(40, 400, "soft_tissue"),
    )
}

#: A window given as a preset name, ``(center, width)`` or a :class:`~dicomml.config.WindowSpec`.
WindowLike = str | Sequence[float] | WindowSpec

_OUTPUTS = ("float", "uint8")


def _spec(window_like: WindowLike) -> WindowSpec:
    if isinstance(window_like, WindowSpec):
        return window_like
    if isinstance(window_like, str):
        if window_like not in WINDOW_PRESETS:
            raise ConfigError(f"window preset {window_like!r} is unknown; use one of {sorted(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[window_like]
    if not isinstance(window_like, (Sequence, np.ndarray)) or len(window_like) != 2:
        raise ConfigError(f"window {window_like!r}: give a preset name, (center, width) or a WindowSpec")
    center, width = window_like[0], window_like[1]
    return WindowSpec(check_number("window", "center", center), check_number("window", "width", width))


def _check_output(output: str) -> None:
    if output not in _OUTPUTS:
        raise ConfigError(f"output={output!r} is not one of {_OUTPUTS}")


def _stack(x: torch.Tensor, windows: Sequence[tuple[float, float]], function: str, output: str) -> torch.Tensor:
    y = torch.cat([window(x, c, w, function) for c, w in windows], dim=0)
    return to_uint8(y) if output == "uint8" else y


class Window(Transform):
    """One intensity window, output in [0, 1] (or uint8 0..255).

    Parameters
    ----------
    center, width
        Window center and width in the image's units (HU for CT).
    function
        VOI LUT function: ``"LINEAR_EXACT"`` (default: linear over
        ``[center - width/2, center + width/2]``, the usual ML window),
        ``"LINEAR"`` or ``"SIGMOID"`` as DICOM PS3.3 C.11.2.1.2 defines them.
    output
        ``"float"`` or ``"uint8"``.

    Examples
    --------
    >>> Window(40, 80)(torch.tensor([[[[0.0, 40.0, 80.0]]]])).tolist()
    [[[[0.0, 0.5, 1.0]]]]
    >>> Window.preset("lung").center
    -600.0
    """

    pointwise = True

    def __init__(self, center: float, width: float, function: str = "LINEAR_EXACT", output: str = "float") -> None:
        _check_output(output)
        self.center, self.width = check_number("Window", "center", center), check_number("Window", "width", width)
        self.function, self.output = function, output
        window(torch.zeros(1), self.center, self.width, function)  # validates width and function now

    @classmethod
    def preset(cls, name: str, output: str = "float") -> Window:
        """The window of a :data:`WINDOW_PRESETS` name.

        Raises
        ------
        ConfigError
            For an unknown name.
        """
        spec = _spec(name)
        return cls(spec.center, spec.width, output=output)

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return _stack(x, [(self.center, self.width)], self.function, self.output)


class MultiWindow(Transform):
    """Several windows stacked as channels (RSNA head-CT style: brain, subdural, bone).

    A ``C``-channel image gives ``C * len(windows)`` channels, window-major:
    all channels under the first window, then under the second, and so on.

    Parameters
    ----------
    windows
        Preset names, ``(center, width)`` pairs or ``WindowSpec`` objects.
    function, output
        As for :class:`Window`.

    Examples
    --------
    >>> MultiWindow(["brain", "subdural", "bone"])(torch.zeros(1, 2, 2, 2)).shape
    torch.Size([3, 2, 2, 2])
    """

    pointwise = True

    def __init__(self, windows: Sequence[WindowLike], function: str = "LINEAR_EXACT", output: str = "float") -> None:
        _check_output(output)
        if isinstance(windows, (str, WindowSpec)) or not isinstance(windows, (Sequence, np.ndarray)):
            raise ConfigError(f"MultiWindow(windows={windows!r}): give a list of windows, e.g. ['brain', 'subdural', 'bone']")
        specs = [_spec(w) for w in windows]
        if not specs:
            raise ConfigError("MultiWindow needs at least one window")
        self.windows = [(s.center, s.width) for s in specs]
        self.function, self.output = function, output
        for c, w in self.windows:
            window(torch.zeros(1), c, w, function)

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return _stack(x, self.windows, self.function, self.output)


class HeaderWindow(Transform):
    """The series' own VOI window(s), read from ``meta`` as assembly recorded them.

    Uses ``meta["window_center"]`` and ``meta["window_width"]`` (one value or
    a list, DICOM (0028,1050) / (0028,1051), times ``meta["window_scale"]``
    where assembly put the voxels on another scale than the header's display
    values: Philips' floating point) and ``meta["voi_lut_function"]``
    ((0028,1056); LINEAR when absent, as the standard says).

    Parameters
    ----------
    index
        Which of several windows to use; ``None`` stacks them all as channels.
    output
        ``"float"`` ([0, 1]) or ``"uint8"``.

    Raises
    ------
    ConfigError
        When called on a sample whose meta has no window, or whose centers
        and widths differ in number.

    Examples
    --------
    >>> s = {"image": torch.tensor([[[[0.0, 40.0, 80.0]]]]), "meta": {"window_center": [40.5], "window_width": [81]}}
    >>> HeaderWindow()(s)["image"].tolist()
    [[[[0.0, 0.5, 1.0]]]]
    """

    def __init__(self, index: int | None = 0, output: str = "float") -> None:
        _check_output(output)
        self.index = None if index is None else check_int("HeaderWindow", "index", index)
        self.output = output

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        meta = sample.get("meta") or {}
        if meta.get("window_center") is None or meta.get("window_width") is None:
            raise ConfigError(
                "HeaderWindow: the series has no (0028,1050) Window Center / (0028,1051) Window Width "
                "(meta['window_center'], meta['window_width']); use Window(center, width) or a preset",
                tag="(0028,1050)",
            )
        try:
            centers = np.atleast_1d(np.asarray(meta["window_center"], dtype=np.float64)).ravel().tolist()
            widths = np.atleast_1d(np.asarray(meta["window_width"], dtype=np.float64)).ravel().tolist()
        except (TypeError, ValueError):
            raise ConfigError(
                f"HeaderWindow: Window Center {meta['window_center']!r} / Width {meta['window_width']!r} are not numbers; "
                "use Window(center, width)",
                tag="(0028,1050)",
            ) from None
        if len(centers) != len(widths):
            raise ConfigError(
                f"HeaderWindow: {len(centers)} Window Center values but {len(widths)} Window Width values; "
                "the header is inconsistent, use Window(center, width)",
                tag="(0028,1051)",
            )
        scale = float(meta.get("window_scale") or 1.0)  # display values onto the voxels' scale (Philips' floating point)
        pairs = [(center * scale, width * scale) for center, width in zip(centers, widths)]
        if self.index is not None:
            if not -len(pairs) <= self.index < len(pairs):
                raise ConfigError(f"HeaderWindow(index={self.index}): the header has {len(pairs)} windows", tag="(0028,1050)")
            pairs = [pairs[self.index]]
        function = str(meta.get("voi_lut_function") or "LINEAR").upper()
        if function not in VOI_FUNCTIONS:
            raise ConfigError(f"(0028,1056) VOI LUT Function {function!r} is not one of {VOI_FUNCTIONS}", tag="(0028,1056)")
        return {"windows": pairs, "function": function}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return _stack(x, params["windows"], params["function"], self.output)


class ClipIntensity(Transform):
    """Clip values to ``[low, high]`` (e.g. HU to [-1024, 3071]).

    The dtype is kept when the bounds are whole numbers (``-1024`` or
    ``-1024.0``): an ``int16`` CT stays ``int16``. Bounds with a fraction
    cannot be held by an integer image, so one clipped to them comes out
    float32 (the exact clip); floating images keep their dtype.

    Examples
    --------
    >>> ClipIntensity(-1000, 1000)(torch.tensor([[[[-3000, 0, 3000]]]])).tolist()
    [[[[-1000, 0, 1000]]]]
    >>> ClipIntensity(-1000.0, 1000.0)(torch.tensor([[[[-3000, 0, 3000]]]], dtype=torch.int16)).dtype
    torch.int16
    >>> ClipIntensity(-1000.5, 1000.5)(torch.tensor([[[[-3000, 0, 3000]]]], dtype=torch.int16)).tolist()
    [[[[-1000.5, 0.0, 1000.5]]]]
    """

    pointwise = True

    def __init__(self, low: float, high: float) -> None:
        low, high = check_number("ClipIntensity", "low", low), check_number("ClipIntensity", "high", high)
        if not high > low:
            raise ConfigError(f"ClipIntensity range [{low}, {high}] is empty; high must exceed low")
        self.low, self.high = low, high

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if x.is_floating_point():
            return x.clamp(self.low, self.high)
        if not (self.low.is_integer() and self.high.is_integer()):
            return floating(x).clamp(self.low, self.high)
        return clip_integers(x, int(self.low), int(self.high))


class ScaleIntensity(Transform):
    """Map ``[low, high]`` (e.g. HU) linearly to ``[out_low, out_high]``, like MONAI's ``ScaleIntensityRange``.

    Examples
    --------
    >>> ScaleIntensity(-1000, 1000)(torch.tensor([[[[-1000.0, 0.0, 3000.0]]]])).tolist()
    [[[[0.0, 0.5, 1.0]]]]
    """

    pointwise = True

    def __init__(self, low: float, high: float, out_low: float = 0.0, out_high: float = 1.0, clip: bool = True) -> None:
        low, high = check_number("ScaleIntensity", "low", low), check_number("ScaleIntensity", "high", high)
        out_low, out_high = check_number("ScaleIntensity", "out_low", out_low), check_number("ScaleIntensity", "out_high", out_high)
        scale_intensity(torch.zeros(1), low, high)  # validates the range now
        self.low, self.high, self.out_low, self.out_high, self.clip = low, high, out_low, out_high, clip

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return scale_intensity(x, self.low, self.high, self.out_low, self.out_high, clip=self.clip)


class ZNormalize(Transform):
    """Standardize each channel to mean 0 and std 1 (``nonzero``: over non-zero voxels only).

    ``mean`` and ``std`` (one per channel) replace the image's own statistics:
    a :class:`~dicomml.PatchDataset` passes its volume's, so a patch equals the
    same crop of the z-scored volume. A channel whose std is 0 (a constant
    one, such as a study's missing role) is only centred, given or computed.

    Examples
    --------
    >>> ZNormalize()(torch.tensor([[[[1.0, 3.0]]]])).tolist()
    [[[[-1.0, 1.0]]]]
    >>> ZNormalize(mean=[2.0], std=[2.0])(torch.tensor([[[[1.0, 3.0]]]])).tolist()
    [[[[-0.5, 0.5]]]]
    """

    def __init__(
        self, nonzero: bool = False, *, mean: Sequence[float | None] | None = None, std: Sequence[float | None] | None = None
    ) -> None:
        if (mean is None) != (std is None):
            raise ConfigError(f"ZNormalize(mean={mean}, std={std}): give both or neither")
        if mean is not None and std is not None:
            lists = all(isinstance(v, (Sequence, np.ndarray)) and not isinstance(v, str) for v in (mean, std))
            if not lists or len(mean) != len(std) or not len(mean):
                raise ConfigError(f"ZNormalize(mean={mean!r}, std={std!r}): give two lists of one value per channel, of the same length")
            mean = [None if m is None else check_number("ZNormalize", "mean", m) for m in mean]
            std = [None if v is None else check_number("ZNormalize", "std", v, ">= 0", lambda f: f >= 0) for v in std]
        self.nonzero, self.mean, self.std = nonzero, mean, std

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if self.mean is not None and len(self.mean) != x.shape[0]:
            raise ConfigError(f"ZNormalize(mean=..., std=...): {len(self.mean)} values per list for an image of {x.shape[0]} channels")
        return znormalize(x, nonzero=self.nonzero, mean=self.mean, std=self.std)


class RandomIntensity(RandomTransform):
    """Intensity jitter: ``x * (1 + a) + b`` with ``a ~ U(-scale, scale)``, ``b ~ U(-shift, shift)``.

    ``shift`` is in the image's units (HU before windowing, [0, 1] after).
    Applied with probability ``p``; draws recorded in ``meta["transforms"]``.
    The image comes out floating (integers as float32) whatever the draw.

    Examples
    --------
    >>> s = RandomIntensity(scale=0.0, shift=0.5, seed=0)({"image": torch.zeros(1, 1, 1, 2)})
    >>> s["meta"]["transforms"][0]["name"]
    'RandomIntensity'
    """

    def __init__(self, scale: float = 0.1, shift: float = 0.0, p: float = 1.0, seed: int | None = None) -> None:
        scale = check_number("RandomIntensity", "scale", scale, ">= 0", lambda v: v >= 0)
        shift = check_number("RandomIntensity", "shift", shift, ">= 0", lambda v: v >= 0)
        self.scale, self.shift, self.p, self.seed = (
            scale,
            shift,
            check_probability("RandomIntensity", p),
            check_seed("RandomIntensity", seed),
        )

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        applied = bool(self._uniform(0, 1)[0] < self.p)
        factor = 1.0 + float(self._uniform(-self.scale, self.scale)[0]) if applied else 1.0
        offset = float(self._uniform(-self.shift, self.shift)[0]) if applied else 0.0
        return {"applied": applied, "factor": factor, "offset": offset}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        return floating(x) * params["factor"] + params["offset"] if params["applied"] else floating(x)

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)


class RandomNoise(RandomTransform):
    """Add Gaussian noise of standard deviation ``std`` (image units) with probability ``p``.

    The noise is drawn on the image's device from the transform's generator.
    The image comes out floating (integers as float32) whatever the draw.

    Examples
    --------
    >>> RandomNoise(std=1.0, seed=0)(torch.zeros(1, 2, 2, 2)).std() > 0
    tensor(True)
    """

    def __init__(self, std: float = 0.1, p: float = 1.0, seed: int | None = None) -> None:
        std = check_number("RandomNoise", "std", std, ">= 0", lambda v: v >= 0)
        self.std, self.p, self.seed = std, check_probability("RandomNoise", p), check_seed("RandomNoise", seed)

    def make_params(self, sample: dict[str, Any]) -> dict[str, Any]:
        applied = bool(self._uniform(0, 1)[0] < self.p)
        noise_seed = int(self._uniform(0, 2**62)[0])
        return {"applied": applied, "noise_seed": noise_seed}

    def apply_image(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        if not params["applied"]:
            return floating(x)
        generator = torch.Generator(device=x.device).manual_seed(params["noise_seed"])
        x = floating(x)
        return x + self.std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        return dict(params)

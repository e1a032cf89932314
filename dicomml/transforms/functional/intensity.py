"""Intensity kernels on tensors: VOI windows, range scaling, z-normalization.

Stateless functions; each runs on the tensor's own device. Windows follow
DICOM PS3.3 C.11.2.1.2 (VOI LUT Function LINEAR, LINEAR_EXACT, SIGMOID) with
the output range fixed to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dicomml.errors import ConfigError

__all__ = ["VOI_FUNCTIONS", "clip_integers", "floating", "scale_intensity", "signed_view", "to_uint8", "window", "znormalize"]

#: VOI LUT Function (0028,1056) values that :func:`window` implements.
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


#: The same-width signed dtype of each unsigned one beyond uint8, for which torch has few kernels (no flip, clamp or fill).
_SIGNED = {getattr(torch, f"uint{b}"): getattr(torch, f"int{b}") for b in (16, 32, 64) if hasattr(torch, f"uint{b}")}


def floating(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it is floating, else ``x`` as float32."""
    return x if x.is_floating_point() else x.float()


def signed_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` viewed as the same-width signed dtype where it is uint16/32/64, else ``x``.

    Moving bits (flips, gathers, filling with 0) gives the same bits in
    either dtype, and torch has those kernels for the signed one only: view
    the result back with ``.view(x.dtype)``.

    Examples
    --------
    >>> signed_view(torch.tensor([65535], dtype=torch.uint16)).flip(0).view(torch.uint16).tolist()
    [65535]
    """
    signed = _SIGNED.get(x.dtype)
    return x if signed is None else x.view(signed)


def clip_integers(x: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Integer ``x`` clipped to ``[low, high]`` in its own dtype; bounds beyond its range clip nothing there.

    Examples
    --------
    >>> clip_integers(torch.tensor([0, 40000, 65535], dtype=torch.uint16), 100, 50000).tolist()
    [100, 40000, 50000]
    """
    info = torch.iinfo(x.dtype)
    low, high = max(low, info.min), min(high, info.max)
    signed = _SIGNED.get(x.dtype)
    if signed is None:
        return x.clamp(low, high)
    # torch cannot clamp uint16/32/64: flipping the sign bit of the signed view orders it as the unsigned values
    bias = torch.iinfo(signed).min
    return (x.view(signed) ^ bias).clamp_(low + bias, high + bias).bitwise_xor_(bias).view(x.dtype)


def _float_copy(x: torch.Tensor) -> torch.Tensor:
    """A floating copy of ``x`` (float32 for integers) that the kernels then change in place."""
    return x.clone() if x.is_floating_point() else x.float()


def scale_intensity(
    x: torch.Tensor, low: float, high: float, out_low: float = 0.0, out_high: float = 1.0, *, clip: bool = True
) -> torch.Tensor:
    """Map ``[low, high]`` linearly onto ``[out_low, out_high]`` (MONAI ``ScaleIntensityRange``).

    Parameters
    ----------
    x
        Any tensor; integers become float32.
    low, high
        Input values (e.g. HU) that map to ``out_low`` and ``out_high``; ``high > low``.
    out_low, out_high
        Output range.
    clip
        Clip the result to the output range.

    Returns
    -------
    torch.Tensor
        Floating tensor of ``x``'s shape.

    Raises
    ------
    ConfigError
        If ``high <= low``.

    Examples
    --------
    >>> scale_intensity(torch.tensor([-1000, 0, 1000]), -1000, 1000).tolist()
    [0.0, 0.5, 1.0]
    """
    if not high > low:
        raise ConfigError(f"intensity range [{low}, {high}] is empty; high must exceed low")
    y = _float_copy(x)  # the one new tensor; the rest is in place
    y.sub_(low).mul_((out_high - out_low) / (high - low))
    if out_low:
        y.add_(out_low)
    return y.clamp_(min(out_low, out_high), max(out_low, out_high)) if clip else y


def window(x: torch.Tensor, center: float, width: float, function: str = "LINEAR_EXACT") -> torch.Tensor:
    """Apply one VOI window (PS3.3 C.11.2.1.2) with output range [0, 1].

    Parameters
    ----------
    x
        Stored values after rescale (e.g. HU); integers become float32.
    center, width
        Window Center (0028,1050) and Window Width (0028,1051).
    function
        VOI LUT Function (0028,1056):

        - ``"LINEAR"`` (the DICOM default): 0 below ``c - 0.5 - (w - 1) / 2``,
          1 above ``c - 0.5 + (w - 1) / 2``, linear between; ``w >= 1``.
        - ``"LINEAR_EXACT"``: linear over ``[c - w/2, c + w/2]``; ``w > 0``.
          The usual meaning of "window" in ML code.
        - ``"SIGMOID"``: ``1 / (1 + exp(-4 (x - c) / w))``; ``w > 0``.

    Returns
    -------
    torch.Tensor
        Floating tensor in [0, 1].

    Raises
    ------
    ConfigError
        For an unknown function or a width out of its range.

    Examples
    --------
    >>> window(torch.tensor([0.0, 40.0, 80.0]), 40, 80).tolist()
    [0.0, 0.5, 1.0]
    """
    fn = str(function).upper()
    if fn not in VOI_FUNCTIONS:
        raise ConfigError(f"(0028,1056) VOI LUT Function {function!r} is not one of {VOI_FUNCTIONS}")
    minimum = 1.0 if fn == "LINEAR" else 0.0
    if not (width >= minimum and (fn == "LINEAR" or width > 0)):
        raise ConfigError(f"(0028,1051) Window Width {width} is out of range for {fn}; it must be >= 1 (LINEAR) or > 0")
    if fn == "SIGMOID":
        return _float_copy(x).sub_(center).mul_(4.0 / width).sigmoid_()
    if fn == "LINEAR_EXACT":
        return scale_intensity(x, center - width / 2, center + width / 2)
    if width == 1:  # a step: the linear ramp has no width
        return (x > center - 0.5).to(x.dtype if x.is_floating_point() else torch.float32)
    return scale_intensity(x, center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """A [0, 1] tensor as uint8 0..255 (rounded).

    Examples
    --------
    >>> to_uint8(torch.tensor([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    """
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def znormalize(
    x: torch.Tensor,
    *,
    nonzero: bool = False,
    eps: float = 1e-8,
    mean: Sequence[float | None] | None = None,
    std: Sequence[float | None] | None = None,
) -> torch.Tensor:
    """Standardize each channel of ``(C, ...)`` to mean 0, standard deviation 1.

    Parameters
    ----------
    x
        ``(C, ...)`` tensor; statistics are per channel (population std).
    nonzero
        Use and change only the non-zero voxels (background stays 0), as
        MONAI's ``NormalizeIntensity(nonzero=True)``.
    eps
        A channel whose std is below ``eps`` is only centred.
    mean, std
        Per-channel statistics to use instead of ``x``'s own (both or
        neither), e.g. the whole volume's for a patch of it (over its
        non-zero voxels with ``nonzero``); a channel whose mean is None is
        left as it is.

    Returns
    -------
    torch.Tensor
        Floating tensor of ``x``'s shape.

    Examples
    --------
    >>> znormalize(torch.tensor([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """
    if (mean is None) != (std is None) or (mean is not None and std is not None and not len(mean) == len(std) == len(x)):
        raise ConfigError(f"znormalize: mean and std must both be given, one per channel of {len(x)}, or neither")
    y = _float_copy(x)
    for c, channel in enumerate(y):
        values = channel[channel != 0] if nonzero else channel
        if values.numel() == 0:
            continue
        if mean is None or std is None:
            if values.device.type == "cpu":  # numpy, one thread, float64: the same statistics whatever torch's thread count
                array = values.detach().numpy() if values.dtype != torch.bfloat16 else values.detach().float().numpy()
                centre, spread = (torch.tensor(v, dtype=y.dtype) for v in (array.mean(dtype=np.float64), array.std(dtype=np.float64)))
            else:
                centre, spread = values.mean(), values.std(correction=0)
        elif mean[c] is None:
            continue
        else:
            centre, spread = torch.tensor(mean[c], dtype=y.dtype), torch.tensor(std[c] or 0.0, dtype=y.dtype)
        scale = spread if spread >= eps else torch.ones_like(spread)
        if nonzero:
            channel[channel != 0] = (values - centre) / scale
        else:
            channel.sub_(centre).div_(scale)
    return y

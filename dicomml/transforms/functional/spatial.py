"""Spatial kernels on channel-first tensors ``(C, i, j, k)``: resample, crop/pad.

Stateless functions of (tensor, affine, target grid). Each runs on the
tensor's own device (CPU or CUDA) through torch. The one resampler,
:func:`resample_image` / :func:`resample_mask`, takes the input affine and a
target grid (affine + shape, see :mod:`dicomml.transforms.functional.grid`);
orientation, spacing, a reference grid and random affines all reduce to it, so
orientation requested together with spacing costs one pass.

Paths, chosen from the index map ``inv(affine) @ target_affine``:

- axes only permuted, flipped, shifted by whole voxels or scaled with edges
  aligned: views, slicing and torch's fused ``upsample_trilinear3d`` kernel
  (the ``interpolate(align_corners=False)`` floor); on the CPU, where the axes
  are relaid and an axis's ratio is a small fraction (0.7 mm or 1.25 mm to
  1 mm), the kernel runs in slabs of output planes, each copied into the
  permuted, flipped target while in cache; integer images on the CPU take the
  same interpolation separably, in slabs of planes, so that no float copy of
  the whole input is made; masks by index gathering;
- axes permuted, flipped and scaled with any other offset (a sagittal series
  onto an axial grid): trilinear interpolation one source axis at a time, in
  slabs of planes that stay in cache, written straight into the target's layout;
- anything else (rotation, shear): ``grid_sample`` over chunks of output
  slices, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dicomml.errors import ConfigError, GeometryError
from dicomml.geometry.checks import affine_problem
from dicomml.threads import parallel
from dicomml.transforms.functional.intensity import floating, signed_view

__all__ = ["PADDINGS", "check_padding", "crop_pad", "flip", "gaussian_smooth", "resample_image", "resample_mask"]

#: Padding of an image where the target grid leaves the input: repeat the
#: edge voxel, zeros, mirror, or the input's field of view (the edge voxel's
#: value out to the outer voxel edges, 0 beyond). Masks always pad with 0
#: (background), beyond the outer voxel edges as ``"fov"``.
PADDINGS = ("border", "zeros", "reflection", "fov")

#: Tolerance of the index map. An axis whose scale is within it of 1 and whose offset is within it
#: of a whole voxel is copied, not interpolated: DICOM spacings carry decimal and float32 noise, and
#: resampling to the native spacing should neither blur nor change the dtype (the far end of an
#: n-voxel axis then lies up to ``_TOL * n`` voxels from where the affine says). Also the off-axis
#: share of the map under which it counts as axis-aligned.
_TOL = 1e-5
#: How far (input voxels) beyond the outer voxel edge a target voxel centre may lie and still count
#: as inside the field of view with ``padding="fov"``: an edge that falls on a target centre keeps
#: the edge value whatever the float noise of the two affines.
_FOV_TOL = 1e-3
#: Output voxels per ``grid_sample`` call on the general path.
_CHUNK = 1 << 22
#: Label dtypes whose values float32 may not hold (it holds integers up to 2**24).
_WIDE_INTEGERS = {torch.int32, torch.int64, *(getattr(torch, f"uint{b}") for b in (32, 64) if hasattr(torch, f"uint{b}"))}
#: Bytes of float32 source planes per slab when an integer image is resampled.
_SLAB_BYTES = 1 << 20
#: Bytes of output per slab when the fused kernel is run slab by slab into a relaid target: the
#: slab is relaid while it is still in cache.
_OUT_SLAB_BYTES = 3 << 20
#: Largest run of output planes after which a scaled axis is back on a whole input plane (the
#: denominator of its ratio): slabs start only there, so they sample where the whole kernel does.
_MAX_PERIOD = 32


@dataclass(frozen=True)
class _Relayout:
    """An index map that is a signed, scaled permutation, seen per source axis."""

    perm: tuple[int, int, int]  # source axis feeding output axis j
    flips: tuple[int, ...]  # output axes that run against their source axis
    ratio: np.ndarray  # source voxels per output voxel, per source axis
    offset: np.ndarray  # source index of output voxel 0 (after un-flipping)
    size: tuple[int, int, int]  # output size, per source axis

    def shifts(self) -> np.ndarray:
        """Source axes that are a whole-voxel shift: ratio 1 and integer offset."""
        return (np.abs(self.ratio - 1) < _TOL) & (np.abs(self.offset - np.rint(self.offset)) < _TOL)

    def edge_aligned(self) -> bool:
        """Whether each axis is a shift or the edges-aligned scaling of torch's kernel."""
        scaled = np.abs(self.offset - (self.ratio - 1) / 2) < _TOL
        return bool(np.all(self.shifts() | scaled))

    def source_view(self, target: np.ndarray, unflipped: int | None = None) -> np.ndarray:
        """A view of a target-order array, flipped (but for target axis ``unflipped``) and transposed to source axis order."""
        flips = [j for j in self.flips if j != unflipped]
        flipped = target[(slice(None), *(slice(None, None, -1) if j in flips else slice(None) for j in range(3)))]
        return flipped.transpose(0, *(1 + self.perm.index(a) for a in range(3)))

    def to_target(self, out: torch.Tensor) -> torch.Tensor:
        """Permute and flip a result computed in source axis order: one contiguous copy at most.

        On the CPU the copy is a numpy one into a flipped, transposed view of
        the target, one plane of the axis that stays out of the transposition at
        a time: each plane is a 2-D transpose that stays in cache, where a whole
        permuted copy reads (or writes) a new cache line per voxel, and torch's
        ``flip`` would make a second pass.
        """
        if self.perm == (0, 1, 2) and not self.flips:
            return out.contiguous()
        src = _numpy_view(out)
        if src is None:
            if self.perm != (0, 1, 2):
                out = out.permute(0, *(1 + p for p in self.perm))
            return flip(out, [1 + j for j in self.flips]).contiguous()
        target = np.empty((src.shape[0], *(src.shape[1 + p] for p in self.perm)), dtype=src.dtype)
        view = self.source_view(target)
        # The source axis that is neither source's fastest nor target's fastest: planes across it transpose in cache.
        plane_axis = ({0, 1} - {self.perm[2]}).pop() if self.perm[2] != 2 else 0
        for c in range(src.shape[0]):
            for i in range(src.shape[1 + plane_axis]):
                where = (c, *(i if a == plane_axis else slice(None) for a in range(3)))
                np.copyto(view[where], src[where])
        return torch.from_numpy(target)


def _numpy_view(x: torch.Tensor) -> np.ndarray | None:
    """``x`` as a numpy array sharing its memory, or None where numpy cannot hold it (GPU, bfloat16, autograd)."""
    if x.device.type != "cpu" or x.requires_grad:
        return None
    try:
        return x.numpy()
    except (TypeError, RuntimeError):
        return None


def _index_map(affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    for name, value in (("input", affine), ("target", target_affine)):
        problem = affine_problem(value)
        if problem is not None:
            raise GeometryError(f"cannot resample: the {name} {problem}")
    return np.linalg.solve(np.asarray(affine, dtype=np.float64), np.asarray(target_affine, dtype=np.float64))


def _relayout(index_map: np.ndarray, out_shape: Sequence[int]) -> _Relayout | None:
    lin = index_map[:3, :3]
    perm = np.argmax(np.abs(lin), axis=0)
    if sorted(perm.tolist()) != [0, 1, 2]:
        return None
    values = lin[perm, [0, 1, 2]]
    rest = lin.copy()
    rest[perm, [0, 1, 2]] = 0
    if np.abs(rest).max() > _TOL * np.abs(values).max():
        return None
    ratio, offset, size = np.empty(3), np.empty(3), [0, 0, 0]
    for j, p in enumerate(perm):
        ratio[p] = abs(values[j])
        offset[p] = index_map[p, 3] - (ratio[p] * (out_shape[j] - 1) if values[j] < 0 else 0.0)
        size[p] = int(out_shape[j])
    flips = tuple(j for j in range(3) if values[j] < 0)
    return _Relayout(tuple(int(p) for p in perm), flips, ratio, offset, tuple(size))  # type: ignore[arg-type]


def _spatial(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise GeometryError(f"{name} must be a (C, i, j, k) tensor, got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")


def crop_pad(x: torch.Tensor, start: Sequence[int], shape: Sequence[int], *, mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """The box ``[start, start + shape)`` of the last three axes; outside the input it is padded.

    Parameters
    ----------
    x
        Tensor whose last three axes are spatial.
    start
        First index of the box per spatial axis (voxels; negative pads before).
    shape
        Size of the box (voxels).
    mode
        ``"constant"`` (fill with ``value``), ``"replicate"`` (the edge voxel)
        or ``"reflect"`` (mirrored about the edge voxels' centres, again and
        again: ``grid_sample``'s ``"reflection"`` with corners aligned). Any
        pad width, also a box wholly outside the input.
    value
        Fill value for ``"constant"``.

    Returns
    -------
    torch.Tensor
        A view when the box lies inside the input, else a padded copy.

    Raises
    ------
    ConfigError
        For an unknown ``mode``.

    Examples
    --------
    >>> crop_pad(torch.arange(4.0).reshape(1, 1, 1, 4), (0, 0, -1), (1, 1, 3)).tolist()
    [[[[0.0, 0.0, 1.0]]]]
    >>> crop_pad(torch.arange(3.0).reshape(1, 1, 1, 3), (0, 0, 0), (1, 1, 7), mode="reflect").tolist()
    [[[[0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0]]]]
    """
    if mode not in ("constant", "replicate", "reflect"):
        raise ConfigError(f"crop_pad mode={mode!r} is not one of ('constant', 'replicate', 'reflect')")
    n = x.shape[-3:]
    lo = [min(max(0, int(s)), n[d]) for d, s in enumerate(start)]
    hi = [max(min(n[d], int(s) + int(m)), lo[d]) for d, (s, m) in enumerate(zip(start, shape))]
    pads = [(lo[d] - int(start[d]), int(start[d]) + int(shape[d]) - hi[d]) for d in range(3)]
    padded = [b > 0 or a > 0 for b, a in pads]
    if mode != "constant":
        # the box's source index per padded axis (edge voxel, or folded back and forth over the axis)
        out = x[(Ellipsis, *(slice(None) if padded[d] else slice(lo[d], hi[d]) for d in range(3)))]
        for d in (d for d in range(3) if padded[d]):
            at = np.arange(int(start[d]), int(start[d]) + int(shape[d]))
            if mode == "reflect" and n[d] > 1:
                at = (n[d] - 1) - np.abs(np.mod(at, 2 * (n[d] - 1)) - (n[d] - 1))
            out = _gather_runs(out, x.ndim - 3 + d, np.clip(at, 0, n[d] - 1).tolist())
        return out
    core = x[..., lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    if not any(padded):
        return core
    out = x.new_full((*x.shape[:-3], *(int(m) for m in shape)), value)
    inner: tuple[Any, ...] = (Ellipsis, *(slice(b, b + (hi[d] - lo[d])) for d, (b, _) in enumerate(pads)))
    out[inner] = core
    return out


def _gather_runs(x: torch.Tensor, dim: int, index: list[int]) -> torch.Tensor:
    """``x.index_select(dim, index)`` for an index made of runs of step 1, -1 or 0: one concatenation of slices."""
    pieces, i = [], 0
    while i < len(index):
        j, step = i + 1, index[i + 1] - index[i] if i + 1 < len(index) else 1
        while j < len(index) and index[j] - index[j - 1] == step:
            j += 1
        if step == 0:
            pieces.append(x.narrow(dim, index[i], 1).expand(*x.shape[:dim], j - i, *x.shape[dim + 1 :]))
        else:
            piece = x.narrow(dim, min(index[i], index[j - 1]), j - i)
            pieces.append(flip(piece, [dim]) if step < 0 else piece)
        i = j
    return torch.cat(pieces, dim)


def flip(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """``x.flip(dims)`` for any dtype (torch cannot flip uint16/32/64 along the last axis).

    Examples
    --------
    >>> flip(torch.tensor([[1, 2]], dtype=torch.uint16), [1]).tolist()
    [[2, 1]]
    """
    return signed_view(x).flip(list(dims)).view(x.dtype) if len(dims) else x


def gaussian_smooth(x: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of the last three axes (sigma in voxels; 0 skips an axis).

    Used as the anti-aliasing filter before downsampling, with
    ``sigma = (ratio - 1) / 2`` as in scikit-image's ``resize``.

    Examples
    --------
    >>> gaussian_smooth(torch.ones(1, 4, 4, 4), (1.0, 0.0, 0.0)).allclose(torch.ones(1, 4, 4, 4))
    True
    """
    out = x
    for d, s in enumerate(sigma):
        if s <= 0:
            continue
        radius = max(1, int(np.ceil(3 * s)))
        taps = torch.arange(-radius, radius + 1, dtype=out.dtype, device=out.device)
        kernel = torch.exp(-0.5 * (taps / s) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, *[-1 if e == d else 1 for e in range(3)])
        flat = out.reshape(-1, 1, *out.shape[-3:])
        pad = [0] * 6
        pad[2 * (2 - d) : 2 * (2 - d) + 2] = [radius, radius]
        flat = F.conv3d(F.pad(flat, pad, mode="replicate"), kernel)
        out = flat.reshape(out.shape)
    return out


def check_padding(padding: str) -> None:
    """Raise :class:`~dicomml.errors.ConfigError` unless ``padding`` is one of :data:`PADDINGS`."""
    if padding not in PADDINGS:
        raise ConfigError(f"padding={padding!r} is not one of {PADDINGS}")


def _planes(matrix: torch.Tensor, out_shape: Sequence[int]) -> Iterator[tuple[slice, torch.Tensor]]:
    """``matrix @ (i, j, k, 1)`` over the output grid, chunk by chunk: (output planes, ``(planes, j, k, 3)`` positions).

    In ``matrix``'s dtype and on its device; chunks of ``_CHUNK`` voxels keep memory bounded.
    """
    m0, m1, m2 = (int(v) for v in out_shape)
    jj, kk = torch.meshgrid(
        torch.arange(m1, device=matrix.device, dtype=matrix.dtype),
        torch.arange(m2, device=matrix.device, dtype=matrix.dtype),
        indexing="ij",
    )
    plane = jj[..., None] * matrix[:3, 1] + kk[..., None] * matrix[:3, 2] + matrix[:3, 3]
    rows = max(1, _CHUNK // max(1, m1 * m2))
    for i0 in range(0, m0, rows):
        ii = torch.arange(i0, min(m0, i0 + rows), device=matrix.device, dtype=matrix.dtype)
        yield slice(i0, i0 + len(ii)), plane[None] + ii[:, None, None, None] * matrix[:3, 0]


def _grid_sample(x: torch.Tensor, index_map: np.ndarray, out_shape: Sequence[int], mode: str, padding: str) -> torch.Tensor:
    """``grid_sample`` of ``x`` at source indices ``index_map @ (i, j, k, 1)``, chunk by chunk; ``x``'s dtype.

    Sample positions are computed, and a half-precision ``x`` is sampled, in
    float32 (float64 for float64): positions in float16 or bfloat16 are off by
    up to a voxel or more on a CT-sized axis.
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    src = x[None].to(dtype)
    # corners aligned, grid_sample has no scale for an axis of one voxel (every position lands on it):
    # one more voxel, 0 for "zeros" (and masks) and a copy for the rest, gives it one without changing any value
    for d in (d for d in range(3) if x.shape[1 + d] == 1):
        src = torch.cat([src, torch.zeros_like(src) if padding == "zeros" else src], dim=2 + d)
    n = torch.tensor(src.shape[-3:], dtype=torch.float64)
    # Source index -> grid_sample's normalized (x=k, y=j, z=i) coordinates, in one matrix.
    to_norm = torch.zeros(4, 4, dtype=torch.float64)
    to_norm[:3, :3] = torch.diag(2.0 / (n - 1)).flip(0)
    to_norm[:3, 3] = -1.0
    to_norm[3, 3] = 1.0
    index = torch.as_tensor(index_map, dtype=torch.float64)
    grids = _planes((to_norm @ index).to(x.device, dtype), out_shape)
    out = x.new_empty((x.shape[0], *(int(v) for v in out_shape)))
    if padding != "fov":
        for where, grid in grids:
            out[:, where] = F.grid_sample(src, grid[None], mode=mode, padding_mode=padding, align_corners=True)[0]
        return out
    # border values, then 0 where the source index leaves the voxels' extent
    low, high = -0.5 - _FOV_TOL, torch.tensor(x.shape[-3:], device=x.device, dtype=dtype) - 0.5 + _FOV_TOL
    for (where, grid), (_, at) in zip(grids, _planes(index.to(x.device, dtype), out_shape)):
        part = F.grid_sample(src, grid[None], mode=mode, padding_mode="border", align_corners=True)[0]
        out[:, where] = part.mul_(((at >= low) & (at <= high)).all(-1))
    return out


def _antialias_sigma(index_map: np.ndarray) -> np.ndarray:
    step = np.linalg.norm(index_map[:3, :3], axis=1)  # source voxels per output voxel, per source axis
    return np.maximum(0.0, (step - 1.0) / 2.0)


def resample_image(
    image: torch.Tensor,
    affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    *,
    padding: str = "border",
    antialias: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resample an image onto a target grid by trilinear interpolation.

    Parameters
    ----------
    image
        ``(C, i, j, k)`` tensor on any device; integer inputs become float32.
    affine
        4x4 affine of ``image``: indices ``(i, j, k)`` to RAS+ mm.
    target_affine, target_shape
        The output grid: 4x4 affine (RAS+ mm) and three sizes.
    padding
        Value where the target leaves the input: ``"border"``, ``"zeros"``,
        ``"reflection"`` (``grid_sample``'s modes, about the outer voxel
        centres), or ``"fov"``: the input's field of view is its voxels'
        extent (outer voxel centres ± half a voxel, edges included); inside
        it the edge voxel's value, beyond it 0, as SimpleITK's ``Resample``
        (linear, default value 0) and :func:`resample_mask`.
    antialias
        Blur with a Gaussian of ``sigma = (ratio - 1) / 2`` input voxels along
        each axis that is downsampled, before sampling.
    dtype
        The output's dtype instead of the one below: an integer dtype takes
        the values rounded half to even and clipped to its range (slab by
        slab where the path allows, without a floating copy of the output).

    Returns
    -------
    torch.Tensor
        ``(C, *target_shape)`` on ``image``'s device; floating (integers
        become float32), except that a pure relayout (permutation, flips,
        whole-voxel shifts: ``Orient``, crops) keeps the input dtype.

    Raises
    ------
    GeometryError
        For a tensor that is not 4-D or an affine that is singular or not finite.
    ConfigError
        For an unknown padding.

    Examples
    --------
    >>> from dicomml.transforms.functional.grid import shape_grid
    >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
    >>> resample_image(x, np.eye(4), *shape_grid(np.eye(4), (1, 1, 4), (1, 1, 8)))[0, 0, 0].tolist()
    [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
    """
    _spatial(image, "image")
    check_padding(padding)
    index_map = _index_map(affine, target_affine)
    plan = _relayout(index_map, target_shape)
    relayout = plan is not None and bool(np.all(plan.shifts()))  # no interpolation: dtype kept
    x = image
    if antialias and not relayout and np.any(_antialias_sigma(index_map) > 0):
        x = gaussian_smooth(floating(x), _antialias_sigma(index_map).tolist())
    if plan is None:
        return _as_dtype(_grid_sample(floating(x), index_map, target_shape, "bilinear", padding), dtype)
    # torch's fused kernel ignores the scale of an axis whose voxel count it keeps, and clamps to
    # the edge voxel however far the target leaves the input: a scaled axis of unchanged size, or a
    # target past where "zeros" or "reflection" (the outer voxel centres) or "fov" (their edges) stop
    # holding the edge value along a scaled axis, takes the separable path.
    if not plan.edge_aligned() or _kept_size_scaled(plan, x.shape[-3:]) or _leaves(plan, x.shape[-3:], padding):
        return _linear_separable(x, plan, padding, dtype)
    shifts = plan.shifts()
    start = [int(round(o)) if s else 0 for o, s in zip(plan.offset, shifts)]
    size = [m if s else n for m, n, s in zip(plan.size, x.shape[-3:], shifts)]
    # whole-voxel shifts leave the input by at least a voxel: outside its field of view ("fov")
    pad_mode = {"border": "replicate", "zeros": "constant", "reflection": "reflect", "fov": "constant"}[padding]
    x = crop_pad(x, start, size, mode=pad_mode)
    if relayout:
        return _as_dtype(plan.to_target(x), dtype)
    if not x.is_floating_point() and x.device.type == "cpu":
        return _as_dtype(_trilinear_in_slabs(x, plan), dtype)
    x = floating(x)
    slabs = _slabs(plan, x) if plan.perm != (0, 1, 2) or plan.flips else None
    if slabs is not None:
        return _as_dtype(_trilinear_to_target(x, plan, *slabs), dtype)
    return _as_dtype(plan.to_target(_trilinear(x, plan)), dtype)


def _trilinear(x: torch.Tensor, plan: _Relayout) -> torch.Tensor:
    """torch's fused kernel (edges aligned) in source axis order; on the CPU its output is allocated by numpy.

    numpy's large arrays get transparent huge pages, so filling a fresh
    CT-sized output takes far fewer page faults than in torch's allocator.
    """
    scales = [float(1.0 / r) for r in plan.ratio]
    source = _numpy_view(x)
    if source is None:
        return torch.ops.aten.upsample_trilinear3d.default(x[None], list(plan.size), False, *scales)[0]
    out = torch.from_numpy(np.empty((1, x.shape[0], *plan.size), dtype=source.dtype))
    return torch.ops.aten.upsample_trilinear3d.out(x[None], list(plan.size), False, *scales, out=out)[0]


def _period(ratio: float) -> int | None:
    """Output planes per whole number of input planes along an axis of this ratio (None: none up to ``_MAX_PERIOD``)."""
    fraction = Fraction(ratio).limit_denominator(_MAX_PERIOD)
    return fraction.denominator if abs(float(fraction) - ratio) <= _TOL * 1e-4 * ratio else None


@cache
def _openmp() -> bool:
    """Whether torch's intra-op threads are OpenMP's, whose count is each calling thread's own."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _slabs(plan: _Relayout, x: torch.Tensor) -> tuple[int, list[tuple[int, int, int, int, int]]] | None:
    """Where the fused kernel can run in slabs along a source axis: (axis, slabs).

    Each slab is (first output plane computed, end, first input plane, end,
    output planes skipped). A slab starting at output plane ``d`` samples
    where the whole kernel does only if ``d * ratio`` is a whole input plane;
    the kernel clamps the first positions of an upsampled axis (``ratio < 1``)
    to its input's first plane, so each slab also computes the next slab's
    first planes. Not the target's fastest axis (writes would be a few voxels
    long), nor the input's (the kernel's rows would be). None where no axis
    fits, the input is not on the CPU or a single slab would hold it all.
    """
    if _numpy_view(x) is None:
        return None
    for axis in sorted({0, 1} - {plan.perm[2]}, key=lambda a: plan.perm.index(a)):
        period, ratio = _period(float(plan.ratio[axis])), float(plan.ratio[axis])
        plane = x.shape[0] * x.element_size() * int(np.prod(plan.size)) // plan.size[axis]
        if period is None or period * plane > 2 * _OUT_SLAB_BYTES:
            continue
        step = period * max(1, _OUT_SLAB_BYTES // (period * plane))
        lead = int(np.sum(ratio * (np.arange(period) + 0.5) - 0.5 < 0))  # positions clamped to a slab's first plane
        n, m, shift = x.shape[1 + axis], plan.size[axis], bool(plan.shifts()[axis])
        if step + lead >= m:
            continue
        slabs = []
        for start in range(0, m, step):
            stop, skip = min(m, start + step + lead), lead if start else 0
            # one input plane beyond the last one sampled: no slab end clamps (torch's positions are float32)
            last = stop if shift else min(n, int(np.floor(ratio * (stop - 0.5) - 0.5)) + 3)
            if last - int(round(start * ratio)) == stop - start and not shift:
                # torch copies an axis whose size it keeps: widen the input, or start a period earlier
                last, start, skip = (last + 1, start, skip) if last < n else (last, start - period, skip + period)
            slabs.append((start, stop, int(round(start * ratio)), last, skip))
        if all(slab[0] >= 0 for slab in slabs):
            return axis, slabs
    return None


def _trilinear_to_target(x: torch.Tensor, plan: _Relayout, axis: int, slabs: list[tuple[int, int, int, int, int]]) -> torch.Tensor:
    """torch's fused kernel run in slabs of output planes along source ``axis``, each relaid into the target from cache.

    Equal to :func:`_trilinear` then :meth:`_Relayout.to_target` to float32
    rounding of the sample positions (a slab's positions are computed from its
    own first plane), without a pass over the whole output after the kernel.
    The slabs are shared by as many threads as torch has, each running torch
    on one thread (its slab's kernel and copy).
    """
    scales = [float(1.0 / r) for r in plan.ratio]
    target = np.empty((x.shape[0], *(plan.size[p] for p in plan.perm)), dtype=x.numpy().dtype)
    view = plan.source_view(target)
    # a thread's own torch thread count exists only under OpenMP; elsewhere torch's threads run each slab
    workers = max(1, min(torch.get_num_threads(), len(slabs))) if _openmp() else 1

    def along(part: slice) -> tuple[slice, ...]:
        return (slice(None), *(part if a == axis else slice(None) for a in range(3)))

    def run(share: list[tuple[int, int, int, int, int]]) -> None:
        if workers > 1:
            torch.set_num_threads(1)
        scratch = None
        for start, stop, first, last, skip in share:
            size = [stop - start if a == axis else plan.size[a] for a in range(3)]
            if scratch is None or list(scratch.shape[2:]) != size:
                scratch = x.new_empty((1, x.shape[0], *size))
            torch.ops.aten.upsample_trilinear3d.out(x.narrow(1 + axis, first, last - first)[None], size, False, *scales, out=scratch)
            np.copyto(view[along(slice(start + skip, stop))], scratch[0].numpy()[along(slice(skip, None))])

    threads = torch.get_num_threads()
    try:
        parallel(run, slabs, workers)
    finally:
        torch.set_num_threads(threads)  # torch keeps the count new threads start with process-wide
    return torch.from_numpy(target)


def _as_dtype(x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``x`` in ``dtype`` (None: as it is); to integers, rounded half to even and clipped to its range."""
    if dtype is None or x.dtype == dtype or dtype.is_floating_point or dtype == torch.bool:
        return x if dtype is None else x.to(dtype)
    want = torch.iinfo(dtype)
    if x.is_floating_point():
        x = x.round().clamp_(want.min, want.max)  # integer bounds: rounding then clipping is clipping then rounding
    elif x.dtype != torch.bool:
        have = torch.iinfo(x.dtype)
        if have.min < want.min or have.max > want.max:  # uint16 above 32767 saturates in int16 instead of wrapping
            x = x.to(torch.int64).clamp_(max(have.min, want.min), min(have.max, want.max))
    return x.to(dtype)


def _linear_separable(x: torch.Tensor, plan: _Relayout, padding: str, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``grid_sample``'s trilinear result (corners aligned) for an axis-aligned map, in the target's layout.

    Trilinear interpolation is separable. Slabs of source planes (axis 0,
    contiguous) are interpolated in-plane (gather two rows, weigh; gather two
    columns, weigh) while they are in cache, integers becoming float32 a slab
    at a time; then slabs of output planes weigh two of those planes each and
    land in a permuted view of the target. Taps are computed in the target's
    order, so flips cost nothing. Any scale and offset per axis (sagittal or
    coronal series onto an axial grid at other spacings). ``out_dtype``: as
    :func:`resample_image`'s ``dtype``, converted slab by slab.
    """
    c, n0, n1, n2 = x.shape
    # weights and sums in float32 for integers and half precision (a bfloat16 weight is off by 2**-9)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    (lo0, hi0, w0), (lo1, hi1, w1), (lo2, hi2, w2) = (_taps(plan, a, n, padding, dtype, x.device) for a, n in enumerate((n0, n1, n2)))
    m0, m1, m2 = plan.size
    target = x.new_empty((c, *(plan.size[p] for p in plan.perm)), dtype=out_dtype or floating(x).dtype)
    view = target.permute(0, *(1 + plan.perm.index(a) for a in range(3)))  # source axis order
    used = torch.cat([lo0[w0[0] != 0], hi0[w0[1] != 0]])
    if not used.numel():
        return target.zero_()
    first, last = int(used.min()), int(used.max()) + 1
    planes = x.new_empty((c, last - first, m1, m2), dtype=dtype)  # the used source planes, interpolated in-plane
    step = max(1, _SLAB_BYTES // (c * max(n1 * n2, m1 * m2) * planes.element_size()))
    for s in range(first, last, step):
        slab = x[:, s : min(last, s + step)]
        rows = _weigh(torch.index_select(slab, 2, lo1), torch.index_select(slab, 2, hi1), w1[:, :, None], dtype)
        shape = (*rows.shape[:3], m2)
        planes[:, s - first : s - first + slab.shape[1]] = _weigh(
            torch.gather(rows, 3, lo2.expand(shape)), torch.gather(rows, 3, hi2.expand(shape)), w2, dtype
        )
    lo0, hi0, w0 = lo0.clamp(first, last - 1) - first, hi0.clamp(first, last - 1) - first, w0[:, :, None, None]
    step = max(1, _SLAB_BYTES // (c * m1 * m2 * planes.element_size()))
    for t in range(0, m0, step):
        u = slice(t, t + step)
        view[:, u] = _as_dtype(
            _weigh(torch.index_select(planes, 1, lo0[u]), torch.index_select(planes, 1, hi0[u]), w0[:, u], dtype), out_dtype
        )
    return target


def _weigh(low: torch.Tensor, high: torch.Tensor, weights: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``low * weights[0] + high * weights[1]`` in ``dtype``, computed in ``low`` (a gathered copy) when it has that dtype."""
    return low.to(dtype).mul_(weights[0]).addcmul_(high, weights[1])


def _taps(
    plan: _Relayout, axis: int, n: int, padding: str, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one source axis, in the target's order: the two source indices of each output voxel and their weights (0 outside)."""
    size = plan.size[axis]
    at = plan.offset[axis] + plan.ratio[axis] * np.arange(size)
    if plan.perm.index(axis) in plan.flips:
        at = at[::-1]
    p = at
    if padding == "reflection":  # grid_sample reflects about the edge voxels' centres (one voxel: its own)
        p = (n - 1) - np.abs(np.mod(p, 2 * (n - 1)) - (n - 1)) if n > 1 else np.zeros(size)
    if padding != "zeros":
        p = np.clip(p, 0, n - 1)
    low = np.floor(p)
    corners = np.stack([low, low + 1])
    weights = np.where((corners >= 0) & (corners < n), np.stack([1 - (p - low), p - low]), 0.0)  # zeros outside
    if padding == "fov":  # border values out to the outer voxel edges, 0 beyond
        weights *= (at >= -0.5 - _FOV_TOL) & (at <= n - 0.5 + _FOV_TOL)
    index = torch.as_tensor(np.clip(corners, 0, n - 1), dtype=torch.long, device=device)
    return index[0], index[1], torch.as_tensor(weights, dtype=dtype, device=device)


def _trilinear_in_slabs(x: torch.Tensor, plan: _Relayout) -> torch.Tensor:
    """The fused kernel's result for an integer CPU image, without a float copy of the whole input.

    Trilinear interpolation is separable: slabs of source planes (axis 0) are
    converted to float32 a few at a time, interpolated in-plane and written
    straight into the target's axis order (a numpy view takes the flips);
    the last pass interpolates along source axis 0. The fused kernel's
    numbers on ``x.float()`` to float32 rounding, without the page faults of a
    float copy of a whole CT, and no relayout copies follow.
    """
    c, n0, n1, n2 = x.shape
    j0 = plan.perm.index(0)  # the target axis that source axis 0 becomes
    inner = np.empty((c, *(n0 if p == 0 else plan.size[p] for p in plan.perm)), dtype=np.float32)
    view = plan.source_view(inner, unflipped=j0)  # source axis order, writes land in target order
    step = max(1, _SLAB_BYTES // (4 * c * n1 * n2))
    for s in range(0, n0, step):
        slab = x[:, s : s + step].float().reshape(-1, 1, n1, n2)
        planes = torch.ops.aten.upsample_bilinear2d.default(slab, list(plan.size[1:]), False, 1.0 / plan.ratio[1], 1.0 / plan.ratio[2])
        np.copyto(view[:, s : s + step], planes.reshape(c, -1, *plan.size[1:]).numpy())
    out = torch.from_numpy(inner)
    if not plan.shifts()[0]:
        out = _linear_along(out, j0, plan.size[0], float(1.0 / plan.ratio[0]))
    return out.flip(1 + j0) if j0 in plan.flips else out


def _linear_along(x: torch.Tensor, axis: int, size: int, scale: float) -> torch.Tensor:
    """Linear interpolation of contiguous ``(C, a, b, c)`` along one spatial axis (edges aligned).

    The 1-D or 2-D kernel on a reshaped view, the other axis at scale 1 (an
    exact copy): the same values as the 3-D kernel, which would interpolate
    along that axis too. The output is allocated by numpy, as in :func:`_trilinear`.
    """
    c, n0, n1, n2 = x.shape
    shape = [c, n0, n1, n2]
    shape[1 + axis] = size
    out = torch.from_numpy(np.empty(shape, dtype=np.float32))
    if axis == 2:
        torch.ops.aten.upsample_linear1d.out(x.reshape(-1, 1, n2), [size], False, scale, out=out.view(-1, 1, size))
    else:
        rows, cols = (n1, n2) if axis == 1 else (n0, n1 * n2)
        torch.ops.aten.upsample_bilinear2d.out(
            x.reshape(-1, 1, rows, cols), [size, cols], False, scale, 1.0, out=out.view(-1, 1, size, cols)
        )
    return out


def _leaves(plan: _Relayout, in_shape: Sequence[int], padding: str) -> bool:
    """Whether, along a scaled (not shifted) source axis, a target voxel centre lies where ``padding`` stops
    holding the edge value: beyond the outer voxel centres (``"zeros"``, ``"reflection"``) or edges (``"fov"``)."""
    margin = {"zeros": _TOL, "reflection": _TOL, "fov": 0.5 + _FOV_TOL}.get(padding)
    if margin is None:
        return False
    for ratio, offset, m, n, shift in zip(plan.ratio, plan.offset, plan.size, in_shape, plan.shifts()):
        ends = (offset, offset + ratio * (m - 1))
        if not shift and (min(ends) < -margin or max(ends) > n - 1 + margin):
            return True
    return False


def _kept_size_scaled(plan: _Relayout, in_shape: Sequence[int]) -> bool:
    return any(m == n and not shift for m, n, shift in zip(plan.size, in_shape, plan.shifts()))


def _float32_holds(x: torch.Tensor) -> bool:
    """Whether float32 holds every value of integer ``x`` exactly (all within ±2**24)."""
    if not x.numel():
        return True
    low, high = torch.aminmax(signed_view(x))  # uint32/64 values from 2**31/2**63 up read negative here
    return bool(low >= (-(1 << 24) if x.dtype.is_signed else 0)) and bool(high <= 1 << 24)


def resample_mask(mask: torch.Tensor, affine: np.ndarray, target_affine: np.ndarray, target_shape: Sequence[int]) -> torch.Tensor:
    """Resample a label map onto a target grid by nearest neighbour; labels are never mixed.

    Parameters
    ----------
    mask
        ``(C, i, j, k)`` tensor of any dtype (bool, integer labels, or float
        fractions) on any device.
    affine
        4x4 affine of ``mask``: indices to RAS+ mm.
    target_affine, target_shape
        The output grid.

    Returns
    -------
    torch.Tensor
        ``(C, *target_shape)`` with ``mask``'s dtype, each value one of the
        input's exactly; 0 beyond the input's outer voxel edges.

    Raises
    ------
    GeometryError
        For a tensor that is not 4-D or an affine that is singular or not finite.

    Examples
    --------
    >>> from dicomml.transforms.functional.grid import shape_grid
    >>> m = torch.tensor([[[[0, 1]]]], dtype=torch.uint8)
    >>> resample_mask(m, np.eye(4), *shape_grid(np.eye(4), (1, 1, 2), (1, 1, 4))).tolist()
    [[[[0, 0, 1, 1]]]]
    """
    _spatial(mask, "mask")
    dtype = mask.dtype
    index_map = _index_map(affine, target_affine)
    plan = _relayout(index_map, target_shape)
    if plan is None:
        if mask.dtype in _WIDE_INTEGERS and not _float32_holds(mask):
            # nearest never mixes voxels: sample each label's 16-bit pieces, which float32 holds, as channels, and join them
            parts = mask.element_size() // 2
            pieces = mask.contiguous().view(torch.int16).unflatten(-1, (-1, parts)).movedim(-1, 1).flatten(0, 1)
            out = _grid_sample(pieces.float(), index_map, target_shape, "nearest", "zeros").to(torch.int16)
            return out.unflatten(0, (mask.shape[0], parts)).movedim(1, -1).contiguous().view(dtype).squeeze(-1)
        source = mask.to(torch.float32) if mask.dtype != torch.float64 else mask
        return _grid_sample(source, index_map, target_shape, "nearest", "zeros").to(dtype)
    mask = signed_view(mask)  # index_fill_ has no uint16/32/64 kernel
    index, outside = [], []
    for d in range(3):
        n = mask.shape[1 + d]
        positions = torch.arange(plan.size[d], dtype=torch.float64, device=mask.device) * plan.ratio[d] + plan.offset[d]
        nearest = torch.floor(positions + 0.5).long()
        outside.append(torch.nonzero((nearest < 0) | (nearest >= n)).flatten())
        index.append(nearest.clamp(0, n - 1))
    out = mask[:, index[0][:, None, None], index[1][None, :, None], index[2][None, None, :]]
    for d, where in enumerate(outside):
        if where.numel():
            out.index_fill_(1 + d, where, 0)
    return plan.to_target(out).view(dtype)

"""Loading one 2D image (single frame or cine) into display values with its physical size and orientation.

Adapter, then core: :func:`load_image` reads the file and decodes the
stored values (uncompressed grey pixels as a view on the bytes, everything
else through pydicom's decoders, YBR decoded to RGB by them); the LUT,
spacing and orientation modules turn header values and arrays into the
result.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import JPEG2000TransferSyntaxes, JPEGLSTransferSyntaxes, JPEGTransferSyntaxes

from dicomml.dicom.frames import frame_count, frame_size, source_name
from dicomml.dicom.io import read_dataset
from dicomml.dicom.pixels import bits_stored, decode_pixels, native_stack, transfer_syntax
from dicomml.errors import InvalidDicomFileError
from dicomml.imaging2d.choices import DISPLAYS, FACINGS, check_choice, checked_voi, voi_window
from dicomml.imaging2d.j2k import reduced_frame
from dicomml.imaging2d.lut import grey_values, palette_to_rgb
from dicomml.imaging2d.orientation import display_flips, display_transpose, flipped_orientation, projection_header, transposed_orientation
from dicomml.imaging2d.spacing import Spacing, physical_spacing

if TYPE_CHECKING:
    from dicomml.sources import Remote

__all__ = ["COLOUR", "Image2D", "decoded_bits", "frame_times", "load_image", "stored_frames"]

#: Photometric Interpretations returned as RGB channels.
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR"})
#: JPEG and JPEG-LS start-of-frame markers (SOF0-15 but DHT, JPG and DAC; SOF55), whose segment gives the sample precision.
_SOF = frozenset(range(0xFFC0, 0xFFD0)) - {0xFFC4, 0xFFC8, 0xFFCC} | {0xFFF7}
_SOS = 0xFFDA


@dataclass
class Image2D:
    """A 2D image or cine loop in display values.

    Attributes
    ----------
    pixels
        ``(T, H, W)`` float grey values (after Modality LUT, VOI LUT and
        inversion) or ``(T, H, W, 3)`` RGB in the stored integer type; ``T``
        is 1 for a single frame.
    spacing
        Physical row/column size (see :func:`~dicomml.imaging2d.spacing.physical_spacing`).
    meta
        ``path``, ``modality``, ``photometric_interpretation``, ``voi``,
        ``window``, ``output_range`` (the values the pixels can take; colour:
        0 to full scale), ``inverted``, ``laterality``, ``view``,
        ``patient_orientation`` (after any flip), ``transposed`` (rows and
        columns swapped before the flips), ``flips``, ``flip_basis``,
        ``burned_in``, ``spacing``, ``spacing_source``, ``spacing_missing``,
        ``frame_times_ms``...
    """

    pixels: np.ndarray
    spacing: Spacing
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a single image)."""
        return int(self.pixels.shape[0])

    @property
    def is_colour(self) -> bool:
        """Whether ``pixels`` holds RGB channels."""
        return self.pixels.ndim == 4


def _cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def frame_times(ds: Dataset, n_frames: int) -> list[float] | None:
    """Start time of each frame in ms from the first: Frame Time Vector (0018,1065), else Frame Time (0018,1063)."""
    if n_frames < 2:
        return None
    vector = ds.get("FrameTimeVector")
    if vector is not None and len(vector) == n_frames:
        return np.cumsum(np.asarray(vector, dtype=float)).tolist()  # first increment is 0 by definition
    step = ds.get("FrameTime")
    if step is not None and float(step) > 0:
        return (np.arange(n_frames) * float(step)).tolist()
    return None


def stored_frames(ds: Dataset, threads: int = 1) -> np.ndarray:
    """Stored values as ``(T, H, W)`` or ``(T, H, W, 3)`` in native byte order: YBR colour decoded to RGB, bits
    above Bits Stored masked (a codestream's values as it gives them, see :func:`decoded_bits`); a grey JPEG
    2000 frame decoded on up to ``threads`` threads.

    Raises
    ------
    UnsupportedTransferSyntaxError
        If no installed decoder handles the transfer syntax.
    InvalidDicomFileError
        If the pixel data cannot be read.
    """
    path = source_name(ds)
    n_frames = frame_count(ds)
    try:
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError) as exc:
        raise InvalidDicomFileError(
            f"{path}: (0028,0002) Samples per Pixel is not an integer ({exc}); fix or exclude the file", path=path, tag="(0028,0002)"
        ) from exc
    if samples == 1:
        native = native_stack(ds, n_frames)
        if native is not None:
            return native
    array = decode_pixels(ds, threads=threads)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)  # big-endian files decode to '>u2'
    frame_ndim = 3 if samples > 1 else 2
    return array if array.ndim == frame_ndim + 1 else array[np.newaxis]


def decoded_bits(ds: Dataset) -> int:
    """Bits the decoded stored values span: Bits Stored, or a JPEG, JPEG-LS or JPEG 2000 codestream's larger
    sample precision (at most Bits Allocated).

    PS3.5 8.2 lets the codestream's own parameters control its decoding, and
    pydicom returns its values unmasked: a 16-bit codestream under Bits Stored
    12 may decode to values up to 65535, which the grey table must cover.
    """
    bits = bits_stored(ds)
    uid = transfer_syntax(ds)
    if uid in JPEG2000TransferSyntaxes:
        precision = _j2k_precision
    elif uid in JPEGTransferSyntaxes or uid in JPEGLSTransferSyntaxes:
        precision = _jpeg_precision
    else:
        return bits
    frames = generate_frames(ds.PixelData, number_of_frames=frame_count(ds))
    return min(max([bits, *(precision(frame) for frame in frames)]), int(ds.BitsAllocated))


def _j2k_precision(codestream: bytes) -> int:
    """Sample precision of a JPEG 2000 codestream's SIZ segment (0 if not found)."""
    return int(get_j2k_parameters(codestream).get("precision", 0))


def _jpeg_precision(codestream: bytes) -> int:
    """Sample precision of a JPEG or JPEG-LS codestream's start-of-frame segment (0 if not found)."""
    pos = 2  # after SOI
    while pos + 5 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, pos)
        if marker in _SOF:
            return codestream[pos + 4]
        if marker == _SOS or marker >> 8 != 0xFF:
            return 0
        pos += 2 + length
    return 0


def load_image(
    source: str | os.PathLike[str] | Dataset,
    *,
    voi: str | int | tuple[float, float] = "header",
    display: str | None = None,
    facing: str = "right",
    dtype: Any = np.float32,
    reduce_to: tuple[int, int] | None = None,
    remote: Remote | None = None,
    threads: int | None = None,
) -> Image2D:
    """Load a 2D image (CR, DX, MG, IO, XA/RF, US, OT, SC; one frame or cine) in display values.

    Parameters
    ----------
    source
        Path or fsspec URL of the file, or a dataset read with its pixels.
    voi
        ``"header"`` (the first VOI LUT table, else the first window, else
        none), an index into the header's windows/tables, ``(center, width)``
        in modality units, the name of a :data:`~dicomml.transforms.WINDOW_PRESETS`
        preset, or ``"none"``. Ignored for colour images.
    display
        None keeps the stored orientation; ``"breast"`` or ``"chest"`` flips
        the image to that display convention
        (see :func:`~dicomml.imaging2d.orientation.display_flips`) and
        records the flips in ``meta["flips"]``.
    facing
        For ``display="breast"``: the side every breast's nipple points to.
    dtype
        Float type of grey values (float64 reproduces pydicom's exactly).
    reduce_to
        (rows, columns) of the box the image will be letterboxed into: a
        single-frame grey JPEG 2000 image is then decoded at its coarsest
        wavelet level still as large as the letterboxed image (see :mod:`~dicomml.imaging2d.j2k`; an approximation, recorded
        as ``meta["decode_level"]``, with the spacing of that level).
    remote
        How to reach a URL ``source`` (storage options, credentials): a
        :class:`dicomml.sources.Remote`, usually the manifest's ``remote``.
    threads
        Threads that decode a JPEG 2000 frame and apply the LUTs; None: one per core this
        process may use. Pass 1 where several images are decoded in
        parallel (the Datasets pass torch's intra-op thread count, which is
        1 in DataLoader workers).

    Returns
    -------
    Image2D

    Raises
    ------
    InvalidDicomFileError
        If the file is not DICOM, has no image, or its LUTs are malformed.
    UnsupportedTransferSyntaxError
        If its pixel data cannot be decoded.
    ConfigError
        If ``voi``, ``display`` or ``facing`` is not one of the values above.

    Examples
    --------
    >>> image = load_image("mammo/L_CC.dcm", display="breast")  # doctest: +SKIP
    >>> image.pixels.shape, image.meta["view"], image.meta["flips"]  # doctest: +SKIP
    ((1, 4096, 3328), 'CC', [])
    """
    voi = voi_window(checked_voi("load_image", voi))  # checked before the file is read
    check_choice("load_image", "display", display, DISPLAYS)
    check_choice("load_image", "facing", facing, FACINGS)
    ds = source if isinstance(source, Dataset) else read_dataset(source, pixels=True, remote=remote)
    path = source_name(ds)
    if not any(keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):  # float: parametric maps
        raise InvalidDicomFileError(f"{path}: (7FE0,0010) no Pixel Data: not an image", path=path, tag="(7FE0,0010)")
    rows, columns = frame_size(ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    reduced = reduced_frame(ds, reduce_to) if reduce_to is not None else None
    threads = threads or _cores()
    stored = reduced[0][np.newaxis] if reduced is not None else stored_frames(ds, threads)
    level = reduced[1] if reduced is not None else 0
    meta: dict[str, Any] = {
        "path": path,
        "modality": str(ds.get("Modality", "") or ""),
        "photometric_interpretation": photometric,
        "decode_level": level,
        "full_shape": [rows, columns],
    }
    if photometric == "PALETTE COLOR":
        pixels = palette_to_rgb(stored, ds)
        # the entries' bits (8 or 16), not the dtype: pydicom returns 8-bit entries kept in 16-bit words as uint16
        meta.update(output_range=[0.0, float(2 ** int(ds.RedPaletteColorLookupTableDescriptor[2]) - 1)])
    elif photometric in COLOUR:
        pixels = stored
        meta.update(output_range=[0.0, float(2 ** bits_stored(ds) - 1)])  # 12 of 16 bits: full scale is 4095
    else:
        pixels, applied = grey_values(stored, ds, voi, dtype=dtype, threads=threads, bits=decoded_bits(ds))
        meta.update(applied)
    if pixels.ndim == 4:
        meta.update(voi="none", inverted=None, colour="RGB")
    spacing = physical_spacing(ds)
    if level and spacing.known:
        factors = (rows / stored.shape[1], columns / stored.shape[2])
        spacing = Spacing(spacing.row * factors[0], spacing.column * factors[1], spacing.source)  # type: ignore[operator]
    header = projection_header(ds)
    horizontal, vertical, basis = display_flips(header, display, facing=facing) if display else (False, False, None)
    transposed = bool(display) and display_transpose(header, display)  # type: ignore[arg-type]
    if transposed:  # a film on its side: rows and columns swap first, then the flips
        pixels = np.ascontiguousarray(np.swapaxes(pixels, 1, 2))
        if spacing.known:
            spacing = Spacing(spacing.column, spacing.row, spacing.source)  # type: ignore[arg-type]
    if horizontal or vertical:
        axes = tuple(a for a, f in ((2, horizontal), (1, vertical)) if f)
        pixels = np.ascontiguousarray(np.flip(pixels, axis=axes))
    orientation = header.patient_orientation
    if orientation is not None:
        orientation = flipped_orientation(transposed_orientation(orientation) if transposed else orientation, horizontal, vertical)
    meta.update(
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        laterality=header.laterality,
        view=header.view,
        patient_orientation="\\".join(orientation) if orientation else None,
        burned_in=header.burned_in,
        display=display,
        flips=[name for name, f in (("horizontal", horizontal), ("vertical", vertical)) if f],
        flip_basis=basis,
        transposed=transposed,
        spacing=[spacing.row, spacing.column] if spacing.known else None,
        spacing_source=spacing.source,
        spacing_missing=not spacing.known,
        frame_times_ms=frame_times(ds, pixels.shape[0]),
    )
    return Image2D(pixels=pixels, spacing=spacing, meta=meta)

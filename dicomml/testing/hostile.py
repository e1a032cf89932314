"""A seeded hostile corpus, built in a temporary folder from real files of the test corpus.

Each category lies in one way a real archive (or an attacker) can: header
values that ask for huge allocations, lying lengths and frame counts, corrupt
codestreams, a deflate bomb, deep nesting, VR and transfer-syntax lies,
geometry lies, lost slices, and file-system traps. The test suite builds a
small corpus (``scale=1``); ``scripts/fuzz.py`` a large one. Nothing here is
a mock: every case is a file that pydicom and dicomml read for real.
"""

from __future__ import annotations

import io
import os
import random
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from dicomml.dicom.meta import LONG_VRS

__all__ = ["CATEGORIES", "SOURCES", "build_corpus", "entries"]

#: Real files the cases are made from, relative to the test corpus.
SOURCES = {
    "series": "dcmqi/data/segmentations/24x38x3/image",  # 3 classic CT slices, implicit VR
    "native": "pydicom-data/data_store/data/emri_small.dcm",  # 10 frames, explicit VR
    "rle": "pydicom-data/data_store/data/emri_small_RLE.dcm",
    "j2k": "pydicom-data/data_store/data/emri_small_jpeg_2k_lossless.dcm",
    "jls": "pydicom-data/data_store/data/emri_small_jpeg_ls_lossless.dcm",
    "jpeg": "pydicom-data/data_store/data/JPEG-LL.dcm",
    "mosaic": "dcm_qa_ts/In/1.dcm",  # Siemens mosaic with a CSA header
}
_ENCAPSULATED = ("rle", "j2k", "jls", "jpeg")
#: What a deflate bomb inflates to: past the 256 MiB that dicomml inflates at most.
BOMB_BYTES = 300 * 1024 * 1024


def _bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=False)
    return out.getvalue()


def _edited(source: Path, edit: Callable[[Dataset], None]) -> bytes:
    ds = pydicom.dcmread(source)
    edit(ds)
    return _bytes(ds)


def _setter(**values: object) -> Callable[[Dataset], None]:
    def edit(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return edit


def _header_lies(rng: random.Random, files: dict[str, Path]) -> list[tuple[str, bytes]]:
    kind = rng.choice(["native", *_ENCAPSULATED])
    source = files[kind]
    huge = rng.choice([268435456, 2**31 - 1, 10**6 + 7])
    return [
        ("frame_count_lie", _edited(source, _setter(NumberOfFrames=huge))),
        ("frame_count_lie", _edited(source, _setter(NumberOfFrames=rng.choice(["3.7", "-5", "0", "1e9"])))),
        ("rows_columns_lie", _edited(source, _setter(Rows=65535, Columns=65535))),
        ("rows_columns_lie", _edited(source, _setter(Rows=rng.choice([1, 7, 4096]), Columns=rng.choice([3, 65535])))),
        ("bits_lie", _edited(source, _setter(BitsAllocated=rng.choice([1, 7, 12, 64]), BitsStored=rng.choice([1, 16, 40])))),
        (
            "rescale_lie",
            _edited(
                source,
                _setter(
                    RescaleSlope=rng.choice(["1e20", "-1e20", "1e38", "1e300", "0"]),
                    RescaleIntercept=rng.choice(["0", "1e19", "-1e19", "1e308"]),
                ),
            ),
        ),
        ("transfer_syntax_lie", _ts_lie(rng, kind, source.read_bytes())),
        (
            "pixel_module_lie",
            _edited(
                source,
                _setter(SamplesPerPixel=rng.choice([0, 3, 255]), PhotometricInterpretation=rng.choice(["RGB", "PALETTE COLOR", "XYZ"])),
            ),
        ),
    ]


def _ts_lie(rng: random.Random, kind: str, data: bytes) -> bytes:
    """``data`` with another TransferSyntaxUID in its file meta (patched in place: pydicom would not write these)."""
    value = rng.choice(
        [
            b"1.2.840.10008.1.2.1\\1.2.840.10008.1.2",  # multi-valued
            b"1.2.3.4.5.6",  # unknown
            b"1.2.840.10008.1.2.4.50" if kind == "native" else b"1.2.840.10008.1.2.1",  # compressed or not, the other way
            b"1.2.840.10008.1.2.4.90" if kind != "j2k" else b"1.2.840.10008.1.2.5",  # the wrong codec
        ]
    )
    value += b"\0" * (len(value) % 2)
    at = data.index(b"\x02\x00\x10\x00UI")
    (old,) = struct.unpack_from("<H", data, at + 6)
    patched = bytearray(data[:at] + struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(value)) + value + data[at + 8 + old :])
    (group_length,) = struct.unpack_from("<L", patched, 140)
    struct.pack_into("<L", patched, 140, group_length + len(value) - old)
    return bytes(patched)


def _corrupt_codestream(rng: random.Random, files: dict[str, Path]) -> list[tuple[str, bytes]]:
    kind = rng.choice(_ENCAPSULATED)
    data = bytearray(files[kind].read_bytes())
    start = data.rfind(b"\xe0\x7f\x10\x00") + 40  # inside the first fragments
    for _ in range(rng.choice([1, 4, 32])):
        data[rng.randrange(start, len(data) - 8)] = rng.randrange(256)
    out = [(f"corrupt_{kind}", bytes(data))]
    ds = pydicom.dcmread(files[kind])
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))
    if len(frames) > 1:  # a Basic Offset Table that is not monotonic
        bot = encapsulate(frames, has_bot=True)
        offsets = list(struct.unpack_from(f"<{len(frames)}L", bot, 16))
        rng.shuffle(offsets)
        offsets[0], offsets[-1] = max(offsets) + 8, 0
        lied = bytearray(bot)
        struct.pack_into(f"<{len(frames)}L", lied, 16, *offsets)
        ds.PixelData = bytes(lied)
        out.append(("offset_table_lie", _bytes(ds)))
    return out


def _explicit_body(ds: Dataset) -> bytes:
    """The dataset of ``ds`` encoded explicit VR little endian, without preamble or file meta."""
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=True, enforce_file_format=False)
    data = out.getvalue()
    if data[128:132] == b"DICM":
        (meta_length,) = struct.unpack_from("<L", data, 140)
        return data[144 + meta_length :]
    return data


def _with_meta(ds: Dataset, syntax: str, body: bytes) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = pydicom.uid.UID(syntax)
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + out.getvalue() + body


def _deflate_bomb(files: dict[str, Path]) -> bytes:
    ds = pydicom.dcmread(files["native"])
    padding = struct.pack("<HH2sHL", 0xFFFC, 0xFFFC, b"OB", 0, BOMB_BYTES)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [deflater.compress(_explicit_body(ds) + padding)]
    zeros = b"\0" * (1 << 24)
    for _ in range(BOMB_BYTES // len(zeros)):
        parts.append(deflater.compress(zeros))
    parts.append(deflater.flush())
    return _with_meta(ds, DeflatedExplicitVRLittleEndian, b"".join(parts))


def _deep_nesting(rng: random.Random, files: dict[str, Path]) -> bytes:
    """Sequences nested ``depth`` deep (undefined lengths), written by hand: pydicom's writer recurses."""
    ds = pydicom.dcmread(files["native"])
    depth = rng.choice([20, 200, 1200])
    opening = struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    nested = opening * depth + closing * depth
    body = _explicit_body(ds)
    at = _first_element_after(body, 0x00081115)
    return _with_meta(ds, ExplicitVRLittleEndian, body[:at] + nested + body[at:])


def _first_element_after(body: bytes, tag: int) -> int:
    pos = 0
    while pos < len(body):
        group, elem, vr = struct.unpack_from("<HH2s", body, pos)
        if (group << 16 | elem) > tag:
            return pos
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<L", body, pos + 8)
            pos += 12 + length
        else:
            (length,) = struct.unpack_from("<H", body, pos + 6)
            pos += 8 + length
    return pos


def _vr_lie(rng: random.Random, files: dict[str, Path]) -> bytes:
    data = bytearray(files["native"].read_bytes())
    at = data.find(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality
    data[at + 4 : at + 6] = rng.choice([b"ZZ", b"\x00\x00", b"SQ", b"UN"])
    return bytes(data)


def _csa_lie(rng: random.Random, files: dict[str, Path]) -> bytes:
    def edit(ds: Dataset) -> None:
        value = ds[0x00291010].value
        ds[0x00291010].value = value[: rng.choice([10, 40, len(value) // 2])]

    return _edited(files["mosaic"], edit)


def _byte_level(rng: random.Random, files: dict[str, Path]) -> list[tuple[str, bytes]]:
    original = files[rng.choice(list(files))].read_bytes()
    flipped = bytearray(original)
    for _ in range(rng.choice([1, 8, 64])):
        flipped[rng.randrange(132, len(flipped))] ^= 1 << rng.randrange(8)
    return [("truncated", original[: rng.randrange(1, len(original))]), ("bit_flip", bytes(flipped))]


def _series_lies(rng: random.Random, slices: list[Path], root: Path, n: int) -> None:
    lies: dict[str, Callable[[int], dict[str, object]]] = {
        "spacing_zero": lambda i: {"PixelSpacing": [0, 0]},
        "spacing_negative": lambda i: {"PixelSpacing": [-0.5, 0.5]},
        "spacing_huge": lambda i: {"PixelSpacing": [1e308, 1e308]},
        "spacing_tiny": lambda i: {"PixelSpacing": [1e-308, 1e-308]},
        "orientation_not_unit": lambda i: {"ImageOrientationPatient": [1.002, 0, 0, 0, 1, 0]},
        "orientation_not_orthogonal": lambda i: {"ImageOrientationPatient": [1, 0, 0, 0.05, 0.99875, 0]},
        "orientation_one_file_off": lambda i: {"ImageOrientationPatient": [1, 0, 0, 0, 1, 0] if i else [0.998, 0.0632, 0, 0, 1, 0]},
        "positions_huge": lambda i: {"ImagePositionPatient": [1e308, -1e308, i]},
        "positions_spread": lambda i: {"ImagePositionPatient": [0, 0, (i - 1) * 1e308]},
        "slices_far_apart": lambda i: {"ImagePositionPatient": [0, 0, i * 1e6]},
        "slices_apart_in_range": lambda i: {"ImagePositionPatient": [0, 0, i * 9e4]},
    }
    for name, lie in lies.items():
        for copy in range(n):
            folder = root / f"series_{name}" / f"{copy:03d}"
            folder.mkdir(parents=True)
            for i, path in enumerate(slices):
                ds = pydicom.dcmread(path)
                ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[name, str(copy)])
                for keyword, value in lie(i).items():
                    setattr(ds, keyword, value)
                ds.save_as(folder / path.name, enforce_file_format=False)
    for copy in range(n):  # a slice lost to a truncated file: first, middle or last
        folder = root / "series_lost_slice" / f"{copy:03d}"
        folder.mkdir(parents=True)
        lost = rng.randrange(len(slices))
        for i, path in enumerate(slices):
            data = path.read_bytes()
            (folder / path.name).write_bytes(data[: rng.randrange(140, 600)] if i == lost else data)


def _file_system(root: Path, n: int, source: Path) -> None:
    traps = root / "fs_traps"
    traps.mkdir()
    data = source.read_bytes()
    for i in range(n):
        (traps / os.fsdecode(b"\xff\xfe%d.dcm" % i)).write_bytes(data)  # not UTF-8
        quoted = traps / f'it\'s "{i}"; DROP TABLE'  # quotes and SQL in a folder name
        quoted.mkdir()
        (quoted / "x.dcm").write_bytes(data)
        (traps / f"dangling{i}.dcm").symlink_to(traps / f"nowhere{i}.dcm")
        (traps / f"loop{i}.dcm").symlink_to(traps / f"loop{i}.dcm")
        (traps / f"folder{i}.dcm").mkdir()
        (traps / f"empty{i}.dcm").write_bytes(b"")
        os.mkfifo(traps / f"fifo{i}.dcm")


#: Categories and how many cases each adds per unit of ``scale`` (file-system traps add 7 a unit).
CATEGORIES = (
    "frame_count_lie",
    "rows_columns_lie",
    "bits_lie",
    "rescale_lie",
    "transfer_syntax_lie",
    "pixel_module_lie",
    "corrupt_rle",
    "corrupt_j2k",
    "corrupt_jls",
    "corrupt_jpeg",
    "offset_table_lie",
    "deflate_bomb",
    "deep_nesting",
    "vr_lie",
    "csa_lie",
    "truncated",
    "bit_flip",
    "series_*",
    "series_lost_slice",
    "fs_traps",
)


def build_corpus(data_dir: Path, root: Path, *, scale: int = 1, seed: int = 0, bombs: int = 1) -> dict[str, int]:
    """Write a hostile corpus under ``root`` (which must not exist); return the number of entries per category.

    Parameters
    ----------
    data_dir
        The real test corpus (:func:`dicomml.testing.data_root`).
    root
        Where to write it.
    scale
        Cases per category grow with it (``scale=1``: about 170 entries; ``8``: over 1,000).
    seed
        Seed of every random choice: the same seed gives the same bytes.
    bombs
        Deflate bombs to write (each inflates to ``BOMB_BYTES``; building one takes a second).

    Returns
    -------
    dict
        Category: entries (files, links and folders the crawl meets).
    """
    warnings.simplefilter("ignore")  # pydicom warns about every lie it is asked to write
    rng = random.Random(seed)
    files = {name: data_dir / relative for name, relative in SOURCES.items() if name != "series"}
    slices = sorted((data_dir / SOURCES["series"]).glob("*.dcm"))
    root.mkdir(parents=True)
    counts: dict[str, int] = {}

    def write(category: str, data: bytes) -> None:
        folder = root / category
        folder.mkdir(exist_ok=True)
        (folder / f"{counts.get(category, 0):04d}.dcm").write_bytes(data)
        counts[category] = counts.get(category, 0) + 1

    for _ in range(4 * scale):
        for category, data in _header_lies(rng, files) + _corrupt_codestream(rng, files) + _byte_level(rng, files):
            write(category, data)
        write("vr_lie", _vr_lie(rng, files))
        write("csa_lie", _csa_lie(rng, files))
        write("deep_nesting", _deep_nesting(rng, files))
    for _ in range(bombs):
        write("deflate_bomb", _deflate_bomb(files))
    _series_lies(rng, slices, root, scale)
    for folder in sorted(root.glob("series_*")):
        counts[folder.name] = sum(1 for _ in folder.rglob("*.dcm"))
    _file_system(root, 2 * scale, files["native"])
    counts["fs_traps"] = sum(1 for _ in (root / "fs_traps").rglob("*"))
    return counts


def entries(root: Path) -> set[str]:
    """What an index of ``root`` must account for: every file, link, special file and ``*.dcm`` folder."""
    found = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if not os.path.isdir(path) or os.path.islink(path) or name.endswith(".dcm"):
                found.add(path)
    return found

"""Hostile input: a corruption corpus made from real files; the indexer records every case.

Cases (at least 500): truncation at random offsets, bit flips in element length
fields and VRs, lengths past the end of the file (up to 0xFFFFFFFF), undefined
lengths without delimiters, wrong VRs on the tags the manifest reads,
non-DICOM bytes named .dcm, empty files, directories named .dcm, symlink loops
and unreadable files. Element offsets come from pydicom's reader.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

import dicomml

SOURCES = [
    "dcmqi/data/segmentations/24x38x3/image/IMG0001.dcm",  # implicit VR LE
    "dicom2nifti/tests/data/hitachi/anatomical/001/001.dcm",  # implicit VR LE
    "dcm_qa_philips_enh/In/cl/1901_0001.dcm",  # explicit VR LE
    "pydicom-data/data_store/data/emri_small.dcm",  # enhanced, sequences
    "pydicom-data/data_store/data/emri_small_big_endian.dcm",  # explicit VR BE
    "derived-dcmtk/dcmqi/rle-lossless/data/segmentations/ct-3slice/01.dcm",  # encapsulated
]
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
VALID_VRS = set("AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split())
WANTED = {0x00280010: "SS", 0x00280030: "LO", 0x00200032: "CS", 0x00080060: "US", 0x00080018: "SH"}


def _elements(path: Path) -> tuple[list[tuple[int, str | None, int, int]], bool, bool]:
    """(tag, VR in file or None, length-field offset, length-field size) of raw top-level elements."""
    ds = pydicom.dcmread(path)
    implicit, little = ds.original_encoding
    data = path.read_bytes()
    out = []
    for tag, raw in ds._dict.items():  # raw elements keep their offsets
        if not isinstance(raw, pydicom.dataelem.RawDataElement) or tag >> 16 == 0x7FE0:
            continue
        size = 4 if implicit or raw.VR in LONG_VRS else 2
        at = raw.value_tell - size
        length = struct.unpack_from(("<" if little else ">") + ("L" if size == 4 else "H"), data, at)[0]
        if length == raw.length:  # the offset is right
            out.append((int(tag), None if implicit else raw.VR, at, size))
    return out, implicit, little


def _put_length(data: bytearray, offset: int, size: int, value: int, little: bool) -> None:
    data[offset : offset + size] = struct.pack(("<" if little else ">") + ("L" if size == 4 else "H"), value)


def build_corpus(data_dir: Path, root: Path) -> list[Path]:
    """Write the cases under ``root``; return the paths that must appear in ``errors``."""
    rng = random.Random(20261127)
    cases: list[Path] = []

    def write(category: str, data: bytes) -> Path:
        folder = root / category
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{len(cases):04d}.dcm"
        path.write_bytes(bytes(data))
        cases.append(path)
        return path

    for relative in SOURCES:
        source = data_dir / relative
        original = source.read_bytes()
        elements, implicit, little = _elements(source)
        for offset in rng.sample(range(1, len(original)), 35):
            write("truncated", original[:offset])
        for _ in range(15):
            _, _, at, size = rng.choice(elements)
            data = bytearray(original)
            data[at + rng.randrange(size)] ^= 1 << rng.randrange(8)
            write("length_bit_flip", data)
        for _ in range(10):
            _, vr, at, size = rng.choice(elements)
            data = bytearray(original)
            lie = rng.choice([0xFFFFFFFF if size == 4 else 0xFFFF, 0xFFFFFFF0 if size == 4 else 0xFFF0, len(original) + 1000])
            _put_length(data, at, size, lie & (0xFFFFFFFF if size == 4 else 0xFFFF), little)
            write("length_past_eof", data)
        if not implicit:
            flips = 0
            while flips < 8:
                _, vr, at, size = rng.choice(elements)
                vr_at = at - 2 if size == 2 else at - 6
                data = bytearray(original)
                data[vr_at + rng.randrange(2)] ^= 1 << rng.randrange(8)
                if data[vr_at : vr_at + 2].decode("latin-1") not in VALID_VRS:
                    write("vr_bit_flip", data)
                    flips += 1
            by_tag = {tag: (vr, at, size) for tag, vr, at, size in elements}
            for tag, wrong in WANTED.items():
                if tag in by_tag and by_tag[tag][2] == 2:
                    _, at, _ = by_tag[tag]
                    data = bytearray(original)
                    data[at - 2 : at] = wrong.encode()
                    write("wrong_vr", data)
        else:
            for _ in range(10):  # a plain element made "undefined length": items expected, none follow
                _, _, at, size = rng.choice(elements)
                data = bytearray(original)
                _put_length(data, at, 4, 0xFFFFFFFF, little)
                write("undefined_length", data)
    rle = (data_dir / SOURCES[-1]).read_bytes()
    for cut in range(1, 9):  # encapsulated pixel data without its sequence delimiter
        write("no_delimiter", rle[:-cut])
    for i in range(30):
        junk = [
            os.urandom(rng.randrange(1, 5000)),
            b"\x89PNG\r\n\x1a\n" + os.urandom(200),
            b"PK\x03\x04" + os.urandom(300),
            f"not dicom {i}\n".encode() * 50,
            b"\x00" * 128 + b"DICN" + os.urandom(64),
        ][i % 5]
        write("not_dicom", junk)
    for _ in range(10):
        write("empty", b"")
    for i in range(10):
        folder = root / "dir_named_dcm" / f"{i:02d}.dcm"
        folder.mkdir(parents=True)
        cases.append(folder)
    loops = root / "symlink_loop"
    loops.mkdir()
    for i in range(5):
        link = loops / f"self{i}.dcm"
        link.symlink_to(link)
        cases.append(link)
        inner = loops / f"dir{i}"
        inner.mkdir()
        back = inner / "up"
        back.symlink_to(loops)
        cases.append(back)
    for i in range(10):
        path = write("unreadable", rle[: 1000 + 37 * i])  # also truncated, so an error even for root
        path.chmod(0)
    return cases


@pytest.fixture(scope="module")
def hostile(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], dict]:
    root = tmp_path_factory.mktemp("hostile")
    tree = root / "tree"
    cases = build_corpus(data_dir, tree)
    out = root / "manifest"
    # Index in a fresh process so that its peak memory is its own.
    script = (
        "import resource, sys, time, json, dicomml\n"
        "t = time.perf_counter()\n"
        "m = dicomml.index(sys.argv[1], sys.argv[2], workers=2, salt='t', progress=False, timeout_s=10)\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'counts': m.meta['counts']}))\n"
    )
    wrapper = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-c', *sys.argv[1:]], capture_output=True, text=True)\n"
        "print(r.stdout.strip()); print(r.returncode); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.write(r.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", wrapper, script, str(tree), str(out)], capture_output=True, text=True)
    summary, returncode, peak_kib = run.stdout.strip().splitlines()[-3:]
    report = {"returncode": int(returncode), "peak_mib": int(peak_kib) / 1024, "summary": summary, "stderr": run.stderr}
    return out, cases, report


def test_corpus_has_at_least_500_cases(hostile):
    _, cases, _ = hostile
    assert len(cases) >= 500


def test_index_survives_every_case(hostile):
    _, _, report = hostile
    assert report["returncode"] == 0, report["stderr"][-2000:]


def test_every_case_is_recorded_in_errors(hostile):
    out, cases, _ = hostile
    m = dicomml.Manifest(out)
    recorded = set(m.errors.path)
    missed = [str(c) for c in cases if str(c) not in recorded]
    # A flipped length bit can move the parse by whole elements (an empty element that now
    # swallows the next two, which are empty too): the file is then valid DICOM, read the
    # same by pydicom. Those, and only those, may be indexed; pydicom must agree on them.
    accepted = m.instances.set_index("path")
    for path in missed:
        assert "/length_bit_flip/" in path, f"{path} not in errors"
        ds = pydicom.dcmread(path)
        _ = ds.pixel_array  # the outside reader trusts the whole file
        row = accepted.loc[path]
        assert (row.sop_instance_uid, row.rows, row.columns) == (ds.SOPInstanceUID, ds.Rows, ds.Columns)
    assert len(missed) <= 10, f"{len(missed)} length bit flips went unnoticed"


def test_errors_say_what_is_wrong(hostile):
    out, _, _ = hostile
    errors = dicomml.Manifest(out).errors.set_index("path")
    kinds = errors.groupby(errors.index.map(lambda p: Path(p).parent.name)).error_type.agg(set)
    assert kinds["empty"] == {"not_dicom"} and kinds["not_dicom"] == {"not_dicom"}
    assert kinds["dir_named_dcm"] == {"directory_named_dcm"}
    assert set(errors[errors.index.str.contains("/symlink_loop/")].error_type) == {"symlink_loop"}
    assert kinds["truncated"] <= {"invalid", "not_dicom"}
    past = errors[errors.index.str.contains("/length_past_eof/")]
    assert past.message.str.contains("past the end of the file|out of order|invalid value representation|expected an item tag").all()
    wrong = errors[errors.index.str.contains("/wrong_vr/")]
    assert wrong.message.str.contains(r"has VR \w\w, expected").all()
    assert all(path in message for path, message in zip(errors.index, errors.message))


def test_memory_stays_bounded_on_lying_lengths(hostile):
    _, _, report = hostile
    # A reader that believed a 0xFFFFFFFF length would ask for 4 GiB.
    assert report["peak_mib"] < 700, report


def test_crawl_reports_a_fifo_and_goes_on(data_dir: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe.dcm")
    (tree / "ok.dcm").write_bytes((data_dir / SOURCES[0]).read_bytes())
    m = dicomml.index(tree, tmp_path / "m", workers=1, salt="t", progress=False)
    assert list(m.errors.error_type) == ["not_regular_file"]
    assert list(m.instances.path) == [str(tree / "ok.dcm")]


def test_peak_memory_of_one_worst_file(tmp_path: Path, data_dir: Path):
    """One file whose pixel data claims 0xFFFFFFF0 bytes, read alone in a fresh process."""
    source = (data_dir / SOURCES[2]).read_bytes()
    at = source.rindex(b"\xe0\x7f\x10\x00OW") + 8
    bad = bytearray(source)
    bad[at : at + 4] = struct.pack("<L", 0xFFFFFFF0)
    (tmp_path / "worst.dcm").write_bytes(bytes(bad))
    code = (
        "import resource, sys\n"
        "from dicomml.indexer.crawl import Entry\n"
        "from dicomml.indexer.scan import ScanOptions, scan_batch\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "i, e = scan_batch([Entry(sys.argv[1], '', 0, 0, sys.argv[1])], ScanOptions(False, b't'))\n"
        "print(e.column('error_type')[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "worst.dcm")], capture_output=True, text=True, check=True)
    kind, grown_kib = out.stdout.split()
    assert kind == "invalid"
    assert int(grown_kib) < 20 * 1024  # reading it grew the process by under 20 MiB


def test_a_seg_without_frames_or_references_is_recorded_unlinked(tmp_path: Path):
    """A SEG-labelled image with no per-frame positions and no references, beside a series of its frame of
    reference: the linking read SQL NULL as pandas' NA and the whole index stopped."""
    from dicomml.dicom.synthetic import write_series

    files = write_series(tmp_path / "tree" / "ct", np.zeros((3, 8, 8), np.int16))  # the SEG keeps their frame of reference
    ds = pydicom.dcmread(files[0])
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "SEG", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.3.4.5"
    del ds.ImagePositionPatient
    (tmp_path / "tree" / "seg").mkdir()
    ds.save_as(tmp_path / "tree" / "seg" / "x.dcm")
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", progress=False)
    assert len(m.annotations) == 1 and m.annotations.referenced_series_key.isna().all()
    assert "referenced image series not found" in m.annotations.link_problem.iloc[0]
    assert len(m.series) == 1 and bool(m.series.usable.iloc[0])


def test_a_multi_valued_transfer_syntax_is_an_error_row(tmp_path: Path):
    from dicomml.dicom.synthetic import write_series

    (path,) = write_series(tmp_path / "tree", np.zeros((1, 8, 8), np.int16))
    data = path.read_bytes()
    syntax = b"1.2.840.10008.1.2.1\x00"
    at = data.index(syntax)
    both = b"1.2.840.10008.1.2.1\\1.2.840.10008.1.2"  # even length: no padding
    path.write_bytes(data[: at - 2] + len(both).to_bytes(2, "little") + both + data[at + len(syntax) :])
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", progress=False)
    assert m.instances.empty and list(m.errors.error_type) == ["invalid"]
    assert "(0002,0010)" in m.errors.message.iloc[0] and "several values" in m.errors.message.iloc[0]


def test_free_text_longer_than_its_vr_allows_is_indexed_not_refused(tmp_path: Path):
    """Real archives hold Patient IDs and descriptions longer than LO / SH allow (pydicom reads them): refusing the
    file lost the image. Codes (CS, UI, DA, AS) stay strict: an over-long one is a lying length."""
    from dicomml.dicom.synthetic import write_series
    from dicomml.indexer.privacy import patient_key

    files = write_series(tmp_path / "tree", np.zeros((3, 8, 8), np.int16))
    long_id, long_description = "ID-" + "7" * 77, "Thorax " * 15
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.SeriesDescription = long_id, long_description
        ds.save_as(path)
    m = dicomml.index(tmp_path / "tree", tmp_path / "m", workers=1, salt="s", progress=False)
    assert m.errors.empty and len(m.instances) == 3
    assert m.series.series_description.iloc[0] == long_description.strip()
    assert set(m.instances.patient_key) == {patient_key(long_id, b"s")}

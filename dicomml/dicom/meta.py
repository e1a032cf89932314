"""The file meta information at the head of a DICOM Part 10 file, read from its bytes (no pydicom)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["LONG_VRS", "file_meta"]

#: Explicit VRs whose length field is 4 bytes, after 2 reserved ones.
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def file_meta(head: bytes, at: int = 132) -> Iterator[tuple[int, int, int]]:
    """The file meta elements (group 0002, explicit VR little endian) from ``at``, as pydicom reads them,
    without trusting (0002,0000): ``(element number, value offset, value length)``; stops at another
    group or where ``head`` ends (a value may run past it)."""
    while at + 8 <= len(head) and head[at : at + 2] == b"\x02\x00":
        (element,) = struct.unpack_from("<H", head, at + 2)
        if head[at + 4 : at + 6] in LONG_VRS:
            if at + 12 > len(head):
                return
            (length,) = struct.unpack_from("<L", head, at + 8)
            at += 12
        else:
            (length,) = struct.unpack_from("<H", head, at + 6)
            at += 8
        yield element, at, length
        at += length

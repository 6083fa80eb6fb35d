"""PNG's container: the signature and the chunks, for the 16-bit files that Pillow reads and writes at 8 bits."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One chunk: length, type, body and the CRC of type and body."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Type and body of each chunk of a PNG file up to IEND, CRCs checked."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        body = data[offset + 8 : offset + 8 + length]
        crc = data[offset + 8 + length : offset + 12 + length]
        if len(crc) < 4:
            raise ValueError(f"the {kind.decode('latin-1')} chunk is cut short")
        if zlib.crc32(body, zlib.crc32(kind)) != int.from_bytes(crc, "big"):
            raise ValueError(f"the {kind.decode('latin-1')} chunk fails its CRC check")
        yield kind, body
        if kind == b"IEND":
            return
        offset += 12 + length
    raise ValueError("the file ends before its IEND chunk")

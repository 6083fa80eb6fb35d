"""`run --mask`: where each input's mask comes from, decided when the run is planned.

A mask is a sibling file ``<stem>.mask.png`` beside the input (white = change), or the input's own
transparency (Img2ImgLoadImage's MASK, 1 − alpha). The command is installed without Pillow and does not decode
pictures: whether an input has transparency is read from its header where the format says so cheaply (PNG's
colour type and tRNS chunk, JPEG, WebP's flags); where the header says it may have some, the server's own
loader decides (batch.py queues a small probe graph) so that an opaque RGBA file runs the plain graph.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .results import file_sha256

MASK_MODES = ("auto", "sibling", "alpha", "none")
MASK_SUFFIX = ".mask.png"
# Where an input's mask comes from (InputMask.source).
SIBLING, ALPHA, AUTO_ALPHA = "sibling", "alpha", "auto-alpha"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ALPHA_COLOUR_TYPES = (4, 6)  # gray + alpha, RGBA
WEBP_ALPHA_FLAG = 0x10  # VP8X's flags byte
VP8L_ALPHA_BIT = 28  # of the 32 bits after VP8L's signature byte: 14 + 14 bits of size, then alpha_is_used
# Formats whose transparency is not worth parsing here (GIF's per-frame extension, TIFF's extra samples, BMP's
# bit fields): the server looks.
MAYBE_TRANSPARENT_SIGNATURES = (b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM")


@dataclass(frozen=True)
class InputMask:
    """One input's mask: the ``sibling`` file (and its content's hash), or the input's transparency (``alpha``;
    ``auto-alpha``: only if the server finds some, else the plain graph)."""

    source: str
    file: Path | None = None
    sha256: str | None = None

    @property
    def key(self) -> str:
        """The mask's part of the input's identity for resume: a changed mask file is another picture; the
        input's transparency is in the input's own hash already."""
        return self.sha256 if self.source == SIBLING else ALPHA


def is_mask_file(path: Path) -> bool:
    return path.name.lower().endswith(MASK_SUFFIX)


def sibling_mask(path: Path) -> Path:
    """Where ``photo.jpg``'s mask lies: ``photo.mask.png`` beside it."""
    return path.with_name(path.stem + MASK_SUFFIX)


def plan_mask(path: Path, mode: str) -> InputMask | None:
    """The input's mask under ``--mask mode``; ValueError when ``sibling`` finds no file, OSError when a file
    cannot be read."""
    if mode == "none":
        return None
    sibling = sibling_mask(path)
    if mode in ("auto", SIBLING) and sibling.is_file():
        return InputMask(SIBLING, sibling.absolute(), file_sha256(sibling))
    if mode == SIBLING:
        raise ValueError(f"no mask {sibling.name} beside it (--mask sibling)")
    if mode == ALPHA:
        return InputMask(ALPHA)
    return InputMask(AUTO_ALPHA) if may_have_transparency(path) else None


def may_have_transparency(path: Path) -> bool:
    """Whether the file's header allows transparency: False for JPEG, for PNGs without an alpha channel or tRNS
    chunk and for WebPs without alpha, and for what the loader does not read; True where it may have some."""
    with open(path, "rb") as file:
        head = file.read(32)
        if head.startswith(PNG_SIGNATURE):
            return _png_may_have_transparency(file, head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        if head[12:16] == b"VP8X":
            return bool(head[20] & WEBP_ALPHA_FLAG)
        if head[12:16] == b"VP8L":
            return bool(int.from_bytes(head[21:25], "little") >> VP8L_ALPHA_BIT & 1)
        return False  # lossy VP8 alone has no alpha
    return head.startswith(MAYBE_TRANSPARENT_SIGNATURES)


def _png_may_have_transparency(file: BinaryIO, head: bytes) -> bool:
    """A PNG (APNG too): IHDR's colour type, then the chunks up to the first IDAT for a tRNS (it comes before)."""
    if len(head) < 26 or head[25] in PNG_ALPHA_COLOUR_TYPES:
        return True  # a cut-short header: the server judges it
    file.seek(len(PNG_SIGNATURE))
    while len(header := file.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        if kind == b"tRNS":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        file.seek(length + 4, 1)  # the data and the CRC
    return False

"""Bytes of a saved image with its metadata: PNG (8 or 16 bits per channel), WebP and JPEG.

Where each piece of metadata goes:

PNG and 16-bit PNG, as ComfyUI's SaveImage writes them: text chunks ``prompt`` (JSON of the
API-format graph) and one per ``extra_pnginfo`` entry (``workflow``: JSON of the UI graph), each a
tEXt chunk, or iTXt (UTF-8) when the text is not Latin-1, as Pillow does. The A1111 text goes in a
zTXt chunk ``parameters``: A1111, Pillow and image browsers read zTXt like tEXt, but ComfyUI's
frontend (1.32) reads only tEXt and iTXt, and a ``parameters`` chunk it can read would take
precedence over ``workflow`` when the file is dropped on it (it would import the A1111 text as a
graph of core nodes). zTXt is Latin-1: other characters are written as ``\\uXXXX`` escapes.

WebP and JPEG carry one big-endian EXIF block (WebP: the EXIF chunk; JPEG: the APP1 segment):

- IFD0 tag 0x0110 (Model), ASCII: ``prompt:`` + JSON of the prompt;
- IFD0 tag 0x010F (Make), ASCII: ``workflow:`` + JSON, the first ``extra_pnginfo`` entry, and any
  further entries as ``key:`` + JSON in 0x010E, 0x010D, ... This is how ComfyUI's SaveAnimatedWEBP
  writes them, and what ComfyUI's frontend reads back when a WebP is dropped on it: every ASCII tag
  of IFD0, split at its first ':' into name and JSON (``getWebpMetadata`` in ``pnginfo.ts``).
- Exif IFD tag 0x9286 (UserComment): ``UNICODE\\0`` + the A1111 text in UTF-16 big-endian, what
  A1111 writes through ``piexif.helper.UserComment.dump(text, encoding="unicode")`` and reads back
  from JPEG and WebP.

A JPEG's APP1 segment holds at most 65533 bytes. When the graph does not fit, the JPEG keeps only
the A1111 text, and when even that does not fit, no EXIF at all; both are logged as warnings.

With ``metadata=False`` (ComfyUI's ``--disable-metadata``) none of this is written, only pixels.
"""

from __future__ import annotations

import io
import json
import logging
import struct
import zlib

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .png import PNG_SIGNATURE, png_chunk

FORMAT_PNG = "png"
FORMAT_PNG16 = "png16"
FORMAT_WEBP = "webp"
FORMAT_JPEG = "jpeg"
FORMATS = (FORMAT_PNG, FORMAT_PNG16, FORMAT_WEBP, FORMAT_JPEG)
FILE_EXTENSIONS = {FORMAT_PNG: ".png", FORMAT_PNG16: ".png", FORMAT_WEBP: ".webp", FORMAT_JPEG: ".jpg"}

PNG_COMPRESS_LEVEL = 4  # ComfyUI's SaveImage default
WEBP_MAX_SIDE = 16383
JPEG_MAX_SIDE = 65535
JPEG_MAX_EXIF_BYTES = 65533  # an APP1 segment's 16-bit length counts itself

EXIF_TAG_PROMPT = 0x0110
EXIF_TAG_FIRST_EXTRA = 0x010F
EXIF_TAG_EXIF_IFD = 0x8769
EXIF_TAG_USER_COMMENT = 0x9286
USER_COMMENT_UNICODE = b"UNICODE\x00"

_EXIF_HEADER = b"Exif\x00\x00"
_TIFF_ASCII, _TIFF_LONG, _TIFF_UNDEFINED = 2, 4, 7
_TIFF_TYPE_SIZES = {_TIFF_ASCII: 1, _TIFF_LONG: 4, _TIFF_UNDEFINED: 1}
_RESERVED_KEYS = ("prompt", "parameters")

_log = logging.getLogger(__name__)


def image_to_array(image: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """One image of an IMAGE batch, [height, width, channels] in 0..1, as uint8 or uint16 RGB(A).

    Values are clamped to 0..1 (NaN to 0) and become round(x · 255) or round(x · 65535), rounding
    halves to even; a single channel is repeated into RGB.
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor [height, width, channels], got {type(image).__name__}")
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            "image must be one image [height, width, channels] with 1, 3 or 4 channels "
            f"(index an IMAGE batch: images[i]), got shape {tuple(image.shape)}"
        )
    values = image.detach().to(device="cpu", dtype=torch.float64).numpy()
    values = np.clip(np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    top = 255 if bit_depth == 8 else 65535
    pixels = np.rint(values * top).astype(np.uint8 if bit_depth == 8 else np.uint16)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _json(value: object, name: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} cannot be written as JSON: {error}") from error


def _metadata_texts(
    prompt: dict | None, extra_pnginfo: dict | None, parameters: str | None
) -> tuple[list[tuple[str, str]], str | None]:
    """The ComfyUI (name, JSON) entries in writing order, and the A1111 text or None."""
    entries = []
    if prompt is not None:
        entries.append(("prompt", _json(prompt, "prompt")))
    if extra_pnginfo is not None and not isinstance(extra_pnginfo, dict):
        raise ValueError(f"extra_pnginfo must be a dict, got {type(extra_pnginfo).__name__}")
    for key, value in (extra_pnginfo or {}).items():
        # PNG keywords are 1-79 Latin-1 characters; EXIF splits "key:json" at the first colon.
        valid = isinstance(key, str) and 0 < len(key) < 80 and key.isascii() and key.isprintable() and ":" not in key
        if not valid:
            raise ValueError(f"extra_pnginfo: key {key!r} must be 1 to 79 printable ASCII characters without ':'")
        if key in _RESERVED_KEYS:
            raise ValueError(f"extra_pnginfo: key {key!r} is written by the saver itself")
        entries.append((key, _json(value, f"extra_pnginfo[{key!r}]")))
    if parameters is not None and not isinstance(parameters, str):
        raise ValueError(f"parameters must be a str, got {type(parameters).__name__}")
    return entries, parameters or None


def _png_text_chunk(key: str, text: str) -> bytes:
    try:
        return png_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        # iTXt: keyword, no compression (flag 0, method 0), empty language tag and translated keyword.
        return png_chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "backslashreplace")


def _png16(pixels: np.ndarray, texts: list[tuple[str, str]], parameters: str | None) -> bytes:
    """A 48-bit RGB or 64-bit RGBA PNG, which Pillow cannot write: every row with filter 0 (none)."""
    height, width, channels = pixels.shape
    colour_type = 6 if channels == 4 else 2
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    rows = np.zeros((height, 1 + width * channels * 2), dtype=np.uint8)
    rows[:, 1:] = pixels.astype(">u2").view(np.uint8).reshape(height, -1)
    return b"".join(
        [
            PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            *(_png_text_chunk(key, text) for key, text in texts),
            *([png_chunk(b"zTXt", b"parameters\x00\x00" + zlib.compress(_latin1(parameters)))] if parameters else []),
            png_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL)),
            png_chunk(b"IEND", b""),
        ]
    )


def _png8(pixels: np.ndarray, texts: list[tuple[str, str]], parameters: str | None) -> bytes:
    info = PngInfo()
    for key, text in texts:
        info.add_text(key, text)  # falls back to iTXt for non-Latin-1 text
    if parameters:
        info.add_text("parameters", _latin1(parameters).decode("latin-1"), zip=True)  # Latin-1 + zip: zTXt
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _tiff_ifd(entries: list[tuple[int, int, bytes]], offset: int) -> bytes:
    """A big-endian IFD placed at ``offset`` of the TIFF block, with its out-of-line values after it."""
    entries = sorted(entries)
    data_offset = offset + 2 + 12 * len(entries) + 4
    table, data = [struct.pack(">H", len(entries))], []
    for tag, kind, value in entries:
        count = len(value) // _TIFF_TYPE_SIZES[kind]
        if len(value) <= 4:
            table.append(struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\x00"))
            continue
        table.append(struct.pack(">HHII", tag, kind, count, data_offset))
        padded = value + b"\x00" * (len(value) % 2)  # values start on word boundaries
        data.append(padded)
        data_offset += len(padded)
    table.append(struct.pack(">I", 0))  # no next IFD
    return b"".join(table + data)


def _exif(entries: list[tuple[str, str]], parameters: str | None) -> bytes:
    """The TIFF block of an EXIF payload (no ``Exif\\0\\0`` header); see the module docstring."""
    ifd0 = []
    extra_tag = EXIF_TAG_FIRST_EXTRA
    for key, text in entries:
        value = f"{key}:{text}".encode("ascii") + b"\x00"  # JSON escapes non-ASCII; keys are ASCII
        if key == "prompt":
            ifd0.append((EXIF_TAG_PROMPT, _TIFF_ASCII, value))
        else:
            ifd0.append((extra_tag, _TIFF_ASCII, value))
            extra_tag -= 1
    user_comment = None
    if parameters is not None:
        user_comment = (EXIF_TAG_USER_COMMENT, _TIFF_UNDEFINED, USER_COMMENT_UNICODE + parameters.encode("utf-16-be"))
        # The pointer is inline, so IFD0's length does not depend on its value.
        ifd0.append((EXIF_TAG_EXIF_IFD, _TIFF_LONG, struct.pack(">I", 0)))
    head = b"MM\x00\x2a" + struct.pack(">I", 8)
    first = _tiff_ifd(ifd0, 8)
    if user_comment is None:
        return head + first
    exif_ifd_offset = 8 + len(first)
    ifd0[-1] = (EXIF_TAG_EXIF_IFD, _TIFF_LONG, struct.pack(">I", exif_ifd_offset))
    return head + _tiff_ifd(ifd0, 8) + _tiff_ifd([user_comment], exif_ifd_offset)


def _jpeg_exif(entries: list[tuple[str, str]], parameters: str | None) -> bytes | None:
    """The APP1 payload; without the graph when it does not fit, None when nothing fits."""
    if not entries and parameters is None:
        return None
    payload = _EXIF_HEADER + _exif(entries, parameters)
    if len(payload) <= JPEG_MAX_EXIF_BYTES:
        return payload
    if entries and parameters is not None:
        payload = _EXIF_HEADER + _exif([], parameters)
        if len(payload) <= JPEG_MAX_EXIF_BYTES:
            _log.warning("JPEG: the ComfyUI graph does not fit in EXIF (64 KB); only the A1111 text is written")
            return payload
    _log.warning("JPEG: the metadata does not fit in EXIF (64 KB); the image is saved without it")
    return None


def _check_side(pixels: np.ndarray, limit: int, format_name: str) -> None:
    height, width = pixels.shape[:2]
    if max(height, width) > limit:
        raise ValueError(f"image: {format_name} holds at most {limit}×{limit} pixels, got {width}×{height}")


def image_file_bytes(
    image: torch.Tensor,
    image_format: str,
    prompt: dict | None = None,
    extra_pnginfo: dict | None = None,
    parameters: str | None = None,
    quality: int = 95,
    metadata: bool = True,
) -> bytes:
    """The file bytes of one image [height, width, channels] in ``image_format`` (one of ``FORMATS``).

    ``prompt`` and ``extra_pnginfo`` are ComfyUI's hidden inputs, ``parameters`` the A1111 text
    (None or empty: not written). ``quality`` (1-100) applies to WebP and JPEG; JPEG drops alpha.
    """
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be a whole number from 1 to 100, got {quality!r}")
    pixels = image_to_array(image, 16 if image_format == FORMAT_PNG16 else 8)
    entries, text = _metadata_texts(prompt, extra_pnginfo, parameters) if metadata else ([], None)
    if image_format == FORMAT_PNG16:
        return _png16(pixels, entries, text)
    if image_format == FORMAT_PNG:
        return _png8(pixels, entries, text)
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality}
    if image_format == FORMAT_WEBP:
        _check_side(pixels, WEBP_MAX_SIDE, "WebP")
        if entries or text is not None:
            options["exif"] = _exif(entries, text)
        Image.fromarray(pixels).save(buffer, format="WEBP", **options)
    else:
        _check_side(pixels, JPEG_MAX_SIDE, "JPEG")
        exif = _jpeg_exif(entries, text)
        if exif is not None:
            options["exif"] = exif
        Image.fromarray(np.ascontiguousarray(pixels[..., :3])).save(buffer, format="JPEG", **options)
    return buffer.getvalue()

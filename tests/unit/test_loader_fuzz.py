"""Fuzzing the image loader: whatever the bytes, a sane IMAGE + MASK or a ValueError that names the file.

Seeds are small real images of every loadable format, made here with Pillow (16-bit colour PNGs, which Pillow cannot
write, by a small encoder below, stored uncompressed so that mutations reach the pack's own PNG decoder). Mutations
truncate, flip, overwrite and splice bytes and rewrite the formats' length and size fields, some to inflated sizes.
"""

from __future__ import annotations

import io
import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from comfyui_img2img.nodes.core.images import load_image_file, probe_image_file

# Pillow warns about the corrupt metadata it skips ("Corrupt EXIF data", "Tag data larger than file"): expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

# A load that takes longer than this is a hang: the timer stops it and the test fails.
BUDGET_S = 10.0
# Derandomized and without an example database: CI runs the same examples every time. No deadline: how long
# an example takes is the machine's business; only a load past BUDGET_S, a hang, fails.
FUZZ = settings(deadline=None, derandomize=True, database=None)

WIDTH, HEIGHT = 13, 11
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16(samples: np.ndarray, colour_type: int, interlace: bool = False, key: tuple[int, ...] | None = None) -> bytes:
    """A 16-bit PNG of uint16 [height, width, channels], unfiltered and zlib-stored (level 0), so that a byte flip
    with the CRC fixed reaches the row filters and samples rather than failing in zlib."""
    height, width = samples.shape[:2]
    raw = samples.astype(">u2").view(np.uint8).reshape(height, width, -1)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    rows = b"".join(
        b"\0" + line.tobytes()
        for column, row, column_step, row_step in (passes if interlace else ((0, 0, 1, 1),))
        if (picked := raw[row::row_step, column::column_step]).size
        for line in picked
    )
    chunks = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlace)))
    if key is not None:
        chunks += png_chunk(b"tRNS", struct.pack(f">{len(key)}H", *key))
    return PNG_SIGNATURE + chunks + png_chunk(b"IDAT", zlib.compress(rows, 0)) + png_chunk(b"IEND", b"")


def saved(picture: Image.Image, kind: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, kind, **params)
    return buffer.getvalue()


def make_sources() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[::3, :, 3] = 0  # some fully transparent rows, so the MASK path has work
    deep = rng.integers(0, 65536, (HEIGHT, WIDTH, 4), dtype=np.uint16)
    rgb = Image.fromarray(rgba[..., :3])
    frames = [Image.fromarray(np.roll(rgba, shift, axis=1)) for shift in (0, 5)]
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the loader turns the picture upright
    palette = rgb.quantize(16)
    palette.info["transparency"] = 3
    floats = Image.fromarray((rng.random((HEIGHT, WIDTH)) * 2 - 0.5).astype(np.float32))
    return {
        "png8_rgba.png": saved(frames[0], "PNG"),
        "png16_gray.png": saved(Image.fromarray(deep[..., 0]), "PNG"),
        "png16_rgb_key.png": png16(deep[..., :3], 2, key=tuple(int(v) for v in deep[0, 0, :3])),
        "png16_gray_alpha.png": png16(deep[..., :2], 4),
        "png16_rgba_adam7.png": png16(deep, 6, interlace=True),
        "apng.png": saved(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50),
        "jpeg.jpg": saved(rgb, "JPEG", quality=80, exif=exif),
        "gif.gif": saved(palette, "GIF", save_all=True, append_images=[palette.rotate(90)], duration=50),
        "webp_lossy.webp": saved(rgb, "WEBP", quality=80),
        "webp_lossless.webp": saved(frames[0], "WEBP", lossless=True),
        "tiff_rgb.tiff": saved(rgb, "TIFF"),
        "tiff_float.tiff": saved(floats, "TIFF"),
        "tiff_pages.tiff": saved(
            frames[0], "TIFF", compression="tiff_lzw", save_all=True, append_images=[rgb.crop((0, 0, 7, 5))]
        ),
        "bmp_rgb.bmp": saved(rgb, "BMP"),
        "bmp_palette.bmp": saved(palette.convert("P"), "BMP"),
    }


@dataclass(frozen=True)
class Field:
    """A number in a file's header: a width or height, or a length, count or offset."""

    offset: int
    size: int
    order: str  # "big" or "little"
    dimension: bool


def png_fields(data: bytes) -> list[Field]:
    fields, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        fields.append(Field(offset, 4, "big", False))
        if kind == b"IHDR":
            fields += [Field(offset + 8, 4, "big", True), Field(offset + 12, 4, "big", True)]
        elif kind == b"fcTL":  # APNG frame: sequence number, then width and height
            fields += [Field(offset + 12, 4, "big", True), Field(offset + 16, 4, "big", True)]
        offset += 12 + length
    return fields


def fix_png_crcs(data: bytes) -> bytes:
    """The same bytes with every whole chunk's CRC made right, so that mutations get past the CRC checks."""
    out, offset = bytearray(data), len(PNG_SIGNATURE)
    while offset + 12 <= len(out):
        length = int.from_bytes(out[offset : offset + 4], "big")
        end = offset + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = struct.pack(">I", zlib.crc32(out[offset + 4 : end]))
        offset = end + 4
    return bytes(out)


def gif_fields(data: bytes) -> list[Field]:
    fields = [Field(6, 2, "little", True), Field(8, 2, "little", True)]  # the logical screen
    flags = data[10]
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while offset < len(data) and data[offset] in (0x21, 0x2C):
        if data[offset] == 0x21:  # extension: introducer and label, then sub-blocks
            offset += 2
        else:  # image descriptor: position, size, flags, local colour table, LZW code size, then sub-blocks
            fields += [Field(offset + 5, 2, "little", True), Field(offset + 7, 2, "little", True)]
            flags = data[offset + 9]
            offset += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        while offset < len(data) and data[offset]:
            fields.append(Field(offset, 1, "little", False))
            offset += 1 + data[offset]
        offset += 1
    return fields


def jpeg_fields(data: bytes) -> list[Field]:
    fields, offset = [], 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        fields.append(Field(offset + 2, 2, "big", False))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: height, width
            fields += [Field(offset + 5, 2, "big", True), Field(offset + 7, 2, "big", True)]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return fields


def webp_fields(data: bytes) -> list[Field]:
    fields, offset = [Field(4, 4, "little", False)], 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = offset + 8
        fields.append(Field(offset + 4, 4, "little", False))
        if kind == b"VP8X":  # canvas width - 1 and height - 1, 24 bits each
            fields += [Field(body + 4, 3, "little", True), Field(body + 7, 3, "little", True)]
        elif kind == b"VP8 ":  # key frame: 3-byte tag, start code, then 14-bit width and height
            fields += [Field(body + 6, 2, "little", True), Field(body + 8, 2, "little", True)]
        elif kind == b"VP8L":  # signature, then width - 1 and height - 1 packed in 14 bits each
            fields.append(Field(body + 1, 4, "little", True))
        offset = body + size + (size & 1)
    return fields


def tiff_fields(data: bytes) -> list[Field]:
    fields, offset, seen = [Field(4, 4, "little", False)], int.from_bytes(data[4:8], "little"), set()
    while offset > 0 and offset + 2 <= len(data) and offset not in seen:
        seen.add(offset)
        count = int.from_bytes(data[offset : offset + 2], "little")
        fields.append(Field(offset, 2, "little", False))
        for entry in range(offset + 2, offset + 2 + 12 * count, 12):
            tag, kind, values = struct.unpack_from("<HHI", data, entry)
            fields.append(Field(entry + 4, 4, "little", False))
            inline = {3: 2, 4: 4}.get(kind) if values == 1 else None
            # Width and length (256, 257) are sizes; strip offsets and byte counts (273, 279) and the rest lengths.
            fields.append(Field(entry + 8, inline or 4, "little", inline is not None and tag in (256, 257)))
        following = offset + 2 + 12 * count
        fields.append(Field(following, 4, "little", False))
        offset = int.from_bytes(data[following : following + 4], "little")
    return fields


def bmp_fields(data: bytes) -> list[Field]:
    # File size, pixel data offset, header size, width, height, image size.
    layout = ((2, False), (10, False), (14, False), (18, True), (22, True), (34, False))
    return [Field(offset, 4, "little", dimension) for offset, dimension in layout]


FIELDS_OF = {".png": png_fields, ".jpg": jpeg_fields, ".gif": gif_fields, ".webp": webp_fields}
FIELDS_OF |= {".tiff": tiff_fields, ".bmp": bmp_fields}
SOURCES = make_sources()
FIELDS = {name: FIELDS_OF[Path(name).suffix](data) for name, data in SOURCES.items()}

# Sizes that cross the limits: 0, the decompression-bomb zone (any two of the large ones), the field's maximum.
# No pair of them makes a valid image of more than about 2**24 pixels, which loads in well under a second.
INFLATED = (0, 1, 255, 256, 4096, 65535, 65536, 2**24 - 1, 2**31 - 1, 2**32 - 1)


@st.composite
def field_value(draw: st.DrawFn, field: Field, original: int) -> int:
    if field.dimension:
        value = draw(st.one_of(st.sampled_from(INFLATED), st.integers(2, 16).map(lambda factor: original * factor)))
    else:
        value = draw(
            st.one_of(
                st.sampled_from((0, 1, original - 1, original + 1, 2 ** (8 * field.size) - 1)),
                st.integers(0, 2 ** (8 * field.size) - 1),
            )
        )
    return value % 2 ** (8 * field.size)


@st.composite
def mutated_images(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SOURCES)))
    data = bytearray(SOURCES[name])
    for _ in range(draw(st.integers(1, 3), label="mutations")):
        if not data:
            break
        how = draw(st.sampled_from(("truncate", "flip", "overwrite", "header", "field", "splice")))
        last = len(data) - 1
        if how == "truncate":  # counted from the end: most cuts keep the headers and reach the decoder
            del data[len(data) - draw(st.integers(1, len(data))) :]
        elif how == "flip":
            data[draw(st.integers(0, last))] ^= draw(st.integers(1, 255))
        elif how == "overwrite":
            at = draw(st.integers(0, last))
            span = draw(st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from([b"\0" * 8, b"\xff" * 8])))
            data[at : at + len(span)] = span
        elif how == "header":  # the header decides how all that follows is read
            data[draw(st.integers(0, min(last, 63)))] = draw(st.integers(0, 255))
        elif how == "field":
            field = draw(st.sampled_from(FIELDS[name]))
            if field.offset + field.size <= len(data):
                original = int.from_bytes(data[field.offset : field.offset + field.size], field.order)
                value = draw(field_value(field, original))
                data[field.offset : field.offset + field.size] = value.to_bytes(field.size, field.order)
        else:  # a span cut out or doubled: what follows moves away from where offsets point
            start = draw(st.integers(0, last))
            end = draw(st.integers(start, min(last + 1, start + 64)))
            data[start:end] = b"" if draw(st.booleans()) else data[start:end] * 2
    if name.endswith(".png") and draw(st.booleans(), label="CRCs fixed"):
        data = bytearray(fix_png_crcs(bytes(data)))
    return name, bytes(data)


class Overran(BaseException):
    """Raised by the timer. Not an Exception, so the loader's own ``except Exception`` cannot make it a refusal."""


@contextmanager
def wall_clock_budget(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Overran

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def attempt(call, path: Path, *args: object) -> object:
    """The call's result, or the ValueError it raised, checked to name the file; any other exception fails."""
    try:
        with wall_clock_budget(BUDGET_S):
            try:
                outcome = call(path, *args)
            except ValueError as error:
                outcome = error
    except Overran:
        raise AssertionError(f"{call.__name__} of {path.name} gave no result within {BUDGET_S} s") from None
    if isinstance(outcome, ValueError):
        assert f"image {str(path)!r}" in str(outcome), f"the error does not name the file: {outcome}"
    return outcome


def assert_sane(image: torch.Tensor, mask: torch.Tensor, all_frames: bool) -> None:
    assert image.dtype == mask.dtype == torch.float32
    assert image.ndim == 4 and image.shape[-1] == 3 and min(image.shape) >= 1
    assert mask.shape == image.shape[:3]
    assert all_frames or image.shape[0] == 1
    for tensor in (image, mask):
        assert bool(torch.isfinite(tensor).all()) and float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0


def check(path: Path, data: bytes, all_frames: bool) -> None:
    path.write_bytes(data)
    loaded = attempt(load_image_file, path, all_frames)
    probed = attempt(probe_image_file, path)
    if not isinstance(loaded, ValueError):
        assert_sane(*loaded, all_frames)
        # The probe reads only the header: whatever loads must pass it.
        assert probed is None, f"loads, but the probe refuses it: {probed}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_seed_image_loads(folder: Path, name: str) -> None:
    # The mutations start from images the loader reads, each format and decoding path of it.
    path = folder / name
    path.write_bytes(SOURCES[name])
    image, mask = load_image_file(path, all_frames=True)
    assert_sane(image, mask, True)
    assert tuple(image.shape[1:3]) in ((HEIGHT, WIDTH), (WIDTH, HEIGHT))  # the JPEG's EXIF orientation turns it
    probe_image_file(path)


# The fuzzer's first find: a float TIFF's NaN sample (0x7f810000, from a flipped byte) loaded as a NaN IMAGE.
NAN_BITS = np.array([[0x7F810000, 0x7F800000, 0xFF800000, 0x3F000000]], ">u4")  # NaN, +inf, -inf, 0.5
NAN_TIFF = saved(Image.fromarray(NAN_BITS.view(">f4")), "TIFF")


@settings(FUZZ, max_examples=2000)
@given(image=mutated_images(), all_frames=st.booleans())
@example(image=("tiff_float.tiff", NAN_TIFF), all_frames=False)
def test_a_mutated_image_loads_sanely_or_is_refused_naming_it(folder: Path, image: tuple[str, bytes], all_frames: bool):
    name, data = image
    check(folder / f"mutated-{name}", data, all_frames)


def test_a_float_tiffs_nan_and_infinite_samples_load_in_range(folder: Path) -> None:
    path = folder / "nan.tiff"
    path.write_bytes(NAN_TIFF)
    image, mask = load_image_file(path)
    # NaN, +inf, -inf, 0.5: NaN counts as black, infinities as the ends of the range.
    assert torch.equal(image[0, 0, :, 0], torch.tensor([0.0, 1.0, 0.0, 0.5]))
    assert torch.count_nonzero(mask) == 0


MAGIC = (
    b"",
    PNG_SIGNATURE,
    PNG_SIGNATURE + b"\0\0\0\x0dIHDR",
    b"GIF89a",
    b"\xff\xd8\xff",
    b"BM",
    b"RIFF\0\0\0\0WEBPVP8 ",
    b"II*\0",
    b"MM\0*",
)


@settings(FUZZ, max_examples=1000)
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=600), all_frames=st.booleans())
def test_random_bytes_load_sanely_or_are_refused_naming_the_file(
    folder: Path, magic: bytes, body: bytes, all_frames: bool
) -> None:
    # A format's signature in front gets random bytes past identification, into that format's header parser.
    check(folder / "random.bin", magic + body, all_frames)

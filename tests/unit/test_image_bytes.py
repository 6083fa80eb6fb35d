import io
import json
import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_img2img.nodes.core.image_bytes import (
    FILE_EXTENSIONS,
    FORMATS,
    image_file_bytes,
    image_to_array,
)

PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 42, "model": ["4", 0]}}, "9": {"class_type": "Save"}}
EXTRA = {"workflow": {"nodes": [{"id": 3, "type": "KSampler"}], "links": [], "note": "ünï"}}
PARAMETERS = 'a fox, "sly"\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 42, Size: 6x4'


def sample_image(channels: int = 3, height: int = 4, width: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(channels)
    image = torch.rand(height, width, channels, generator=generator)
    image[0, 0] = 0.0
    image[0, 1] = 1.0
    image[0, 2] = 0.5 / 65535  # a half step: rounds to even (0)
    image[0, 3] = 1.5 / 65535  # rounds to even (2)
    return image


def expected(image: torch.Tensor, top: int) -> np.ndarray:
    """round(x · top) of every value, by Python's own float arithmetic."""
    values = [round(min(max(float(v), 0.0), 1.0) * top) for v in image.flatten().tolist()]
    return np.array(values, dtype=np.int64).reshape(image.shape)


# ---- a minimal PNG reader, enough for what the encoder writes ----


def read_png(data: bytes) -> tuple[list[bytes], dict, dict[str, str], bytes]:
    """(chunk types in order, IHDR fields, texts from tEXt/iTXt/zTXt, the decompressed IDAT stream)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, kinds, texts, idat, header = 8, [], {}, b"", {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", body)
            header = {"width": width, "height": height, "depth": depth, "colour": colour}
        elif kind == b"tEXt":
            key, text = body.split(b"\x00", 1)
            texts[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"iTXt":
            key, rest = body.split(b"\x00", 1)
            assert rest[:2] == b"\x00\x00", "expected an uncompressed iTXt"
            _language, _translated, text = rest[2:].split(b"\x00", 2)
            texts[key.decode("latin-1")] = text.decode("utf-8")
        elif kind == b"zTXt":
            key, rest = body.split(b"\x00", 1)
            assert rest[:1] == b"\x00", "zTXt compression method 0"
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    return kinds, header, texts, zlib.decompress(idat)


def png16_pixels(data: bytes) -> np.ndarray:
    _, header, _, stream = read_png(data)
    channels = {2: 3, 6: 4}[header["colour"]]
    rows = np.frombuffer(stream, dtype=np.uint8).reshape(header["height"], -1)
    assert (rows[:, 0] == 0).all(), "every row uses filter 0"
    return rows[:, 1:].copy().view(">u2").reshape(header["height"], header["width"], channels).astype(np.int64)


# ---- what ComfyUI's frontend does with a dropped WebP (pnginfo.ts getWebpMetadata) ----


def riff_chunks(data: bytes) -> dict[bytes, bytes]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, position = {}, 12
    while position < len(data):
        kind = data[position : position + 4]
        (length,) = struct.unpack("<I", data[position + 4 : position + 8])
        chunks[kind] = data[position + 8 : position + 8 + length]
        position += 8 + length + (length % 2)
    return chunks


def frontend_webp_texts(data: bytes) -> dict[str, str]:
    """Every ASCII tag of IFD0 in the EXIF chunk, split at its first ':' into name and text."""
    tiff = riff_chunks(data)[b"EXIF"].removeprefix(b"Exif\x00\x00")
    order = "<" if tiff[:2] == b"II" else ">"
    (first_ifd,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[first_ifd : first_ifd + 2])
    texts = {}
    for index in range(count):
        entry = first_ifd + 2 + 12 * index
        _tag, kind, length, offset = struct.unpack(order + "HHII", tiff[entry : entry + 12])
        if kind == 2:
            name, _, text = tiff[offset : offset + length - 1].decode("utf-8").partition(":")
            texts[name] = text
    return texts


def user_comment(picture: Image.Image) -> str:
    comment = picture.getexif().get_ifd(0x8769)[0x9286]
    assert comment[:8] == b"UNICODE\x00"
    return comment[8:].decode("utf-16-be")


# ---- image_to_array ----


@pytest.mark.parametrize(("bit_depth", "top", "dtype"), [(8, 255, np.uint8), (16, 65535, np.uint16)])
def test_array_is_rounded_exactly(bit_depth, top, dtype):
    image = sample_image()
    pixels = image_to_array(image, bit_depth)
    assert pixels.dtype == dtype and pixels.shape == (4, 6, 3)
    assert np.array_equal(pixels.astype(np.int64), expected(image, top))


def test_array_clamps_and_zeroes_nan_and_spreads_grey():
    image = torch.tensor([[[-0.5], [1.5], [float("nan")], [float("inf")]]])
    pixels = image_to_array(image, 16)
    assert pixels.shape == (1, 4, 3)
    assert pixels[0, :, 0].tolist() == [0, 65535, 0, 65535]
    assert (pixels == pixels[..., :1]).all()


@pytest.mark.parametrize(
    ("image", "bit_depth", "named"),
    [
        (torch.rand(1, 4, 4, 3), 8, "image"),
        (torch.rand(4, 4, 2), 8, "image"),
        (torch.rand(0, 4, 3), 8, "image"),
        (np.zeros((4, 4, 3)), 8, "image"),
        (torch.rand(4, 4, 3), 12, "bit_depth"),
    ],
)
def test_array_refuses_bad_inputs(image, bit_depth, named):
    with pytest.raises(ValueError, match=named):
        image_to_array(image, bit_depth)


# ---- PNG ----


@pytest.mark.parametrize("channels", [3, 4])
def test_png_pixels_and_text_chunks(channels):
    image = sample_image(channels)
    data = image_file_bytes(image, "png", PROMPT, EXTRA, PARAMETERS)
    picture = Image.open(io.BytesIO(data))
    assert picture.mode == ("RGBA" if channels == 4 else "RGB")
    assert np.array_equal(np.asarray(picture).astype(np.int64), expected(image, 255))
    kinds, _, texts, _ = read_png(data)
    assert kinds.count(b"tEXt") == 2 and kinds.count(b"zTXt") == 1
    assert json.loads(texts["prompt"]) == PROMPT
    assert json.loads(texts["workflow"]) == EXTRA["workflow"]
    assert texts["parameters"] == PARAMETERS


@pytest.mark.parametrize("channels", [3, 4])
def test_png16_values_chunks_and_layout(channels):
    image = sample_image(channels)
    data = image_file_bytes(image, "png16", PROMPT, EXTRA, PARAMETERS)
    kinds, header, texts, _ = read_png(data)
    assert header == {"width": 6, "height": 4, "depth": 16, "colour": 6 if channels == 4 else 2}
    assert kinds == [b"IHDR", b"tEXt", b"tEXt", b"zTXt", b"IDAT", b"IEND"]
    assert np.array_equal(png16_pixels(data), expected(image, 65535))
    assert json.loads(texts["prompt"]) == PROMPT
    assert json.loads(texts["workflow"]) == EXTRA["workflow"]
    assert texts["parameters"] == PARAMETERS
    # Pillow reads 16-bit colour PNGs as 8-bit: it must see the high bytes and the same texts.
    picture = Image.open(io.BytesIO(data))
    assert np.array_equal(np.asarray(picture).astype(np.int64), expected(image, 65535) >> 8)
    assert picture.text == texts


def frontend_png_texts(data: bytes) -> dict[str, str]:
    """The text chunks ComfyUI's frontend (1.32, getFromPngBuffer) reads: tEXt, iTXt and comf, nothing else."""
    position, texts = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        if data[position + 4 : position + 8] in (b"tEXt", b"iTXt", b"comf"):
            body = data[position + 8 : position + 8 + length]
            key, value = body.split(b"\x00", 1)
            texts[key.decode("latin-1")] = value.decode("utf-8", "replace")
        position += 12 + length
    return texts


@pytest.mark.parametrize("image_format", ["png", "png16"])
def test_the_frontend_sees_the_workflow_but_not_the_parameters(image_format):
    # A parameters chunk the frontend could read would win over workflow when the file is dropped.
    data = image_file_bytes(sample_image(), image_format, PROMPT, EXTRA, PARAMETERS)
    texts = frontend_png_texts(data)
    assert "parameters" not in texts and json.loads(texts["workflow"]) == EXTRA["workflow"]
    assert Image.open(io.BytesIO(data)).text["parameters"] == PARAMETERS  # as A1111 and Pillow read it


@pytest.mark.parametrize("image_format", ["png", "png16"])
def test_non_latin_parameters_are_escaped_in_ztxt(image_format):
    text = "星空, 🎨\nSteps: 4, Seed: 1, Size: 6x4"
    data = image_file_bytes(sample_image(), image_format, None, None, text)
    kinds, _, texts, _ = read_png(data)
    assert b"zTXt" in kinds and b"iTXt" not in kinds
    assert texts["parameters"].encode("latin-1").decode("unicode_escape") == text


# ---- WebP and JPEG ----


@pytest.mark.parametrize("image_format", ["webp", "jpeg"])
def test_lossy_formats_carry_the_metadata_in_exif(image_format):
    image = torch.full((16, 24, 3), 0.25)
    data = image_file_bytes(image, image_format, PROMPT, {**EXTRA, "extra": [1, 2]}, PARAMETERS, quality=90)
    picture = Image.open(io.BytesIO(data))
    assert picture.format == image_format.upper() and picture.size == (24, 16)
    assert np.abs(np.asarray(picture).astype(int) - 64).max() <= 2
    exif = picture.getexif()
    assert json.loads(exif[0x0110].removeprefix("prompt:")) == PROMPT
    assert json.loads(exif[0x010F].removeprefix("workflow:")) == EXTRA["workflow"]
    assert json.loads(exif[0x010E].removeprefix("extra:")) == [1, 2]
    assert user_comment(picture) == PARAMETERS


def test_webp_metadata_as_comfyui_frontend_reads_it():
    data = image_file_bytes(sample_image(), "webp", PROMPT, EXTRA, PARAMETERS)
    texts = frontend_webp_texts(data)
    assert json.loads(texts["workflow"]) == EXTRA["workflow"]
    assert json.loads(texts["prompt"]) == PROMPT
    # Big-endian, like piexif's EXIF in A1111's files, so UTF-16BE agrees with the byte order.
    assert riff_chunks(data)[b"EXIF"][:2] == b"MM"


def test_alpha_is_kept_in_webp_and_dropped_in_jpeg():
    image = sample_image(4)
    assert Image.open(io.BytesIO(image_file_bytes(image, "webp"))).mode == "RGBA"
    assert Image.open(io.BytesIO(image_file_bytes(image, "jpeg"))).mode == "RGB"


def test_jpeg_keeps_what_fits_in_its_64k_exif(caplog):
    huge = {"workflow": {"nodes": ["x" * 70_000]}}
    with caplog.at_level(logging.WARNING):
        picture = Image.open(io.BytesIO(image_file_bytes(sample_image(), "jpeg", PROMPT, huge, PARAMETERS)))
    assert 0x0110 not in picture.getexif() and 0x010F not in picture.getexif()
    assert user_comment(picture) == PARAMETERS
    assert "only the A1111 text" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        data = image_file_bytes(sample_image(), "jpeg", PROMPT, huge, "y" * 40_000)
    picture = Image.open(io.BytesIO(data))
    picture.load()
    assert "exif" not in picture.info and "without it" in caplog.text


# ---- metadata switch ----


@pytest.mark.parametrize("image_format", ["png", "png16"])
def test_png_without_metadata_has_only_pixel_chunks(image_format):
    data = image_file_bytes(sample_image(), image_format, PROMPT, EXTRA, PARAMETERS, metadata=False)
    assert read_png(data)[0] == [b"IHDR", b"IDAT", b"IEND"]


def test_webp_and_jpeg_without_metadata_have_no_exif():
    webp = image_file_bytes(sample_image(), "webp", PROMPT, EXTRA, PARAMETERS, metadata=False)
    assert b"EXIF" not in riff_chunks(webp) and b"XMP " not in riff_chunks(webp)
    jpeg = Image.open(io.BytesIO(image_file_bytes(sample_image(), "jpeg", PROMPT, EXTRA, PARAMETERS, metadata=False)))
    assert "exif" not in jpeg.info and all(marker != "APP1" for marker, _ in jpeg.applist)


def test_metadata_switch_skips_checks_on_what_it_does_not_write():
    data = image_file_bytes(sample_image(), "png", {"bad": {1, 2}}, {"a:b": 1}, PARAMETERS, metadata=False)
    assert Image.open(io.BytesIO(data)).text == {}


# ---- refusals ----


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"image_format": "gif"}, "image_format"),
        ({"image": torch.rand(1, 4, 6, 3)}, "image"),
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"quality": True}, "quality"),
        ({"prompt": {"x": {1, 2}}}, "prompt"),
        ({"extra_pnginfo": {"work:flow": {}}}, "extra_pnginfo"),
        ({"extra_pnginfo": {"": {}}}, "extra_pnginfo"),
        ({"extra_pnginfo": {"wörkflow": {}}}, "extra_pnginfo"),
        ({"extra_pnginfo": {"parameters": "x"}}, "extra_pnginfo"),
        ({"extra_pnginfo": {"workflow": object()}}, "extra_pnginfo"),
        ({"extra_pnginfo": ["workflow"]}, "extra_pnginfo"),
        ({"parameters": 5}, "parameters"),
        ({"image_format": "webp", "image": torch.zeros(1, 16384, 3)}, "image"),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(arguments, named):
    call = {"image": sample_image(), "image_format": "png", **arguments}
    with pytest.raises(ValueError, match=named):
        image_file_bytes(**call)


def test_every_format_has_a_file_extension():
    assert set(FILE_EXTENSIONS) == set(FORMATS) == {"png", "png16", "webp", "jpeg"}

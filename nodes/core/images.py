"""Conversion of image files and Pillow images into ComfyUI's IMAGE / MASK tensors.

IMAGE is float32 [batch, height, width, channels] in 0..1; MASK is float32 [batch, height, width]
where 1 marks what is masked out, i.e. 1 - alpha.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from PIL import ExifTags, Image, UnidentifiedImageError

from .png import PNG_SIGNATURE, png_chunks

# JPEG includes MPO, a JPEG with further pictures (phones' depth maps, stereo pairs), which Pillow opens as frames.
LOADABLE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# The file names a folder of inputs is filtered by.
IMAGE_SUFFIXES = frozenset({".png", ".apng", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

# Pillow refuses more than twice its Image.MAX_IMAGE_PIXELS and only warns above it; this module refuses both.
_LIMIT = "images over {} pixels are refused (PIL.Image.MAX_IMAGE_PIXELS)"

# Each frame of an animation is held to Pillow's Image.MAX_IMAGE_PIXELS, but a small file can still hold
# thousands of them: all frames together may have at most this many pixels (2**29 float32 RGB + MASK is 8 GiB).
MAX_BATCH_PIXELS = 2**29

# Channels of the PNG colour types whose 16-bit form Pillow reads as 8 bits: RGB, gray + alpha, RGBA.
_PNG16_CHANNELS = {2: 3, 4: 2, 6: 4}
# Adam7 interlacing: first column, first row, column step and row step of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))

# EXIF orientation → the numpy steps that make [height, width, ...] upright, as ImageOps.exif_transpose does.
_UPRIGHT = {
    2: lambda pixels: pixels[:, ::-1],
    3: lambda pixels: pixels[::-1, ::-1],
    4: lambda pixels: pixels[::-1],
    5: lambda pixels: pixels.swapaxes(0, 1),
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: pixels[::-1, ::-1].swapaxes(0, 1),
    8: lambda pixels: np.rot90(pixels),
}


def probe_image_file(path: str | os.PathLike[str], name: str | None = None) -> None:
    """Check from its header alone that a file is a supported image within the pixel limit.

    For validation before a graph runs: no pixel data is decoded, so a truncated file passes here and is
    refused by ``load_image_file``. ``name`` is how errors call the file (default: its path).
    """
    name = name or os.fspath(path)
    try:
        empty = os.path.getsize(path) == 0
    except OSError as error:
        raise ValueError(f"image {name!r} could not be read: {error.strerror or error}") from error
    if empty:
        raise ValueError(f"image {name!r} is empty (0 bytes)")
    with _decoding(name), Image.open(path, formats=LOADABLE_FORMATS):
        pass


def _file_bytes(path: str | os.PathLike[str], name: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ValueError(f"image {name!r} could not be read: {error.strerror or error}") from error
    if not data:
        raise ValueError(f"image {name!r} is empty (0 bytes)")
    return data


def _frame_samples(picture: Image.Image, data: bytes, name: str) -> tuple[np.ndarray, float]:
    """The current frame's samples, upright, and the value of full intensity."""
    with _decoding(name):
        # Pillow's full load also vets a 16-bit colour PNG, which is then decoded again below.
        picture.load()
        if _is_png16_colour(data) and not getattr(picture, "is_animated", False):
            samples, full = _decode_png16_colour(data), 65535.0
        else:
            samples, full = _pillow_samples(picture)
        return _upright(samples, picture), full


def load_image_file(
    path: str | os.PathLike[str], all_frames: bool = False, name: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE and MASK of a PNG, APNG, JPEG, WebP, BMP, TIFF or GIF file: its first frame, or all its frames as a batch.

    Pictures are made upright per their EXIF orientation. 16-bit PNGs keep their precision (value / 65535), as
    do 16-bit grayscale TIFFs; 16-bit RGB(A) TIFFs come out at 8-bit precision, as Pillow decodes them, and so
    do the frames of 16-bit colour APNGs. Palette transparency, tRNS colour keys and alpha become the MASK
    (1 - alpha); images without transparency get an all-zero MASK. ICC profiles are not applied.

    Animation frames come composited at the canvas size, as Pillow gives them. A frame of another size (a page
    of a multi-page TIFF, the second picture of an MPO) is placed at the top left of a canvas of the first
    frame's size: what it does not cover is black and transparent (MASK 1), what overhangs is cut off.

    Raises ValueError naming the file when it cannot be read, is empty, is not an image in one of those
    formats, is truncated or corrupt, or is larger than Pillow's decompression-bomb limit
    (Image.MAX_IMAGE_PIXELS, checked from the header before any pixel data is decoded; Pillow's warning
    zone below twice that limit is refused too), or when all frames together exceed MAX_BATCH_PIXELS.
    Truncated files are refused while ImageFile.LOAD_TRUNCATED_IMAGES is False, Pillow's default. ``name`` is how
    errors call the file (default: its path).
    """
    name = name or os.fspath(path)
    data = _file_bytes(path, name)
    with _decoding(name):
        picture = Image.open(io.BytesIO(data), formats=LOADABLE_FORMATS)
    with picture:
        with _decoding(name):
            frame_count = getattr(picture, "n_frames", 1) if all_frames else 1
        images, masks = [], []
        for index in range(frame_count):
            with _decoding(name):
                picture.seek(index)
            _check_frame_size(name, index, picture.size, len(images))
            image, mask = _image_and_mask(*_frame_samples(picture, data, name))
            if images and image.shape[:2] != images[0].shape[:2]:
                image, mask = _on_canvas(image, mask, images[0].shape[:2])
            images.append(image)
            masks.append(mask)
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))


def pil_to_image_and_mask(picture: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """An upright RGB IMAGE of batch 1 of the picture's current frame, and its MASK (all zeros without alpha)."""
    picture.load()
    samples, full = _pillow_samples(picture)
    image, mask = _image_and_mask(_upright(samples, picture), full)
    return torch.from_numpy(image)[None], torch.from_numpy(mask)[None]


@contextmanager
def _decoding(name: str) -> Iterator[None]:
    """Pillow's and the PNG decoder's errors as ValueErrors naming the file; the bomb warning as an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"image {name!r} is too large to load safely ({error}); {_LIMIT.format(Image.MAX_IMAGE_PIXELS)}"
        ) from error
    except UnidentifiedImageError as error:
        formats = ", ".join(LOADABLE_FORMATS)
        raise ValueError(f"image {name!r} is not an image in a supported format ({formats})") from error
    except MemoryError:
        raise
    # Pillow's plugins raise many types on malformed input (OSError, SyntaxError, struct.error, IndexError, ...).
    except Exception as error:
        raise ValueError(f"image {name!r} could not be decoded (truncated or corrupt?): {error}") from error


def _check_frame_size(name: str, index: int, size: tuple[int, int], frames_before: int) -> None:
    """Pillow checks the first frame's size at open; later frames, and the batch, are checked here."""
    width, height = size
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image {name!r} is too large to load safely (frame {index} is {width}×{height} = {width * height} "
            f"pixels); {_LIMIT.format(Image.MAX_IMAGE_PIXELS)}"
        )
    if (frames_before + 1) * width * height > MAX_BATCH_PIXELS:
        raise ValueError(
            f"image {name!r} has too many frames to load together: {frames_before + 1} frames of {width}×{height} "
            f"exceed {MAX_BATCH_PIXELS} pixels in all; load the first frame only"
        )


def _pillow_samples(picture: Image.Image) -> tuple[np.ndarray, float]:
    """A loaded frame's samples [height, width, channels] and the sample value of full intensity.

    Channels are 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA). 16-bit grayscale (I;16*) keeps its
    precision; mode I is read as 16-bit and F as 0..1, each clipped to that range.
    """
    if picture.mode == "F":
        # clip passes NaN through: a float TIFF's NaN samples would make the IMAGE NaN. They become 0, ±inf 1 or 0.
        return np.clip(np.nan_to_num(np.asarray(picture), nan=0.0), 0.0, 1.0)[..., None], 1.0
    if picture.mode.startswith("I"):
        gray = np.clip(np.asarray(picture), 0, 65535)[..., None]
        if "transparency" in picture.info:
            gray = _with_key_alpha(gray, picture.info["transparency"], 65535)
        return gray, 65535.0
    if picture.mode in ("L", "LA", "RGB", "RGBA") and "transparency" not in picture.info:
        samples = np.asarray(picture)
    else:
        # 1, P, PA, CMYK (Pillow undoes Adobe's inverted CMYK while decoding), YCbCr, RGBa, ..., and L or RGB
        # with a transparent colour key, which Pillow's conversion turns into alpha.
        samples = np.asarray(picture.convert("RGBA" if picture.has_transparency_data else "RGB"))
    return samples.reshape(*samples.shape[:2], -1), 255.0


def _upright(samples: np.ndarray, picture: Image.Image) -> np.ndarray:
    """The samples turned upright per the loaded picture's EXIF orientation (Pillow has already done it for
    TIFF, and removed the tag)."""
    turn = _UPRIGHT.get(picture.getexif().get(ExifTags.Base.Orientation, 1))
    return samples if turn is None else turn(samples)


def _with_key_alpha(samples: np.ndarray, key: int | tuple[int, ...] | np.ndarray, full: int) -> np.ndarray:
    """Samples with an alpha channel that is 0 where the pixel equals the transparent colour key."""
    transparent = np.all(samples == np.asarray(key, dtype=samples.dtype), axis=-1, keepdims=True)
    return np.concatenate([samples, np.where(transparent, 0, full).astype(samples.dtype)], axis=-1)


def _image_and_mask(samples: np.ndarray, full: float) -> tuple[np.ndarray, np.ndarray]:
    """float32 RGB [height, width, 3] and MASK [height, width] of samples with 1 to 4 channels."""
    values = samples.astype(np.float32)
    full = np.float32(full)
    channels = values.shape[-1]
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, axis=-1)
    # full - alpha first, in exact integers: fully transparent is exactly 1 and opaque exactly 0.
    mask = (full - values[..., -1]) / full if channels in (2, 4) else np.zeros(values.shape[:2], np.float32)
    return colour / full, mask


def _on_canvas(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame of another size at the top left of a black, transparent canvas of the first frame's size."""
    height, width = min(size[0], image.shape[0]), min(size[1], image.shape[1])
    canvas = np.zeros((*size, 3), np.float32)
    canvas_mask = np.ones(size, np.float32)
    canvas[:height, :width] = image[:height, :width]
    canvas_mask[:height, :width] = mask[:height, :width]
    return canvas, canvas_mask


def _is_png16_colour(data: bytes) -> bool:
    """Whether the IHDR (which always comes first) is of a 16-bit colour or gray + alpha PNG."""
    return data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR" and data[24] == 16 and data[25] in _PNG16_CHANNELS


def _decode_png16_colour(data: bytes) -> np.ndarray:
    """Samples [height, width, channels] of a 16-bit RGB, gray + alpha or RGBA PNG as uint16, in full precision.

    Pillow reads these at 8 bits. An RGB PNG's tRNS colour key becomes a fourth, alpha channel.
    """
    compressed, key = [], None
    for kind, body in png_chunks(data):
        if kind == b"IHDR":
            width, height, _depth, colour_type, _compression, _filter, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        elif kind == b"tRNS":
            key = np.frombuffer(body, ">u2")
    channels = _PNG16_CHANNELS[colour_type]
    pixel_bytes = 2 * channels
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    # Size of each pass in pixels; an empty pass holds no bytes, not even the rows' filter bytes.
    shapes = [
        (-(-(height - row) // row_step), -(-(width - column) // column_step))
        for column, row, column_step, row_step in passes
    ]
    expected = sum(rows * (1 + columns * pixel_bytes) for rows, columns in shapes if rows > 0 and columns > 0)
    # Inflating no more than the image needs keeps a zlib bomb hidden in IDAT from filling memory.
    raw = zlib.decompressobj().decompress(b"".join(compressed), expected)
    if len(raw) < expected:
        raise ValueError(f"the image data ends after {len(raw)} of {expected} bytes (truncated)")

    samples = np.empty((height, width, pixel_bytes), np.uint8)
    offset = 0
    for (column, row, column_step, row_step), (rows, columns) in zip(passes, shapes, strict=True):
        if rows > 0 and columns > 0:
            size = rows * (1 + columns * pixel_bytes)
            lines = np.frombuffer(raw, np.uint8, size, offset).reshape(rows, 1 + columns * pixel_bytes)
            offset += size
            unfiltered = _unfilter(lines[:, 0], lines[:, 1:].reshape(rows, columns, pixel_bytes))
            samples[row::row_step, column::column_step] = unfiltered
    values = samples.view(">u2").astype(np.uint16)
    if key is not None and colour_type == 2:
        values = _with_key_alpha(values, key, 65535)
    return values


def _unfilter(filters: np.ndarray, filtered: np.ndarray) -> np.ndarray:
    """Undo PNG's row filters (None, Sub, Up, Average, Paeth) of filtered uint8 [rows, pixels, bytes per pixel].

    A byte depends on the byte one pixel to its left, the one above and the one above-left, so all bytes of an
    anti-diagonal (row + column constant) depend only on earlier anti-diagonals: walking them in order does
    every filter type, rows mixed freely, in rows + pixels vectorized steps instead of a loop per pixel.
    """
    if filters.max() > 4:
        raise ValueError(f"a row has the unknown filter type {filters.max()}")
    rows, columns, _ = filtered.shape
    # A zero row above and a zero column to the left are the neighbours the filters see outside the image.
    out = np.zeros((rows + 1, columns + 1, filtered.shape[2]), np.int16)
    for diagonal in range(rows + columns - 1):
        row = np.arange(max(0, diagonal - columns + 1), min(rows, diagonal + 1))
        column = diagonal - row
        left, above, above_left = out[row + 1, column], out[row, column + 1], out[row, column]
        estimate = left + above - above_left
        to_left, to_above, to_above_left = (np.abs(estimate - n) for n in (left, above, above_left))
        paeth = np.where(
            (to_left <= to_above) & (to_left <= to_above_left),
            left,
            np.where(to_above <= to_above_left, above, above_left),
        )
        predictions = (np.zeros_like(left), left, above, (left + above) >> 1, paeth)
        out[row + 1, column + 1] = (filtered[row, column] + np.choose(filters[row][:, None], predictions)) & 0xFF
    return out[1:, 1:].astype(np.uint8)

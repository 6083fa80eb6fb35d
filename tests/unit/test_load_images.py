"""load_image_file: every format and mode to IMAGE + MASK, precision kept, and bad files refused clearly.

Every test image is made here; 16-bit colour PNGs, which Pillow cannot write, by the small encoder below.
"""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from comfyui_img2img.nodes.core import images
from comfyui_img2img.nodes.core.images import load_image_file, pil_to_image_and_mask, probe_image_file

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int, depth: int, colour_type: int, interlace: int = 0) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)


def paeth(left, above, above_left):
    estimate = left + above - above_left
    to_left, to_above, to_above_left = (np.abs(estimate - n) for n in (left, above, above_left))
    return np.where(
        (to_left <= to_above) & (to_left <= to_above_left), left, np.where(to_above <= to_above_left, above, above_left)
    )


def filtered_rows(pixels: np.ndarray, filters: tuple[int, ...]) -> bytes:
    """Rows of uint8 [rows, pixels, bytes per pixel], each with the next filter type of the cycle."""
    rows, columns, pixel_bytes = pixels.shape
    lines = pixels.reshape(rows, columns * pixel_bytes).astype(np.int16)
    out = []
    for y, line in enumerate(lines):
        kind = filters[y % len(filters)]
        above = lines[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(pixel_bytes, np.int16), line[:-pixel_bytes]])
        above_left = np.concatenate([np.zeros(pixel_bytes, np.int16), above[:-pixel_bytes]])
        prediction = (0, left, above, (left + above) >> 1, paeth(left, above, above_left))[kind]
        out.append(bytes([kind]) + ((line - prediction) & 0xFF).astype(np.uint8).tobytes())
    return b"".join(out)


def encode_png16(samples: np.ndarray, filters=(0, 1, 2, 3, 4), interlace=False, chunks=()) -> bytes:
    """A 16-bit PNG of uint16 [height, width, channels]: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA."""
    height, width, channels = samples.shape
    pixels = samples.astype(">u2").view(np.uint8).reshape(height, width, 2 * channels)
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    parts = [pixels[row::row_step, column::column_step] for column, row, column_step, row_step in passes]
    raw = b"".join(filtered_rows(part, filters) for part in parts if part.size)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    return (
        png_header(width, height, 16, colour_type, int(interlace))
        + b"".join(chunk(kind, body) for kind, body in chunks)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def saved(tmp_path, name: str, picture: Image.Image, **options) -> str:
    path = tmp_path / name
    picture.save(path, **options)
    return str(path)


def written(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def corner_quadrant_picture(width: int, height: int) -> Image.Image:
    """Blue, with the top-left quadrant red: big flat areas survive JPEG."""
    picture = Image.new("RGB", (width, height), BLUE)
    picture.paste(RED, (0, 0, width // 2, height // 2))
    return picture


# --- orientation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "shape", "red_corner"),
    [
        (6, (64, 32), (0, -1)),  # stored image turns 90° clockwise: its top left lands top right
        (3, (32, 64), (-1, -1)),  # turns 180°: top left lands bottom right
    ],
)
def test_exif_rotated_jpeg_is_upright(tmp_path, orientation, shape, red_corner):
    picture = corner_quadrant_picture(64, 32)
    exif = picture.getexif()
    exif[0x0112] = orientation
    image, mask = load_image_file(saved(tmp_path, "photo.jpg", picture, exif=exif, quality=95))
    assert image.shape == (1, *shape, 3) and mask.shape == (1, *shape)
    corners = {(0, 0), (0, -1), (-1, 0), (-1, -1)}
    assert torch.allclose(image[0, red_corner[0], red_corner[1]], torch.tensor([1.0, 0, 0]), atol=0.05)
    for y, x in corners - {red_corner}:
        assert torch.allclose(image[0, y, x], torch.tensor([0, 0, 1.0]), atol=0.05)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    picture = Image.fromarray(rng.integers(0, 256, (3, 5, 3), dtype=np.uint8))
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = saved(tmp_path, "turned.png", picture, exif=exif)
    image, _ = load_image_file(path)
    with Image.open(path) as reopened:
        expected = np.asarray(ImageOps.exif_transpose(reopened), dtype=np.float32) / 255
    assert np.array_equal(image[0].numpy(), expected)


# --- modes ---------------------------------------------------------------------------------------------------


def test_cmyk_jpeg_in_adobe_inverted_form_round_trips_a_flat_colour(tmp_path):
    path = saved(tmp_path, "print.jpg", Image.new("CMYK", (16, 16), (0, 255, 255, 0)), quality=95)
    with Image.open(path) as picture:
        # Pillow writes an Adobe marker and stores CMYK inverted, as Photoshop does; its decoder undoes that.
        assert picture.mode == "CMYK" and picture.tile[0].args[0] == "CMYK;I"
    image, mask = load_image_file(path)
    assert torch.allclose(image, torch.tensor([1.0, 0, 0]).expand_as(image), atol=3 / 255)
    assert torch.count_nonzero(mask) == 0


def test_16_bit_gray_png_keeps_steps_finer_than_8_bits(tmp_path):
    values = np.array([[1000, 1001, 1002], [0, 65534, 65535]], np.uint16)
    path = saved(tmp_path, "depth.png", Image.fromarray(values))
    image, mask = load_image_file(path)
    expected = torch.from_numpy(values.astype(np.float32)) / 65535
    assert len(torch.unique(image[0, 0, :, 0])) == 3
    assert torch.equal(image[0], expected[..., None].expand(2, 3, 3))
    assert torch.count_nonzero(mask) == 0


def test_16_bit_gray_png_transparent_key_is_masked(tmp_path):
    values = np.array([[7, 1000], [1000, 65535]], np.uint16)
    image, mask = load_image_file(saved(tmp_path, "key.png", Image.fromarray(values), transparency=1000))
    assert torch.equal(mask[0], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert image[0, 1, 1, 0] == 1.0


def sixteen_bit_samples(height: int, width: int, channels: int) -> np.ndarray:
    """Neighbouring values 1 apart, so that anything cut to 8 bits merges them."""
    count = height * width * channels
    return (np.arange(count, dtype=np.uint32) * 7919 % 65536).reshape(height, width, channels).astype(np.uint16)


@pytest.mark.parametrize("interlace", [False, True], ids=["progressive", "adam7"])
@pytest.mark.parametrize("channels", [3, 4, 2], ids=["rgb", "rgba", "gray-alpha"])
def test_16_bit_colour_png_keeps_full_precision_through_all_row_filters(tmp_path, channels, interlace):
    samples = sixteen_bit_samples(11, 13, channels)
    samples[0, 0, :], samples[0, 1, :] = 1000, 1001
    data = encode_png16(samples, interlace=interlace)
    with Image.open(io.BytesIO(data)) as picture:
        # Pillow, an independent decoder, agrees on the high bytes: the encoder's filters are right.
        eight_bit = np.asarray(picture)
    high = (samples >> 8).astype(np.uint8)
    assert np.array_equal(eight_bit if channels != 2 else eight_bit[..., [0, 3]], high)

    image, mask = load_image_file(written(tmp_path, "deep.png", data))
    values = torch.from_numpy(samples.astype(np.float32))
    colour = values[..., :3] if channels >= 3 else values[..., :1].expand(11, 13, 3)
    assert torch.equal(image[0], colour / 65535)
    assert image[0, 0, 0, 0] != image[0, 0, 1, 0]
    alpha = values[..., -1] if channels in (2, 4) else torch.full((11, 13), 65535.0)
    assert torch.equal(mask[0], (65535 - alpha) / 65535)


def test_16_bit_rgb_png_colour_key_and_exif_orientation(tmp_path):
    samples = sixteen_bit_samples(2, 3, 3)
    samples[1, 2] = (1, 2, 3)
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode_png16(samples, chunks=[(b"tRNS", struct.pack(">3H", 1, 2, 3)), (b"eXIf", exif.tobytes())])
    image, mask = load_image_file(written(tmp_path, "keyed.png", data))
    # Upside down: the keyed bottom-right pixel is now top left.
    assert torch.equal(mask[0], torch.tensor([[1.0, 0, 0], [0, 0, 0]]))
    assert torch.equal(image[0, 1, 2], torch.from_numpy(samples[0, 0].astype(np.float32)) / 65535)


def test_palette_png_transparent_index_is_exactly_the_mask(tmp_path):
    picture = Image.new("P", (4, 3), 0)
    picture.putpalette([*RED, *GREEN, *BLUE])
    picture.putpixel((1, 1), 2)
    picture.putpixel((3, 0), 2)
    image, mask = load_image_file(saved(tmp_path, "sprite.png", picture, transparency=2))
    expected = torch.zeros(3, 4)
    expected[1, 1] = expected[0, 3] = 1.0
    assert torch.equal(mask[0], expected)
    assert torch.equal(image[0, 2, 2], torch.tensor([1.0, 0, 0]))


def test_palette_png_without_transparency_has_a_zero_mask(tmp_path):
    picture = Image.new("P", (2, 2), 1)
    picture.putpalette([*RED, *GREEN])
    image, mask = load_image_file(saved(tmp_path, "flat.png", picture))
    assert torch.equal(image[0], torch.tensor([0.0, 1, 0]).expand(2, 2, 3)) and torch.count_nonzero(mask) == 0


def test_la_png_gives_gray_rgb_and_one_minus_alpha(tmp_path):
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    alpha = np.array([[255, 0], [128, 1]], np.uint8)
    image, mask = load_image_file(saved(tmp_path, "la.png", Image.fromarray(np.stack([gray, alpha], -1), "LA")))
    assert torch.equal(image[0], (torch.from_numpy(gray).float() / 255)[..., None].expand(2, 2, 3))
    assert torch.equal(mask[0], (255 - torch.from_numpy(alpha).float()) / 255)


def test_rgba_png_mask_is_exactly_one_minus_alpha(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    image, mask = load_image_file(saved(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    values = torch.from_numpy(rgba).float()
    assert torch.equal(image[0], values[..., :3] / 255)
    assert torch.equal(mask[0], (255 - values[..., 3]) / 255)
    assert mask[0, 0, 0] == 1.0 and mask[0, 0, 1] == 0.0


def test_bilevel_and_pa_pictures_convert():
    image, mask = pil_to_image_and_mask(Image.new("1", (3, 2), 1))
    assert torch.equal(image, torch.ones(1, 2, 3, 3)) and torch.count_nonzero(mask) == 0
    picture = Image.new("PA", (2, 1))
    picture.putpalette([*GREEN, *RED])
    picture.putpixel((1, 0), (1, 51))
    image, mask = pil_to_image_and_mask(picture)
    assert torch.equal(image[0, 0, 1], torch.tensor([1.0, 0, 0]))
    assert torch.equal(mask[0, 0], torch.tensor([1.0, (255 - 51) / 255]))


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_gray_tiff_keeps_precision(tmp_path, mode):
    values = np.array([[1000, 1001, 65535]], np.uint16)
    picture = Image.new(mode, (3, 1))
    picture.putdata(values.ravel().tolist())
    image, _ = load_image_file(saved(tmp_path, "gray16.tif", picture))
    assert torch.equal(image[0, 0, :, 1], torch.from_numpy(values[0].astype(np.float32)) / 65535)


def test_32_bit_integer_and_float_tiffs_are_clipped_to_their_range(tmp_path):
    integers = Image.new("I", (3, 1))
    integers.putdata([-5, 1001, 70000])
    image, _ = load_image_file(saved(tmp_path, "int.tif", integers))
    assert torch.equal(image[0, 0, :, 0], torch.tensor([0.0, 1001.0, 65535.0]) / 65535)
    floats = Image.new("F", (3, 1))
    floats.putdata([-0.5, 0.25, 1.5])
    image, _ = load_image_file(saved(tmp_path, "float.tif", floats))
    assert torch.equal(image[0, 0, :, 2], torch.tensor([0.0, 0.25, 1.0]))


@pytest.mark.parametrize(("name", "options"), [("p.bmp", {}), ("p.tif", {}), ("p.tif", {"compression": "tiff_lzw"})])
def test_bmp_and_tiff_round_trip_exactly(tmp_path, name, options):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    image, mask = load_image_file(saved(tmp_path, name, Image.fromarray(rgb), **options))
    assert torch.equal(image[0], torch.from_numpy(rgb).float() / 255) and torch.count_nonzero(mask) == 0


@pytest.mark.parametrize(("width", "height"), [(1, 1), (8191, 3)])
def test_extreme_shapes(tmp_path, width, height):
    image, mask = load_image_file(saved(tmp_path, "thin.png", Image.new("RGB", (width, height), GREEN)))
    assert image.shape == (1, height, width, 3) and mask.shape == (1, height, width)
    assert torch.equal(image[0, -1, -1], torch.tensor([0.0, 1, 0]))


# --- animations ----------------------------------------------------------------------------------------------


def three_frames() -> list[Image.Image]:
    return [Image.new("RGB", (4, 3), colour) for colour in (RED, GREEN, BLUE)]


def test_animated_gif_first_frame_or_all_frames(tmp_path):
    first, *rest = three_frames()
    path = saved(tmp_path, "blink.gif", first, save_all=True, append_images=rest, duration=50)
    image, mask = load_image_file(path)
    assert image.shape == (1, 3, 4, 3) and torch.equal(image[0, 0, 0], torch.tensor([1.0, 0, 0]))
    image, mask = load_image_file(path, all_frames=True)
    assert image.shape == (3, 3, 4, 3) and mask.shape == (3, 3, 4)
    assert torch.equal(image[:, 1, 2], torch.eye(3))
    assert torch.count_nonzero(mask) == 0


@pytest.mark.parametrize(("name", "options"), [("moving.png", {}), ("moving.webp", {"lossless": True})])
def test_apng_and_animated_webp_frames(tmp_path, name, options):
    first, *rest = three_frames()
    path = saved(tmp_path, name, first, save_all=True, append_images=rest, duration=50, **options)
    assert load_image_file(path)[0].shape[0] == 1
    image, _ = load_image_file(path, all_frames=True)
    assert image.shape == (3, 3, 4, 3) and torch.equal(image[:, 0, 0], torch.eye(3))


def test_tiff_pages_of_another_size_go_top_left_on_the_first_pages_canvas(tmp_path):
    first, second = Image.new("RGB", (4, 3), RED), Image.new("RGB", (2, 5), GREEN)
    image, mask = load_image_file(saved(tmp_path, "pages.tif", first, save_all=True, append_images=[second]), True)
    assert image.shape == (2, 3, 4, 3)
    assert torch.equal(image[1, :, :2], torch.tensor([0.0, 1, 0]).expand(3, 2, 3))
    assert torch.count_nonzero(image[1, :, 2:]) == 0
    assert torch.equal(mask[1], torch.tensor([[0.0, 0, 1, 1]] * 3)) and torch.count_nonzero(mask[0]) == 0


def test_too_many_frames_together_are_refused(tmp_path, monkeypatch):
    first, *rest = three_frames()
    path = saved(tmp_path, "long.gif", first, save_all=True, append_images=rest, duration=50)
    monkeypatch.setattr(images, "MAX_BATCH_PIXELS", 2 * 4 * 3)
    assert load_image_file(path)[0].shape[0] == 1
    with pytest.raises(ValueError, match=r"'.*long\.gif' has too many frames.*3 frames of 4×3"):
        load_image_file(path, all_frames=True)


# --- bad files -----------------------------------------------------------------------------------------------


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # A valid header claiming 30000×30000 (900 megapixels); its one IDAT row could never fill it.
    data = png_header(30000, 30000, 8, 2) + chunk(b"IDAT", zlib.compress(b"\0" * 90001)) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match=r"'.*bomb\.png' is too large") as caught:
        load_image_file(written(tmp_path, "bomb.png", data))
    assert str(Image.MAX_IMAGE_PIXELS) in str(caught.value)
    # Raised by Pillow's header check at open, which comes before any pixel data is decoded.
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)


def test_pillows_warning_zone_below_twice_the_limit_is_refused_too(tmp_path):
    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)
    data = png_header(side, side, 8, 0) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match=r"too large .*PIL\.Image\.MAX_IMAGE_PIXELS") as caught:
        load_image_file(written(tmp_path, "big.png", data))
    assert isinstance(caught.value.__cause__, Image.DecompressionBombWarning)


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def flipped_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


@pytest.mark.parametrize(
    "make",
    [
        lambda: png_bytes(Image.new("RGB", (64, 64), RED))[:-2000],
        lambda: flipped_byte(png_bytes(Image.new("RGB", (64, 64), RED)), 2000),
        lambda: jpeg_bytes()[: len(jpeg_bytes()) // 2],
        lambda: encode_png16(sixteen_bit_samples(8, 8, 3))[:-40],
        lambda: flipped_byte(encode_png16(sixteen_bit_samples(8, 8, 3)), 60),
    ],
    ids=["truncated-png", "corrupt-png", "truncated-jpeg", "truncated-16-bit-png", "corrupt-16-bit-png"],
)
def test_truncated_or_corrupt_files_are_refused(tmp_path, make):
    path = written(tmp_path, "broken.img", make())
    with pytest.raises(ValueError, match=r"'.*broken\.img' could not be decoded \(truncated or corrupt\?\): \S"):
        load_image_file(path)


def test_zero_byte_file(tmp_path):
    with pytest.raises(ValueError, match=r"'.*empty\.png' is empty \(0 bytes\)"):
        load_image_file(written(tmp_path, "empty.png", b""))


@pytest.mark.parametrize(
    ("name", "data"),
    [("notes.png", b"not a picture, just words\n"), ("portable.png", b"P6\n2 1\n255\n" + bytes(6))],
    ids=["text", "ppm-format-not-loaded"],
)
def test_files_that_are_not_a_supported_image(tmp_path, name, data):
    with pytest.raises(ValueError, match=rf"'.*{name}' is not an image in a supported format \(PNG, JPEG"):
        load_image_file(written(tmp_path, name, data))


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"'.*absent\.png' could not be read"):
        load_image_file(tmp_path / "absent.png")


def test_probe_checks_the_header_without_decoding(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    probe_image_file(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    probe_image_file(truncated)  # only the pixels are missing: load_image_file refuses it
    with pytest.raises(ValueError, match=r"truncated\.png"):
        load_image_file(truncated)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match="'shown name' is not an image"):
        probe_image_file(text, name="shown name")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        probe_image_file(tmp_path / "empty.png")

"""fit_image_and_mask: sizes per the rule, both sides multiples, picture placed as documented, MASK alongside."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from comfyui_img2img.nodes.core.fit import FIT_MODES, RESAMPLE_METHODS, fit_image_and_mask

EVERY_MODE_AND_METHOD = list(itertools.product(FIT_MODES, RESAMPLE_METHODS))


def gradient(batch: int, height: int, width: int, channels: int = 3) -> torch.Tensor:
    """Distinct values in 0..1 per pixel and channel, so that any misplaced pixel shows."""
    values = torch.arange(batch * height * width * channels, dtype=torch.float32)
    return (values / values.numel()).reshape(batch, height, width, channels)


@pytest.mark.parametrize(("fit", "method"), EVERY_MODE_AND_METHOD)
@pytest.mark.parametrize("multiple", [8, 64, 5])
def test_sides_are_multiples_and_the_picture_keeps_its_aspect(fit, method, multiple):
    image = gradient(2, 30, 45)
    out, mask = fit_image_and_mask(image, torch.zeros(2, 30, 45), width=70, fit=fit, method=method, multiple=multiple)
    batch, height, width, channels = out.shape
    assert (batch, channels) == (2, 3) and mask.shape == (2, height, width)
    assert height % multiple == 0 and width % multiple == 0 and height > 0 and width > 0
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    # Resized to 70 wide keeps 30:45 as 47 high (46.67 rounded); the multiple is the one below, above or nearest.
    below = {side: side // multiple * multiple for side in (47, 70)}
    above = {side: -(-side // multiple) * multiple for side in (47, 70)}
    nearest = {side: round(side / multiple) * multiple for side in (47, 70)}
    expected = {"crop": below, "pad": above, "stretch": nearest}[fit]
    # A side shorter than one multiple still gets one.
    assert (height, width) == (max(expected[47], multiple), max(expected[70], multiple))
    if fit == "pad":
        # The picture is where the MASK is 0: exactly the aspect-kept size, within a pixel of 30:45.
        picture_rows = int((mask[0] == 0).any(dim=1).sum())
        picture_columns = int((mask[0] == 0).any(dim=0).sum())
        assert (picture_rows, picture_columns) == (47, 70)
        assert abs(picture_rows - picture_columns * 30 / 45) <= 1


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (0, 0, (30, 45)),  # keep
        (90, 0, (60, 90)),  # height from width
        (0, 20, (20, 30)),  # width from height
        (90, 90, (60, 90)),  # fit inside a square box: the width decides
        (90, 40, (40, 60)),  # fit inside a wide box: the height decides
        (1, 0, (1, 1)),  # 0.67 high rounds to 1
        (0, 1, (1, 2)),  # 1.5 wide rounds half up to 2
    ],
)
def test_size_rule(width, height, expected):
    out, mask = fit_image_and_mask(gradient(1, 30, 45), torch.zeros(1, 30, 45), width, height, multiple=1)
    assert tuple(out.shape[1:3]) == expected and tuple(mask.shape[1:]) == expected


@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_an_already_fitting_picture_comes_back_unchanged(fit, method):
    image, mask = gradient(1, 16, 24), torch.rand(1, 16, 24)
    out, out_mask = fit_image_and_mask(image, mask, width=24, fit=fit, method=method)
    assert torch.equal(out, image) and torch.equal(out_mask, mask)


def test_crop_takes_the_center_and_an_odd_pixel_off_the_bottom_and_right():
    image, mask = gradient(1, 10, 13), torch.rand(1, 10, 13)
    out, out_mask = fit_image_and_mask(image, mask, multiple=8, fit="crop", method="nearest-exact")
    # 10 → 8 drops rows 0 and 9; 13 → 8 drops columns 0, 1 and 10, 11, 12.
    assert torch.equal(out, image[:, 1:9, 2:10]) and torch.equal(out_mask, mask[:, 1:9, 2:10])


def test_pad_centers_repeats_the_edge_and_masks_the_pad():
    image, mask = gradient(1, 10, 13), torch.rand(1, 10, 13) * 0.5
    out, out_mask = fit_image_and_mask(image, mask, multiple=8, fit="pad", method="nearest-exact")
    # 10 → 16: 3 rows above, 3 below; 13 → 16: 1 column left, 2 right.
    assert out.shape == (1, 16, 16, 3)
    assert torch.equal(out[:, 3:13, 1:14], image) and torch.equal(out_mask[:, 3:13, 1:14], mask)
    assert torch.equal(out[:, :3, 1:14], image[:, :1].expand(1, 3, 13, 3))
    assert torch.equal(out[:, 3:13, 14:], image[:, :, -1:].expand(1, 10, 2, 3))
    assert torch.equal(out[:, 13:, 14:], image[:, -1:, -1:].expand(1, 3, 2, 3))
    picture = torch.zeros(16, 16, dtype=torch.bool)
    picture[3:13, 1:14] = True
    assert torch.all(out_mask[0][~picture] == 1.0)


def test_nearest_exact_doubling_repeats_each_pixel():
    image = gradient(1, 4, 4)
    out, mask = fit_image_and_mask(image, image[..., 0], width=8, method="nearest-exact")
    doubled = image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert torch.equal(out, doubled) and torch.equal(mask, doubled[..., 0])


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_one_pixel_grows_to_one_multiple_with_the_pixel_at_the_center(fit):
    image = torch.tensor([[[[0.2, 0.4, 0.6]]]])
    out, mask = fit_image_and_mask(image, torch.zeros(1, 1, 1), multiple=8, fit=fit, method="nearest-exact")
    assert torch.equal(out, image.expand(1, 8, 8, 3))
    expected_mask = torch.ones(1, 8, 8)
    expected_mask[0, 3, 3] = 0.0
    assert torch.equal(mask, expected_mask)


def test_thin_strip_in_crop_mode_crops_its_length_and_pads_its_width():
    image = gradient(1, 3, 8191, channels=1).expand(1, 3, 8191, 3)
    out, mask = fit_image_and_mask(image, torch.zeros(1, 3, 8191), multiple=8, fit="crop", method="nearest-exact")
    assert out.shape == (1, 8, 8184, 3) and mask.shape == (1, 8, 8184)
    # 8191 → 8184 drops 3 columns left; 3 → 8 pads 2 rows above and 3 below.
    assert torch.equal(out[:, 2:5], image[:, :, 3:8187])
    assert torch.equal(mask[0, :, 0], torch.tensor([1.0, 1, 0, 0, 0, 1, 1, 1]))


@pytest.mark.parametrize("method", RESAMPLE_METHODS)
@pytest.mark.parametrize("width", [7, 40, 71])
def test_a_constant_image_stays_that_constant(method, width):
    image = torch.full((1, 17, 23, 3), 0.3)
    out, mask = fit_image_and_mask(image, torch.full((1, 17, 23), 0.7), width=width, fit="stretch", method=method)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6, rtol=0)
    assert torch.allclose(mask, torch.full_like(mask, 0.7), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("fit", "method"), EVERY_MODE_AND_METHOD)
def test_the_mask_is_resampled_exactly_as_the_image(fit, method):
    image = torch.rand(2, 21, 34, 3, generator=torch.Generator().manual_seed(0))
    out, mask = fit_image_and_mask(image, image[..., 1], width=50, fit=fit, method=method)
    inside = mask < 1 if fit == "pad" else torch.ones_like(mask, dtype=torch.bool)
    assert torch.allclose(mask[inside], out[..., 1][inside], atol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos"])
def test_shrinking_antialiases(method):
    # Single-pixel checks shrunk 3×: sampling without a low-pass would keep hitting pure 0 or 1.
    rows, columns = torch.meshgrid(torch.arange(30), torch.arange(30), indexing="ij")
    checks = ((rows + columns) % 2).float()
    image = checks[None, ..., None].expand(1, 30, 30, 3)
    out, _ = fit_image_and_mask(image, checks[None], width=10, multiple=1, method=method)
    assert (out - 0.5).abs().max() < 0.2


@pytest.mark.parametrize(("shape", "width"), [((40, 40), 97), ((40, 40), 17), ((24, 40), 100), ((30, 45), 20)])
def test_lanczos_matches_pillows_lanczos_on_float_pixels(shape, width):
    # Pillow resamples mode F in floating point with Lanczos-3, widened when shrinking: an independent reference.
    pixels = np.random.default_rng(width).uniform(0.3, 0.7, shape).astype(np.float32)
    image = torch.from_numpy(pixels)[None, ..., None].expand(1, *shape, 3)
    out, mask = fit_image_and_mask(image, torch.from_numpy(pixels)[None], width, multiple=1, fit="stretch")
    height = out.shape[1]
    expected = np.asarray(Image.fromarray(pixels, "F").resize((width, height), Image.Resampling.LANCZOS))
    assert np.allclose(out[0, ..., 2].numpy(), expected, atol=2e-6, rtol=0)
    assert np.allclose(mask[0].numpy(), expected, atol=2e-6, rtol=0)


def test_two_dimensional_mask_is_taken_as_a_batch_of_one():
    out, mask = fit_image_and_mask(gradient(1, 10, 12), torch.zeros(10, 12), multiple=4, fit="crop")
    assert out.shape == (1, 8, 12, 3) and mask.shape == (1, 8, 12)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"width": -1}, "width"),
        ({"width": 2.5}, "width"),
        ({"height": -8}, "height"),
        ({"height": True}, "height"),
        ({"multiple": 0}, "multiple"),
        ({"fit": "zoom"}, "fit"),
        ({"method": "area"}, "method"),
        ({"mask": torch.zeros(1, 9, 12)}, "mask"),
        ({"image": torch.zeros(10, 12, 3)}, "image"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_input(arguments, name):
    inputs = {"image": gradient(1, 10, 12), "mask": torch.zeros(1, 10, 12)} | arguments
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        fit_image_and_mask(**inputs)

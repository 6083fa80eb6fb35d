"""Crop and stitch's core: regions, boxes, the stitch's exactness, frames, colour correction, bad inputs."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfyui_img2img.nodes.core.crop_stitch import (
    CropOptions,
    blend_weight,
    colour_corrected,
    crop_regions,
    filled_holes,
    grown,
    label_regions,
    matched_mask,
    ring_difference,
    smoothed_centres,
    stitch,
)


def flood_labels(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Brute force: a breadth-first flood from each unlabelled pixel in reading order."""
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    labels = np.zeros(mask.shape, dtype=np.int32)
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        count += 1
        labels[y, x] = count
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for dy, dx in steps:
                ny, nx = cy + dy, cx + dx
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = count
                    queue.append((ny, nx))
    return labels


def chebyshev_distance(mask: np.ndarray) -> np.ndarray:
    """Brute force: each pixel's Chebyshev distance to the nearest pixel of the mask."""
    ys, xs = np.nonzero(mask)
    grid_y, grid_x = np.indices(mask.shape)
    return np.maximum(np.abs(grid_y[..., None] - ys), np.abs(grid_x[..., None] - xs)).min(axis=-1)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_labels_equal_a_flood_fill_on_random_masks(connectivity):
    rng = np.random.default_rng(33)
    for trial in range(60):
        shape = tuple(rng.integers(1, 40, size=2))
        mask = rng.random(shape) < rng.choice([0.05, 0.3, 0.5, 0.7, 0.95])
        labels, count = label_regions(mask, connectivity)
        expected = flood_labels(mask, connectivity)
        assert np.array_equal(labels, expected), (trial, shape)
        assert count == expected.max()


def test_holes_are_filled_but_not_background_that_reaches_the_border():
    mask = np.zeros((12, 12), dtype=bool)
    mask[2:7, 2:7] = True
    mask[3:6, 3:6] = False  # a hole
    mask[8:12, 6:10] = True
    mask[9:12, 7:9] = False  # open at the bottom border
    # A ring of diagonal steps is closed for 8-connected regions: its inside is a hole.
    for y, x in [(0, 10), (1, 9), (1, 11), (2, 10)]:
        mask[y, x] = True
    filled = filled_holes(mask)
    expected = mask.copy()
    expected[3:6, 3:6] = True
    expected[1, 10] = True
    assert np.array_equal(filled, expected)


def test_growing_and_the_blend_weight_follow_the_chebyshev_distance():
    rng = np.random.default_rng(5)
    mask = rng.random((30, 34)) < 0.01
    mask[15, 17] = True
    distance = chebyshev_distance(mask)
    for pixels in (0, 1, 3):
        assert np.array_equal(grown(torch.from_numpy(mask).float(), pixels).numpy() > 0, distance <= pixels)
    weight = blend_weight(torch.from_numpy(mask), 6).numpy()
    assert np.allclose(weight, np.clip(1 - distance / 6, 0, None), atol=1e-6)
    assert np.array_equal(blend_weight(torch.from_numpy(mask), 0).numpy(), mask.astype(np.float32))


def three_regions(height: int = 767, width: int = 1023) -> torch.Tensor:
    """A mask with three regions, the first in the top left corner (touching two borders)."""
    mask = torch.zeros(1, height, width)
    mask[0, :50, :70] = 1
    mask[0, 300:360, 500:530] = 0.6
    mask[0, 600:700, 880:990] = 1
    return mask


def picture(height: int = 767, width: int = 1023, seed: int = 0) -> torch.Tensor:
    # 8-bit levels, as a PNG gives them
    return torch.randint(0, 256, (1, height, width, 3), generator=torch.Generator().manual_seed(seed)) / 255.0


def test_crop_then_stitch_without_an_edit_is_the_input_exactly():
    image, mask = picture(), three_regions()
    crops, masks, record = crop_regions(image, mask, CropOptions(target_width=128, target_height=96))
    assert crops.shape == (3, 96, 128, 3) and masks.shape == (3, 96, 128)
    assert (record.boxes[0].left, record.boxes[0].top) == (0, 0)  # in the corner, shifted inside
    out, _, _ = stitch(record, crops)
    assert torch.equal(out, image)
    out, corrected, _ = stitch(record, crops.clone(), colour_correction=True)
    assert torch.equal(out, image) and corrected == [0.0, 0.0, 0.0]


def test_after_an_edit_only_pixels_within_the_blend_of_the_mask_change_and_the_mask_changes():
    image, mask = picture(seed=1), three_regions()
    options = CropOptions(target_width=128, target_height=128, blend=12)
    crops, _, record = crop_regions(image, mask, options)
    edited = (crops + 0.2 * torch.randn(crops.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    inside = mask[0] > 0
    # w is 0 from the blend width on (the issue asks it farther than that).
    far = grown(inside.float(), options.blend - 1) == 0
    for colour_correction in (False, True):
        out, _, _ = stitch(record, edited, colour_correction)
        assert torch.equal(out[0][far], image[0][far])
        changed = (out[0][inside] != image[0][inside]).any(dim=-1)
        assert changed.float().mean() > 0.99


@pytest.mark.parametrize("seed", range(40))
def test_boxes_hold_the_region_and_its_context_inside_the_picture_at_the_targets_aspect(seed):
    rng = np.random.default_rng(seed)
    height, width = (int(side) for side in rng.integers(16, 300, size=2))
    options = CropOptions(
        target_width=int(rng.integers(1, 40)) * 8,
        target_height=int(rng.integers(1, 40)) * 8,
        context_factor=float(rng.uniform(1, 2)),
        context_pixels=int(rng.integers(0, 30)),
        blend=int(rng.integers(0, 20)),
        fill_holes=False,
    )
    mask = torch.zeros(1, height, width)
    top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
    bottom, right = int(rng.integers(top + 1, height + 1)), int(rng.integers(left + 1, width + 1))
    mask[0, top:bottom, left:right] = 1
    crops, masks, record = crop_regions(picture(height, width, seed), mask, options)
    [box] = record.boxes
    assert crops.shape[1:3] == masks.shape[1:] == (options.target_height, options.target_width)
    assert box.left >= 0 and box.left + box.width <= width and box.top >= 0 and box.top + box.height <= height
    for start, end, low, high, side, factor_side in [
        (box.top, box.top + box.height, top, bottom, height, bottom - top),
        (box.left, box.left + box.width, left, right, width, right - left),
    ]:
        margin = max((options.context_factor - 1) * factor_side / 2 + options.context_pixels, options.blend)
        assert start <= max(low - margin, 0) and end >= min(high + margin, side)
    canvas_height, canvas_width = box.canvas
    assert abs(canvas_width * options.target_height - canvas_height * options.target_width) < max(
        options.target_width, options.target_height
    )  # the target's aspect ratio, to a pixel
    assert (box.pad[0] + box.pad[1] > 0) == (box.width == width and canvas_width > width)
    assert (box.pad[2] + box.pad[3] > 0) == (box.height == height and canvas_height > height)
    assert torch.equal(stitch(record, crops)[0], record.image)


def test_a_region_wider_than_the_picture_allows_pads_the_crop_and_still_stitches_back_exactly():
    image, mask = picture(60, 200), torch.zeros(1, 60, 200)
    mask[0, 20:40, 5:195] = 1
    options = CropOptions(64, 64, context_factor=1.0, context_pixels=0, blend=4)
    crops, masks, record = crop_regions(image, mask, options)
    [box] = record.boxes
    # 190 px wide + 4 px of blend each side + 1 px for rounding: square, so 139 rows of padding.
    assert (box.left, box.top, box.width, box.height) == (1, 0, 199, 60)
    assert box.canvas == (199, 199) and box.pad == (0, 0, 69, 70)
    # The padding is repeated edge pixels and no part of the mask.
    assert torch.allclose(crops[0, 0], crops[0, 1], atol=1e-6) and masks[0, :20].max() == 0
    assert torch.equal(stitch(record, crops)[0], image)
    out, _, _ = stitch(record, 1 - crops)
    assert (out[0, 20:40, 5:195] != image[0, 20:40, 5:195]).any(dim=-1).all()


def test_regions_closer_than_twice_the_blend_are_one_and_together_takes_them_all():
    mask = torch.zeros(1, 100, 200)
    mask[0, 40:50, 20:30] = 1
    mask[0, 40:50, 40:50] = 1  # 10 px from the first
    mask[0, 40:50, 150:160] = 1
    assert len(crop_regions(picture(100, 200), mask, CropOptions(64, 64, blend=4))[2].boxes) == 3
    assert len(crop_regions(picture(100, 200), mask, CropOptions(64, 64, blend=8))[2].boxes) == 2
    [box] = crop_regions(picture(100, 200), mask, CropOptions(64, 64, blend=4, regions="together"))[2].boxes
    assert box.left <= 20 and box.left + box.width >= 160


def test_regions_come_top_to_bottom_then_left_to_right_and_holes_are_part_of_the_region():
    mask = torch.zeros(1, 120, 120)
    mask[0, 80:90, 10:20] = 1
    mask[0, 10:40, 70:100] = 1
    mask[0, 20:30, 80:90] = 0  # a hole
    mask[0, 10:20, 10:20] = 1
    _, masks, record = crop_regions(picture(120, 120), mask, CropOptions(64, 64, blend=2, context_pixels=2))
    assert [(box.top < 40, box.left < 60) for box in record.boxes] == [(True, True), (True, False), (False, True)]
    assert masks[1, 32, 32] == 1  # the hole's centre, filled
    unfilled = crop_regions(picture(120, 120), mask, CropOptions(64, 64, blend=2, context_pixels=2, fill_holes=False))
    assert unfilled[1][1, 32, 32] == 0


def moving_masks(centres, sizes, shape=(120, 160)) -> torch.Tensor:
    masks = torch.zeros(len(centres), *shape)
    for index, ((y, x), (h, w)) in enumerate(zip(centres, sizes, strict=True)):
        masks[index, y - h // 2 : y + h - h // 2, x - w // 2 : x + w - w // 2] = 1
    return masks


def test_frame_boxes_share_a_size_and_move_at_most_2_px_where_the_mask_moves_at_most_2_px():
    rng = np.random.default_rng(7)
    steps = rng.integers(-2, 3, size=(30, 2))
    centres = np.array([60, 80]) + np.cumsum(steps, axis=0)
    sizes = rng.integers(10, 30, size=(30, 2))
    sizes[:, :] = sizes[:, :1]  # sizes vary: the bounding box's centre moves with them, by half a pixel
    masks = moving_masks(centres, [(s[0], s[0]) for s in sizes])
    images = picture(120, 160).expand(30, -1, -1, -1)
    _, _, record = crop_regions(images, masks, CropOptions(64, 64, blend=4))
    boxes = record.boxes
    assert len({(box.width, box.height) for box in boxes}) == 1
    mask_moves = [
        max(abs(a - b) for a, b in zip(first, second, strict=True))
        for first, second in itertools.pairwise(region_centres(masks))
    ]
    for index, (first, second) in enumerate(itertools.pairwise(boxes)):
        if mask_moves[index] <= 2:
            assert abs(first.left - second.left) <= 2 and abs(first.top - second.top) <= 2
    assert_regions_inside_boxes(masks, boxes)


def region_centres(masks: torch.Tensor) -> list[tuple[float, float]]:
    centres = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        centres.append(((int(ys.min()) + int(ys.max()) + 1) / 2, (int(xs.min()) + int(xs.max()) + 1) / 2))
    return centres


def assert_regions_inside_boxes(masks, boxes):
    for box in boxes:
        inside = torch.zeros_like(masks[box.frame], dtype=torch.bool)
        inside[box.top : box.top + box.height, box.left : box.left + box.width] = True
        assert not (masks[box.frame].bool() & ~inside).any()


def test_the_moving_average_moves_no_more_than_its_input_and_a_jump_stays_inside_the_box():
    rng = np.random.default_rng(3)
    for _ in range(50):
        values = np.cumsum(rng.uniform(-2, 2, size=(int(rng.integers(1, 20)), 2)), axis=0)
        smoothed = smoothed_centres(values)
        assert np.abs(np.diff(smoothed, axis=0)).max(initial=0) <= 2 + 1e-9
    masks = moving_masks([(60, 30)] * 4 + [(60, 120)] * 4, [(10, 10)] * 8)
    _, _, record = crop_regions(picture(120, 160).expand(8, -1, -1, -1), masks, CropOptions(64, 64, blend=4))
    assert_regions_inside_boxes(masks, record.boxes)


def test_an_empty_frame_passes_through_with_a_note_and_the_graph_still_gets_a_crop():
    images = picture(100, 140).expand(3, -1, -1, -1).clone()
    masks = torch.zeros(3, 100, 140)
    masks[0, 10:20, 10:20] = 1
    masks[2, 50:60, 100:110] = 1
    crops, crop_masks, record = crop_regions(images, masks, CropOptions(64, 64))
    assert [box.frame for box in record.boxes] == [0, 1, 2] and record.boxes[1].empty
    assert crop_masks[1].max() == 0 and crops.shape == (3, 64, 64, 3)
    assert "no mask region in frame 1: it passes through unchanged" in record.notes
    out, _, _ = stitch(record, torch.rand(crops.shape))
    assert torch.equal(out[1], images[1]) and not torch.equal(out[0], images[0])
    assert "frames hold different numbers of regions: each frame's boxes are its own, not smoothed" in record.notes
    nothing = crop_regions(images[:1], torch.zeros(1, 100, 140), CropOptions(64, 64))
    assert nothing[0].shape == (1, 64, 64, 3) and torch.equal(
        stitch(nothing[2], torch.rand(1, 64, 64, 3))[0], images[:1]
    )


def test_a_mask_of_another_size_is_resized_as_core_resizes_a_mask_and_a_wrong_batch_names_mask():
    small = torch.zeros(1, 25, 35)
    small[0, 5:10, 5:12] = 1
    expected = F.interpolate(small[:, None], size=(100, 140), mode="bilinear")[:, 0]  # comfy.utils.reshape_mask
    assert torch.equal(matched_mask(small, 2, 100, 140), expected.expand(2, -1, -1))
    assert torch.equal(matched_mask(small[0], 1, 100, 140), expected)
    with pytest.raises(ValueError, match=r"^mask: 2 masks for 3 images"):
        crop_regions(picture(100, 140).expand(3, -1, -1, -1), torch.zeros(2, 100, 140), CropOptions(64, 64))


def test_bad_options_and_crops_are_refused_naming_the_input():
    with pytest.raises(ValueError, match=r"^target_width must be a multiple of 8"):
        CropOptions(target_width=100)
    with pytest.raises(ValueError, match=r"^regions must be one of"):
        CropOptions(regions="each")
    with pytest.raises(ValueError, match=r"^context_factor"):
        CropOptions(context_factor=0.5)
    crops, _, record = crop_regions(picture(100, 140), three_regions(100, 140)[:, :, :] * 0 + 1, CropOptions(64, 64))
    with pytest.raises(ValueError, match=r"^crops:"):
        stitch(record, torch.cat([crops, crops]))


def test_a_pictures_alpha_is_kept_when_the_edit_has_only_colour():
    image, mask = torch.cat([picture(100, 140), torch.rand(1, 100, 140, 1)], dim=-1), torch.zeros(1, 100, 140)
    mask[0, 40:60, 60:80] = 1
    crops, _, record = crop_regions(image, mask, CropOptions(64, 64))
    out, _, _ = stitch(record, 1 - crops[..., :3])
    assert torch.equal(out[..., 3], image[..., 3]) and not torch.equal(out[..., :3], image[..., :3])


def test_edited_crops_of_another_size_are_resampled_to_the_crop():
    image, mask = picture(100, 140), torch.zeros(1, 100, 140)
    mask[0, 40:60, 60:80] = 1
    crops, _, record = crop_regions(image, mask, CropOptions(64, 64))
    bigger = F.interpolate(crops.movedim(-1, 1), size=(128, 128), mode="nearest").movedim(1, -1)
    out, _, _ = stitch(record, bigger)
    assert (out - image).abs().max() < 0.1


def test_colour_correction_takes_a_tone_shift_out_of_the_blend_ring():
    image, mask = picture(200, 200, seed=4) * 0.8 + 0.1, torch.zeros(1, 200, 200)
    mask[0, 80:120, 80:120] = 1
    crops, _, record = crop_regions(image, mask, CropOptions(128, 128, blend=16))
    shifted = (crops + torch.tensor([0.06, 0.03, -0.04])).clamp(0, 1)  # a colour cast over the whole crop
    _, [plain], [same] = stitch(record, shifted)
    out, [corrected], [uncorrected] = stitch(record, shifted, colour_correction=True)
    assert plain == same == uncorrected and plain * 255 > 2
    assert corrected * 255 < 0.5 < plain * 255
    # The cast is taken out inside too, up to how a constant RGB cast differs from a constant CIELAB shift.
    inside = (slice(None), slice(90, 110), slice(90, 110))
    uncorrected_out = stitch(record, shifted)[0]
    assert (out[inside] - image[inside]).abs().mean() < 0.5 * (uncorrected_out[inside] - image[inside]).abs().mean()


def test_colour_correction_of_an_unchanged_context_changes_nothing_bit_for_bit():
    original = torch.rand(32, 32, 3)
    edited = original.clone()
    edited[8:24, 8:24] = torch.rand(16, 16, 3)
    weight = torch.ones(32, 32)
    weight[8:24, 8:24] = 0
    assert torch.equal(colour_corrected(edited, original, weight), edited)
    assert torch.equal(colour_corrected(edited, original, torch.zeros(32, 32)), edited)
    assert ring_difference(edited, original, torch.full((32, 32), 0.5)) > 0
    assert ring_difference(edited, original, torch.ones(32, 32)) == 0.0

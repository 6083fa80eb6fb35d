"""The core of kept pixels and kept colours: the feathered blend, CIELAB, histogram matching; and the
per-pixel strength arithmetic of strength maps."""

import numpy as np
import pytest
import torch

from comfyui_img2img.nodes.core.kept_pixels import (
    composite,
    feathered_weight,
    lab_to_rgb,
    match_colours,
    mean_delta_e,
    resized_map,
    rgb_to_lab,
)
from comfyui_img2img.nodes.core.strength import (
    checked_strength_map,
    denoising_at,
    pixel_strength,
    plan_strength,
    start_sigmas_for_map,
)


def test_map_0_gives_the_source_bit_for_bit_and_a_hard_edge_fades_in_over_the_feather():
    half = torch.zeros(1, 32, 32)
    half[..., 16:] = 1
    weight = feathered_weight(resized_map(half, 32, 32), feather=8)
    assert weight[0, 0, :, 0].tolist() == [0.0] * 16 + [i / 8 for i in range(1, 9)] + [1.0] * 8
    source, decoded = torch.rand(1, 32, 32, 3), torch.rand(1, 32, 32, 3)
    out = composite(decoded, source, weight)
    assert torch.equal(out[:, :, :16], source[:, :, :16])
    assert torch.equal(out[:, :, 24:], decoded[:, :, 24:])


def test_a_soft_map_crossfades_and_the_picture_edge_is_not_an_edge_of_the_map():
    ramp = torch.linspace(0, 1, 16).expand(1, 16, 16)
    weight = feathered_weight(resized_map(ramp, 16, 16), feather=1)
    assert torch.equal(weight[0, ..., 0], ramp[0])
    assert torch.equal(feathered_weight(resized_map(torch.ones(1, 8, 8), 8, 8), feather=4), torch.ones(1, 8, 8, 1))


def test_a_map_of_another_size_is_resized_bilinear_and_stays_in_0_to_1():
    small = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    resized = resized_map(small, 8, 8)
    assert resized.shape == (1, 8, 8, 1) and float(resized.min()) >= 0 and float(resized.max()) <= 1


def test_lab_round_trip_and_known_colours():
    rgb = torch.rand(64, 3, dtype=torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    assert torch.allclose(rgb_to_lab(torch.tensor([1.0, 1.0, 1.0])), torch.tensor([100.0, 0, 0], dtype=torch.float64))
    # sRGB red, D65: L 53.24, a 80.09, b 67.20 (Lindbloom's calculator)
    assert torch.allclose(
        rgb_to_lab(torch.tensor([1.0, 0, 0])), torch.tensor([53.24, 80.09, 67.20]).double(), atol=0.01
    )


def test_matching_a_tinted_copy_gives_back_the_sources_colour_distribution():
    generator = torch.Generator().manual_seed(3)
    source = torch.rand(1, 24, 24, 3, generator=generator)
    tinted = (source * torch.tensor([0.7, 0.9, 1.0]) + 0.1).clamp(0, 1)
    matched = match_colours(tinted, source)
    assert mean_delta_e(matched, source) < 0.6 * mean_delta_e(tinted, source)
    lab_matched, lab_source = rgb_to_lab(matched).reshape(-1, 3), rgb_to_lab(source).reshape(-1, 3)
    assert torch.allclose(lab_matched.mean(0), lab_source.mean(0), atol=0.5)
    assert torch.allclose(lab_matched.std(0), lab_source.std(0), atol=0.5)


def test_pixel_strength_is_denoise_times_the_maps_decimal():
    assert pixel_strength(0.8, 0.5) == 0.4
    assert pixel_strength(0.8, float(np.float32(0.35))) == 0.28  # the float32 mask value read as typed
    assert pixel_strength(0.7, 1.0) == 0.7  # float32(0.7) * 1 would plan 13 of 20 steps, not 14
    assert plan_strength("steps_x_denoise", 20, pixel_strength(0.7, 1.0)).planned_steps == 14


def test_start_sigmas_are_computed_once_per_distinct_value():
    asked = []

    def start_sigma(strength: float) -> float:
        asked.append(strength)
        return 10 * strength

    values = torch.tensor([[0.0, 0.5, 0.5], [1.0, 1.0, 0.0]])
    starts = start_sigmas_for_map(values, 0.6, start_sigma)
    assert starts.tolist() == [[0.0, 3.0, 3.0], [6.0, 6.0, 0.0]]
    assert sorted(asked) == [0.0, 0.3, 0.6]
    assert denoising_at(starts, torch.tensor([3.0])).tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert denoising_at(starts, torch.tensor([3.5])).tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]


@pytest.mark.parametrize(
    "bad", [torch.full((4, 4), 1.5), torch.full((4, 4), float("nan")), torch.ones(1, 1, 4, 4), torch.ones(0, 4), "x"]
)
def test_a_bad_strength_map_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="strength_map"):
        checked_strength_map(bad)

import math

import pytest
import torch

from comfyui_img2img.nodes.core.strength import (
    MAX_LADDER_STEPS,
    StrengthPlan,
    loopback_strengths,
    plan_strength,
    sigmas_for_strength,
)


def a1111_reference(steps: int, denoise: float) -> tuple[int, int]:
    """AUTOMATIC1111's img2img: t_enc = int(min(denoise, 0.999) * steps); t_enc + 1 steps run."""
    t_enc = int(min(denoise, 0.999) * steps)
    return steps - t_enc - 1, t_enc + 1


@pytest.mark.parametrize(
    ("steps", "denoise", "start", "model_steps"),
    [
        (20, 0.5, 10, 10),
        (20, 1.0, 0, 20),
        (10, 0.3, 7, 3),
        (100, 0.57, 43, 57),
        (100, 0.29, 71, 29),
        (20, 0.04, 20, 0),
        (1, 0.99, 1, 0),
        (1, 1.0, 0, 1),
        (30, 0.75, 8, 22),
    ],
)
def test_steps_x_denoise_runs_the_last_floor_n_s_steps(steps, denoise, start, model_steps):
    plan = plan_strength("steps_x_denoise", steps, denoise)
    assert (plan.ladder_steps, plan.start_index, plan.planned_steps) == (steps, start, model_steps)


@pytest.mark.parametrize("steps", [1, 2, 7, 20, 50, 150])
@pytest.mark.parametrize("denoise", [0.01, 0.1, 0.3, 0.33, 0.5, 0.57, 0.75, 0.9, 0.998, 0.999, 0.9995, 1.0])
def test_a1111_matches_its_formula(steps, denoise):
    plan = plan_strength("a1111", steps, denoise)
    assert (plan.start_index, plan.planned_steps) == a1111_reference(steps, denoise)


@pytest.mark.parametrize(("steps", "denoise", "ladder"), [(20, 0.5, 40), (20, 0.3, 66), (10, 0.75, 13), (20, 1.0, 20)])
def test_comfy_stretches_the_ladder_and_always_runs_n_steps(steps, denoise, ladder):
    plan = plan_strength("comfy", steps, denoise)
    assert plan.ladder_steps == ladder == (int(steps / denoise) if denoise <= 0.9999 else steps)
    assert plan.planned_steps == steps


def test_comfy_ladder_is_bounded_at_tiny_strength():
    plan = plan_strength("comfy", 20, 1e-12)
    assert plan.ladder_steps == MAX_LADDER_STEPS and plan.planned_steps == 20


@pytest.mark.parametrize("mode", ["steps_x_denoise", "a1111", "comfy"])
def test_zero_strength_selects_no_step(mode):
    assert plan_strength(mode, 20, 0.0).planned_steps == 0


@pytest.mark.parametrize(
    ("mode", "steps", "denoise", "needle"),
    [
        ("steps_x_denoise", 0, 0.5, "steps"),
        ("steps_x_denoise", -3, 0.5, "steps"),
        ("comfy", 20, -0.1, "denoise"),
        ("comfy", 20, 1.5, "denoise"),
        ("a1111", 20, math.nan, "denoise"),
        ("a1111", 20, math.inf, "denoise"),
        ("sideways", 20, 0.5, "strength_mode"),
        ("comfy", 2.5, 0.5, "steps"),
    ],
)
def test_bad_input_names_the_input(mode, steps, denoise, needle):
    with pytest.raises(ValueError, match=needle):
        plan_strength(mode, steps, denoise)


def test_sigmas_for_strength_cuts_the_ladder_as_each_anchor_does():
    ladder = torch.tensor([14.0, 9.0, 5.0, 2.0, 1.0, 0.0])
    assert sigmas_for_strength(plan_strength("steps_x_denoise", 5, 0.4), ladder).tolist() == [2.0, 1.0, 0.0]
    assert sigmas_for_strength(StrengthPlan("comfy", 2, 0.4, 5, 3), ladder).tolist() == [2.0, 1.0, 0.0]
    # A ladder shorter than asked (beta drops repeats): steps_x_denoise starts where KSamplerAdvanced does.
    short = torch.tensor([14.0, 5.0, 1.0, 0.0])
    assert sigmas_for_strength(plan_strength("steps_x_denoise", 5, 0.4), short).numel() == 0
    assert sigmas_for_strength(StrengthPlan("comfy", 2, 0.4, 5, 3), short).tolist() == [5.0, 1.0, 0.0]


def test_a_longer_ladder_still_ends_at_step_n_at_zero():
    # ddim_uniform's stride can give one step more than asked for
    ladder = torch.tensor([14.0, 9.0, 5.0, 2.0, 1.0, 0.5, 0.0])
    assert sigmas_for_strength(plan_strength("steps_x_denoise", 5, 0.4), ladder).tolist() == [2.0, 1.0, 0.0]
    assert sigmas_for_strength(StrengthPlan("comfy", 2, 0.4, 5, 3), ladder).tolist() == [1.0, 0.5, 0.0]


def test_loopback_strengths_multiply_the_typed_decimals_and_cap_at_1():
    assert loopback_strengths(0.6, 0.8, 4) == [0.6, 0.48, 0.384, 0.3072]
    assert loopback_strengths(0.7, 1.5, 3) == [0.7, 1.0, 1.0]
    assert loopback_strengths(0.5, 0.0, 2) == [0.5, 0.0]
    with pytest.raises(ValueError, match="strength_factor"):
        loopback_strengths(0.5, -0.1, 2)
    with pytest.raises(ValueError, match="denoise"):
        loopback_strengths(1.5, 0.9, 2)

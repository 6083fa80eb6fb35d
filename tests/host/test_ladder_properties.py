"""Properties of the strength core's cuts over ComfyUI's own sigma ladders, for every steps count and strength.

The ladders are core's (``comfy.samplers.calculate_sigmas`` on SD1.5's noise table), so ComfyUI is imported
into the test process; the cuts are the pure core's ``sigmas_for_strength``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from comfyui_img2img.nodes.core.strength import STRENGTH_MODES, plan_strength, sigmas_for_strength
from pack_under_test import import_comfyui

# Derandomized and without an example database: CI runs the same examples every time.
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)
# Ladders of the schedules that loop in Python per step (normal, sgm_uniform, ...) cost more to build.
SLOW_PROPERTY = settings(PROPERTY, max_examples=60)
modes = st.sampled_from(STRENGTH_MODES)
steps_with_ladders = st.integers(1, 1000)
# The exact ends, what the UI's 0.01 step produces, and any float in between (subnormals included).
strengths = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0]),
    st.integers(0, 100).map(lambda hundredths: hundredths / 100),
    st.floats(0.0, 1.0),
)


@pytest.fixture(scope="module", autouse=True)
def comfyui(comfy_host):
    import_comfyui(comfy_host.comfyui)


@functools.cache
def sd15_noise_table():
    import comfy.model_sampling

    return comfy.model_sampling.ModelSamplingDiscrete()


@functools.lru_cache(maxsize=512)
def full_ladder(schedule: str, steps: int) -> torch.Tensor:
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(sd15_noise_table(), schedule, steps)


def steps_that_run(sigmas: torch.Tensor) -> int:
    """What a sampler runs on a partial ladder: one step per pair of sigmas (the nodes' PartialSchedule.model_steps)."""
    return max(len(sigmas) - 1, 0)


def check_partial_ladder(schedule: str, mode: str, steps: int, denoise: float) -> None:
    plan = plan_strength(mode, steps, denoise)
    ladder = full_ladder(schedule, plan.ladder_steps)
    if schedule == "kl_optimal" and plan.ladder_steps == 1:  # core divides by steps - 1: the nodes refuse it
        assert bool(ladder.isnan().any())
        return
    sigmas = sigmas_for_strength(plan, ladder)
    run = steps_that_run(sigmas)
    # Never a lone sigma: either the latent passes through (no sigmas) or at least one step runs.
    assert len(sigmas) != 1
    assert run <= plan.planned_steps <= steps
    if plan.planned_steps == 0:
        assert len(sigmas) == 0
    if len(ladder) == plan.ladder_steps + 1:
        # A ladder of the asked length is cut to exactly the plan: zero steps exactly when the plan has none.
        assert run == plan.planned_steps
    # Up to the model's 1000 training sigmas every scheduler's ladder is strictly decreasing. Only comfy's stretched
    # ladders get longer, and "simple" then repeats sigmas, as core's simple scheduler does for core KSampler.
    strict = bool((ladder[1:] < ladder[:-1]).all())
    assert strict or (schedule == "simple" and plan.ladder_steps > len(sd15_noise_table().sigmas))
    if run:
        # Cutting never adds a repeat: strictly decreasing wherever the scheduler's ladder is.
        assert bool((sigmas[1:] < sigmas[:-1]).all() if strict else (sigmas[1:] <= sigmas[:-1]).all())
        assert sigmas[-1] == 0.0
        assert bool((sigmas[:-1] > 0).all())
        # The run is a stretch of the scheduler's own ladder: no sigma made up but the final 0.
        start = plan.start_index if mode != "comfy" else len(ladder) - 1 - run
        assert torch.equal(sigmas[:-1], ladder[start : start + run])


@PROPERTY
@given(schedule=st.sampled_from(["karras", "exponential"]), mode=modes, steps=steps_with_ladders, denoise=strengths)
@example(schedule="karras", mode="comfy", steps=1000, denoise=1e-300)
@example(schedule="karras", mode="a1111", steps=1, denoise=1e-300)
@example(schedule="exponential", mode="steps_x_denoise", steps=1000, denoise=0.001)
def test_the_partial_ladder_is_strictly_decreasing_and_ends_in_zero(
    schedule: str, mode: str, steps: int, denoise: float
) -> None:
    check_partial_ladder(schedule, mode, steps, denoise)


@pytest.mark.parametrize(
    "schedule", ["normal", "simple", "sgm_uniform", "ddim_uniform", "linear_quadratic", "kl_optimal"]
)
@SLOW_PROPERTY
@given(mode=modes, steps=steps_with_ladders, denoise=strengths)
@example(mode="steps_x_denoise", steps=1000, denoise=1.0)  # ddim_uniform: 999 steps for N = 1000
@example(mode="comfy", steps=7, denoise=0.001)
@example(mode="comfy", steps=20, denoise=0.01)  # simple: a 2000-step ladder from 1000 sigmas repeats them
def test_every_schedules_partial_ladder_is_strictly_decreasing_and_ends_in_zero(
    schedule: str, mode: str, steps: int, denoise: float
) -> None:
    check_partial_ladder(schedule, mode, steps, denoise)


# beta drops repeated timesteps of the 1000-step table: no stretched ladder over 1000 steps.
@settings(PROPERTY, max_examples=10)
@given(mode=modes, steps=steps_with_ladders, denoise=strengths)
@example(mode="steps_x_denoise", steps=1000, denoise=0.003)  # repeats dropped: the ladder is shorter than asked
@example(mode="comfy", steps=1000, denoise=1.0)
def test_the_beta_schedules_partial_ladder_is_strictly_decreasing_and_ends_in_zero(
    mode: str, steps: int, denoise: float
) -> None:
    assume(plan_strength(mode, steps, denoise).ladder_steps <= 1000)
    check_partial_ladder("beta", mode, steps, denoise)

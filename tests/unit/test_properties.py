"""Properties of the pure core over its whole input range: strength plans, the ladders they cut, seeded noise.

The example-based tests pin known values (test_strength.py, test_noise.py); these check that the invariants the
nodes rely on hold for every steps count and strength, on real SD1.5-like sigma ladders.
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from comfyui_img2img.nodes.core.noise import BATCH_SEEDS, initial_noise
from comfyui_img2img.nodes.core.strength import (
    MAX_LADDER_STEPS,
    STRENGTH_MODES,
    plan_strength,
    validate_steps_and_denoise,
)

# Derandomized and without an example database: CI runs the same examples every time.
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

MAX_STEPS = 10_000  # the nodes' steps input allows up to this
modes = st.sampled_from(STRENGTH_MODES)
steps = st.integers(1, MAX_STEPS)
steps_with_ladders = st.integers(1, 1000)
# The exact ends, what the UI's 0.01 step produces, and any float in between (subnormals included).
strengths = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0]),
    st.integers(0, 100).map(lambda hundredths: hundredths / 100),
    st.floats(0.0, 1.0),
)


@PROPERTY
@given(mode=modes, steps=steps, denoise=strengths)
@example(mode="a1111", steps=1, denoise=5e-324)
@example(mode="a1111", steps=MAX_STEPS, denoise=1.0)
@example(mode="comfy", steps=MAX_STEPS, denoise=5e-324)
@example(mode="comfy", steps=1, denoise=0.9999)
def test_a_plan_runs_between_zero_and_n_steps(mode: str, steps: int, denoise: float) -> None:
    plan = plan_strength(mode, steps, denoise)
    assert 0 <= plan.planned_steps <= steps
    assert 0 <= plan.start_index <= plan.ladder_steps
    if mode == "comfy":
        # Only comfy stretches the ladder, and never past MAX_LADDER_STEPS unless N itself is longer.
        assert steps <= plan.ladder_steps <= max(steps, MAX_LADDER_STEPS)
    else:
        assert plan.ladder_steps == steps


@PROPERTY
@given(mode=modes, steps=steps, low=strengths, high=strengths)
@example(mode="a1111", steps=1000, low=0.999, high=1.0)
@example(mode="steps_x_denoise", steps=100, low=0.56, high=0.57)
@example(mode="comfy", steps=20, low=0.0, high=5e-324)
def test_more_strength_never_runs_fewer_steps(mode: str, steps: int, low: float, high: float) -> None:
    low, high = sorted((low, high))
    weak, strong = plan_strength(mode, steps, low), plan_strength(mode, steps, high)
    assert weak.planned_steps <= strong.planned_steps
    if mode != "comfy":
        # On the one fixed N-step ladder, a stronger run starts at the same or an earlier, noisier step.
        assert strong.start_index <= weak.start_index


@PROPERTY
@given(mode=modes, steps=steps, denoise=strengths)
@example(mode="steps_x_denoise", steps=100, denoise=0.01)  # 0.01·100 is 1 step, though not in binary floats
@example(mode="steps_x_denoise", steps=100, denoise=0.009999999999999998)
@example(mode="a1111", steps=MAX_STEPS, denoise=5e-324)
def test_no_step_runs_exactly_below_the_smallest_strength_of_one_step(mode: str, steps: int, denoise: float) -> None:
    plan = plan_strength(mode, steps, denoise)
    if mode == "steps_x_denoise":
        # ⌊N·s⌋ on the decimal the user typed; the product is exact in Decimal's 28 digits.
        assert (plan.planned_steps == 0) == (Decimal(repr(denoise)) * steps < 1)
    else:
        # a1111 always runs t_enc + 1 ≥ 1 steps, comfy and snr all N: only strength 0 passes the latent through.
        assert (plan.planned_steps == 0) == (denoise == 0.0)
    if mode in ("comfy", "snr") and denoise > 0:
        assert plan.planned_steps == steps


@PROPERTY
@given(mode=modes, steps=steps_with_ladders)
def test_full_strength_runs_every_step(mode: str, steps: int) -> None:
    # a1111 caps the strength at 0.999: ⌊0.999·N⌋ + 1 = N only up to N = 1000, this property's range.
    assert plan_strength(mode, steps, 1.0).planned_steps == steps


@PROPERTY
@given(
    steps=st.one_of(st.integers(max_value=0), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3)),
    denoise=strengths,
)
def test_steps_other_than_a_whole_number_of_at_least_1_are_refused(steps: object, denoise: float) -> None:
    with pytest.raises(ValueError, match="steps must be a whole number"):
        validate_steps_and_denoise(steps, denoise)


@PROPERTY
@given(
    steps=steps,
    denoise=st.one_of(st.floats(max_value=-5e-324), st.floats(min_value=1.0000000000000002), st.just(math.nan)),
)
def test_strengths_outside_0_to_1_are_refused(steps: int, denoise: float) -> None:
    with pytest.raises(ValueError, match="denoise must be a number from 0 to 1"):
        validate_steps_and_denoise(steps, denoise)
    for mode in STRENGTH_MODES:
        with pytest.raises(ValueError, match="denoise must be a number from 0 to 1"):
            plan_strength(mode, steps, denoise)


# Small latents: the properties are about which draws land where, not about size.
LATENT = (4, 3, 2)
seeds = st.integers(0, 2**64 - 1)  # the nodes' seed input range
batch_seeds = st.sampled_from(BATCH_SEEDS)


@PROPERTY
@given(seed=seeds, batch_seed=batch_seeds, size=st.integers(1, 6), other=seeds)
def test_noise_depends_on_the_seed_alone(seed: int, batch_seed: str, size: int, other: int) -> None:
    first = initial_noise((size, *LATENT), seed, batch_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(other)  # whatever the global generator holds, the noise stays the same
        second = initial_noise((size, *LATENT), seed, batch_seed)
    assert torch.equal(first, second)
    assert first.shape == (size, *LATENT) and first.dtype == torch.float32


@PROPERTY
@given(seed=seeds, size=st.integers(1, 6))
@example(seed=2**64 - 1, size=3)  # seed + i past the largest seed wraps around, as seeds do in torch
def test_per_image_noise_is_each_images_single_run_noise(seed: int, size: int) -> None:
    batch = initial_noise((size, *LATENT), seed, "per_image")
    for i in range(size):
        single_seed = (seed + i) % 2**64
        alone = initial_noise((1, *LATENT), single_seed, "per_image")
        assert torch.equal(batch[i : i + 1], alone)
        # A batch of one is the same in both modes: per_image changes nothing for single runs.
        assert torch.equal(alone, initial_noise((1, *LATENT), single_seed, "comfy"))


@PROPERTY
@given(
    seed=seeds,
    batch_seed=batch_seeds,
    size=st.integers(2, 8),
    latent=st.tuples(st.just(4), st.integers(1, 5), st.integers(1, 5)),
    cut=st.integers(1, 7),
    picked=st.lists(st.integers(0, 7), min_size=1, max_size=8),
)
@example(seed=2**64 - 1, batch_seed="per_image", size=2, latent=(4, 3, 3), cut=1, picked=[1, 0])
@example(seed=0, batch_seed="comfy", size=3, latent=(4, 2, 2), cut=2, picked=[2, 2, 0])
def test_a_split_batch_keeps_its_noise(
    seed: int, batch_seed: str, size: int, latent: tuple[int, int, int], cut: int, picked: list[int]
) -> None:
    if batch_seed == "comfy":
        # torch draws normals in blocks of 16 and redraws a ragged tail, so one draw for the batch equals the
        # per-image draws only for images of a multiple of 16 values: SD latents of sides divisible by 16 px.
        # Core's prepare_noise has the same limit; per_image, one generator per image, has none.
        assume(math.prod(latent) % 16 == 0)
    whole = initial_noise((size, *latent), seed, batch_seed)
    cut = min(cut, size - 1)
    first = initial_noise((cut, *latent), seed, batch_seed, batch_index=list(range(cut)))
    second = initial_noise((size - cut, *latent), seed, batch_seed, batch_index=list(range(cut, size)))
    assert torch.equal(torch.cat([first, second]), whole)
    # Any pick of the batch, reordered or repeated (a latent from Rebatch or Repeat), keeps each image's noise.
    picked = [index % size for index in picked]
    assert torch.equal(initial_noise((len(picked), *latent), seed, batch_seed, batch_index=picked), whole[picked])

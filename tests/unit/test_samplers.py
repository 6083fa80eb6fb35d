"""Samplers against the exact solution for Gaussian data, where the ideal denoiser is known in closed form."""

import math

import pytest
import torch

from comfyui_img2img.nodes.core.samplers import SAMPLERS, ancestral_step
from comfyui_img2img.nodes.core.schedules import SCHEDULES, DiscreteModelSigmas
from gaussian_data import DATA_STD, MEAN, eps_denoiser


def ode_solution(x, sigma_from, sigma_to):
    """The probability-flow ODE of that data carried from sigma_from to sigma_to exactly."""
    return MEAN + (x - MEAN) * math.sqrt((DATA_STD**2 + sigma_to**2) / (DATA_STD**2 + sigma_from**2))


def euler_error(steps: int) -> float:
    sigmas = SCHEDULES["karras"](DiscreteModelSigmas.scaled_linear(), steps)[:-1].double()  # down to sigma_min
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * float(sigmas[0])
    out = SAMPLERS["euler"](eps_denoiser(), x, sigmas)
    return float((out - ode_solution(x, float(sigmas[0]), float(sigmas[-1]))).abs().max())


def test_euler_converges_to_the_exact_ode_solution_at_first_order():
    coarse, fine = euler_error(100), euler_error(200)
    assert fine < 0.02
    assert 1.8 < coarse / fine < 2.2


@pytest.mark.parametrize("name", ["euler", "euler_ancestral", "lms", "dpmpp_2m", "dpmpp_2m_sde", "ddim"])
def test_one_model_call_per_step_and_a_callback_each(name):
    calls, seen = [], []
    sigmas = SCHEDULES["normal"](DiscreteModelSigmas.scaled_linear(), 6)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    SAMPLERS[name](eps_denoiser(calls), x, sigmas, extra_args={"seed": 3}, callback=lambda step: seen.append(step["i"]))
    assert len(calls) == 6 and seen == list(range(6))


def test_ancestral_split_keeps_the_variance():
    down, up = ancestral_step(torch.tensor(3.0), torch.tensor(2.0))
    assert float(down**2 + up**2) == pytest.approx(4.0)
    assert ancestral_step(torch.tensor(3.0), torch.tensor(2.0), eta=0.0)[1] == 0


def test_euler_ancestral_is_seeded_by_extra_args():
    sigmas = SCHEDULES["karras"](DiscreteModelSigmas.scaled_linear(), 8)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * float(sigmas[0])
    run = lambda seed: SAMPLERS["euler_ancestral"](eps_denoiser(), x, sigmas, extra_args={"seed": seed})  # noqa: E731
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))

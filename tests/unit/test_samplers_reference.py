"""The core's samplers against k-diffusion 0.1.1's, the code ComfyUI's samplers descend from.

Everything runs in float64 on analytic denoisers for Gaussian data, where the ideal denoiser is
known in closed form, so two implementations of one method agree to rounding. Stochastic samplers
get the same noise on both sides: a smooth function of (sigma, sigma_next), so calls that reach it
with the same sigmas by slightly different arithmetic still draw the same noise.
"""

import inspect
import math
import warnings

import pytest
import torch
from scipy import integrate

from comfyui_img2img.nodes.core.samplers import (
    BROWNIAN,
    FLOW_AWARE,
    FLOW_START,
    SAMPLERS,
    STOCHASTIC,
    linear_multistep_coefficient,
    sample_euler,
)
from comfyui_img2img.nodes.core.schedules import SCHEDULES, DiscreteModelSigmas
from gaussian_data import MEAN, eps_denoiser, flow_denoiser

with warnings.catch_warnings():
    # k-diffusion's dependencies warn about pkg_resources and jsonschema on import.
    warnings.simplefilter("ignore")
    import k_diffusion.sampling as kd

SHAPE = (2, 4, 6, 6)


def smooth_noise(x: torch.Tensor):
    """Unit-variance noise that depends smoothly on the two sigmas it is asked for."""
    generator = torch.Generator().manual_seed(11)
    first = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    second = torch.randn(x.shape, generator=generator, dtype=x.dtype)

    def sample(sigma, sigma_next):
        angle = 3 * float(sigma) + 5 * float(sigma_next)
        return first * math.cos(angle) + second * math.sin(angle)

    return sample


def eps_ladder(schedule: str, steps: int = 8) -> torch.Tensor:
    return SCHEDULES[schedule](DiscreteModelSigmas.scaled_linear(), steps).double()


def flow_ladder(steps: int, shift: float = 3.0) -> torch.Tensor:
    """Uniform timesteps from 1 to 0 with SD3's shift: the first sigma is exactly 1."""
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    return shift * t / (1 + (shift - 1) * t)


def start_noise(sigmas: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * sigmas[0]


def core_noise_option(name: str, noise) -> dict:
    """The option that hands the stochastic core samplers the noise k-diffusion gets as ``noise_sampler``."""
    if name in STOCHASTIC:
        return {"make_noise_sampler": lambda x, sigma_min, sigma_max, seed: noise}
    return {}


@pytest.mark.parametrize("schedule", ["karras", "normal"])
@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("euler", {}),
        ("euler_ancestral", {}),
        ("heun", {}),
        ("dpm_2", {}),
        ("dpmpp_2m", {}),
        ("dpmpp_sde", {}),
        ("dpmpp_sde", {"eta": 0.5, "r": 1 / 3}),
        ("dpmpp_2m_sde", {}),
        ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.7}),
    ],
)
def test_matches_k_diffusion(name, options, schedule):
    # k-diffusion ends euler_ancestral and dpmpp_sde with an Euler step to sigma 0 where ComfyUI
    # (and the core) return the denoised estimate: the same value up to rounding. Its dpmpp_sde
    # also leaves out the alpha factors that are 1 for these (non-flow) models.
    sigmas, x = eps_ladder(schedule), start_noise(eps_ladder(schedule))
    noise = smooth_noise(x)
    reference_noise = {"noise_sampler": noise} if name in STOCHASTIC else {}
    expected = getattr(kd, f"sample_{name}")(eps_denoiser(), x, sigmas, disable=True, **options, **reference_noise)
    actual = SAMPLERS[name](eps_denoiser(), x, sigmas, **options, **core_noise_option(name, noise))
    assert (actual - expected).abs().max() <= 1e-10  # float64: only rounding differs
    assert not torch.equal(actual, x)


@pytest.mark.parametrize("schedule", ["karras", "normal"])
def test_lms_matches_k_diffusion_up_to_its_last_step(schedule):
    # k-diffusion's LMS takes its multistep step down to sigma 0 as well; ComfyUI's (and the
    # core's) returns the denoised estimate there. Before that the two take the same steps.
    sigmas, x = eps_ladder(schedule), start_noise(eps_ladder(schedule))
    before_last = kd.sample_lms(eps_denoiser(), x, sigmas[:-1], disable=True)
    expected = eps_denoiser()(before_last, sigmas[-2] * x.new_ones(x.shape[0]))
    actual = SAMPLERS["lms"](eps_denoiser(), x, sigmas)
    assert (actual - expected).abs().max() <= 1e-10


SECOND_ORDER = {"heun", "dpm_2", "dpmpp_sde"}  # a second model call inside every step not to sigma 0


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("to_zero", [True, False])
def test_model_calls_per_ladder(name, to_zero):
    steps = 6
    sigmas = eps_ladder("karras", steps) if to_zero else eps_ladder("karras", steps + 1)[:-1]
    calls, seen = [], []
    SAMPLERS[name](eps_denoiser(calls), start_noise(sigmas), sigmas, extra_args={"seed": 1}, callback=seen.append)
    extra = (steps - 1 if to_zero else steps) if name in SECOND_ORDER else 0
    assert len(calls) == steps + extra
    assert [step["i"] for step in seen] == list(range(steps))


def quad_coefficient(order, t, i, j):
    def basis(tau):
        return math.prod((tau - t[i - k]) / (t[i - j] - t[i - k]) for k in range(order) if k != j)

    return integrate.quad(basis, t[i], t[i + 1], epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("schedule", ["karras", "normal"])
def test_lms_coefficients_match_numerical_integration(schedule):
    t = eps_ladder(schedule, 10).tolist()
    for i in range(len(t) - 2):
        order = min(i + 1, 4)
        coefficients = [linear_multistep_coefficient(order, t, i, j) for j in range(order)]
        for j, coefficient in enumerate(coefficients):
            assert coefficient == pytest.approx(quad_coefficient(order, t, i, j), rel=1e-10, abs=1e-10)
        # The basis polynomials sum to 1, so the weights of a constant slope add up to the step.
        assert sum(coefficients) == pytest.approx(t[i + 1] - t[i], rel=1e-12)
    with pytest.raises(ValueError):
        linear_multistep_coefficient(3, t, 1, 0)


def test_options_sets_name_the_samplers_that_take_them():
    for option, names in [("flow", FLOW_AWARE), ("flow_start_sigma", FLOW_START), ("make_noise_sampler", STOCHASTIC)]:
        takers = {name for name, sampler in SAMPLERS.items() if option in inspect.signature(sampler).parameters}
        assert takers == set(names), option
    assert SAMPLERS["ddim"] is sample_euler
    assert BROWNIAN < STOCHASTIC


@pytest.mark.parametrize("name", sorted(FLOW_AWARE))
def test_flow_samplers_end_at_the_data_distribution(name):
    sigmas = flow_ladder(24)
    x = torch.randn(4, 4, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = SAMPLERS[name](flow_denoiser(), x, sigmas, extra_args={"seed": 2}, flow=True)
    assert torch.isfinite(out).all()
    # Exact denoising of Gaussian data from pure noise ends in samples of that Gaussian. The mean
    # lands on it (the variance-exploding arithmetic, flow=False, ends near 0.9 here); the spread
    # comes out somewhat low at 24 steps and closes in on DATA_STD only as the steps shrink.
    assert float(out.mean()) == pytest.approx(MEAN, abs=0.05)
    assert 0.6 < float(out.std()) < 0.9


@pytest.mark.parametrize("name", sorted(FLOW_START))
@pytest.mark.parametrize("start", [None, 0.99995])
def test_sde_flow_ladder_starts_below_one_after_the_noise_range_is_set(name, start):
    sigmas, calls, made = flow_ladder(5), [], []

    def make_noise_sampler(x, sigma_min, sigma_max, seed):
        made.append((float(sigma_min), float(sigma_max), seed))
        return smooth_noise(x)

    options = {"flow": True, "make_noise_sampler": make_noise_sampler, "flow_start_sigma": start}
    SAMPLERS[name](flow_denoiser(calls), start_noise(sigmas), sigmas, extra_args={"seed": 9}, **options)
    assert made == [(float(sigmas[-2]), 1.0, 9)]
    assert calls[0] == pytest.approx(1 - 1e-4 if start is None else start, abs=1e-12)
    assert sigmas[0] == 1.0  # the caller's ladder is left alone


@pytest.mark.parametrize("flow", [True, False])
def test_euler_ancestral_without_eta_is_euler(flow):
    # With eta = 0 no noise is added back, so the step is a plain Euler step (for flow, along the
    # straight line to the estimate). s_noise = 0 alone would not do: the step still stops short at
    # sigma_down (and for flow then rescales the signal).
    sigmas = flow_ladder(10) if flow else eps_ladder("karras", 10)
    denoiser = flow_denoiser() if flow else eps_denoiser()
    x = start_noise(sigmas)
    ancestral = SAMPLERS["euler_ancestral"](
        denoiser, x, sigmas, eta=0.0, flow=flow, **core_noise_option("euler_ancestral", smooth_noise(x))
    )
    assert (ancestral - sample_euler(denoiser, x, sigmas)).abs().max() <= 1e-12
    noisy = SAMPLERS["euler_ancestral"](
        denoiser, x, sigmas, eta=1.0, flow=flow, **core_noise_option("euler_ancestral", smooth_noise(x))
    )
    assert (noisy - ancestral).abs().max() > 1e-3


def test_dpmpp_2m_sde_without_noise_is_dpmpp_2m():
    sigmas = eps_ladder("karras", 10)
    x = start_noise(sigmas)
    deterministic = SAMPLERS["dpmpp_2m_sde"](eps_denoiser(), x, sigmas, eta=0.0)
    assert (deterministic - SAMPLERS["dpmpp_2m"](eps_denoiser(), x, sigmas)).abs().max() <= 1e-10


@pytest.mark.parametrize("name", sorted(BROWNIAN))
def test_sde_default_noise_is_seeded_by_extra_args(name):
    sigmas = eps_ladder("karras", 6)
    x = start_noise(sigmas)
    run = lambda seed: SAMPLERS[name](eps_denoiser(), x, sigmas, extra_args={"seed": seed})  # noqa: E731
    assert torch.equal(run(4), run(4))
    assert not torch.equal(run(4), run(5))

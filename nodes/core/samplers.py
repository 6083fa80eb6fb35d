"""Samplers in k-diffusion's shape: ``sample_x(model, x, sigmas, extra_args, callback, disable, **options)``.

``model(x, sigma, **extra_args)`` is a denoiser returning its estimate of the clean latent; ``x``
starts at noise level ``sigmas[0]`` and each sampler walks the ladder down to ``sigmas[-1]``.

The arithmetic follows ComfyUI 0.3.75's ``comfy/k_diffusion/sampling.py`` step for step (same
formulas, model calls and noise draws in the same order), so that a latent sampled here matches
ComfyUI's own sampler of that name. Where ComfyUI looks into its model wrapper (flow models, the
Brownian-tree noise), these functions take keyword options instead; ``FLOW_AWARE``,
``FLOW_START`` and ``BROWNIAN`` say which sampler takes which. ``disable`` (k-diffusion's
progress-bar switch, which ComfyUI passes) is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .noise_rules import half_log_snr, sigma_at_half_log_snr

Denoiser = Callable[..., torch.Tensor]
Callback = Callable[[dict], None] | None
NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (x, sigma_min, sigma_max, seed) -> noise sampler; ComfyUI passes its Brownian tree here.
MakeNoiseSampler = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int | None], NoiseSampler]
Step = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]

# The flow SDE samplers work in log((1 - sigma) / sigma), which is -inf at sigma = 1, so ComfyUI
# moves a first sigma of 1 to the model's sigma this fraction of the way into its schedule.
FLOW_START_PERCENT = 1e-4


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's derivative dx/dsigma (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def ancestral_step(
    sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a step into a deterministic part down to sigma_down and fresh noise of sigma_up."""
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    sigma_up = torch.minimum(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def default_noise_sampler(
    x: torch.Tensor, seed: int | None = None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Fresh noise for ancestral steps, from its own generator on x's device (as ComfyUI's)."""
    generator = None
    if seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    return lambda sigma, sigma_next: torch.randn(
        x.size(), dtype=x.dtype, layout=x.layout, device=x.device, generator=generator
    )


def _step_callback(callback: Callback, x, i, sigma, denoised) -> None:
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def _denoiser(model: Denoiser, x: torch.Tensor, extra_args: dict | None) -> Callable:
    """The model as a function of (x, scalar sigma): the sigma spread over the batch, extra args bound."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    return lambda x_now, sigma: model(x_now, sigma * s_in, **extra_args)


def _walk(denoise: Callable, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback, step: Step) -> torch.Tensor:
    """The loop every sampler shares: denoise at each sigma, report it, let ``step`` move x to the next."""
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, sigmas[i])
        _step_callback(callback, x, i, sigmas[i], denoised)
        x = step(i, x, denoised)
    return x


def _euler_move(x: torch.Tensor, sigma, sigma_to, denoised: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from sigma to sigma_to."""
    return x + to_d(x, sigma, denoised) * (sigma_to - sigma)


@torch.no_grad()
def sample_euler(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    return _walk(
        _denoiser(model, x, extra_args),
        x,
        sigmas,
        callback,
        lambda i, x, den: _euler_move(x, sigmas[i], sigmas[i + 1], den),
    )


def _ancestral_move(x, sigma, sigma_next, denoised, eta, s_noise, noise_sampler: NoiseSampler) -> torch.Tensor:
    sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
    if sigma_down == 0:
        return denoised
    return _euler_move(x, sigma, sigma_down, denoised) + noise_sampler(sigma, sigma_next) * s_noise * sigma_up


def _flow_ancestral_move(x, sigma, sigma_next, denoised, eta, s_noise, noise_sampler: NoiseSampler) -> torch.Tensor:
    # Rectified flow scales the signal by 1 - sigma, so the variance-preserving split above does not
    # apply: step down to sigma_down on the straight line to the estimate, then rescale the signal
    # to sigma_next's and top the noise up to sigma_next.
    if sigma_next == 0:
        return denoised
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
    renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
    ratio = sigma_down / sigma
    x = ratio * x + (1 - ratio) * denoised
    if eta > 0:
        x = (alpha_next / alpha_down) * x + noise_sampler(sigma, sigma_next) * s_noise * renoise
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    flow: bool = False,
    make_noise_sampler: MakeNoiseSampler | None = None,
) -> torch.Tensor:
    """Euler steps down to sigma_down, then fresh noise back up to sigma_next (k-diffusion; RF form for flow)."""
    noise_sampler = _noise_sampler(x, sigmas, extra_args, make_noise_sampler)
    move = _flow_ancestral_move if flow else _ancestral_move
    return _walk(
        _denoiser(model, x, extra_args),
        x,
        sigmas,
        callback,
        lambda i, x, den: move(x, sigmas[i], sigmas[i + 1], den, eta, s_noise, noise_sampler),
    )


@torch.no_grad()
def sample_heun(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 2)."""
    denoise = _denoiser(model, x, extra_args)

    def step(i, x, denoised):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d, dt = to_d(x, sigma, denoised), sigma_next - sigma
        x_euler = x + d * dt
        if sigma_next == 0:  # the slope at sigma 0 is 0/0: the last step stays first-order
            return x_euler
        d_next = to_d(x_euler, sigma_next, denoise(x_euler, sigma_next))
        return x + (d + d_next) / 2 * dt

    return _walk(denoise, x, sigmas, callback, step)


@torch.no_grad()
def sample_dpm_2(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """Midpoint steps at the geometric mean of the two sigmas, after DPM-Solver-2 (Lu et al. 2022)."""
    denoise = _denoiser(model, x, extra_args)

    def step(i, x, denoised):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:  # log 0 has no midpoint
            return _euler_move(x, sigma, sigma_next, denoised)
        sigma_mid = sigma.log().lerp(sigma_next.log(), 0.5).exp()
        x_mid = _euler_move(x, sigma, sigma_mid, denoised)
        return x + to_d(x_mid, sigma_mid, denoise(x_mid, sigma_mid)) * (sigma_next - sigma)

    return _walk(denoise, x, sigmas, callback, step)


def linear_multistep_coefficient(order: int, t: np.ndarray | list[float], i: int, j: int) -> float:
    """Weight of the slope at t[i - j] in an Adams-Bashforth step from t[i] to t[i + 1].

    It is the integral over the step of the Lagrange basis polynomial through t[i], ..., t[i - order + 1]
    that is 1 at t[i - j]. That polynomial has degree order - 1, so it is integrated exactly, in a
    variable shifted to start at t[i] to keep the expanded coefficients small.
    """
    if order - 1 > i:
        raise ValueError(f"Order {order} too high for step {i}")
    start = float(t[i])
    at_one = float(t[i - j]) - start
    basis = np.polynomial.Polynomial([1.0])
    for k in range(order):
        if k != j:
            root = float(t[i - k]) - start
            basis = basis * np.polynomial.Polynomial([-root, 1.0]) / (at_one - root)
    return float(basis.integ()(float(t[i + 1]) - start))


@torch.no_grad()
def sample_lms(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
    order: int = 4,
) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth) over the last ``order`` slopes, as in k-diffusion."""
    sigmas_cpu = sigmas.detach().cpu().double().numpy()
    slopes: list[torch.Tensor] = []

    def step(i, x, denoised):
        slopes.append(to_d(x, sigmas[i], denoised))
        del slopes[:-order]
        if sigmas[i + 1] == 0:  # the polynomial through the slopes says nothing about sigma 0
            return denoised
        coefficients = [linear_multistep_coefficient(len(slopes), sigmas_cpu, i, j) for j in range(len(slopes))]
        return x + sum(c * d for c, d in zip(coefficients, reversed(slopes), strict=True))

    return _walk(_denoiser(model, x, extra_args), x, sigmas, callback, step)


@torch.no_grad()
def sample_dpmpp_2m(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M), the second-order multistep solver in log-sigma (Lu et al. 2022)."""
    previous = None

    def step(i, x, denoised):
        nonlocal previous
        t, t_next = sigmas[i].log().neg(), sigmas[i + 1].log().neg()
        h = t_next - t
        blend = denoised
        # The first step has no history, and at the last one log-sigma runs to -inf: both stay first-order.
        if previous is not None and sigmas[i + 1] != 0:
            r = (t - sigmas[i - 1].log().neg()) / h
            blend = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
        previous = denoised
        return (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * blend

    return _walk(_denoiser(model, x, extra_args), x, sigmas, callback, step)


def _noise_sampler(x, sigmas, extra_args, make_noise_sampler: MakeNoiseSampler | None) -> NoiseSampler:
    """The stochastic samplers' fresh noise: from ``make_noise_sampler`` (the adapter's Brownian
    tree, or per-image seeds), else seeded from ``extra_args`` as ComfyUI's default."""
    seed = (extra_args or {}).get("seed")
    if make_noise_sampler is None:
        return default_noise_sampler(x, seed=seed)
    positive = sigmas[sigmas > 0]
    return make_noise_sampler(x, positive.min(), sigmas.max(), seed)


def _sde_setup(x, sigmas, extra_args, make_noise_sampler, flow, flow_start_sigma):
    """Noise sampler and ladder for the SDE samplers, in ComfyUI's order: the noise sampler spans the
    ladder as given, and only then does a flow ladder's first sigma of 1 move down."""
    noise_sampler = _noise_sampler(x, sigmas, extra_args, make_noise_sampler)
    if flow and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        # That sigma depends on the model's shift; without it, take an unshifted schedule's.
        sigmas[0] = 1.0 - FLOW_START_PERCENT if flow_start_sigma is None else flow_start_sigma
    return noise_sampler, sigmas


@torch.no_grad()
def sample_dpmpp_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 1 / 2,
    flow: bool = False,
    flow_start_sigma: float | None = None,
    make_noise_sampler: MakeNoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver++ (stochastic), two stages per step with the first at fraction r (Lu et al. 2022; k-diffusion)."""
    if len(sigmas) <= 1:
        return x
    noise_sampler, sigmas = _sde_setup(x, sigmas, extra_args, make_noise_sampler, flow, flow_start_sigma)
    denoise = _denoiser(model, x, extra_args)
    noisy = eta > 0 and s_noise > 0

    def stage(x, sigma, lambda_s, sigma_to, lambda_to, target):
        # A first-order exponential move towards ``target`` that stops at the ancestral sigma_down
        # (measured in exp(-lambda)) and adds the rest back as noise.
        alpha_s, alpha_to = sigma * lambda_s.exp(), sigma_to * lambda_to.exp()
        down, up = ancestral_step(lambda_s.neg().exp(), lambda_to.neg().exp(), eta)
        h = down.log().neg() - lambda_s
        moved = (alpha_to / alpha_s) * (-h).exp() * x - alpha_to * (-h).expm1() * target
        if noisy:
            moved = moved + alpha_to * noise_sampler(sigma, sigma_to) * s_noise * up
        return moved

    def step(i, x, denoised):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:
            return denoised
        lambda_s, lambda_t = half_log_snr(sigma, flow), half_log_snr(sigma_next, flow)
        lambda_mid = lambda_s + r * (lambda_t - lambda_s)
        sigma_mid = sigma_at_half_log_snr(lambda_mid, flow)
        denoised_mid = denoise(stage(x, sigma, lambda_s, sigma_mid, lambda_mid, denoised), sigma_mid)
        fac = 1 / (2 * r)
        return stage(x, sigma, lambda_s, sigma_next, lambda_t, (1 - fac) * denoised + fac * denoised_mid)

    return _walk(denoise, x, sigmas, callback, step)


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback: Callback = None,
    disable: bool | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
    flow: bool = False,
    flow_start_sigma: float | None = None,
    make_noise_sampler: MakeNoiseSampler | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE, the multistep solver of the data-prediction SDE (Lu et al. 2022; k-diffusion)."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    if len(sigmas) <= 1:
        return x
    noise_sampler, sigmas = _sde_setup(x, sigmas, extra_args, make_noise_sampler, flow, flow_start_sigma)
    previous, h_last = None, None

    def step(i, x, denoised):
        nonlocal previous, h_last
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next == 0:
            previous = denoised
            return denoised
        lambda_s, lambda_t = half_log_snr(sigma, flow), half_log_snr(sigma_next, flow)
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        alpha_t = sigma_next * lambda_t.exp()
        x = sigma_next / sigma * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
        if previous is not None:
            r = h_last / h
            if solver_type == "heun":
                x = x + alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - previous)
            else:
                x = x + 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - previous)
        if eta > 0 and s_noise > 0:
            x = x + noise_sampler(sigma, sigma_next) * sigma_next * (-2 * h * eta).expm1().neg().sqrt() * s_noise
        previous, h_last = denoised, h
        return x

    return _walk(_denoiser(model, x, extra_args), x, sigmas, callback, step)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "lms": sample_lms,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_sde": sample_dpmpp_sde,
    # ComfyUI's "ddim" is its euler sampler; all that differs is that, when inpainting, the noise
    # its mask wrapper re-noises the kept region with is drawn fresh from seed + 1 rather than
    # reusing the initial noise. That is outside the sampling loop, so the adapter handles it.
    "ddim": sample_euler,
}

# Samplers that take ``flow``: True for rectified-flow (CONST) models such as SD3 and Flux. The
# others behave the same for every model type in ComfyUI, so they take no such flag.
FLOW_AWARE = frozenset({"euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde"})
# Samplers that also take ``flow_start_sigma``: ComfyUI's model_sampling.percent_to_sigma(1e-4), the
# sigma that replaces a flow ladder's first sigma of 1 (it depends on the model's shift).
FLOW_START = frozenset({"dpmpp_sde", "dpmpp_2m_sde"})
# Samplers that draw fresh noise and so take ``make_noise_sampler``.
STOCHASTIC = frozenset({"euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde"})
# The stochastic samplers whose noise ComfyUI draws from a Brownian tree rather than step by step.
BROWNIAN = frozenset({"dpmpp_sde", "dpmpp_2m_sde"})

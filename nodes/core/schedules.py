"""Sigma schedules: each a small pure function from a model's noise levels to a descending ladder.

A ladder for N steps holds N + 1 sigmas ending in 0. Schedules that follow the model's training
noise levels read them through ``ModelSigmas``, the interface ComfyUI's ``model_sampling`` objects
already have; ``DiscreteModelSigmas`` is the same for a plain table (tests, benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch


class ModelSigmas(Protocol):
    sigmas: torch.Tensor  # the model's training noise levels, ascending
    sigma_min: torch.Tensor
    sigma_max: torch.Tensor

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor: ...

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor: ...


class DiscreteModelSigmas:
    """Noise levels of a discrete-time model such as SD1.5: one sigma per training timestep."""

    def __init__(self, sigmas: torch.Tensor) -> None:
        self.sigmas = sigmas.float()
        self.log_sigmas = self.sigmas.log()
        self.sigma_min = self.sigmas[0]
        self.sigma_max = self.sigmas[-1]

    @classmethod
    def scaled_linear(cls, beta_start: float = 0.00085, beta_end: float = 0.012, timesteps: int = 1000):
        """The table of SD1.x and SDXL: betas linear in sqrt space."""
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        return cls(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The nearest training timestep, in log-sigma."""
        distances = sigma.log().reshape(-1, 1) - self.log_sigmas.to(sigma.device)
        return distances.abs().argmin(dim=1).reshape(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a fractional timestep, interpolated in log-sigma."""
        t = torch.as_tensor(timestep, dtype=torch.float32).clamp(0, len(self.sigmas) - 1)
        low = t.floor().long()
        high = t.ceil().long()
        weight = t.frac()
        return ((1 - weight) * self.log_sigmas[low] + weight * self.log_sigmas[high]).exp()


def _ladder(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _ends_at_zero(model: ModelSigmas) -> bool:
    """Flow models' noise reaches 0 at their last timestep: then that level is the ladder's end."""
    return math.isclose(float(model.sigma(model.timestep(model.sigma_min))), 0.0, abs_tol=1e-5)


def normal(model: ModelSigmas, steps: int) -> torch.Tensor:
    """Uniform in timestep from sigma_max to sigma_min, then 0."""
    start, end = model.timestep(model.sigma_max), model.timestep(model.sigma_min)
    if _ends_at_zero(model):
        return _ladder([float(model.sigma(t)) for t in torch.linspace(start, end, steps + 1)])
    return _ladder([float(model.sigma(t)) for t in torch.linspace(start, end, steps)] + [0.0])


def sgm_uniform(model: ModelSigmas, steps: int) -> torch.Tensor:
    """Uniform in timestep over N + 1 points, the last one replaced by 0 (Stability's SGM)."""
    start, end = model.timestep(model.sigma_max), model.timestep(model.sigma_min)
    return _ladder([float(model.sigma(t)) for t in torch.linspace(start, end, steps + 1)[:-1]] + [0.0])


def simple(model: ModelSigmas, steps: int) -> torch.Tensor:
    """Every (T/N)-th training sigma from the top."""
    stride = len(model.sigmas) / steps
    return _ladder([float(model.sigmas[-(1 + int(i * stride))]) for i in range(steps)] + [0.0])


def ddim_uniform(model: ModelSigmas, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep spacing, from timestep 1 upward, as in the original DDIM sampler."""
    table = model.sigmas
    if math.isclose(float(table[1]), 0.0, abs_tol=1e-5):
        steps += 1
        values = []
    else:
        values = [0.0]
    stride = max(len(table) // steps, 1)
    values += [float(table[i]) for i in range(1, len(table), stride)]
    return _ladder(values[::-1])


def karras(model: ModelSigmas, steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022), eq. 5: uniform in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, steps)
    top, bottom = float(model.sigma_max) ** (1 / rho), float(model.sigma_min) ** (1 / rho)
    return torch.cat([(top + ramp * (bottom - top)) ** rho, torch.zeros(1)])


def exponential(model: ModelSigmas, steps: int) -> torch.Tensor:
    """Uniform in log sigma."""
    log_sigmas = torch.linspace(math.log(float(model.sigma_max)), math.log(float(model.sigma_min)), steps)
    return torch.cat([log_sigmas.exp(), torch.zeros(1)])


def _beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast only below the mean: use symmetry
        return 1.0 - _beta_cdf(1.0 - x, b, a)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - math.log(a) - log_beta)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result


def beta_ppf(q: float, a: float, b: float) -> float:
    """The inverse of the beta distribution's CDF, by bisection (monotone, so always converges)."""
    if q <= 0.0 or q >= 1.0:
        return min(max(q, 0.0), 1.0)
    low, high = 0.0, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        if _beta_cdf(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def beta(model: ModelSigmas, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Training timesteps at beta-distribution quantiles (Lee et al. 2024), repeats dropped."""
    last = len(model.sigmas) - 1
    values, previous = [], None
    for i in range(steps):
        t = round(beta_ppf(1.0 - i / steps, alpha, beta) * last)
        if t != previous:
            values.append(float(model.sigmas[t]))
        previous = t
    return _ladder([*values, 0.0])


# A scheduler: a model's noise levels and a step count in, the full ladder of sigmas out.
Scheduler = Callable[[ModelSigmas, int], torch.Tensor]

SCHEDULES: dict[str, Scheduler] = {
    "normal": normal,
    "karras": karras,
    "exponential": exponential,
    "simple": simple,
    "sgm_uniform": sgm_uniform,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
}

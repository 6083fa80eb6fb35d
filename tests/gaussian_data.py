"""Gaussian data, x0 ~ N(MEAN, DATA_STD²), whose ideal denoiser is known in closed form: the samplers' test model.

Each denoiser appends the sigma of every call to ``calls`` when given one.
"""

from __future__ import annotations

MEAN, DATA_STD = 0.5, 0.8


def eps_denoiser(calls: list | None = None):
    """E[x0 | x] for x0 ~ N(MEAN, DATA_STD²) and x = x0 + sigma·noise."""

    def denoise(x, sigma, **_):
        if calls is not None:
            calls.append(sigma[0].item())
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return MEAN + (x - MEAN) * DATA_STD**2 / (DATA_STD**2 + sigma**2)

    return denoise


def flow_denoiser(calls: list | None = None):
    """E[x0 | x] for the same data under rectified flow, x = (1 - sigma)·x0 + sigma·noise."""

    def denoise(x, sigma, **_):
        if calls is not None:
            calls.append(sigma[0].item())
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        alpha = 1 - sigma
        return MEAN + alpha * DATA_STD**2 * (x - alpha * MEAN) / (alpha**2 * DATA_STD**2 + sigma**2)

    return denoise

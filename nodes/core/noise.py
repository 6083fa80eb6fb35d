"""Seeded initial noise, drawn exactly as ComfyUI core draws it, without touching the global RNG."""

from __future__ import annotations

from collections.abc import Sequence

import torch

BATCH_SEEDS = ("comfy", "per_image", "shared")


def _generator(seed: int) -> torch.Generator:
    # Always a CPU generator: the same seed gives the same noise on every device.
    return torch.Generator(device="cpu").manual_seed(seed)


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` in ``per_image`` mode: seed + index, wrapping past the largest seed
    (2**64 - 1, the nodes' maximum), which torch would refuse."""
    return (seed + index) % 2**64


def initial_noise(
    shape: Sequence[int],
    seed: int,
    batch_seed: str = "comfy",
    batch_index: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Noise for a latent batch of ``shape``.

    ``comfy``: consecutive draws from one generator, as ``comfy.sample.prepare_noise`` (with
    ``batch_index``, image i takes the i-th draw, so a latent split from a batch keeps its noise).
    ``per_image``: image i is drawn from seed + i, so it equals a single-image run with that seed.
    ``shared``: every image gets the single-image run's noise, so that the frames of a clip change alike.
    """
    if batch_seed not in BATCH_SEEDS:
        raise ValueError(f"batch_seed must be one of {', '.join(BATCH_SEEDS)}, got {batch_seed!r}")
    shape = tuple(shape)
    one = (1, *shape[1:])
    if batch_seed == "shared":
        return torch.randn(one, dtype=dtype, generator=_generator(seed)).expand(shape).clone()
    if batch_seed == "per_image":
        indices = batch_index if batch_index is not None else range(shape[0])
        return torch.cat([torch.randn(one, dtype=dtype, generator=_generator(image_seed(seed, i))) for i in indices])
    generator = _generator(seed)
    if batch_index is None:
        return torch.randn(shape, dtype=dtype, generator=generator)
    draws = [torch.randn(one, dtype=dtype, generator=generator) for _ in range(max(batch_index) + 1)]
    return torch.cat([draws[i] for i in batch_index])

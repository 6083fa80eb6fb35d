"""Where on a sampler's schedule img2img starts for a denoise strength, and what then runs.

With N steps and strength s, each mode picks a ladder of sigmas and the part of it that runs:

- ``steps_x_denoise`` (diffusers' img2img pipeline, core KSamplerAdvanced): k = min(⌊N·s⌋, N) model
  steps, the last k of the N-step ladder.
- ``a1111`` (AUTOMATIC1111's default): t_enc = ⌊min(s, 0.999)·N⌋, t_enc + 1 steps from index N − t_enc − 1.
- ``comfy`` (core KSampler's denoise): a stretched ladder of ⌊N/s⌋ steps, of which the last N run.
- ``snr``: s names a noise level, not a share of steps: the run starts where the signal-to-noise ratio
  is ((1 − s)/s)² (``noise_rules.sigma_for_snr_strength``), the same on every model family, and all N
  steps are spread from there to the end. Which sigma that is depends on the model, so this plan is
  only the step count, run from the top of a ladder that the nodes' adapter makes from that sigma.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np
import torch

STRENGTH_MODES = ("steps_x_denoise", "a1111", "comfy", "snr")

# Core KSampler's stretched ladder grows as N/s: at s = 1e-9 it would never finish computing.
# Past this length the last N sigmas are all within float error of 0 anyway.
MAX_LADDER_STEPS = 10_000


@dataclass(frozen=True)
class StrengthPlan:
    """A strength turned into steps: ``planned_steps`` steps of a ``ladder_steps``-step schedule, from
    ``start_index`` on. (What then runs is the nodes' ``PartialSchedule.model_steps``: the same, unless the
    scheduler's ladder comes out shorter than asked.)"""

    mode: str
    steps: int
    denoise: float
    ladder_steps: int
    start_index: int

    @property
    def planned_steps(self) -> int:
        return self.ladder_steps - self.start_index

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def validate_steps_and_denoise(steps: int, denoise: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps!r}")
    if not isinstance(denoise, (int, float)) or not math.isfinite(denoise) or not 0.0 <= denoise <= 1.0:
        raise ValueError(f"denoise must be a number from 0 to 1, got {denoise!r}")


def plan_strength(mode: str, steps: int, denoise: float) -> StrengthPlan:
    """The steps a denoise strength selects in ``mode``; strength 0 selects none in every mode."""
    if mode not in STRENGTH_MODES:
        raise ValueError(f"strength_mode must be one of {', '.join(STRENGTH_MODES)}, got {mode!r}")
    validate_steps_and_denoise(steps, denoise)
    denoise = float(denoise)
    if denoise == 0.0:
        return StrengthPlan(mode, steps, denoise, steps, steps)
    if mode == "steps_x_denoise":
        # N·s on the decimal the user typed: in binary floats 0.57·100 is 56.99999999999999.
        planned_steps = min(int(Decimal(repr(denoise)) * steps), steps)
        return StrengthPlan(mode, steps, denoise, steps, steps - planned_steps)
    if mode == "snr":
        return StrengthPlan(mode, steps, denoise, steps, 0)
    if mode == "a1111":
        # A1111's own float arithmetic, quirks included: that is what this mode promises to match.
        t_enc = int(min(denoise, 0.999) * steps)
        return StrengthPlan(mode, steps, denoise, steps, steps - t_enc - 1)
    if denoise > 0.9999:  # core KSampler's own threshold for "full denoise"
        return StrengthPlan(mode, steps, denoise, steps, 0)
    # Capped before int(): below about 1e-308 strength, N/s is inf, which int() refuses.
    ladder_steps = max(int(min(steps / denoise, MAX_LADDER_STEPS)), steps)
    return StrengthPlan(mode, steps, denoise, ladder_steps, ladder_steps - steps)


def sigmas_for_strength(plan: StrengthPlan, ladder: torch.Tensor) -> torch.Tensor:
    """The part of ``ladder`` (the scheduler's ``plan.ladder_steps``-step sigmas) that the plan runs.

    Some schedulers return a ladder of another length than asked (beta drops repeated sigmas,
    ddim_uniform may add one); each mode cuts such a ladder the way its anchor does.
    """
    if plan.planned_steps == 0:
        return ladder[:0]
    if plan.mode == "comfy":
        return ladder[-(plan.planned_steps + 1) :]
    if len(ladder) - 1 > plan.ladder_steps:
        # The run still ends at step N, at sigma 0, as KSamplerAdvanced's end_at_step = N does.
        ladder = torch.cat([ladder[: plan.ladder_steps], ladder.new_zeros(1)])
    if plan.start_index >= len(ladder) - 1:
        return ladder[:0]
    return ladder[plan.start_index :]


# Per-pixel strength (a strength map): each pixel's strength is denoise × its map value. The run covers the
# plan of the strongest pixel; every other pixel is held at the input, noised to the current sigma, until the
# sigma where its own strength's plan starts, and denoised from there on.


def checked_strength_map(strength_map: object) -> torch.Tensor:
    """A MASK ([height, width] or [batch, height, width]) of values from 0 to 1, as float32; else a ValueError."""
    if not isinstance(strength_map, torch.Tensor) or strength_map.ndim not in (2, 3) or strength_map.numel() == 0:
        shape = tuple(strength_map.shape) if isinstance(strength_map, torch.Tensor) else type(strength_map).__name__
        raise ValueError(f"strength_map must be a MASK ([height, width] or [batch, height, width]), got {shape}")
    values = strength_map.float()
    if not bool(torch.isfinite(values).all()) or float(values.min()) < 0 or float(values.max()) > 1:
        raise ValueError("strength_map values must be from 0 to 1")
    return values


def shortest_float32(value: float) -> str:
    """The shortest decimal that reads back as the same float32: what a mask value of 0.35 was typed as."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def pixel_strength(denoise: float, map_value: float) -> float:
    """denoise × a map value, computed on their decimals (the map's float32 read as typed), so that a map of
    0.5 at denoise 0.8 plans exactly what denoise 0.4 plans in every mode."""
    return float(Decimal(repr(float(denoise))) * Decimal(shortest_float32(map_value)))


def start_sigmas_for_map(
    map_values: torch.Tensor, denoise: float, start_sigma: Callable[[float], float]
) -> torch.Tensor:
    """Each element's starting sigma, ``start_sigma(strength)`` of its own strength (0: it never starts),
    computed once per distinct map value."""
    values, positions = torch.unique(map_values.float(), return_inverse=True)
    starts = [start_sigma(pixel_strength(denoise, value)) for value in values.tolist()]
    return torch.tensor(starts, dtype=torch.float32, device=map_values.device)[positions]


def denoising_at(start_sigmas: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """1 where a pixel is denoised at ``sigma`` (its start is at or above it), 0 where it is still held.

    The tolerance only absorbs a float round trip of the same rung: the ladder's rungs lie far further apart.
    """
    current = sigma.reshape(-1)[0].to(start_sigmas.device, torch.float32)
    return (start_sigmas >= current * (1 - 1e-6)).to(start_sigmas.dtype)


def loopback_strengths(denoise: float, factor: float, passes: int) -> list[float]:
    """Each loopback pass's strength: denoise × factorⁱ for pass i, on the decimals typed (so that 0.6 × 0.8 is the
    0.48 a user types for the second pass by hand), capped at 1."""
    validate_steps_and_denoise(1, denoise)
    if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
        raise ValueError(f"strength_factor must be a number of at least 0, got {factor!r}")
    strength, step, strengths = Decimal(repr(float(denoise))), Decimal(repr(float(factor))), []
    for _ in range(passes):
        strengths.append(float(min(strength, Decimal(1))))
        strength *= step
    return strengths

"""From a strength to the sigmas that run: the partial schedule of a model, and a strength map's per-pixel starts.

ComfyUI computes the ladders (``comfy.samplers.calculate_sigmas``); the pack's core says which part of a ladder a
strength selects (``core.strength``), and this module puts the two together on a model's ``model_sampling``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import comfy.model_sampling
import comfy.samplers
import comfy.utils
import torch

from .core.noise_rules import sigma_for_snr_strength, signal_to_noise
from .core.strength import (
    StrengthPlan,
    checked_strength_map,
    denoising_at,
    pixel_strength,
    plan_strength,
    sigmas_for_strength,
    start_sigmas_for_map,
)


@dataclass(frozen=True)
class ScheduleSettings:
    """What selects a partial schedule: a model's noise levels, the sampler (a few drop the ladder's penultimate
    sigma, as core KSampler does for them), the scheduler, N steps, the strength and how it is read."""

    sampling: object  # the model's model_sampling
    sampler_name: str
    scheduler: str
    steps: int
    denoise: float
    mode: str

    def at_strength(self, denoise: float) -> ScheduleSettings:
        return replace(self, denoise=denoise)


@dataclass(frozen=True)
class PartialSchedule:
    """A strength's plan and the sigmas that really run. ``model_steps`` counts those sigmas' steps, which can be
    fewer than the plan's ``planned_steps`` where a scheduler returns a shorter ladder than asked (beta), or
    where the run stops early (``end_at_step``) and leaves the rest to a second sampler."""

    plan: StrengthPlan
    sigmas: torch.Tensor  # the partial ladder that runs, sigmas[0] = the starting noise level
    first_step: int  # the index of sigmas[0] on the plan's ladder of plan.ladder_steps steps
    snr_start: float | None = None  # the signal-to-noise ratio at sigmas[0], by the model family's rule
    strength_range: tuple[float, float] | None = None  # the weakest and strongest pixel's strength, with a map

    @property
    def model_steps(self) -> int:
        return max(len(self.sigmas) - 1, 0)

    @property
    def stops_early(self) -> bool:
        """Whether the run ends at a sigma above 0, returning its latent with leftover noise."""
        return self.model_steps > 0 and float(self.sigmas[-1]) > 0

    def split_at(self, end_step: int, sampling) -> tuple[PartialSchedule, PartialSchedule | None]:
        """The part up to ladder step ``end_step`` and the rest from there, or (self, None) when the run ends
        before it anyway (as core KSamplerAdvanced's end_at_step)."""
        cut = end_step - self.first_step
        if cut >= self.model_steps or self.model_steps == 0:
            return self, None
        if cut < 1:
            raise ValueError(
                f"end_at_step must be after the plan's first step ({self.first_step + 1} of "
                f"{self.plan.ladder_steps}), got {end_step}"
            )
        rest = self.sigmas[cut:]
        return (
            replace(self, sigmas=self.sigmas[: cut + 1]),
            replace(self, sigmas=rest, first_step=end_step, snr_start=snr_at(sampling, float(rest[0]))),
        )

    def report(self) -> dict[str, object]:
        return {
            **self.plan.as_dict(),
            "model_steps": self.model_steps,
            "first_step": self.first_step,
            "sigma_start": float(self.sigmas[0]) if self.model_steps else 0.0,
            "sigma_end": float(self.sigmas[-1]) if self.model_steps else 0.0,
            "snr_start": self.snr_start if self.model_steps else None,
            "strength_map": list(self.strength_range) if self.strength_range else None,
        }

    def summary(self) -> str:
        if self.model_steps == 0:
            return f"denoise {self.plan.denoise:g}: no step ran, the latent is returned unchanged"
        first, last = self.first_step + 1, self.first_step + self.model_steps
        by_map = ""
        if self.strength_range:
            weakest, strongest = self.strength_range
            by_map = f"strength map {weakest:g}–{strongest:g}: "
        return (
            by_map
            + f"steps {first}–{last} of {self.plan.ladder_steps}"
            + (" for the strongest pixels" if by_map else "")
            + f" · {self.model_steps} model steps · "
            f"σ {float(self.sigmas[0]):.3g}→{float(self.sigmas[-1]):.3g}"
            + (f" · SNR {self.snr_start:.3g} at the start" if self.plan.mode == "snr" else "")
            + (" · stops with leftover noise" if self.stops_early else "")
            + f" ({self.plan.mode})"
        )


def plan_ui(schedule: PartialSchedule, note: str = "") -> dict[str, list]:
    """A node's ``ui`` output: the plan for /history and the line shown under the node."""
    return {"img2img_plan": [schedule.report()], "text": [schedule.summary() + note]}


def full_ladder(sampling, sampler_name: str, scheduler: str, steps: int) -> torch.Tensor:
    """ComfyUI's sigmas for ``steps`` steps, as core KSampler asks for them for this sampler."""
    discard_penultimate = sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    ladder = comfy.samplers.calculate_sigmas(sampling, scheduler, steps + 1 if discard_penultimate else steps)
    if not bool(torch.isfinite(ladder).all()):  # kl_optimal divides by steps - 1
        raise ValueError(f"scheduler {scheduler!r} gives no finite noise levels for {steps} steps: use more steps")
    return torch.cat([ladder[:-2], ladder[-1:]]) if discard_penultimate else ladder


class FromSigma:
    """A model's noise levels seen from ``sigma_start`` down, for the ``snr`` mode: a scheduler handed this
    instead of the model spreads its steps from exactly that sigma to the end, with its own spacing.

    Schedules read the top as ``sigma_max`` (karras, exponential), as its timestep (normal, sgm_uniform:
    found by bisection on the model's own ``sigma(t)``, continuous also where ComfyUI's ``timestep`` rounds
    to a training step), or as the top of the training table (simple, ddim_uniform, beta: the table's
    levels below the start, topped by the start itself).
    """

    def __init__(self, sampling, sigma_start: float) -> None:
        self.sampling = sampling
        self.sigma_min = sampling.sigma_min
        self.sigma_max = torch.tensor(sigma_start, dtype=torch.float32)
        table = sampling.sigmas
        self.sigmas = torch.cat([table[table < sigma_start], self.sigma_max.reshape(1).to(table.dtype)])

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        return self.sampling.sigma(timestep)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        low = self.sampling.timestep(self.sampling.sigma_min).double()
        high = self.sampling.timestep(self.sampling.sigma_max).double()
        target = float(sigma)
        for _ in range(60):  # sigma(t) rises with t
            middle = (low + high) / 2
            if float(self.sampling.sigma(middle.float())) < target:
                low = middle
            else:
                high = middle
        return ((low + high) / 2).float()

    def percent_to_sigma(self, percent: float) -> float:
        return self.sampling.percent_to_sigma(percent)


def is_flow(sampling) -> bool:
    return isinstance(sampling, comfy.model_sampling.CONST)


def snr_at(sampling, sigma: float) -> float:
    """The signal-to-noise ratio of a latent noised to ``sigma`` on this model."""
    return signal_to_noise(sigma, is_flow(sampling), float(getattr(sampling, "sigma_data", 1.0)))


def snr_start_sigma(sampling, denoise: float) -> float:
    """Where the ``snr`` mode starts on this model: capped at its largest noise level (pure noise)."""
    sigma = sigma_for_snr_strength(denoise, is_flow(sampling), float(getattr(sampling, "sigma_data", 1.0)))
    return min(sigma, float(sampling.sigma_max))


def snr_sigmas(settings: ScheduleSettings, plan: StrengthPlan) -> torch.Tensor:
    """The ``snr`` mode's sigmas: all N steps of the scheduler spread from the strength's start to the end."""
    sigma_start = snr_start_sigma(settings.sampling, settings.denoise)
    if sigma_start <= float(settings.sampling.sigma_min):  # no noise level of the model's below: one step to 0
        return torch.tensor([sigma_start, 0.0])
    from_start = FromSigma(settings.sampling, sigma_start)
    ladder = full_ladder(from_start, settings.sampler_name, settings.scheduler, plan.ladder_steps)
    sigmas = sigmas_for_strength(plan, ladder)
    # Exactly the start, not the scheduler's float round trip of it; below it, strictly descending.
    below = sigmas[1:][sigmas[1:] < sigma_start]
    return torch.cat([torch.tensor([sigma_start], dtype=sigmas.dtype), below])


def schedule_for_strength(settings: ScheduleSettings) -> PartialSchedule:
    """The partial schedule a strength selects, on a model's ``model_sampling``."""
    if settings.scheduler not in comfy.samplers.SCHEDULER_NAMES:
        names = ", ".join(comfy.samplers.SCHEDULER_NAMES)
        raise ValueError(f"scheduler must be one of {names}, got {settings.scheduler!r}")
    plan = plan_strength(settings.mode, settings.steps, settings.denoise)
    if plan.planned_steps == 0:
        return PartialSchedule(plan, torch.zeros(0), plan.ladder_steps)
    if settings.mode == "snr":
        sigmas = snr_sigmas(settings, plan)
    else:
        ladder = full_ladder(settings.sampling, settings.sampler_name, settings.scheduler, plan.ladder_steps)
        sigmas = sigmas_for_strength(plan, ladder)
    snr_start = snr_at(settings.sampling, float(sigmas[0])) if len(sigmas) else None
    return PartialSchedule(plan, sigmas, plan.ladder_steps - max(len(sigmas) - 1, 0), snr_start)


def start_sigma_of_strength(settings: ScheduleSettings) -> Callable[[float], float]:
    """Where a strength's own plan starts, as ``schedule_for_strength`` computes it; 0 where the strength selects
    no step. Ladders are computed once per length."""
    ladder = functools.cache(
        lambda steps: full_ladder(settings.sampling, settings.sampler_name, settings.scheduler, steps)
    )

    def start_sigma(strength: float) -> float:
        plan = plan_strength(settings.mode, settings.steps, strength)
        if plan.planned_steps == 0:
            return 0.0
        if settings.mode == "snr":
            return snr_start_sigma(settings.sampling, strength)
        sigmas = sigmas_for_strength(plan, ladder(plan.ladder_steps))
        return float(sigmas[0]) if len(sigmas) > 1 else 0.0

    return start_sigma


@dataclass(frozen=True)
class PixelStarts:
    """A strength map at the latent's shape and the sigma where each of its elements starts to be denoised."""

    mask: torch.Tensor  # the map, times the latent's noise mask: the sampler's denoise_mask
    sigmas: torch.Tensor  # each element's starting sigma; 0: held at the input throughout


def map_at_latent(strength_map: torch.Tensor, shape: torch.Size, noise_mask: torch.Tensor | None) -> torch.Tensor:
    """A MASK of any size resized to a latent's shape as core resizes a noise mask, times the latent's own
    noise mask, if it has one (a pixel outside it has strength 0): [batch, 1, height, width], which core's
    sampler spreads over the channels as it does a noise mask."""
    values = checked_strength_map(strength_map)
    one_channel = (shape[0], 1, *shape[2:])
    resized = comfy.utils.reshape_mask(values, one_channel)
    if noise_mask is not None:
        resized = resized * comfy.utils.reshape_mask(noise_mask.float(), one_channel)
    return resized


def schedule_for_map(
    settings: ScheduleSettings, strength_map: torch.Tensor | None, latent: dict, samples: torch.Tensor
) -> tuple[PartialSchedule, PixelStarts | None]:
    """The plan of the strongest pixel of ``strength_map`` and where every element of ``samples`` (the latent's,
    its channels checked) starts on it; without a map, the whole latent's plan (and None)."""
    if strength_map is None:
        return schedule_for_strength(settings), None
    values = map_at_latent(strength_map, samples.shape, latent.get("noise_mask")).to(samples.device)
    weakest, strongest = (pixel_strength(settings.denoise, float(bound)) for bound in values.aminmax())
    schedule = schedule_for_strength(settings.at_strength(strongest))
    starts = PixelStarts(values, start_sigmas_for_map(values, settings.denoise, start_sigma_of_strength(settings)))
    return replace(schedule, strength_range=(weakest, strongest)), starts


def with_pixel_starts(model, starts: PixelStarts):
    """A clone of the model whose sampler holds each pixel at the input until its own start."""

    def denoise_mask(sigma: torch.Tensor, mask: torch.Tensor, extra_options: dict) -> torch.Tensor:
        if mask.shape[0] != starts.sigmas.shape[0] or mask.shape[2:] != starts.sigmas.shape[2:]:
            raise ValueError(f"the strength map's shape {tuple(starts.sigmas.shape)} differs from the sampler's mask")
        return denoising_at(starts.sigmas.to(mask.device), sigma).to(mask.dtype).expand_as(mask)

    model = model.clone()
    model.set_model_denoise_mask_function(denoise_mask)
    return model

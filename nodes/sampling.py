"""The adapter between ComfyUI's model objects and the pure core: sigmas, noise and the loop.

ComfyUI supplies the denoiser (CFG, conditioning, model loading, latent format) through its
``CFGGuider``; the pack owns the strength plan, the partial sigmas, the initial noise and, for the
samplers in ``core.samplers``, the loop itself.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import comfy.k_diffusion.sampling
import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from .accelerate import accelerate as accelerated
from .core import samplers as core_samplers
from .core import schedules
from .core.noise import image_seed, initial_noise
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


def model_sampling(model) -> object:
    return model.get_model_object("model_sampling")


def full_ladder(sampling, sampler_name: str, scheduler: str, steps: int) -> torch.Tensor:
    """The scheduler's sigmas for ``steps`` steps of a model's ``model_sampling``, computed by the core where
    it has the scheduler."""
    discard_penultimate = sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    if discard_penultimate:
        steps += 1
    if scheduler in schedules.SCHEDULES:
        ladder = schedules.SCHEDULES[scheduler](sampling, steps)
    else:
        ladder = comfy.samplers.calculate_sigmas(sampling, scheduler, steps)
    if discard_penultimate:
        ladder = torch.cat([ladder[:-2], ladder[-1:]])
    return ladder


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


def _sigma_data(sampling) -> float:
    return float(getattr(sampling, "sigma_data", 1.0))


def snr_at(sampling, sigma: float) -> float:
    """The signal-to-noise ratio of a latent noised to ``sigma`` on this model."""
    return signal_to_noise(sigma, is_flow(sampling), _sigma_data(sampling))


def snr_start_sigma(sampling, denoise: float) -> float:
    """Where the ``snr`` mode starts on this model: capped at its largest noise level (pure noise)."""
    sigma = sigma_for_snr_strength(denoise, is_flow(sampling), _sigma_data(sampling))
    return min(sigma, float(sampling.sigma_max))


def schedule_for_strength(
    sampling, sampler_name: str, scheduler: str, steps: int, denoise: float, mode: str
) -> PartialSchedule:
    """The partial schedule a strength selects, on a model's ``model_sampling``."""
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ValueError(f"scheduler must be one of {', '.join(comfy.samplers.SCHEDULER_NAMES)}, got {scheduler!r}")
    plan = plan_strength(mode, steps, denoise)
    if plan.planned_steps == 0:
        return PartialSchedule(plan, torch.zeros(0), plan.ladder_steps)
    if mode != "snr":
        sigmas = sigmas_for_strength(plan, full_ladder(sampling, sampler_name, scheduler, plan.ladder_steps))
    else:
        sigma_start = snr_start_sigma(sampling, denoise)
        ladder = full_ladder(FromSigma(sampling, sigma_start), sampler_name, scheduler, plan.ladder_steps)
        sigmas = sigmas_for_strength(plan, ladder)
        # Exactly the start, not the scheduler's float round trip of it; below it, strictly descending.
        below = sigmas[1:][sigmas[1:] < sigma_start]
        sigmas = torch.cat([torch.tensor([sigma_start], dtype=sigmas.dtype), below])
    snr_start = snr_at(sampling, float(sigmas[0])) if len(sigmas) else None
    return PartialSchedule(plan, sigmas, plan.ladder_steps - max(len(sigmas) - 1, 0), snr_start)


def start_sigma_of_strength(
    sampling, sampler_name: str, scheduler: str, steps: int, mode: str
) -> Callable[[float], float]:
    """Where a strength's own plan starts on this model, as ``schedule_for_strength`` computes it; 0 where
    the strength selects no step."""
    ladder = functools.cache(lambda ladder_steps: full_ladder(sampling, sampler_name, scheduler, ladder_steps))

    def start_sigma(strength: float) -> float:
        plan = plan_strength(mode, steps, strength)
        if plan.planned_steps == 0:
            return 0.0
        if mode == "snr":
            return snr_start_sigma(sampling, strength)
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
    sampling,
    sampler_name: str,
    scheduler: str,
    steps: int,
    denoise: float,
    mode: str,
    strength_map: torch.Tensor | None,
    latent: torch.Tensor,
    noise_mask: torch.Tensor | None,
) -> tuple[PartialSchedule, PixelStarts | None]:
    """The plan of the strongest pixel of ``strength_map`` and where every pixel of the latent starts on it;
    without a map, the whole latent's plan (and None)."""
    if strength_map is None:
        return schedule_for_strength(sampling, sampler_name, scheduler, steps, denoise, mode), None
    values = map_at_latent(strength_map, latent.shape, noise_mask).to(latent.device)
    weakest, strongest = (pixel_strength(denoise, float(bound)) for bound in values.aminmax())
    schedule = schedule_for_strength(sampling, sampler_name, scheduler, steps, strongest, mode)
    start_sigma = start_sigma_of_strength(sampling, sampler_name, scheduler, steps, mode)
    starts = PixelStarts(values, start_sigmas_for_map(values, denoise, start_sigma))
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


def is_max_denoise(model, sigma_start: float) -> bool:
    """Whether the run starts from pure noise, where core scales noise as txt2img does."""
    sigma_max = float(model_sampling(model).sigma_max)
    return math.isclose(sigma_max, sigma_start, rel_tol=1e-5) or sigma_start > sigma_max


def noise_for(latent: dict, samples: torch.Tensor, seed: int, batch_seed: str) -> torch.Tensor:
    return initial_noise(samples.shape, seed, batch_seed, latent.get("batch_index"), dtype=samples.dtype)


def noised_start(model, samples: torch.Tensor, noise: torch.Tensor, schedule: PartialSchedule) -> torch.Tensor:
    """``samples`` noised to the schedule's first sigma by the model's own rule, in the model's space."""
    sigma = schedule.sigmas[0]
    in_model_space = model.model.process_latent_in(samples) if torch.count_nonzero(samples) > 0 else samples
    return model_sampling(model).noise_scaling(
        sigma, noise.to(samples.dtype), in_model_space, is_max_denoise(model, float(sigma))
    )


class ContinueFromNoised(comfy.samplers.KSAMPLER):
    """A KSAMPLER that starts from an already-noised latent instead of noising the clean one.

    Core's KSAMPLER always applies ``noise_scaling`` to the latent it is given; for flow models
    that is sigma·noise + (1 − sigma)·latent, which would shrink a latent noised once already.
    """

    def __init__(self, sampler_function, start: torch.Tensor, extra_options=None, inpaint_options=None) -> None:
        super().__init__(sampler_function, extra_options or {}, inpaint_options or {})
        self.start = start  # in the model's space: a round trip through LATENT space would cost precision

    def sample(
        self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False
    ):
        extra_args["denoise_mask"] = denoise_mask
        model_k = comfy.samplers.KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = latent_image
        model_k.noise = noise
        x = self.start.to(noise.device, noise.dtype)
        total_steps = len(sigmas) - 1
        k_callback = None
        if callback is not None:
            k_callback = lambda step: callback(step["i"], step["denoised"], step["x"], total_steps)  # noqa: E731
        samples = self.sampler_function(
            model_k, x, sigmas, extra_args=extra_args, callback=k_callback, disable=disable_pbar, **self.extra_options
        )
        return model_wrap.inner_model.model_sampling.inverse_noise_scaling(sigmas[-1], samples)


def _brownian_noise(x: torch.Tensor, sigma_min, sigma_max, seed: int | None):
    """ComfyUI's Brownian-tree noise, as its SDE samplers draw it by default."""
    return comfy.k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed, cpu=True)


def _stepwise_noise(x: torch.Tensor, sigma_min, sigma_max, seed: int | None):
    return core_samplers.default_noise_sampler(x, seed)


def _per_image(make_noise_sampler):
    """Fresh noise for image i drawn as a single-image run with seed + i draws it."""

    def make(x: torch.Tensor, sigma_min, sigma_max, seed: int | None):
        samplers = [
            make_noise_sampler(x[i : i + 1], sigma_min, sigma_max, None if seed is None else image_seed(seed, i))
            for i in range(x.shape[0])
        ]
        return lambda sigma, sigma_next: torch.cat([sample(sigma, sigma_next) for sample in samplers])

    return make


def _shared(make_noise_sampler):
    """One image's fresh noise, given to every image of the batch: frames of a clip change alike."""

    def make(x: torch.Tensor, sigma_min, sigma_max, seed: int | None):
        sample = make_noise_sampler(x[:1], sigma_min, sigma_max, seed)
        return lambda sigma, sigma_next: sample(sigma, sigma_next).expand_as(x).clone()

    return make


BATCH_NOISE = {"comfy": lambda make: make, "per_image": _per_image, "shared": _shared}


def own_sampler_options(model, sampler_name: str, batch_seed: str) -> dict:
    """What the core sampler needs to know that ComfyUI's looks up in its model wrapper."""
    sampling = model_sampling(model)
    flow = is_flow(sampling)
    options = {}
    if sampler_name in core_samplers.FLOW_AWARE:
        options["flow"] = flow
    if flow and sampler_name in core_samplers.FLOW_START:
        options["flow_start_sigma"] = float(sampling.percent_to_sigma(core_samplers.FLOW_START_PERCENT))
    if sampler_name in core_samplers.STOCHASTIC:
        make = _brownian_noise if sampler_name in core_samplers.BROWNIAN else _stepwise_noise
        options["make_noise_sampler"] = BATCH_NOISE[batch_seed](make)
    return options


def draws_fresh_noise(sampler: comfy.samplers.Sampler) -> bool:
    """Whether a ComfyUI sampler adds noise at its steps (its k-diffusion function takes a noise sampler)."""
    function = getattr(sampler, "sampler_function", None)
    return function is not None and "noise_sampler" in inspect.signature(function).parameters


def sampler_for(model, sampler_name: str, batch_seed: str, start: torch.Tensor | None) -> comfy.samplers.Sampler:
    """The pack's own loop where the core has the sampler, else ComfyUI's, over the pack's sigmas."""
    comfy_sampler = comfy.samplers.sampler_object(sampler_name)
    own = core_samplers.SAMPLERS.get(sampler_name)
    if own is None and batch_seed == "shared" and draws_fresh_noise(comfy_sampler):
        raise ValueError(
            f"batch_seed 'shared' cannot share the fresh noise that ComfyUI's {sampler_name!r} draws at each step: "
            f"use one of the pack's stochastic samplers ({', '.join(sorted(core_samplers.STOCHASTIC))}) "
            "or a deterministic one"
        )
    if own is None and start is None:
        return comfy_sampler
    if own is None and not isinstance(comfy_sampler, comfy.samplers.KSAMPLER):
        raise ValueError(
            f"sampler_name {sampler_name!r} cannot continue from a latent noised by Img2ImgNoiseAtStrength"
        )
    if own is None:
        function, options = comfy_sampler.sampler_function, comfy_sampler.extra_options
    else:
        function, options = own, own_sampler_options(model, sampler_name, batch_seed)
    # ComfyUI's "ddim" is euler with fresh noise for the kept region of a mask: keep its inpaint options.
    inpaint_options = getattr(comfy_sampler, "inpaint_options", {})
    if start is None:
        return comfy.samplers.KSAMPLER(function, options, inpaint_options)
    return ContinueFromNoised(function, start, options, inpaint_options)


@dataclass(frozen=True)
class Guidance:
    """What steers every step: the model, the conditioning and the classifier-free guidance scale."""

    model: object
    positive: list
    negative: list
    cfg: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.cfg):
            raise ValueError(f"cfg must be a finite number, got {self.cfg!r}")


def run(
    guidance: Guidance,
    *,
    sampler_name: str,
    schedule: PartialSchedule,
    clean: torch.Tensor,
    noise: torch.Tensor,
    noise_mask: torch.Tensor | None,
    seed: int,
    batch_seed: str,
    start: torch.Tensor | None = None,
    pixel_starts: PixelStarts | None = None,
    accelerate: bool = False,
) -> torch.Tensor:
    """Sample ``schedule.sigmas`` from ``clean`` + ``noise``, or from ``start`` (already noised) when given.

    Everything but the guidance is keyword-only: seed and batch_seed, or clean and noise, are of one type
    and a positional call could swap them without an error.

    With ``pixel_starts`` (a strength map), each pixel is held at the input, noised to the current sigma, until
    its own start, and denoised from there; ``noise_mask`` is then the map's. ``accelerate`` runs the same
    loop over a lower-precision denoiser where the device supports it."""
    model = guidance.model
    if pixel_starts is not None:
        model, noise_mask = with_pixel_starts(model, pixel_starts), pixel_starts.mask
    sampler = sampler_for(model, sampler_name, batch_seed, start)
    if accelerate:
        model, sampler = accelerated(model, sampler)
    callback = latent_preview.prepare_callback(model, schedule.model_steps)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(guidance.positive, guidance.negative)
    guider.set_cfg(guidance.cfg)
    samples = guider.sample(
        noise,
        clean,
        sampler,
        schedule.sigmas,
        denoise_mask=noise_mask,
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=seed,
    )
    return samples.to(comfy.model_management.intermediate_device())


def check_latent_channels(model, samples: torch.Tensor, input_name: str) -> torch.Tensor:
    """Core's empty-latent fix-up, then a clear error for a latent of another model family."""
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    expected = model.get_model_object("latent_format").latent_channels
    if samples.ndim < 4 or samples.shape[1] != expected:
        raise ValueError(
            f"{input_name} has shape {tuple(samples.shape)}: {samples.shape[1] if samples.ndim > 1 else '?'} channels, "
            f"but this model expects {expected}: encode the image with this model's VAE"
        )
    return samples

"""The adapter between ComfyUI's model objects and the pure core: sigmas, noise and the loop.

ComfyUI supplies the denoiser (CFG, conditioning, model loading, latent format) through its
``CFGGuider``; the pack owns the strength plan, the partial sigmas, the initial noise and, for the
samplers in ``core.samplers``, the loop itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
from .core.strength import StrengthPlan, plan_strength, sigmas_for_strength


@dataclass(frozen=True)
class PartialSchedule:
    """A strength's plan and the sigmas that really run. ``model_steps`` counts those sigmas' steps, which can be
    fewer than the plan's ``planned_steps`` where a scheduler returns a shorter ladder than asked (beta)."""

    plan: StrengthPlan
    sigmas: torch.Tensor  # the partial ladder that runs, sigmas[0] = the starting noise level

    @property
    def model_steps(self) -> int:
        return max(len(self.sigmas) - 1, 0)

    def report(self) -> dict[str, object]:
        return {
            **self.plan.as_dict(),
            "model_steps": self.model_steps,
            "sigma_start": float(self.sigmas[0]) if self.model_steps else 0.0,
            "sigma_end": float(self.sigmas[-1]) if self.model_steps else 0.0,
        }

    def summary(self) -> str:
        if self.model_steps == 0:
            return f"denoise {self.plan.denoise:g}: no step ran, the latent is returned unchanged"
        first = self.plan.ladder_steps - self.model_steps + 1
        return (
            f"steps {first}–{self.plan.ladder_steps} of {self.plan.ladder_steps} · {self.model_steps} model steps · "
            f"σ {float(self.sigmas[0]):.3g}→{float(self.sigmas[-1]):.3g} ({self.plan.mode})"
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


def schedule_for_strength(
    sampling, sampler_name: str, scheduler: str, steps: int, denoise: float, mode: str
) -> PartialSchedule:
    """The partial schedule a strength selects, on a model's ``model_sampling``."""
    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise ValueError(f"scheduler must be one of {', '.join(comfy.samplers.SCHEDULER_NAMES)}, got {scheduler!r}")
    plan = plan_strength(mode, steps, denoise)
    if plan.planned_steps == 0:
        return PartialSchedule(plan, torch.zeros(0))
    return PartialSchedule(
        plan, sigmas_for_strength(plan, full_ladder(sampling, sampler_name, scheduler, plan.ladder_steps))
    )


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


def own_sampler_options(model, sampler_name: str, batch_seed: str) -> dict:
    """What the core sampler needs to know that ComfyUI's looks up in its model wrapper."""
    sampling = model_sampling(model)
    flow = isinstance(sampling, comfy.model_sampling.CONST)
    options = {}
    if sampler_name in core_samplers.FLOW_AWARE:
        options["flow"] = flow
    if flow and sampler_name in core_samplers.FLOW_START:
        options["flow_start_sigma"] = float(sampling.percent_to_sigma(core_samplers.FLOW_START_PERCENT))
    if sampler_name in core_samplers.STOCHASTIC:
        make = _brownian_noise if sampler_name in core_samplers.BROWNIAN else _stepwise_noise
        options["make_noise_sampler"] = _per_image(make) if batch_seed == "per_image" else make
    return options


def sampler_for(model, sampler_name: str, batch_seed: str, start: torch.Tensor | None) -> comfy.samplers.Sampler:
    """The pack's own loop where the core has the sampler, else ComfyUI's, over the pack's sigmas."""
    comfy_sampler = comfy.samplers.sampler_object(sampler_name)
    own = core_samplers.SAMPLERS.get(sampler_name)
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
    accelerate: bool = False,
) -> torch.Tensor:
    """Sample ``schedule.sigmas`` from ``clean`` + ``noise``, or from ``start`` (already noised) when given.

    Everything but the guidance is keyword-only: seed and batch_seed, or clean and noise, are of one type
    and a positional call could swap them without an error.

    ``accelerate`` runs the same loop over a lower-precision denoiser where the device supports it."""
    model = guidance.model
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

"""Sampling on ComfyUI's own samplers, with what the pack adds around them.

Every sampler is ComfyUI's (``comfy.samplers.sampler_object``, as core KSampler looks it up) and every run goes
through core's ``CFGGuider`` and ``KSAMPLER.sample``, masks and inpaint options included. The pack adds only what
ComfyUI lacks, by wrapping the sampler's function, never by copying a method:

- the ``per_image`` and ``shared`` batch noise, handed to the function as its ``noise_sampler``;
- the continuation of a latent that stands partway through a run (after a stop at ``end_at_step``).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import torch

from .accelerate import accelerate as accelerated
from .core.noise import image_seed, initial_noise
from .handoff import SamplingPlan
from .plans import ScheduleSettings, schedule_for_map, with_pixel_starts

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (x, sigmas, seed) -> the fresh noise a sampler function draws at its steps.
NoiseSource = Callable[[torch.Tensor, torch.Tensor, int | None], NoiseSampler]
# Sampler options under which a function that takes no noise_sampler still draws fresh noise.
NOISE_OPTIONS = ("eta", "s_churn")


def model_sampling(model) -> object:
    return model.get_model_object("model_sampling")


def sampler_named(sampler_name: str) -> comfy.samplers.Sampler:
    """ComfyUI's sampler of that name, looked up as core KSampler looks it up (other packs' additions too)."""
    if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"sampler_name {sampler_name!r} is not one of ComfyUI's samplers")
    return comfy.samplers.sampler_object(sampler_name)


@functools.cache
def brownian_tree_functions() -> dict[Callable, bool]:
    """ComfyUI's sampler functions whose default fresh noise is a Brownian tree, and whether the tree lies on the
    CPU; every other function that takes a ``noise_sampler`` draws step by step (``default_noise_sampler``)."""
    on_cpu = (k_sampling.sample_dpmpp_sde, k_sampling.sample_dpmpp_2m_sde, k_sampling.sample_dpmpp_2m_sde_heun,
              k_sampling.sample_dpmpp_3m_sde)  # fmt: skip
    on_device = (k_sampling.sample_dpmpp_sde_gpu, k_sampling.sample_dpmpp_2m_sde_gpu,
                 k_sampling.sample_dpmpp_2m_sde_heun_gpu, k_sampling.sample_dpmpp_3m_sde_gpu)  # fmt: skip
    return {**dict.fromkeys(on_cpu, True), **dict.fromkeys(on_device, False)}


def default_noise_source(function: Callable) -> NoiseSource:
    """How ``function`` draws its fresh noise when it is given no noise sampler."""
    cpu = brownian_tree_functions().get(function)
    if cpu is None:
        return lambda x, sigmas, seed: k_sampling.default_noise_sampler(x, seed=seed)
    return lambda x, sigmas, seed: k_sampling.BrownianTreeNoiseSampler(
        x, sigmas[sigmas > 0].min(), sigmas.max(), seed=seed, cpu=cpu
    )


def per_image_noise(source: NoiseSource, x: torch.Tensor, sigmas: torch.Tensor, seed: int | None) -> NoiseSampler:
    """Image i's fresh noise drawn as a single-image run with seed + i draws it."""
    samplers = [source(x[i : i + 1], sigmas, None if seed is None else image_seed(seed, i)) for i in range(len(x))]
    return lambda sigma, sigma_next: torch.cat([sample(sigma, sigma_next) for sample in samplers])


def shared_noise(source: NoiseSource, x: torch.Tensor, sigmas: torch.Tensor, seed: int | None) -> NoiseSampler:
    """One image's fresh noise, given to every image of the batch: frames of a clip change alike."""
    sample = source(x[:1], sigmas, seed)
    return lambda sigma, sigma_next: sample(sigma, sigma_next).expand_as(x).clone()


BATCH_NOISE = {"per_image": per_image_noise, "shared": shared_noise}


def with_batch_noise(function: Callable, batch_seed: str, options: dict) -> Callable:
    """``function`` drawing its fresh noise per image or shared by the batch (``batch_seed``); ``comfy``: as it is.

    A function that takes no ``noise_sampler`` draws no fresh noise under ComfyUI's options (euler, heun, lms,
    uni_pc, ...): the batch seed then applies to the initial noise alone."""
    if batch_seed == "comfy":
        return function
    if "noise_sampler" not in inspect.signature(function).parameters:
        if any(options.get(name) for name in NOISE_OPTIONS):
            raise ValueError(
                f"batch_seed {batch_seed!r}: this sampler draws fresh noise ({', '.join(NOISE_OPTIONS)} set) but "
                "takes no noise sampler to draw it per image; use batch_seed 'comfy' or another sampler"
            )
        return function
    spread, source = BATCH_NOISE[batch_seed], default_noise_source(function)

    @functools.wraps(function)
    def sample(model, x, sigmas, *args, extra_args=None, noise_sampler=None, **kwargs):
        if noise_sampler is None:  # one given by another part of the graph wins
            noise_sampler = spread(source, x, sigmas, (extra_args or {}).get("seed"))
        return function(model, x, sigmas, *args, extra_args=extra_args, noise_sampler=noise_sampler, **kwargs)

    return sample


def continuing_from(function: Callable, start: torch.Tensor) -> Callable:
    """``function`` run from ``start``, a latent partway through a run (in the model's space), instead of the
    clean latent that core's ``KSAMPLER.sample`` noises and hands it; everything else of that method stays."""

    @functools.wraps(function)
    def sample(model, x, sigmas, *args, **kwargs):
        return function(model, start.to(x.device, x.dtype), sigmas, *args, **kwargs)

    return sample


def with_pack_noise(
    sampler: comfy.samplers.Sampler, batch_seed: str, start: torch.Tensor | None = None
) -> comfy.samplers.Sampler:
    """ComfyUI's ``sampler`` with the batch's fresh noise and, given ``start``, continuing from it; the sampler
    itself where neither applies."""
    if batch_seed == "comfy" and start is None:
        return sampler
    if not isinstance(sampler, comfy.samplers.KSAMPLER):
        raise ValueError(
            f"{type(sampler).__name__} is not a k-diffusion sampler: it runs only with batch_seed 'comfy', "
            "from a latent that is not partway through a run"
        )
    function = with_batch_noise(sampler.sampler_function, batch_seed, sampler.extra_options)
    if start is not None:
        function = continuing_from(function, start)
    return comfy.samplers.KSAMPLER(function, sampler.extra_options, sampler.inpaint_options)


def in_model_space(model, samples: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A LATENT that stands at noise level ``sigma`` partway through a run, as the sampler holds it: the model's
    latent scaling, then the noise scaling that core's KSAMPLER took off where the run stopped (a flow model's
    latent is divided by 1 − σ there), put back without adding noise."""
    latent = model.model.process_latent_in(samples)
    return model_sampling(model).noise_scaling(sigma, torch.zeros_like(latent), latent)


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
    guidance: Guidance, plan: SamplingPlan, sampler_name: str, noise_mask: torch.Tensor | None, accelerate: bool
) -> torch.Tensor:
    """Sample ``plan.schedule`` with ComfyUI's sampler: from ``plan.clean`` noised with ``plan.noise`` by core's
    KSAMPLER, or from ``plan.samples`` where the latent stands partway through the run.

    With a strength map (``plan.pixel_starts``) each pixel is held at the input, noised to the current sigma,
    until its own start; ``noise_mask`` is then the map's. ``accelerate`` runs the same sampler over a
    lower-precision denoiser where the device supports it."""
    model = guidance.model
    if plan.pixel_starts is not None:
        model, noise_mask = with_pixel_starts(model, plan.pixel_starts), plan.pixel_starts.mask
    sigmas = plan.schedule.sigmas
    start = in_model_space(model, plan.samples, sigmas[0]) if plan.partway else None
    sampler = with_pack_noise(sampler_named(sampler_name), plan.batch_seed, start)
    if accelerate:
        model, sampler = accelerated(model, sampler)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(guidance.positive, guidance.negative)
    guider.set_cfg(guidance.cfg)
    samples = guider.sample(
        plan.noise,
        plan.clean,
        sampler,
        sigmas,
        denoise_mask=noise_mask,
        callback=latent_preview.prepare_callback(model, plan.schedule.model_steps),
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=plan.seed,
    )
    return samples.to(comfy.model_management.intermediate_device())


def plan_for_latent(
    model, latent: dict, settings: ScheduleSettings, seed: int, batch_seed: str, strength_map: torch.Tensor | None,
    input_name: str,
) -> SamplingPlan:  # fmt: skip
    """The plan a strength (and strength map) selects for a clean latent, with the seed's initial noise."""
    clean = check_latent_channels(model, latent["samples"], input_name)
    schedule, pixel_starts = schedule_for_map(settings, strength_map, latent, clean)
    noise = initial_noise(clean.shape, seed, batch_seed, latent.get("batch_index"), dtype=clean.dtype)
    return SamplingPlan(schedule, clean, noise, seed, batch_seed, samples=clean, pixel_starts=pixel_starts)


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


def is_max_denoise(model, sigma_start: torch.Tensor) -> bool:
    """Whether a run from ``sigma_start`` starts from pure noise, where core scales the noise as txt2img does
    (core's ``Sampler.max_denoise``, which needs a model wrapper that exists only inside a run)."""
    sigma_max, sigma = float(model_sampling(model).sigma_max), float(sigma_start)
    return math.isclose(sigma_max, sigma, rel_tol=1e-5) or sigma > sigma_max


def noised_latent(model, plan: SamplingPlan) -> torch.Tensor:
    """``plan.clean`` noised with ``plan.noise`` to the schedule's first sigma by the model's rule, as a LATENT
    the way core's KSamplerAdvanced returns one with leftover noise there (so core's samplers continue it too)."""
    sigma = plan.schedule.sigmas[0]
    clean = model.model.process_latent_in(plan.clean) if torch.count_nonzero(plan.clean) > 0 else plan.clean
    sampling = model_sampling(model)
    noised = sampling.noise_scaling(sigma, plan.noise.to(clean.dtype), clean, is_max_denoise(model, sigma))
    return model.model.process_latent_out(sampling.inverse_noise_scaling(sigma, noised))

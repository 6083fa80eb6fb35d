"""The pack's exact strength as parts of core's SamplerCustomAdvanced: SIGMAS, NOISE and a SAMPLER wrapper.

Img2ImgStrengthSigmas → sigmas, Img2ImgNoise → noise, any KSamplerSelect sampler (through Img2ImgBatchSeedSampler
for per-image or shared fresh noise) and core's CFGGuider give what Img2ImgKSampler gives for the same settings.
"""

from __future__ import annotations

import torch

from .core.noise import initial_noise
from .core.strength import validate_steps_and_denoise
from .inputs import (
    BATCH_SEED_INPUT,
    DENOISE_INPUT,
    END_AT_STEP_INPUT,
    SAMPLER_INPUT,
    SCHEDULER_INPUT,
    SEED_INPUT,
    STEPS_INPUT,
    STRENGTH_MODE_INPUT,
)
from .plans import ScheduleSettings, plan_ui, schedule_for_strength
from .sampling import model_sampling, with_pack_noise


class Img2ImgStrengthSigmas:
    DESCRIPTION = (
        "The sigmas a denoise strength selects, for core's SamplerCustomAdvanced: the exact start of "
        "Img2ImgKSampler in every strength mode. With end_at_step, the sigmas up to that step and the rest, "
        "for a second model."
    )
    CATEGORY = "img2img/custom_sampling"
    FUNCTION = "sigmas"
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("sigmas", "rest_sigmas")
    OUTPUT_TOOLTIPS = (
        "The sigmas that run (up to end_at_step); empty where the strength selects no step.",
        "The sigmas after end_at_step, for a second SamplerCustomAdvanced with DisableNoise; empty without a stop.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model whose noise levels the schedule is made of."}),
                "sampler_name": (
                    SAMPLER_INPUT[0],
                    {
                        "tooltip": "The sampler these sigmas are for: dpm_2, dpm_2_ancestral and the uni_pc samplers "
                        "drop the ladder's penultimate sigma, as core KSampler does for them."
                    },
                ),
                "scheduler": SCHEDULER_INPUT,
                "steps": STEPS_INPUT,
                "denoise": DENOISE_INPUT,
                "strength_mode": STRENGTH_MODE_INPUT,
            },
            "optional": {
                "end_at_step": (
                    "INT",
                    {
                        **END_AT_STEP_INPUT[1],
                        "tooltip": "Stop at this step of the plan: sigmas ends there and "
                        "rest_sigmas goes on from there. 10000: no stop.",
                    },
                ),
            },
        }

    def sigmas(self, model, sampler_name, scheduler, steps, denoise, strength_mode, end_at_step=10000):
        validate_steps_and_denoise(steps, denoise)
        settings = ScheduleSettings(model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode)
        now, rest = schedule_for_strength(settings).split_at(end_at_step, settings.sampling)
        rest_sigmas = torch.zeros(0) if rest is None else rest.sigmas
        return {"ui": plan_ui(now), "result": (now.sigmas, rest_sigmas)}


class SeededNoise:
    """Core's NOISE interface (``seed``, ``generate_noise``) over the pack's batch seeds. Without ``add_noise`` the
    noise is zero and the seed still seeds the sampler's fresh noise, as core KSamplerAdvanced's add_noise off."""

    def __init__(self, seed: int, batch_seed: str, add_noise: bool = True) -> None:
        self.seed = seed
        self.batch_seed = batch_seed
        self.add_noise = add_noise

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        if not self.add_noise:
            return torch.zeros(samples.shape, dtype=samples.dtype, layout=samples.layout, device="cpu")
        return initial_noise(samples.shape, self.seed, self.batch_seed, input_latent.get("batch_index"), samples.dtype)


class Img2ImgNoise:
    DESCRIPTION = (
        "Seeded initial noise for core's SamplerCustomAdvanced, drawn as Img2ImgKSampler draws it: comfy is core's "
        "RandomNoise; per_image and shared give image i the noise of seed + i, or every image the first one's."
    )
    CATEGORY = "img2img/custom_sampling"
    FUNCTION = "noise"
    RETURN_TYPES = ("NOISE",)
    OUTPUT_TOOLTIPS = (
        "The initial noise; per_image and shared fresh noise at the steps needs Img2ImgBatchSeedSampler.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        add_noise = (
            "BOOLEAN",
            {"default": True, "tooltip": "Off: no initial noise, the seed still seeds the sampler's fresh noise (as "
             "KSamplerAdvanced's add_noise disabled): for the second sampler after a stop at end_at_step."},
        )  # fmt: skip
        return {"required": {"seed": SEED_INPUT, "batch_seed": BATCH_SEED_INPUT}, "optional": {"add_noise": add_noise}}

    def noise(self, seed, batch_seed, add_noise=True):
        return (SeededNoise(seed, batch_seed, add_noise),)


class Img2ImgBatchSeedSampler:
    DESCRIPTION = (
        "A sampler whose fresh noise at each step (ancestral and SDE samplers) is drawn per image (seed + i) or "
        "shared by the batch, as Img2ImgKSampler's batch_seed does; give Img2ImgNoise the same batch_seed."
    )
    CATEGORY = "img2img/custom_sampling"
    FUNCTION = "sampler"
    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("The sampler, for SamplerCustomAdvanced.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampler": ("SAMPLER", {"tooltip": "A sampler, e.g. from KSamplerSelect."}),
                             "batch_seed": BATCH_SEED_INPUT}}  # fmt: skip

    def sampler(self, sampler, batch_seed):
        return (with_pack_noise(sampler, batch_seed),)

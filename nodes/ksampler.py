"""Img2ImgKSampler: run only the part of the schedule that the denoise strength selects."""

from __future__ import annotations

from dataclasses import replace

from .core.strength import validate_steps_and_denoise
from .handoff import SamplingPlan, carried_plan, with_plan, without_plan
from .inputs import (
    ACCELERATE_INPUT,
    BATCH_SEED_INPUT,
    CFG_INPUT,
    DENOISE_INPUT,
    END_AT_STEP_INPUT,
    GUIDANCE_INPUTS,
    SAMPLER_INPUT,
    SCHEDULER_INPUT,
    SEED_INPUT,
    STEPS_INPUT,
    STRENGTH_MAP_INPUT,
    STRENGTH_MODE_INPUT,
)
from .plans import ScheduleSettings, plan_ui
from .sampling import Guidance, model_sampling, plan_for_latent, run


class Img2ImgKSampler:
    DESCRIPTION = (
        "Img2img sampler: noises the latent to the level the denoise strength selects and runs only "
        "the rest of the schedule. A latent from Img2ImgNoiseAtStrength, or from an Img2ImgKSampler stopped at "
        "end_at_step, is continued as it is, with its plan."
    )
    CATEGORY = "img2img"
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised latent; decode it with Img2ImgVAEDecode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **GUIDANCE_INPUTS,
                "latent_image": (
                    "LATENT",
                    {"tooltip": "The encoded input image, or a latent from Img2ImgNoiseAtStrength."},
                ),
                "seed": SEED_INPUT,
                "steps": STEPS_INPUT,
                "cfg": CFG_INPUT,
                "sampler_name": SAMPLER_INPUT,
                "scheduler": SCHEDULER_INPUT,
                "denoise": DENOISE_INPUT,
                "strength_mode": STRENGTH_MODE_INPUT,
                "batch_seed": BATCH_SEED_INPUT,
            },
            "optional": {
                "accelerate": ACCELERATE_INPUT,
                "end_at_step": END_AT_STEP_INPUT,
                "strength_map": STRENGTH_MAP_INPUT,
            },
        }

    def sample(
        self, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise,
        strength_mode, batch_seed, accelerate=False, end_at_step=10000, strength_map=None,
    ):  # fmt: skip
        validate_steps_and_denoise(
            steps, denoise
        )  # also where a carried plan leaves them unused: a bad value is a mistake
        settings = ScheduleSettings(model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode)
        # 1. The plan: the one a noised latent carries, else the strength's, with the seed's noise.
        plan, note = carried_plan(latent_image), ""
        if plan is None:
            plan = plan_for_latent(model, latent_image, settings, seed, batch_seed, strength_map, "latent_image")
        else:
            note = continued_note(plan, strength_map)
        # 2. The part that runs now, and the rest that a stop at end_at_step leaves to another sampler.
        now, rest = plan.schedule.split_at(end_at_step, settings.sampling)
        # 3. Sample it with ComfyUI's sampler; a strength that selects no step returns the latent unchanged.
        samples = plan.clean
        if now.model_steps:
            guidance = Guidance(model, positive, negative, cfg)
            samples = run(
                guidance, replace(plan, schedule=now), sampler_name, latent_image.get("noise_mask"), accelerate
            )
        out = {**without_plan(latent_image), "samples": samples}
        # 4. After a stop: the latent with its leftover noise, and the plan that continues it.
        if rest is not None:
            out = with_plan(out, replace(plan, schedule=rest, samples=samples, partway=True))
        return {"ui": plan_ui(now, note), "result": (out,)}


def continued_note(plan: SamplingPlan, strength_map) -> str:
    """The plan line's note on a latent that continues another node's plan (which a map cannot change)."""
    if strength_map is not None:
        raise ValueError(
            "strength_map: this latent was noised by Img2ImgNoiseAtStrength or an earlier sampler, "
            "whose plan it continues; give the strength map to the node that made it"
        )
    return f" · continued from step {plan.schedule.first_step + 1} of the incoming plan, with its seed"

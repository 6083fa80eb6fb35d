"""Img2ImgNoiseAtStrength: the latent noised to exactly the level the denoise strength selects."""

from __future__ import annotations

from dataclasses import replace

from .handoff import with_plan
from .inputs import (
    BATCH_SEED_INPUT,
    DENOISE_INPUT,
    SAMPLER_INPUT,
    SCHEDULER_INPUT,
    SEED_INPUT,
    STEPS_INPUT,
    STRENGTH_MAP_INPUT,
    STRENGTH_MODE_INPUT,
)
from .plans import ScheduleSettings, plan_ui
from .sampling import model_sampling, noised_latent, plan_for_latent


class Img2ImgNoiseAtStrength:
    DESCRIPTION = (
        "Adds seeded noise to a latent at the sigma where the denoise strength starts the schedule, by the "
        "model's own noising rule, and attaches the plan so that Img2ImgKSampler runs the rest without noising again."
    )
    CATEGORY = "img2img"
    FUNCTION = "noise"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("noised_latent",)
    OUTPUT_TOOLTIPS = ("The noised latent with its plan; connect it to Img2ImgKSampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model whose noise levels and noising rule are used."}),
                "latent": ("LATENT", {"tooltip": "The clean latent of the input image, from Img2ImgVAEEncode."}),
                "seed": SEED_INPUT,
                "steps": STEPS_INPUT,
                "denoise": DENOISE_INPUT,
                "sampler_name": SAMPLER_INPUT,
                "scheduler": SCHEDULER_INPUT,
                "strength_mode": STRENGTH_MODE_INPUT,
                "batch_seed": BATCH_SEED_INPUT,
            },
            "optional": {"strength_map": STRENGTH_MAP_INPUT},
        }

    def noise(
        self, model, latent, seed, steps, denoise, sampler_name, scheduler, strength_mode, batch_seed, strength_map=None
    ):
        settings = ScheduleSettings(model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode)
        plan = plan_for_latent(model, latent, settings, seed, batch_seed, strength_map, "latent")
        if plan.schedule.model_steps:
            plan = replace(plan, samples=noised_latent(model, plan))
        return {"ui": plan_ui(plan.schedule), "result": (with_plan(latent, plan),)}

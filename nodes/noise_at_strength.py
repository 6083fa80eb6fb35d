"""Img2ImgNoiseAtStrength: the latent noised to exactly the level the denoise strength selects."""

from __future__ import annotations

from .handoff import NoisedLatentPlan, with_plan
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
from .sampling import (
    check_latent_channels,
    model_sampling,
    noise_for,
    noised_start,
    plan_ui,
    schedule_for_map,
)


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
        clean = check_latent_channels(model, latent["samples"], "latent")
        schedule, pixel_starts = schedule_for_map(
            model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode, strength_map, clean,
            latent.get("noise_mask"),
        )  # fmt: skip
        noise = noise_for(latent, clean, seed, batch_seed)
        start = None if schedule.model_steps == 0 else noised_start(model, clean, noise, schedule)
        plan = NoisedLatentPlan(
            schedule=schedule,
            clean=clean,
            noise=noise,
            seed=seed,
            batch_seed=batch_seed,
            noised=clean if start is None else model.model.process_latent_out(start),
            start=start,
            pixel_starts=pixel_starts,
        )
        return {"ui": plan_ui(schedule), "result": (with_plan(latent, plan),)}

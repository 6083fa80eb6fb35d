"""Img2ImgKSampler: run only the part of the schedule that the denoise strength selects."""

from __future__ import annotations

import torch

from .core.strength import validate_steps_and_denoise
from .handoff import NoisedLatentPlan, carried_plan, with_plan, without_plan
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
from .sampling import (
    Guidance,
    check_latent_channels,
    model_sampling,
    noise_for,
    noised_start,
    plan_ui,
    run,
    schedule_for_map,
)


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
        self,
        model,
        positive,
        negative,
        latent_image,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        denoise,
        strength_mode,
        batch_seed,
        accelerate=False,
        end_at_step=10000,
        strength_map=None,
    ):
        validate_steps_and_denoise(steps, denoise)  # also when they are unused: a bad value is a mistake
        carried = carried_plan(latent_image)
        if carried is not None:
            schedule, clean, noise, start = carried.schedule, carried.clean, carried.noise, carried.start
            seed, batch_seed, pixel_starts = carried.seed, carried.batch_seed, carried.pixel_starts
            if strength_map is not None:
                raise ValueError(
                    "strength_map: this latent was noised by Img2ImgNoiseAtStrength or an earlier sampler, "
                    "whose plan it continues; give the strength map to the node that made it"
                )
            if start is None and schedule.model_steps:
                start = noised_start(model, carried.noised, torch.zeros_like(carried.noised), schedule)
            note = f" · continued from step {schedule.first_step + 1} of the incoming plan, with its seed"
        else:
            clean = check_latent_channels(model, latent_image["samples"], "latent_image")
            schedule, pixel_starts = schedule_for_map(
                model_sampling(model),
                sampler_name,
                scheduler,
                steps,
                denoise,
                strength_mode,
                strength_map,
                clean,
                latent_image.get("noise_mask"),
            )
            noise = noise_for(latent_image, clean, seed, batch_seed)
            start = None
            note = ""
        schedule, rest = schedule.split_at(end_at_step, model_sampling(model))
        out = without_plan(latent_image)
        if schedule.model_steps == 0:
            out["samples"] = clean
        else:
            out["samples"] = run(
                Guidance(model, positive, negative, cfg),
                sampler_name=sampler_name,
                schedule=schedule,
                clean=clean,
                noise=noise,
                noise_mask=latent_image.get("noise_mask"),
                seed=seed,
                batch_seed=batch_seed,
                start=start,
                pixel_starts=pixel_starts,
                accelerate=accelerate,
            )
        if rest is not None:
            left = NoisedLatentPlan(
                schedule=rest,
                clean=clean,
                noise=noise,
                seed=seed,
                batch_seed=batch_seed,
                noised=out["samples"],
                start=None,
                pixel_starts=pixel_starts,
            )
            out = with_plan(out, left)
        return {"ui": plan_ui(schedule, note), "result": (out,)}

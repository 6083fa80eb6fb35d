"""Img2ImgDenoiseSweep: one image at several strengths (and seeds) in one job, as a labelled contact sheet."""

from __future__ import annotations

import torch

from .core.contact_sheet import contact_sheet
from .core.number_lists import parse_numbers
from .inputs import (
    CFG_INPUT,
    GUIDANCE_INPUTS,
    SAMPLER_INPUT,
    SCHEDULER_INPUT,
    SEED_INPUT,
    STEPS_INPUT,
    STRENGTH_MODE_INPUT,
)
from .plans import ScheduleSettings
from .sampling import Guidance, model_sampling, plan_for_latent, run
from .vae_coding import decode_latent


class Img2ImgDenoiseSweep:
    DESCRIPTION = (
        "Runs the same image at each denoise strength (columns) and seed (rows) and lays the results out as a "
        "labelled contact sheet: the X/Y plot for choosing a strength."
    )
    CATEGORY = "img2img"
    FUNCTION = "sweep"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("contact_sheet", "images")
    OUTPUT_TOOLTIPS = (
        "One picture: a row per seed, a column per strength, labelled.",
        "Every result as a batch, row by row (seed by seed).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **GUIDANCE_INPUTS,
                "latent_image": ("LATENT", {"tooltip": "The encoded input image (one image)."}),
                "vae": ("VAE", {"tooltip": "The VAE to decode the results with."}),
                "seed": SEED_INPUT,
                "steps": STEPS_INPUT,
                "cfg": CFG_INPUT,
                "sampler_name": SAMPLER_INPUT,
                "scheduler": SCHEDULER_INPUT,
                "strength_mode": STRENGTH_MODE_INPUT,
                "denoise_values": (
                    "STRING",
                    {
                        "default": "0.2, 0.4, 0.6, 0.8",
                        "tooltip": "The strengths to compare, comma-separated, each from 0 to 1: one column each.",
                    },
                ),
                "seeds": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Seeds to compare, comma-separated, one row each; empty: the seed input alone.",
                    },
                ),
            }
        }

    def sweep(
        self,
        model,
        positive,
        negative,
        latent_image,
        vae,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        strength_mode,
        denoise_values,
        seeds,
    ):
        strengths = parse_numbers(denoise_values, "denoise_values")
        row_seeds = parse_numbers(seeds, "seeds", int) if seeds.strip() else [seed]
        if any(not 0 <= row_seed <= SEED_INPUT[1]["max"] for row_seed in row_seeds):
            raise ValueError(f"seeds must be from 0 to {SEED_INPUT[1]['max']}, got {row_seeds}")
        if latent_image["samples"].shape[0] != 1:
            raise ValueError(
                f"latent_image: the sweep takes one image, got a batch of {latent_image['samples'].shape[0]}"
            )
        settings = ScheduleSettings(model_sampling(model), sampler_name, scheduler, steps, 1.0, strength_mode)
        guidance = Guidance(model, positive, negative, cfg)
        results = []
        for row_seed in row_seeds:
            for denoise in strengths:
                plan = plan_for_latent(
                    model, latent_image, settings.at_strength(denoise), row_seed, "comfy", None, "latent_image"
                )
                samples = plan.clean
                if plan.schedule.model_steps:
                    samples = run(guidance, plan, sampler_name, latent_image.get("noise_mask"), accelerate=False)
                results.append(decode_latent(vae, samples))
        images = torch.cat(results)
        sheet = contact_sheet(images, [f"denoise {d:g}" for d in strengths], [f"seed {s}" for s in row_seeds])
        return (sheet, images)

"""Img2ImgLoopback: img2img applied to its own output several times, each pass a little weaker.

AUTOMATIC1111's loopback script, in latent space: pass i runs Img2ImgKSampler's sampling at denoise × factorⁱ
with seed + i on the latent the pass before returned, so that it equals the same passes chained by hand.
"""

from __future__ import annotations

from .core.noise import image_seed
from .core.strength import loopback_strengths, validate_steps_and_denoise
from .handoff import carried_plan
from .inputs import (
    ACCELERATE_INPUT,
    BATCH_SEED_INPUT,
    CFG_INPUT,
    DENOISE_INPUT,
    GUIDANCE_INPUTS,
    SAMPLER_INPUT,
    SCHEDULER_INPUT,
    SEED_INPUT,
    STEPS_INPUT,
    STRENGTH_MAP_INPUT,
    STRENGTH_MODE_INPUT,
)
from .plans import ScheduleSettings
from .sampling import Guidance, model_sampling, plan_for_latent, run

MAX_PASSES = 64


class Img2ImgLoopback:
    DESCRIPTION = (
        "Loopback (AUTOMATIC1111's script): runs the img2img sampler several times on its own output, each pass "
        "at the last one's strength × strength_factor (at most 1) and with the next seed. Equal to the same "
        "Img2ImgKSampler passes chained by hand."
    )
    CATEGORY = "img2img"
    FUNCTION = "loop"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The last pass's latent.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **GUIDANCE_INPUTS,
                "latent_image": ("LATENT", {"tooltip": "The encoded input image (a clean latent)."}),
                "seed": SEED_INPUT,
                "steps": STEPS_INPUT,
                "cfg": CFG_INPUT,
                "sampler_name": SAMPLER_INPUT,
                "scheduler": SCHEDULER_INPUT,
                "denoise": ("FLOAT", {**DENOISE_INPUT[1], "tooltip": "The first pass's strength."}),
                "strength_mode": STRENGTH_MODE_INPUT,
                "batch_seed": BATCH_SEED_INPUT,
                "passes": ("INT", {"default": 4, "min": 1, "max": MAX_PASSES, "tooltip": "How many times to run."}),
                "strength_factor": (
                    "FLOAT",
                    {
                        "default": 0.9,
                        "min": 0.0,
                        "max": 2.0,
                        "step": 0.01,
                        "tooltip": "Each pass's strength is the last one's times this (capped at 1).",
                    },
                ),
            },
            "optional": {"accelerate": ACCELERATE_INPUT, "strength_map": STRENGTH_MAP_INPUT},
        }

    def loop(
        self, model, positive, negative, latent_image, seed, steps, cfg, sampler_name, scheduler, denoise,
        strength_mode, batch_seed, passes, strength_factor, accelerate=False, strength_map=None,
    ):  # fmt: skip
        validate_steps_and_denoise(steps, denoise)
        if not 1 <= passes <= MAX_PASSES:
            raise ValueError(f"passes must be from 1 to {MAX_PASSES}, got {passes!r}")
        if carried_plan(latent_image) is not None:
            raise ValueError("latent_image: loopback starts from a clean latent; connect Img2ImgVAEEncode's output")
        settings = ScheduleSettings(model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode)
        guidance, latent, reports, lines = Guidance(model, positive, negative, cfg), latent_image, [], []
        for index, strength in enumerate(loopback_strengths(denoise, strength_factor, passes)):
            pass_seed = image_seed(seed, index)
            plan = plan_for_latent(
                model, latent, settings.at_strength(strength), pass_seed, batch_seed, strength_map, "latent_image"
            )
            samples = plan.clean
            if plan.schedule.model_steps:
                samples = run(guidance, plan, sampler_name, latent.get("noise_mask"), accelerate)
            latent = {**latent, "samples": samples}
            reports.append({**plan.schedule.report(), "seed": pass_seed})
            lines.append(f"pass {index + 1} (seed {pass_seed}): {plan.schedule.summary()}")
        return {"ui": {"img2img_plan": reports, "text": ["\n".join(lines)]}, "result": (latent,)}

"""Img2ImgKSampler: run only the part of the schedule that the denoise strength selects."""

from __future__ import annotations

import comfy.samplers

from .core.noise import BATCH_SEEDS
from .core.strength import STRENGTH_MODES, validate_steps_and_denoise
from .sampling import PLAN_KEY, check_latent_channels, model_sampling, noise_for, run, schedule_for_strength

SEED_INPUT = (
    "INT",
    {
        "default": 0,
        "min": 0,
        "max": 0xFFFFFFFFFFFFFFFF,
        "control_after_generate": True,
        "tooltip": "Seed of the initial noise, drawn on the CPU exactly as core KSampler draws it.",
    },
)
STEPS_INPUT = (
    "INT",
    {
        "default": 20,
        "min": 1,
        "max": 10000,
        "tooltip": "N: the number of steps of the full schedule that the strength is cut from.",
    },
)
DENOISE_INPUT = (
    "FLOAT",
    {
        "default": 0.6,
        "min": 0.0,
        "max": 1.0,
        "step": 0.01,
        "tooltip": "Strength: 0 returns the input unchanged, 1 starts from pure noise like txt2img.",
    },
)
CFG_INPUT = (
    "FLOAT",
    {
        "default": 7.0,
        "min": 0.0,
        "max": 100.0,
        "step": 0.1,
        "round": 0.01,
        "tooltip": "Classifier-free guidance scale: how strongly the prompt steers each step.",
    },
)
SAMPLER_INPUT = (
    comfy.samplers.KSampler.SAMPLERS,
    {
        "tooltip": "The sampler. The pack runs its own loop for the samplers it implements and ComfyUI's for the rest.",
    },
)
SCHEDULER_INPUT = (
    comfy.samplers.KSampler.SCHEDULERS,
    {
        "tooltip": "How the full N-step ladder of noise levels is spaced.",
    },
)
STRENGTH_MODE_INPUT = (
    list(STRENGTH_MODES),
    {
        "default": STRENGTH_MODES[0],
        "tooltip": (
            "steps_x_denoise: run the last ⌊N·denoise⌋ of N steps (diffusers, KSamplerAdvanced). "
            "a1111: AUTOMATIC1111's ⌊min(denoise, 0.999)·N⌋ + 1 steps. "
            "comfy: core KSampler's stretched ladder of ⌊N/denoise⌋ steps, of which the last N run."
        ),
    },
)
BATCH_SEED_INPUT = (
    list(BATCH_SEEDS),
    {
        "default": BATCH_SEEDS[0],
        "tooltip": (
            "comfy: one noise stream for the batch, as core. per_image: image i uses seed + i, like a single run."
        ),
    },
)

ACCELERATE_INPUT = (
    "BOOLEAN",
    {
        "default": False,
        "tooltip": (
            "Run the UNet in bfloat16 with fused attention where the device supports it (about 2-3x faster on "
            "a CPU with AVX512-BF16/AMX); the result differs slightly from the plain path. Falls back to the "
            "plain path, with a log line, where it cannot apply."
        ),
    },
)


GUIDANCE_INPUTS = {
    "model": ("MODEL", {"tooltip": "The diffusion model that denoises."}),
    "positive": ("CONDITIONING", {"tooltip": "What the image should show."}),
    "negative": ("CONDITIONING", {"tooltip": "What the image should not show."}),
}


def plan_output(schedule, note: str = "") -> dict:
    return {"img2img_plan": [schedule.report()], "text": [schedule.summary() + note]}


class Img2ImgKSampler:
    DESCRIPTION = (
        "Img2img sampler: noises the latent to the level the denoise strength selects and runs only "
        "the rest of the schedule. A latent from Img2ImgNoiseAtStrength is continued as it is, with its plan."
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
            "optional": {"accelerate": ACCELERATE_INPUT},
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
    ):
        validate_steps_and_denoise(steps, denoise)  # also when they are unused: a bad value is a mistake
        record = latent_image.get(PLAN_KEY)
        out = {key: value for key, value in latent_image.items() if key != PLAN_KEY}
        if record is not None and record["noised"] is latent_image["samples"]:
            schedule, clean, noise = record["schedule"], record["clean"], record["noise"]
            seed, batch_seed = record["seed"], record["batch_seed"]
            start = record["start"]
            note = " · continued from Img2ImgNoiseAtStrength, its plan and seed"
        else:
            clean = check_latent_channels(model, latent_image["samples"], "latent_image")
            schedule = schedule_for_strength(
                model_sampling(model), sampler_name, scheduler, steps, denoise, strength_mode
            )
            noise = noise_for(latent_image, clean, seed, batch_seed)
            start = None
            note = ""
        if schedule.model_steps == 0:
            out["samples"] = clean
        else:
            out["samples"] = run(
                model,
                positive,
                negative,
                cfg,
                sampler_name,
                schedule,
                clean,
                noise,
                latent_image.get("noise_mask"),
                seed,
                batch_seed,
                start,
                accelerate,
            )
        return {"ui": plan_output(schedule, note), "result": (out,)}

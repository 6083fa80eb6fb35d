"""Input specs that several nodes declare alike, so that a widget means the same on every node."""

from __future__ import annotations

import comfy.samplers

from .core.noise import BATCH_SEEDS
from .core.strength import STRENGTH_MODES

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
        "tooltip": "ComfyUI's sampler of that name (also one that another pack adds), over the strength's sigmas.",
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
            "comfy: core KSampler's stretched ladder of ⌊N/denoise⌋ steps, of which the last N run. "
            "snr: denoise names a noise level (signal-to-noise ((1 − s)/s)²), the same on every model family; "
            "all N steps run from there."
        ),
    },
)
BATCH_SEED_INPUT = (
    list(BATCH_SEEDS),
    {
        "default": BATCH_SEEDS[0],
        "tooltip": (
            "comfy: one noise stream for the batch, as core. per_image: image i uses seed + i, like a single run. "
            "shared: every image gets the same noise (frames of a video change alike)."
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
VAE_ACCELERATE_INPUT = (
    "BOOLEAN",
    {
        "default": False,
        "tooltip": (
            "Run the VAE in bfloat16 with fused attention where the device supports it (a CPU with "
            "AVX512-BF16/AMX, a GPU with bfloat16); the picture differs slightly from the plain path (about "
            "40-54 dB PSNR measured). Falls back to the plain path, with a log line, where it cannot apply."
        ),
    },
)
END_AT_STEP_INPUT = (
    "INT",
    {
        "default": 10000,
        "min": 1,
        "max": 10000,
        "tooltip": (
            "Stop at this step of the plan (the step numbers of the line under the node) and return the latent "
            "with its leftover noise and its plan: a second Img2ImgKSampler, with another model such as a "
            "refiner, continues it from there without adding noise. 10000: run to the end."
        ),
    },
)
STRENGTH_MAP_INPUT = (
    "MASK",
    {
        "tooltip": (
            "Strength per pixel: a pixel's strength is denoise × its map value (0-1; any size, resized to the "
            "latent). The run covers the strongest pixel's plan; each other pixel is held at the input until "
            "the step its own strength selects. 0 keeps a pixel."
        ),
    },
)
GUIDANCE_INPUTS = {
    "model": ("MODEL", {"tooltip": "The diffusion model that denoises."}),
    "positive": ("CONDITIONING", {"tooltip": "What the image should show."}),
    "negative": ("CONDITIONING", {"tooltip": "What the image should not show."}),
}

TILING_MODES = ("auto", "always", "never")
TILING_INPUTS = {
    "tiling": (
        list(TILING_MODES),
        {
            "default": "auto",
            "tooltip": "auto: tiles only when the whole image would not fit in free memory (and after running out). "
            "always / never: as they say. Each tile is coded once and cropped back to its core; exact tiles (where "
            "memory allows) equal the whole picture.",
        },
    ),
    "tile_size": (
        "INT",
        {"default": 512, "min": 64, "max": 4096, "step": 32, "tooltip": "The tiles' core edge in pixels."},
    ),
    "overlap": (
        "INT",
        {
            "default": 64,
            "min": 0,
            "max": 1024,
            "step": 16,
            "tooltip": "Streamed tiles' margin: pixels of context each tile sees beyond its core (exact tiles need "
            "none). At least the VAE's reach makes them equal the whole picture: SD's VAE 88 px encoding and 120 px "
            "decoding, TAESD 152 px; less is faster.",
        },
    ),
}

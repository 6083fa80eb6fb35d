"""What a latent carries from Img2ImgNoiseAtStrength, or from an Img2ImgKSampler stopped early, to the
Img2ImgKSampler that continues it: the plan it was noised for, and where on it the latent stands.

The record rides in the LATENT dict under one key of the pack's own. Core nodes copy the dict and ignore
unknown keys, so the pack's latents stay usable by them and theirs by the pack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sampling import PartialSchedule, PixelStarts

PLAN_KEY = "img2img"


@dataclass(frozen=True)
class NoisedLatentPlan:
    """A latent noised to its schedule's first sigma, with all a sampler needs to continue it exactly."""

    schedule: PartialSchedule  # what is left to run
    clean: torch.Tensor  # the latent before noising (LATENT space)
    noise: torch.Tensor  # the initial noise, for samplers that need it again (masks, ddim)
    seed: int
    batch_seed: str
    noised: torch.Tensor  # the LATENT ``samples`` this record was made for
    # The same in the model's space, kept to avoid a lossy round trip; None where the continuing model is to
    # make it from ``noised``, as core KSamplerAdvanced does with add_noise disabled (after a stop: the second
    # model may have another latent scaling than the first).
    start: torch.Tensor | None
    pixel_starts: PixelStarts | None = None  # a strength map's starts, which the rest of the run keeps


def with_plan(latent: dict, plan: NoisedLatentPlan) -> dict:
    """A copy of ``latent`` whose samples are ``plan.noised``, carrying the plan."""
    return {**latent, "samples": plan.noised, PLAN_KEY: plan}


def without_plan(latent: dict) -> dict:
    return {key: value for key, value in latent.items() if key != PLAN_KEY}


def carried_plan(latent: dict) -> NoisedLatentPlan | None:
    """The plan, if ``latent["samples"]`` is still the very tensor it was made for.

    A node between the two (a core latent op, batching, upscaling) returns new samples in a dict copied
    with the plan still in it: those samples are no longer what the plan noised, so they count as a clean
    latent and are noised afresh. Identity, not equality, decides: it is free, and no other tensor is it.
    """
    plan = latent.get(PLAN_KEY)
    if isinstance(plan, NoisedLatentPlan) and plan.noised is latent["samples"]:
        return plan
    return None

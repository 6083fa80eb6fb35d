"""What a latent carries from Img2ImgNoiseAtStrength, or from an Img2ImgKSampler stopped early, to the
Img2ImgKSampler that continues it: the plan it was noised for, and where on it the latent stands.

The record rides in the LATENT dict under one key of the pack's own. Core nodes copy the dict and ignore
unknown keys, so the pack's latents stay usable by them and theirs by the pack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .plans import PartialSchedule, PixelStarts

PLAN_KEY = "img2img"


@dataclass(frozen=True)
class SamplingPlan:
    """All a sampler needs to run a latent's schedule exactly, and to continue it after another node."""

    schedule: PartialSchedule  # what is left to run
    clean: torch.Tensor  # the latent before noising (LATENT space)
    noise: torch.Tensor  # the initial noise, also for samplers that need it again (masks, ddim)
    seed: int
    batch_seed: str
    samples: torch.Tensor  # the LATENT ``samples`` this record rides with
    # Whether ``samples`` stands partway through a run (a stop at end_at_step): the next sampler continues from it.
    # Otherwise it is ``clean`` noised to the schedule's start (or ``clean`` itself), which the sampler remakes.
    partway: bool = False
    pixel_starts: PixelStarts | None = None  # a strength map's starts, which the rest of the run keeps


def with_plan(latent: dict, plan: SamplingPlan) -> dict:
    """A copy of ``latent`` whose samples are ``plan.samples``, carrying the plan."""
    return {**latent, "samples": plan.samples, PLAN_KEY: plan}


def without_plan(latent: dict) -> dict:
    return {key: value for key, value in latent.items() if key != PLAN_KEY}


def carried_plan(latent: dict) -> SamplingPlan | None:
    """The plan, if ``latent["samples"]`` is still the very tensor it was made for.

    A node between the two (a core latent op, batching, upscaling) returns new samples in a dict copied
    with the plan still in it: those samples are no longer what the plan noised, so they count as a clean
    latent and are noised afresh. Identity, not equality, decides: it is free, and no other tensor is it.
    """
    plan = latent.get(PLAN_KEY)
    if isinstance(plan, SamplingPlan) and plan.samples is latent["samples"]:
        return plan
    return None

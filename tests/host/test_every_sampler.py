"""Every sampler in ComfyUI's list, in every strength mode, against core ComfyUI 0.3.75.

For each sampler, strength mode and strength, with and without a noise mask, four paths give one latent:

- core: the node each mode claims to match (KSamplerAdvanced from the plan's start step for steps_x_denoise and
  a1111, KSampler's denoise for comfy; for snr, which no core node selects, SamplerCustomAdvanced with core's
  RandomNoise, CFGGuider and KSamplerSelect over the pack's sigmas);
- one node: Img2ImgKSampler;
- two nodes: Img2ImgNoiseAtStrength → Img2ImgKSampler;
- the composable parts: Img2ImgStrengthSigmas and Img2ImgNoise in core's SamplerCustomAdvanced.

The model is the test checkpoint with the stand-in denoiser for its UNet (conftest.py): all of ComfyUI's sampling
around the model call runs for real, and the whole matrix costs about a minute instead of hours.
test_exact_strength.py checks the same claims on the real UNet for a few samplers.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from stand_in_models import stand_in_denoiser

from host_servers import host_harness
from pack_under_test import import_comfyui

import_comfyui(host_harness.default_host().comfyui)  # ComfyUI's list of samplers parametrizes the tests
import comfy.samplers  # noqa: E402

SEED = 20261204
CFG = 5.0
STEPS = 6
TOLERANCE = 1e-4
MODES = ("steps_x_denoise", "a1111", "comfy", "snr")
STRENGTHS = (0.3, 0.6, 1.0)

pytestmark = pytest.mark.usefixtures("inference_mode")


def half_mask(latent: dict) -> dict:
    mask = torch.zeros(1, 1, *latent["samples"].shape[-2:])
    mask[..., :, latent["samples"].shape[-1] // 2 :] = 1.0
    return {**latent, "noise_mask": mask}


class Paths:
    """The four ways to one img2img latent, on one model and conditioning."""

    def __init__(self, runtime, model) -> None:
        self.runtime, self.model = runtime, model
        self.pack, self.core = runtime.pack, runtime.nodes
        from comfy_extras import nodes_custom_sampler

        self.custom = nodes_custom_sampler

    def one_node(self, latent, sampler, mode, denoise, **more):
        output = self.pack["Img2ImgKSampler"]().sample(
            self.model, self.runtime.positive, self.runtime.negative, latent, SEED, STEPS, CFG, sampler, "karras",
            denoise, mode, "comfy", **more,
        )  # fmt: skip
        return output["result"][0]["samples"], output["ui"]["img2img_plan"][0]

    def two_nodes(self, latent, sampler, mode, denoise):
        noised = self.pack["Img2ImgNoiseAtStrength"]().noise(
            self.model, latent, SEED, STEPS, denoise, sampler, "karras", mode, "comfy"
        )["result"][0]
        return self.one_node(noised, sampler, mode, denoise)[0]

    def sigmas(self, sampler, mode, denoise, end_at_step=10000):
        return self.pack["Img2ImgStrengthSigmas"]().sigmas(
            self.model, sampler, "karras", STEPS, denoise, mode, end_at_step
        )["result"]

    def custom_advanced(self, noise, sampler, sigmas, latent, model=None):
        guider = self.custom.CFGGuider.execute(model or self.model, self.runtime.positive, self.runtime.negative, CFG)[
            0
        ]
        return self.custom.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, latent)[0]["samples"]

    def composed(self, latent, sampler, mode, denoise):
        noise = self.pack["Img2ImgNoise"]().noise(SEED, "comfy")[0]
        sigmas = self.sigmas(sampler, mode, denoise)[0]
        return self.custom_advanced(noise, self.custom.KSamplerSelect.execute(sampler)[0], sigmas, latent)

    def core_anchor(self, latent, sampler, mode, denoise, plan):
        runtime = self.runtime
        if mode == "comfy":
            return self.core.KSampler().sample(
                self.model, SEED, STEPS, CFG, sampler, "karras", runtime.positive, runtime.negative, latent, denoise
            )[0]["samples"]
        if mode == "snr":
            noise = self.custom.RandomNoise.execute(SEED)[0]
            sigmas = self.sigmas(sampler, mode, denoise)[0]
            return self.custom_advanced(noise, self.custom.KSamplerSelect.execute(sampler)[0], sigmas, latent)
        return self.core.KSamplerAdvanced().sample(
            self.model, "enable", SEED, STEPS, CFG, sampler, "karras", runtime.positive, runtime.negative, latent,
            plan["start_index"], 10000, "disable",
        )[0]["samples"]  # fmt: skip


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("sampler", comfy.samplers.KSampler.SAMPLERS)
def test_every_path_equals_core_in_every_mode_with_and_without_a_mask(comfy_runtime, stand_in_model, clean, sampler):
    paths = Paths(comfy_runtime, stand_in_model)
    for latent in (clean, half_mask(clean)):
        for mode in MODES:
            for denoise in STRENGTHS:
                where = (mode, denoise, "noise_mask" in latent)
                ours, plan = paths.one_node(latent, sampler, mode, denoise)
                assert plan["model_steps"] > 0, where
                assert difference(ours, paths.core_anchor(latent, sampler, mode, denoise, plan)) <= TOLERANCE, where
                assert difference(paths.two_nodes(latent, sampler, mode, denoise), ours) <= TOLERANCE, where
                assert difference(paths.composed(latent, sampler, mode, denoise), ours) <= TOLERANCE, where


def test_the_matrix_sees_a_one_step_error(comfy_runtime, stand_in_model, clean):
    """The stand-in tells a start one step off, another seed and a mask's inpaint noise apart at the tolerance."""
    paths = Paths(comfy_runtime, stand_in_model)
    ours, plan = paths.one_node(clean, "euler", "steps_x_denoise", 0.6)
    off_by_one = comfy_runtime.nodes.KSamplerAdvanced().sample(
        stand_in_model, "enable", SEED, STEPS, CFG, "euler", "karras", comfy_runtime.positive, comfy_runtime.negative,
        clean, plan["start_index"] + 1, 10000, "disable",
    )[0]["samples"]  # fmt: skip
    assert difference(ours, off_by_one) > 100 * TOLERANCE
    other_seed = comfy_runtime.pack["Img2ImgKSampler"]().sample(
        stand_in_model, comfy_runtime.positive, comfy_runtime.negative, clean, SEED + 1, STEPS, CFG, "euler",
        "karras", 0.6, "steps_x_denoise", "comfy",
    )["result"][0]["samples"]  # fmt: skip
    assert difference(ours, other_seed) > 100 * TOLERANCE
    masked = half_mask(clean)
    euler, _ = paths.one_node(masked, "euler", "steps_x_denoise", 0.6)
    ddim, _ = paths.one_node(masked, "ddim", "steps_x_denoise", 0.6)  # euler, with seed + 1 noise for the kept half
    assert difference(euler, ddim) > 100 * TOLERANCE


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "ddpm"])
def test_a_stop_hands_off_to_a_second_model_in_core_parts_as_in_the_packs_nodes(
    comfy_runtime, stand_in_model, clean, sampler
):
    """Img2ImgStrengthSigmas' sigmas and rest_sigmas in two SamplerCustomAdvanced (the second with Img2ImgNoise's
    add_noise off, which keeps the seed for the fresh noise) equal two Img2ImgKSamplers stopped and continued."""
    second = stand_in_model.clone()
    second.set_model_unet_function_wrapper(lambda apply, args: 0.9 * stand_in_denoiser(apply, args))
    paths, ksampler = Paths(comfy_runtime, stand_in_model), comfy_runtime.pack["Img2ImgKSampler"]()
    conditioning = (comfy_runtime.positive, comfy_runtime.negative)
    select = paths.custom.KSamplerSelect.execute(sampler)[0]
    noise, no_noise = (comfy_runtime.pack["Img2ImgNoise"]().noise(SEED, "comfy", add)[0] for add in (True, False))
    for mode in MODES:
        plan = comfy_runtime.pack["Img2ImgStrengthSigmas"]().sigmas(stand_in_model, sampler, "karras", STEPS, 0.6, mode)
        stop = plan["ui"]["img2img_plan"][0]["first_step"] + 2
        stopped = ksampler.sample(
            stand_in_model, *conditioning, clean, SEED, STEPS, CFG, sampler, "karras", 0.6, mode, "comfy",
            end_at_step=stop,
        )["result"][0]  # fmt: skip
        continued = ksampler.sample(
            second, *conditioning, stopped, SEED, STEPS, CFG, sampler, "karras", 0.6, mode, "comfy"
        )
        sigmas, rest = paths.sigmas(sampler, mode, 0.6, end_at_step=stop)
        core_first = paths.custom_advanced(noise, select, sigmas, clean)
        assert difference(core_first, stopped["samples"]) <= TOLERANCE, mode
        core_rest = paths.custom_advanced(no_noise, select, rest, {"samples": core_first}, model=second)
        assert len(rest) >= 2 and difference(core_rest, continued["result"][0]["samples"]) <= TOLERANCE, mode


def draws_fresh_noise(sampler: str) -> bool:
    function = comfy.samplers.sampler_object(sampler).sampler_function
    return "noise_sampler" in inspect.signature(function).parameters


def sample(runtime, model, latent, sampler, seed=SEED, batch_seed="comfy", denoise=0.6):
    return runtime.pack["Img2ImgKSampler"]().sample(
        model, runtime.positive, runtime.negative, latent, seed, STEPS, CFG, sampler, "karras", denoise,
        "steps_x_denoise", batch_seed,
    )["result"][0]["samples"]  # fmt: skip


@pytest.mark.parametrize("sampler", [name for name in comfy.samplers.KSampler.SAMPLERS if draws_fresh_noise(name)])
def test_per_image_and_shared_fresh_noise_on_every_sampler_that_draws_it(comfy_runtime, stand_in_model, clean, sampler):
    """per_image: image i equals a single-image run with seed + i (so image 0 draws exactly as core's own default,
    step-by-step or Brownian tree); shared: every image equals the single run."""
    batch = {"samples": clean["samples"].repeat(3, 1, 1, 1)}
    per_image = sample(comfy_runtime, stand_in_model, batch, sampler, batch_seed="per_image")
    shared = sample(comfy_runtime, stand_in_model, batch, sampler, batch_seed="shared")
    for i in range(3):
        single = sample(comfy_runtime, stand_in_model, clean, sampler, seed=SEED + i)[0]
        assert difference(per_image[i], single) <= TOLERANCE, i
        assert difference(shared[i], sample(comfy_runtime, stand_in_model, clean, sampler)[0]) <= TOLERANCE, i
    assert difference(per_image[1], per_image[0]) > 100 * TOLERANCE


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde"])
def test_loopback_equals_its_passes_chained_by_hand(comfy_runtime, stand_in_model, clean, sampler):
    output = comfy_runtime.pack["Img2ImgLoopback"]().loop(
        stand_in_model, comfy_runtime.positive, comfy_runtime.negative, clean, SEED, STEPS, CFG, sampler, "karras",
        0.6, "steps_x_denoise", "comfy", 3, 0.8,
    )  # fmt: skip
    latent = clean
    for index, typed in enumerate((0.6, 0.48, 0.384)):  # what a user types for each pass
        latent = {"samples": sample(comfy_runtime, stand_in_model, latent, sampler, seed=SEED + index, denoise=typed)}
    assert difference(output["result"][0]["samples"], latent["samples"]) <= TOLERANCE
    assert [plan["denoise"] for plan in output["ui"]["img2img_plan"]] == [0.6, 0.48, 0.384]
    assert difference(latent["samples"], clean["samples"]) > 0.1

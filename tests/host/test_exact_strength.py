"""The pack's strength modes equal their anchors in core ComfyUI 0.3.75, on the real test checkpoint.

Each test runs the pack's node and the core node it claims to match on the same model, latent,
seed and settings, and compares the output latents. The sampler × scheduler matrix runs on the stand-in
denoiser (conftest.py) in every cell and on the real UNet in a few; test_every_sampler.py covers every sampler
of ComfyUI's list in every mode.
"""

from __future__ import annotations

import pytest
import torch

SAMPLERS = ("euler", "euler_ancestral", "heun", "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_sde", "ddim")
SCHEDULERS = ("normal", "karras", "exponential", "simple", "sgm_uniform", "ddim_uniform", "beta")
SCHEDULERS += ("linear_quadratic", "kl_optimal")
STRENGTHS = (0.1, 0.3, 0.5, 0.75, 1.0)
TOLERANCE = 1e-4
SEED = 20261123
CFG = 7.0
# The sampler x scheduler matrix checks sigmas and steps: every cell on the stand-in denoiser, a few on the UNet.
MATRIX = [(sampler, scheduler, "stand_in") for sampler in SAMPLERS for scheduler in SCHEDULERS] + [
    (sampler, scheduler, "unet") for sampler in ("euler", "dpm_2", "dpmpp_2m_sde") for scheduler in ("normal", "karras")
]


@pytest.fixture(scope="module")
def runtime(comfy_runtime):
    return comfy_runtime


# ComfyUI's executor runs every node under inference mode; so do these calls.
pytestmark = pytest.mark.usefixtures("inference_mode")


def pack_sample(
    runtime, latent, sampler, scheduler, steps, denoise, mode, model=None, seed=SEED, batch_seed="comfy", cfg=CFG
):
    node = runtime.pack["Img2ImgKSampler"]()
    output = node.sample(
        model or runtime.model, runtime.positive, runtime.negative, latent, seed, steps, cfg,
        sampler, scheduler, denoise, mode, batch_seed,
    )  # fmt: skip
    return output["result"][0], output["ui"]["img2img_plan"][0]


def max_difference(a: dict, b: dict) -> float:
    return float((a["samples"] - b["samples"]).abs().max())


@pytest.fixture
def matrix_model(runtime, stand_in_model, request):
    return stand_in_model if request.param == "stand_in" else runtime.model


@pytest.mark.parametrize(("sampler", "scheduler", "matrix_model"), MATRIX, indirect=["matrix_model"])
def test_steps_x_denoise_equals_ksampler_advanced(runtime, clean, sampler, scheduler, matrix_model):
    steps = 10
    advanced = runtime.nodes.KSamplerAdvanced()
    for denoise in STRENGTHS:
        model_steps = min(int(steps * denoise), steps)
        ours, plan = pack_sample(runtime, clean, sampler, scheduler, steps, denoise, "steps_x_denoise", matrix_model)
        (core,) = advanced.sample(
            matrix_model, "enable", SEED, steps, CFG, sampler, scheduler, runtime.positive, runtime.negative,
            clean, steps - model_steps, steps, "disable",
        )  # fmt: skip
        assert plan["start_index"] == steps - model_steps
        assert max_difference(ours, core) <= TOLERANCE, (sampler, scheduler, denoise)


@pytest.mark.parametrize(("sampler", "scheduler", "matrix_model"), MATRIX, indirect=["matrix_model"])
def test_comfy_mode_equals_core_ksampler(runtime, clean, sampler, scheduler, matrix_model):
    steps = 4
    ksampler = runtime.nodes.KSampler()
    for denoise in STRENGTHS:
        ours, plan = pack_sample(runtime, clean, sampler, scheduler, steps, denoise, "comfy", matrix_model)
        (core,) = ksampler.sample(
            matrix_model, SEED, steps, CFG, sampler, scheduler, runtime.positive, runtime.negative, clean, denoise
        )
        assert plan["model_steps"] == steps
        assert max_difference(ours, core) <= TOLERANCE, (sampler, scheduler, denoise)


@pytest.mark.parametrize("flow", [False, True], ids=["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde", "ddim"])
def test_noise_at_strength_then_ksampler_equals_ksampler_alone(runtime, clean, sampler, flow):
    """Also with a noise mask, where ddim re-noises the kept region with seed + 1 noise (KSAMPLER's inpaint option:
    the pack's former copy of KSAMPLER.sample dropped it, 27 % of the latent's range off)."""
    model = runtime.flow_model if flow else runtime.model
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 3:] = 1.0
    for latent in (clean, {**clean, "noise_mask": mask}):
        for denoise in (0.5, 1.0):
            noised = runtime.pack["Img2ImgNoiseAtStrength"]().noise(
                model, latent, SEED, 10, denoise, sampler, "normal", "steps_x_denoise", "comfy"
            )["result"][0]
            continued, _ = pack_sample(runtime, noised, sampler, "normal", 10, denoise, "steps_x_denoise", model=model)
            alone, _ = pack_sample(runtime, latent, sampler, "normal", 10, denoise, "steps_x_denoise", model=model)
            assert max_difference(continued, alone) <= TOLERANCE, (denoise, "noise_mask" in latent)


def test_flow_model_equals_core_and_is_not_shrunk(runtime, clean):
    """A flow model's noised latent is σ·ε + (1 − σ)·x: applying that rule twice would shrink it."""
    ours, plan = pack_sample(runtime, clean, "euler", "simple", 10, 0.5, "steps_x_denoise", model=runtime.flow_model)
    (core,) = runtime.nodes.KSamplerAdvanced().sample(
        runtime.flow_model, "enable", SEED, 10, CFG, "euler", "simple", runtime.positive, runtime.negative,
        clean, 5, 10, "disable",
    )  # fmt: skip
    assert max_difference(ours, core) <= TOLERANCE
    assert 0 < plan["sigma_start"] < 1


def test_noise_mask_keeps_the_unmasked_area(runtime, clean):
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, 4:] = 1.0
    latent = {**clean, "noise_mask": mask}
    ours, _ = pack_sample(runtime, latent, "euler", "normal", 10, 0.6, "steps_x_denoise")
    (core,) = runtime.nodes.KSamplerAdvanced().sample(
        runtime.model, "enable", SEED, 10, CFG, "euler", "normal", runtime.positive, runtime.negative,
        latent, 4, 10, "disable",
    )  # fmt: skip
    assert max_difference(ours, core) <= TOLERANCE
    unmasked = (ours["samples"] - clean["samples"])[..., :, :4].abs().max()
    assert float(unmasked) <= 1e-4 < float((ours["samples"] - clean["samples"])[..., :, 4:].abs().max())


def counting(model, calls: list):
    counted = model.clone()

    def unet(apply_model, args):
        calls.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    counted.set_model_unet_function_wrapper(unet)
    return counted


@pytest.mark.parametrize(
    ("sampler", "evaluations_per_step", "last_step_evaluations"),
    [("euler", 1, 1), ("euler_ancestral", 1, 1), ("heun", 2, 1), ("dpm_2", 2, 1), ("lms", 1, 1),
     ("dpmpp_2m", 1, 1), ("dpmpp_2m_sde", 1, 1), ("dpmpp_sde", 2, 1), ("ddim", 1, 1)],
)  # fmt: skip
def test_the_model_is_called_once_per_evaluation_of_the_steps_that_run(
    runtime, clean, sampler, evaluations_per_step, last_step_evaluations
):
    calls: list[int] = []
    model = counting(runtime.model, calls)
    node = runtime.pack["Img2ImgKSampler"]()
    node.sample(model, runtime.positive, runtime.negative, clean, SEED, 10, 1.0, sampler, "karras", 0.3,
                "steps_x_denoise", "comfy")  # fmt: skip
    assert len(calls) == 2 * evaluations_per_step + last_step_evaluations


@pytest.mark.parametrize("mode", ["steps_x_denoise", "a1111", "comfy"])
def test_zero_strength_returns_the_latent_unchanged_without_a_model_call(runtime, clean, mode):
    calls: list[int] = []
    ours, plan = pack_sample(runtime, clean, "euler", "normal", 20, 0.0, mode, model=counting(runtime.model, calls))
    assert torch.equal(ours["samples"], clean["samples"]) and calls == []
    assert plan["model_steps"] == 0
    noised = runtime.pack["Img2ImgNoiseAtStrength"]().noise(
        runtime.model, clean, 1, 20, 0.0, "euler", "normal", mode, "comfy"
    )
    assert torch.equal(noised["result"][0]["samples"], clean["samples"])
    assert "no step ran" in noised["ui"]["text"][0]


def test_per_image_batch_seed_equals_single_runs(runtime, clean):
    batch = {"samples": clean["samples"].repeat(4, 1, 1, 1)}
    ours, _ = pack_sample(
        runtime, batch, "euler_ancestral", "karras", 8, 0.6, "steps_x_denoise", batch_seed="per_image"
    )
    for i in range(4):
        single, _ = pack_sample(runtime, clean, "euler_ancestral", "karras", 8, 0.6, "steps_x_denoise", seed=SEED + i)
        assert float((ours["samples"][i] - single["samples"][0]).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpm_2_ancestral"])
def test_shared_batch_seed_gives_identical_frames_identical_outputs(runtime, clean, sampler):
    """Frames of a clip: the same noise for every image, at the start and at every ancestral or SDE step."""
    frames = {"samples": clean["samples"].repeat(3, 1, 1, 1)}
    ours, _ = pack_sample(runtime, frames, sampler, "karras", 8, 0.6, "steps_x_denoise", batch_seed="shared")
    single, _ = pack_sample(runtime, clean, sampler, "karras", 8, 0.6, "steps_x_denoise")
    # Every frame is the single run, to float32 rounding: identical rows of one batch are not always identical
    # to the last bit, since CPU kernels may block the rows of a batch differently (seen on an AVX2 EPYC).
    for i in range(3):
        assert float((ours["samples"][i] - single["samples"][0]).abs().max()) <= TOLERANCE
    per_image, _ = pack_sample(runtime, frames, sampler, "karras", 8, 0.6, "steps_x_denoise", batch_seed="per_image")
    assert float((per_image["samples"][1] - per_image["samples"][0]).abs().max()) > 0.1


def test_a_batch_seed_is_refused_for_a_sampler_that_draws_noise_it_cannot_be_given(runtime):
    """dpm_adaptive with eta > 0 (core's SamplerDPMAdaptative) draws fresh noise but takes no noise sampler."""
    import comfy.samplers

    noisy = comfy.samplers.ksampler("dpm_adaptive", {"eta": 0.5})
    with pytest.raises(ValueError, match=r"batch_seed 'per_image'.*eta"):
        runtime.pack["Img2ImgBatchSeedSampler"]().sampler(noisy, "per_image")
    quiet = comfy.samplers.ksampler("dpm_adaptive", {"eta": 0.0})
    assert runtime.pack["Img2ImgBatchSeedSampler"]().sampler(quiet, "per_image")[0].sampler_function is not None


@pytest.mark.parametrize(
    ("denoise", "steps", "cfg", "needle"),
    [(float("nan"), 20, 7.0, "denoise"), (-0.1, 20, 7.0, "denoise"), (1.5, 20, 7.0, "denoise"),
     (0.5, 0, 7.0, "steps"), (0.5, 20, float("nan"), "cfg")],
)  # fmt: skip
def test_bad_numbers_raise_a_value_error_naming_the_input(runtime, clean, denoise, steps, cfg, needle):
    node = runtime.pack["Img2ImgKSampler"]()
    with pytest.raises(ValueError, match=needle):
        node.sample(runtime.model, runtime.positive, runtime.negative, clean, SEED, steps, cfg, "euler", "normal",
                    denoise, "steps_x_denoise", "comfy")  # fmt: skip


def test_a_latent_of_another_channel_count_is_refused(runtime):
    latent = {"samples": torch.randn(1, 16, 8, 8)}
    with pytest.raises(ValueError, match=r"latent_image has shape .*16 channels"):
        pack_sample(runtime, latent, "euler", "normal", 10, 0.5, "steps_x_denoise")


def test_a_scheduler_without_finite_sigmas_is_refused_naming_it(runtime, clean):
    """Core's kl_optimal divides by steps - 1: for one step its ladder is NaN, which would sample NaN silently."""
    with pytest.raises(ValueError, match=r"scheduler 'kl_optimal' gives no finite noise levels for 1 steps"):
        pack_sample(runtime, clean, "euler", "kl_optimal", 1, 1.0, "steps_x_denoise")

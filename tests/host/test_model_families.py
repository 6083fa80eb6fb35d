"""Every sampling family of ComfyUI 0.3.75, a handoff between two models, and the snr strength mode.

The test checkpoint is patched by core's own ModelSampling* nodes into each family (the UNet stays the
tiny random one: what differs between families is how sigmas, noise and the model's output combine, and
that is what the pack must get right). On each, the pack's modes equal the core nodes they claim to
match; Img2ImgKSampler stopped at end_at_step and continued by a second one equals core's
KSamplerAdvanced pair; and the snr mode starts every family at the same signal-to-noise ratio.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

SEED = 20261201
CFG = 5.0
STEPS = 6
TOLERANCE = 1e-4  # on latents; measured: bit-identical to core on every family
# A deterministic, a multistep and an SDE sampler (Brownian noise) of ComfyUI's, and one more.
SAMPLERS = ("euler", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc")


def patched(runtime, family: str):
    from comfy_extras import nodes_model_advanced as advanced

    model = runtime.model
    patches = {
        "eps": lambda: model,
        "eps_zsnr": lambda: advanced.ModelSamplingDiscrete().patch(model, "eps", True)[0],
        "v_prediction": lambda: advanced.ModelSamplingDiscrete().patch(model, "v_prediction", False)[0],
        "v_prediction_zsnr": lambda: advanced.ModelSamplingDiscrete().patch(model, "v_prediction", True)[0],
        "lcm": lambda: advanced.ModelSamplingDiscrete().patch(model, "lcm", False)[0],
        "sd3": lambda: advanced.ModelSamplingSD3().patch(model, 3.0)[0],
        "flux": lambda: advanced.ModelSamplingFlux().patch(model, 1.15, 0.5, 64, 64)[0],
        "auraflow": lambda: advanced.ModelSamplingAuraFlow().patch_aura(model, 1.73)[0],
        "edm": lambda: advanced.ModelSamplingContinuousEDM().patch(model, "edm", 80.0, 0.002)[0],
        "edm_v_prediction": lambda: advanced.ModelSamplingContinuousEDM().patch(model, "v_prediction", 120.0, 0.002)[0],
        "continuous_v": lambda: advanced.ModelSamplingContinuousV().patch(model, "v_prediction", 500.0, 0.03)[0],
    }
    return patches[family]()


FAMILIES = (
    "eps",
    "eps_zsnr",
    "v_prediction",
    "v_prediction_zsnr",
    "lcm",
    "sd3",
    "flux",
    "auraflow",
    "edm",
    "edm_v_prediction",
    "continuous_v",
)
FLOW_FAMILIES = ("sd3", "flux", "auraflow")

pytestmark = pytest.mark.usefixtures("inference_mode")


@pytest.fixture(scope="module")
def runtime(comfy_runtime):
    return comfy_runtime


def sampler_node(runtime, model, latent, sampler, denoise, mode="steps_x_denoise", **optional):
    output = runtime.pack["Img2ImgKSampler"]().sample(
        model, runtime.positive, runtime.negative, latent, SEED, STEPS, CFG, sampler, "normal", denoise, mode,
        "comfy", **optional,
    )  # fmt: skip
    return output["result"][0], output["ui"]


def advanced(runtime, model, add_noise, latent, sampler, start, end, leftover="disable"):
    return runtime.nodes.KSamplerAdvanced().sample(
        model, add_noise, SEED, STEPS, CFG, sampler, "normal", runtime.positive, runtime.negative, latent,
        start, end, leftover,
    )[0]  # fmt: skip


def difference(a: dict, b: dict) -> float:
    return float((a["samples"] - b["samples"]).abs().max())


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_steps_x_denoise_and_comfy_modes_equal_core_on_every_family(runtime, clean, family, sampler):
    model = patched(runtime, family)
    for denoise in (0.25, 0.5, 1.0):
        start = STEPS - int(STEPS * denoise)
        ours, _ = sampler_node(runtime, model, clean, sampler, denoise)
        core = advanced(runtime, model, "enable", clean, sampler, start, STEPS)
        assert difference(ours, core) <= TOLERANCE, ("steps_x_denoise", denoise)
        ours, _ = sampler_node(runtime, model, clean, sampler, denoise, "comfy")
        (core,) = runtime.nodes.KSampler().sample(
            model, SEED, STEPS, CFG, sampler, "normal", runtime.positive, runtime.negative, clean, denoise
        )
        assert difference(ours, core) <= TOLERANCE, ("comfy", denoise)


def other_model(model):
    """A second model of the same latent format that denoises differently (a stand-in for a refiner)."""
    refiner = model.clone()
    refiner.set_model_unet_function_wrapper(
        lambda apply, args: 0.5 * apply(args["input"], args["timestep"], **args["c"])
    )
    return refiner


@pytest.mark.parametrize("family", ["eps", "sd3"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_stop_and_a_second_model_equal_cores_ksampler_advanced_pair(runtime, clean, family, sampler):
    base = patched(runtime, family)
    refiner = other_model(base)
    stopped, ui = sampler_node(runtime, base, clean, sampler, 0.8, end_at_step=4)
    finished, _ = sampler_node(runtime, refiner, stopped, sampler, 0.8)
    core_stopped = advanced(runtime, base, "enable", clean, sampler, 2, 4, "enable")
    core_finished = advanced(runtime, refiner, "disable", core_stopped, sampler, 4, 10000)
    assert difference(stopped, core_stopped) <= TOLERANCE
    assert difference(finished, core_finished) <= TOLERANCE
    assert "steps 3–4 of 6" in ui["text"][0] and "stops with leftover noise" in ui["text"][0]
    assert ui["img2img_plan"][0]["sigma_end"] > 0


def test_with_one_model_and_euler_a_stop_changes_nothing(runtime, clean):
    stopped, _ = sampler_node(runtime, runtime.model, clean, "euler", 0.8, end_at_step=4)
    continued, ui = sampler_node(runtime, runtime.model, stopped, "euler", 0.8)
    whole, _ = sampler_node(runtime, runtime.model, clean, "euler", 0.8)
    assert difference(continued, whole) <= 1e-4
    assert difference(stopped, whole) > 1.0  # the stopped latent really carries leftover noise
    assert "continued from step 5" in ui["text"][0]


def test_end_at_step_before_the_first_step_is_refused(runtime, clean):
    with pytest.raises(ValueError, match="end_at_step"):
        sampler_node(runtime, runtime.model, clean, "euler", 0.5, end_at_step=2)


def start_snr(runtime, model, denoise: float) -> float:
    """The SNR at the plan's first sigma, by the family's noising rule (not by the pack's code)."""
    import comfy.model_sampling

    plan = runtime.pack["Img2ImgNoiseAtStrength"]().noise(
        model, {"samples": torch.zeros(1, 4, 8, 8)}, SEED, STEPS, denoise, "euler", "normal", "snr", "comfy"
    )["ui"]["img2img_plan"][0]
    sampling = model.get_model_object("model_sampling")
    sigma = plan["sigma_start"]
    if isinstance(sampling, comfy.model_sampling.CONST):
        return ((1 - sigma) / sigma) ** 2
    return (sampling.sigma_data / sigma) ** 2


def test_the_snr_mode_starts_every_family_at_one_snr(runtime):
    for denoise in (0.1, 0.3, 0.5, 0.7, 0.9):
        expected = ((1 - denoise) / denoise) ** 2
        for family in FAMILIES:
            snr = start_snr(runtime, patched(runtime, family), denoise)
            assert math.isclose(snr, expected, rel_tol=1e-6), (family, denoise, snr, expected)


@pytest.mark.parametrize("family", ["eps", "sd3", "edm"])
def test_the_snr_mode_falls_with_strength_passes_0_and_starts_1_from_pure_noise(runtime, clean, family):
    model = patched(runtime, family)
    snrs = [start_snr(runtime, model, denoise) for denoise in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)]
    assert all(a > b for a, b in itertools.pairwise(snrs)), snrs
    passed, ui = sampler_node(runtime, model, clean, "euler", 0.0, "snr")
    assert torch.equal(passed["samples"], clean["samples"]) and ui["img2img_plan"][0]["model_steps"] == 0
    ours, ui = sampler_node(runtime, model, clean, "euler", 1.0, "snr")
    sampling = model.get_model_object("model_sampling")
    assert ui["img2img_plan"][0]["sigma_start"] == pytest.approx(float(sampling.sigma_max), rel=1e-6)
    (core,) = runtime.nodes.KSampler().sample(
        model, SEED, STEPS, CFG, "euler", "normal", runtime.positive, runtime.negative, clean, 1.0
    )
    # Pure noise and N steps: txt2img's start. The ladder below σ_max comes from a bisection on the model's
    # sigma(t) (FromSigma), equal to core's to float32 rounding, so the latents (a few hundred here) agree to
    # that rounding carried through the steps: within 2e-6 of their size on the Intel machines the suite ran on
    # first, 2.7e-6 on an AVX2 EPYC (its kernels round differently); 1e-5 leaves room for both.
    assert difference(ours, core) <= max(TOLERANCE, 1e-5 * float(core["samples"].abs().max()))

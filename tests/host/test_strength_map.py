"""Per-pixel strength (Img2ImgKSampler's and Img2ImgNoiseAtStrength's strength_map) against core references.

A uniform map of m is the plain node at denoise × m; a map of 0s and 1s is core's SetLatentNoiseMask with
KSamplerAdvanced; a grey map holds each pixel until its own strength's start, in every mode.
"""

from __future__ import annotations

import pytest
import torch

SEED = 20261201
CFG = 6.0
TOLERANCE = 1e-4
MODES = ("steps_x_denoise", "a1111", "comfy", "snr")
SAMPLERS = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc")

pytestmark = pytest.mark.usefixtures("inference_mode")


def sample(runtime, latent, *, denoise, mode="steps_x_denoise", sampler="euler", steps=10, strength_map=None, **more):
    output = runtime.pack["Img2ImgKSampler"]().sample(
        runtime.model, runtime.positive, runtime.negative, latent, SEED, steps, CFG, sampler, "normal",
        denoise, mode, "comfy", strength_map=strength_map, **more,
    )  # fmt: skip
    return output["result"][0]["samples"], output["ui"]


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("mode", MODES)
def test_a_uniform_map_equals_the_plain_node_at_denoise_times_its_value(comfy_runtime, clean, mode, sampler):
    for denoise, value in ((0.8, 0.5), (1.0, 0.25), (0.6, 1.0)):
        plain, _ = sample(comfy_runtime, clean, denoise=denoise * value, mode=mode, sampler=sampler)
        mapped, ui = sample(
            comfy_runtime, clean, denoise=denoise, mode=mode, sampler=sampler, strength_map=torch.full((64, 64), value)
        )
        assert difference(mapped, plain) <= TOLERANCE, (denoise, value)
        assert ui["img2img_plan"][0]["strength_map"] == [denoise * value, denoise * value]


@pytest.mark.parametrize("sampler", ("euler", "dpmpp_2m_sde", "uni_pc"))
def test_a_map_of_zeros_and_ones_equals_core_set_latent_noise_mask_with_ksampler_advanced(
    comfy_runtime, clean, sampler
):
    halves = torch.zeros(1, 64, 64)
    halves[..., 24:] = 1.0
    ours, ui = sample(comfy_runtime, clean, denoise=0.6, sampler=sampler, strength_map=halves)
    (masked,) = comfy_runtime.nodes.SetLatentNoiseMask().set_mask(clean, halves)
    (core,) = comfy_runtime.nodes.KSamplerAdvanced().sample(
        comfy_runtime.model, "enable", SEED, 10, CFG, sampler, "normal", comfy_runtime.positive,
        comfy_runtime.negative, masked, 4, 10, "disable",
    )  # fmt: skip
    assert difference(ours, core["samples"]) <= TOLERANCE
    assert difference(ours[..., 3:], clean["samples"][..., 3:]) > 0.1
    if sampler != "uni_pc":  # UniPC's corrector moves held pixels slightly, in core too: Img2ImgVAEDecode keeps them
        assert difference(ours[..., :3], clean["samples"][..., :3]) <= TOLERANCE
    assert ui["text"][0].startswith("strength map 0–0.6: steps 5–10 of 10 for the strongest pixels")


@pytest.mark.parametrize("mode", MODES)
def test_each_pixel_starts_where_its_own_strength_starts_the_whole_image(comfy_runtime, clean, mode):
    """The sampler's mask at each sigma of the run: a pixel of strength s is held until the first sigma at or
    below the one where the plain node at s starts (on the same ladder in steps_x_denoise and a1111, so there
    exactly at the plain node's first step), and denoised from there on."""
    from comfyui_img2img.nodes import plans

    columns = [0.0, 0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0]
    ramp = torch.tensor(columns).repeat_interleave(8).expand(64, 64)
    denoise, steps = 0.9, 10
    model_sampling = comfy_runtime.model.get_model_object("model_sampling")
    settings = plans.ScheduleSettings(model_sampling, "euler", "normal", steps, denoise, mode)
    run, starts = plans.schedule_for_map(settings, ramp, clean, clean["samples"])
    mask_at = plans.with_pixel_starts(comfy_runtime.model, starts).model_options["denoise_mask_function"]
    sampler_mask = starts.mask.expand(-1, 4, -1, -1)
    denoised = torch.stack([mask_at(sigma.reshape(1), sampler_mask, {}) for sigma in run.sigmas[:-1]])
    assert run.plan.denoise == denoise and run.strength_range == (0.0, denoise)
    for column, value in enumerate(columns):
        plain = plans.schedule_for_strength(settings.at_strength(denoise * value))
        joined = denoised[:, 0, :, :, column].flatten(1)
        assert bool((joined == joined[:, :1]).all())  # a column joins as one
        # Within float32 rounding: two ladders can meet at one rung (0.35 here, in comfy mode).
        start = float(plain.sigmas[0]) if plain.model_steps else 0.0
        expected = [float(sigma) * (1 - 1e-6) <= start for sigma in run.sigmas[:-1]]
        assert joined[:, 0].tolist() == [float(e) for e in expected], (column, value)
        if mode in ("steps_x_denoise", "a1111") and plain.model_steps:
            assert expected.index(True) == plain.first_step - run.first_step


def test_noise_at_strength_with_a_map_then_ksampler_equals_ksampler_with_the_map(comfy_runtime, clean):
    ramp = torch.linspace(0, 1, 64).expand(64, 64)
    noised = comfy_runtime.pack["Img2ImgNoiseAtStrength"]().noise(
        comfy_runtime.model, clean, SEED, 10, 0.8, "dpmpp_2m_sde", "normal", "comfy", "comfy", strength_map=ramp
    )["result"][0]
    continued, ui = sample(comfy_runtime, noised, denoise=0.8, mode="comfy", sampler="dpmpp_2m_sde")
    alone, _ = sample(comfy_runtime, clean, denoise=0.8, mode="comfy", sampler="dpmpp_2m_sde", strength_map=ramp)
    assert difference(continued, alone) <= TOLERANCE
    # The ramp resized to the 8×8 latent spans 0.056–0.944 of the map: comfy mode stretches to 13 steps.
    assert ui["text"][0].startswith("strength map 0.0444444–0.755556: steps 4–13 of 13 for the strongest pixels")
    plain, _ = sample(comfy_runtime, clean, denoise=0.8, mode="comfy", sampler="dpmpp_2m_sde")
    assert difference(alone, plain) > 0.1
    with pytest.raises(ValueError, match="strength_map"):
        sample(comfy_runtime, noised, denoise=0.8, strength_map=ramp)


@pytest.mark.parametrize(
    ("strength_map", "needle"),
    [
        (torch.full((8, 8), 1.5), "from 0 to 1"),
        (torch.full((8, 8), float("nan")), "from 0 to 1"),
        (torch.ones(1, 1, 8, 8), r"MASK \(\[height, width\]"),
    ],
)
def test_a_bad_map_is_refused_naming_strength_map(comfy_runtime, clean, strength_map, needle):
    with pytest.raises(ValueError, match="strength_map") as raised:
        sample(comfy_runtime, clean, denoise=0.5, strength_map=strength_map)
    assert raised.match(needle)


@pytest.mark.parametrize("scheduler", ("normal", "simple"))
def test_grey_levels_start_within_one_step_of_differential_diffusion_in_comfy_mode(comfy_runtime, scheduler):
    """No mode can equal DifferentialDiffusion on grey levels: it starts a pixel of map value v where the
    model's timestep falls to v of the run's first timestep (linear in t, whatever N and the scheduler),
    while a mode starts it where the plan of its own strength denoise × v starts (a count of steps on that
    plan's ladder); and at a step at the model's smallest sigma it denoises every pixel, those of
    value 0 too, which a mode keeps. On core KSampler's ladder (comfy mode) with a scheduler spaced evenly in
    timesteps the two start every level within one step of each other (karras: up to 7 steps of 20 apart)."""
    from comfyui_img2img.nodes import plans

    model_sampling = comfy_runtime.model.get_model_object("model_sampling")
    levels = torch.arange(256, dtype=torch.float32) / 255
    for denoise in (0.5, 0.9, 1.0):
        settings = plans.ScheduleSettings(model_sampling, "euler", scheduler, 20, denoise, "comfy")
        latent = {"samples": torch.zeros(1, 4, 16, 16)}
        run, starts = plans.schedule_for_map(settings, levels.reshape(1, 16, 16), latent, latent["samples"])
        ours = [plans.denoising_at(starts.sigmas, sigma).flatten() for sigma in run.sigmas[:-1]]
        timestep = model_sampling.timestep
        first, last = timestep(run.sigmas[0]), timestep(torch.maximum(run.sigmas[-1], model_sampling.sigma_min))
        theirs = [(levels >= (timestep(sigma) - last) / (first - last)).float() for sigma in run.sigmas[:-1]]
        ours_start, theirs_start = ((1 - torch.stack(steps)).sum(0) for steps in (ours, theirs))  # steps held
        assert int((ours_start - theirs_start).abs().max()) <= 1, (denoise, scheduler)
        assert int(ours_start[0]) == len(run.sigmas) - 1  # level 0 is kept
        if float(run.sigmas[-2]) <= float(model_sampling.sigma_min) * (1 + 1e-6):  # DD denoises it at sigma_min
            assert int(theirs_start[0]) == len(run.sigmas) - 2

"""Img2ImgTiledModel: every model call computed over overlapping tiles and merged.

With stand-in denoisers at ComfyUI's own model_function_wrapper (the tiled model chains them, so each tile goes
through them): a pointwise one (output at a pixel from x there, sigma and the prompt) must come out as untiled
wherever the weights sum to 1, over any latent size and tile setting and under every kind of sampler node; a
3×3 convolution must come out as untiled once the discarded margin covers its reach. One tile is the model's
own call to the bit, on the real UNet.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stand_in_models import convolution_denoiser, pointwise_denoiser

SEED = 20261207
CFG = 6.0
STEPS = 6
TOLERANCE = 1e-6  # float32 weights that sum to 1 within a few ulps, on outputs of order 1
# A whole run: those few ulps, times guidance at cfg 6, over 6 to 12 steps (8.8e-6 measured on the CPU); a tile
# merged wrongly (weights that do not sum to 1, a window off by one) differs by 1e-2 and more.
RUN_TOLERANCE = 3e-5
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

pytestmark = pytest.mark.usefixtures("inference_mode")


def with_wrapper(model, wrapper):
    patched = model.clone()
    patched.set_model_unet_function_wrapper(wrapper)
    return patched


def tiled(runtime, model, tile_size=128, overlap=32, tile_batch=0):
    return runtime.pack["Img2ImgTiledModel"]().patch(model, tile_size, overlap, tile_batch)[0]


def model_call(model, x: torch.Tensor, sigma: float, c: dict) -> torch.Tensor:
    """One model call as core's _calc_cond_batch makes it: through the model function if there is one."""
    timestep = torch.full((x.shape[0],), sigma)
    c = {"transformer_options": {"cond_or_uncond": [0] * x.shape[0]}, **c}
    args = {"input": x, "timestep": timestep, "c": c, "cond_or_uncond": [0] * x.shape[0]}
    wrapper = model.model_options.get("model_function_wrapper")
    if wrapper is None:
        return model.model.apply_model(x, timestep, **c)
    return wrapper(model.model.apply_model, args)


def prompt(runtime, batch: int) -> torch.Tensor:
    return runtime.positive[0][0].expand(batch, -1, -1)


def random_latent(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(seed))


def difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def tiled_model(comfy_runtime):
    """The node's module (it imports ComfyUI, so only once the runtime is up)."""
    from comfyui_img2img.nodes import tiled_model

    return tiled_model


@pytest.fixture(scope="module")
def pointwise_model(comfy_runtime):
    return with_wrapper(comfy_runtime.model, pointwise_denoiser)


@given(
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    tile=st.integers(8, 24),
    overlap=st.integers(1, 11),
    tile_batch=st.integers(0, 4),
    batch=st.integers(1, 2),
    sigma=st.floats(0.03, 14.6),
)
@PROPERTY
def test_a_pointwise_model_tiled_equals_it_untiled(
    comfy_runtime, pointwise_model, height, width, tile, overlap, tile_batch, batch, sigma
):
    overlap = min(overlap, (tile - 1) // 2)
    x = random_latent(height, width, batch, seed=height * 100 + width)
    c = {"c_crossattn": prompt(comfy_runtime, batch)}
    patched = tiled(comfy_runtime, pointwise_model, 8 * tile, 8 * overlap, tile_batch)
    assert difference(model_call(patched, x, sigma, c), model_call(pointwise_model, x, sigma, c)) <= TOLERANCE


def test_a_margin_that_covers_a_convolution_reach_equals_untiled_and_none_does_not(comfy_runtime, tiled_model):
    model = with_wrapper(comfy_runtime.model, convolution_denoiser)
    x, c = random_latent(37, 30, 2), {"c_crossattn": prompt(comfy_runtime, 2)}
    untiled = model_call(model, x, 2.0, c)
    # 32 px = 4 latent px of overlap: a margin of 1 latent pixel, the convolution's reach, is discarded
    assert tiled_model.tile_settings(model, 128, 32, 0).margin == 1
    assert difference(model_call(tiled(comfy_runtime, model, 128, 32), x, 2.0, c), untiled) <= TOLERANCE
    # 24 px = 3 latent px: margin 0, so a tile's zero-padded border pixels weigh in the blend
    assert tiled_model.tile_settings(model, 128, 24, 0).margin == 0
    assert difference(model_call(tiled(comfy_runtime, model, 128, 24), x, 2.0, c), untiled) > 1e-3


def test_one_tile_is_the_model_own_call_to_the_bit(comfy_runtime, clean):
    """On the real UNet: a latent within one tile runs the model's call unchanged, directly and in a sampler."""
    x, c = random_latent(12, 9, 2), {"c_crossattn": prompt(comfy_runtime, 2)}
    patched = tiled(comfy_runtime, comfy_runtime.model, 96, 16)
    assert torch.equal(model_call(patched, x, 3.0, c), model_call(comfy_runtime.model, x, 3.0, c))
    runs = [
        comfy_runtime.nodes.KSampler().sample(
            model, SEED, 4, CFG, "euler_ancestral", "karras", comfy_runtime.positive, comfy_runtime.negative,
            clean, 0.6,
        )[0]["samples"]
        for model in (comfy_runtime.model, tiled(comfy_runtime, comfy_runtime.model, 64, 16))
    ]  # fmt: skip
    assert torch.equal(*runs)


def test_tile_batches_give_what_one_tile_a_call_gives(comfy_runtime):
    """On the real UNet (its kernels may block a batch's rows differently, hence a tolerance) and with the
    pointwise stand-in (to the bit)."""
    x, c = random_latent(20, 14, 2), {"c_crossattn": prompt(comfy_runtime, 2)}
    pointwise = with_wrapper(comfy_runtime.model, pointwise_denoiser)
    for model, tolerance in ((comfy_runtime.model, 1e-5), (pointwise, 0.0)):
        one = model_call(tiled(comfy_runtime, model, 64, 16, tile_batch=1), x, 5.0, c)
        for tile_batch in (2, 3, 0):
            batched = model_call(tiled(comfy_runtime, model, 64, 16, tile_batch=tile_batch), x, 5.0, c)
            assert difference(batched, one) <= tolerance, tile_batch


def test_auto_tile_batch_follows_free_memory(comfy_runtime, tiled_model, monkeypatch):
    calls = []

    def counting(apply_model, args):
        calls.append(args["input"].shape[0])
        return pointwise_denoiser(apply_model, args)

    x, c = random_latent(30, 30, 2), {"c_crossattn": prompt(comfy_runtime, 2)}
    patched = tiled(comfy_runtime, with_wrapper(comfy_runtime.model, counting), 128, 32)  # 3 × 3 tiles
    one_tile = comfy_runtime.model.model.memory_required([2, 4, 16, 16])
    for free, expected in ((1.0, [2] * 9), (1.5 * one_tile * 4.5, [8, 8, 2]), (1e15, [18])):
        monkeypatch.setattr(tiled_model.comfy.model_management, "get_free_memory", lambda *a, f=free, **k: f)
        calls.clear()
        model_call(patched, x, 1.0, c)
        assert calls == expected, free


def test_the_first_model_input_is_the_same_for_every_tile_size(comfy_runtime, tiled_model):
    """The tiled model draws no noise of its own: at one seed and strength the sampler's first model input is
    the same whatever the tiles, and each tile gets its window of it."""
    latent, seen = {"samples": random_latent(40, 48)}, {}

    def tile_recorder(apply_model, args):
        seen.setdefault("tiles", args["input"].clone())
        return pointwise_denoiser(apply_model, args)

    def recording(model):
        inner = model.model_options["model_function_wrapper"]

        def record(apply_model, args):
            seen.setdefault("first", args["input"].clone())
            return inner(apply_model, args)

        return with_wrapper(model, record)

    stand_in, first_inputs = with_wrapper(comfy_runtime.model, tile_recorder), []
    for tile_size in (None, 64, 128, 200, 256):
        model = stand_in if tile_size is None else tiled(comfy_runtime, stand_in, tile_size, 24, tile_batch=100)
        seen.clear()
        comfy_runtime.pack["Img2ImgKSampler"]().sample(
            recording(model), comfy_runtime.positive, comfy_runtime.negative, latent, SEED, STEPS, CFG,
            "euler_ancestral", "karras", 0.55, "steps_x_denoise", "comfy",
        )  # fmt: skip
        first_inputs.append(seen["first"])
        assert torch.equal(seen["first"], first_inputs[0]), tile_size
        windows = [seen["first"]]
        if tile_size is not None:
            layout = tiled_model.tile_layout(40, 48, tiled_model.tile_settings(stand_in, tile_size, 24, 100))[0]
            windows = [tiled_model.crop(seen["first"], tile.window) for tile in layout]
            assert len(windows) > 1
        assert torch.equal(seen["tiles"], torch.cat(windows)), tile_size


class Samplers:
    """One img2img run at strength 0.6 through each kind of sampler node."""

    def __init__(self, runtime) -> None:
        from comfy_extras import nodes_custom_sampler

        self.runtime, self.custom = runtime, nodes_custom_sampler

    def img2img_ksampler(self, model, latent, sampler, **more):
        runtime = self.runtime
        return runtime.pack["Img2ImgKSampler"]().sample(
            model, runtime.positive, runtime.negative, latent, SEED, STEPS * 2, CFG, sampler, "karras", 0.6,
            "steps_x_denoise", "comfy", **more,
        )["result"][0]["samples"]  # fmt: skip

    def ksampler(self, model, latent, sampler):
        runtime = self.runtime
        return runtime.nodes.KSampler().sample(
            model, SEED, STEPS, CFG, sampler, "karras", runtime.positive, runtime.negative, latent, 0.6
        )[0]["samples"]

    def ksampler_advanced(self, model, latent, sampler):
        runtime = self.runtime
        return runtime.nodes.KSamplerAdvanced().sample(
            model, "enable", SEED, STEPS * 2, CFG, sampler, "karras", runtime.positive, runtime.negative, latent,
            5, 10000, "disable",
        )[0]["samples"]  # fmt: skip

    def sampler_custom_advanced(self, model, latent, sampler):
        custom, runtime = self.custom, self.runtime
        noise = custom.RandomNoise.execute(SEED)[0]
        guider = custom.CFGGuider.execute(model, runtime.positive, runtime.negative, CFG)[0]
        sigmas = custom.BasicScheduler.execute(model, "karras", STEPS, 0.6)[0]
        selected = custom.KSamplerSelect.execute(sampler)[0]
        return custom.SamplerCustomAdvanced.execute(noise, guider, selected, sigmas, latent)[0]["samples"]


PATHS = ("img2img_ksampler", "ksampler", "ksampler_advanced", "sampler_custom_advanced")


@pytest.mark.parametrize("sampler", ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"))
@pytest.mark.parametrize("path", PATHS)
def test_every_sampler_node_runs_the_tiled_model_as_untiled(comfy_runtime, pointwise_model, path, sampler):
    run = getattr(Samplers(comfy_runtime), path)
    latent = {"samples": random_latent(36, 44)}
    untiled = run(pointwise_model, latent, sampler)
    for tile_size, overlap, tile_batch in ((128, 32, 0), (96, 40, 1)):
        result = run(tiled(comfy_runtime, pointwise_model, tile_size, overlap, tile_batch), latent, sampler)
        assert difference(result, untiled) <= RUN_TOLERANCE, (tile_size, overlap, tile_batch)
    assert difference(untiled, latent["samples"]) > 0.1


def test_a_noise_mask_and_a_strength_map_still_hold(comfy_runtime, pointwise_model):
    samplers, latent = Samplers(comfy_runtime), {"samples": random_latent(32, 40)}
    model = tiled(comfy_runtime, pointwise_model, 128, 32)
    held = torch.zeros(1, 256, 320)
    held[..., 160:] = 1.0  # latent columns from 20 on are sampled, the rest held
    masked = {**latent, "noise_mask": held}
    for sampler in ("euler_ancestral", "dpmpp_2m_sde"):
        runs = (
            (samplers.ksampler(model, masked, sampler), samplers.ksampler(pointwise_model, masked, sampler)),
            (
                samplers.img2img_ksampler(model, latent, sampler, strength_map=held),
                samplers.img2img_ksampler(pointwise_model, latent, sampler, strength_map=held),
            ),
        )
        for result, untiled in runs:
            assert difference(result, untiled) <= RUN_TOLERANCE, sampler
            assert difference(result[..., :20], latent["samples"][..., :20]) <= 1e-6, sampler
            assert difference(result[..., 20:], latent["samples"][..., 20:]) > 0.1, sampler


def stride(length: int, part: int) -> int:
    """The stride of a UNet level with ``part`` rows for ``length`` latent rows: ceil(length / stride) = part."""
    factor = 1
    while -(-length // factor) != part:
        factor *= 2
    return factor


def reading_denoiser(apply_model, args: dict) -> torch.Tensor:
    """The pointwise stand-in, plus what it reads of c_concat, y and each ControlNet residual at the same place
    (a residual of 1/f the resolution read at pixel // f): tiled and untiled agree only if each tile gets its
    own window of every one of them."""
    x, c = args["input"], args["c"]
    output = pointwise_denoiser(apply_model, args)
    if c.get("c_concat") is not None:
        output = output + 0.1 * c["c_concat"].mean(1, keepdim=True)
    if c.get("y") is not None:
        output = output + 0.1 * c["y"].mean(1).reshape(-1, 1, 1, 1)
    for residuals in (c.get("control") or {}).values():
        for residual in (r for r in residuals if r is not None):
            rows, columns = stride(x.shape[-2], residual.shape[-2]), stride(x.shape[-1], residual.shape[-1])
            spread = residual.mean(1, keepdim=True).repeat_interleave(rows, -2).repeat_interleave(columns, -1)
            output = output + 0.1 * spread[..., : x.shape[-2], : x.shape[-1]]
    return output


def residuals(batch: int, height: int, width: int, seed: int = 5) -> dict:
    """ControlNet-like residuals for a height × width latent at strides 1, 2 and 4 (ceil, as a UNet's levels)."""
    generator = torch.Generator().manual_seed(seed)
    level = lambda f, channels: torch.randn(batch, channels, -(-height // f), -(-width // f), generator=generator)  # noqa: E731
    return {"input": [level(1, 8), None, level(2, 6)], "middle": [level(4, 5)], "output": [level(2, 6), level(1, 8)]}


def test_c_concat_y_and_control_residuals_are_cropped_to_each_tile(comfy_runtime, tiled_model):
    """40 × 28 latent, 16-pixel tiles overlapping by 4: windows start at 0, 12 and 24 rows and 0 and 12 columns,
    multiples of the deepest stride, where a residual's crop lines up with the tile's own levels."""
    seen = []

    def reading(apply_model, args):
        seen.append({key: [r.shape for r in rs if r is not None] for key, rs in args["c"].get("control", {}).items()})
        return reading_denoiser(apply_model, args)

    model = with_wrapper(comfy_runtime.model, reading)
    x = random_latent(40, 28, 2)
    generator = torch.Generator().manual_seed(9)
    c = {
        "c_crossattn": prompt(comfy_runtime, 2),
        "c_concat": torch.randn(2, 5, 40, 28, generator=generator),
        "y": torch.randn(2, 16, generator=generator),
        "control": residuals(2, 40, 28),
    }
    untiled = model_call(model, x, 1.5, c)
    patched = tiled(comfy_runtime, model, 128, 32, tile_batch=2)
    assert [
        tile.window for tile in tiled_model.tile_layout(40, 28, tiled_model.tile_settings(model, 128, 32, 2))[0]
    ] == [(top, top + 16, left, left + 16) for top in (0, 12, 24) for left in (0, 12)]
    seen.clear()
    assert difference(model_call(patched, x, 1.5, c), untiled) <= TOLERANCE
    assert seen[0] == {
        "input": [(4, 8, 16, 16), (4, 6, 8, 8)],
        "middle": [(4, 5, 4, 4)],
        "output": [(4, 6, 8, 8), (4, 8, 16, 16)],
    }
    without = {key: value for key, value in c.items() if key not in ("c_concat", "control", "y")}
    assert difference(model_call(model, x, 1.5, without), untiled) > 0.1


def test_residual_crops_have_the_tile_own_level_sizes_anywhere(comfy_runtime, tiled_model):
    """Wherever a window starts (not a multiple of the stride too), the crop of a level of stride f has the
    ceil(size / f) rows the tile's own level has, inside the residual, from floor(start / f)."""
    for full in range(1, 40):
        for factor in (1, 2, 4, 8):
            part = -(-full // factor)
            for start in range(full):
                for stop in range(start + 1, full + 1):
                    first, last = tiled_model.residual_span(start, stop, full, part)
                    expected_length = 1 if part == 1 else -(-(stop - start) // factor)
                    assert first >= 0 and last <= part and last - first == expected_length
    model = with_wrapper(comfy_runtime.model, reading_denoiser)
    x, c = random_latent(37, 45), {"c_crossattn": prompt(comfy_runtime, 1), "control": residuals(1, 37, 45)}
    assert model_call(tiled(comfy_runtime, model, 128, 40), x, 1.0, c).shape == x.shape


def tiny_controlnet():
    """A ControlNet for the test checkpoint's one-level UNet, random seeded weights, through core's loader."""
    import comfy.cldm.cldm
    import comfy.controlnet
    import comfy.ops
    from make_test_checkpoint import UNET_CONFIG, random_tensor

    config = {key: value for key, value in UNET_CONFIG.items() if key != "out_channels"}
    network = comfy.cldm.cldm.ControlNet(**config, hint_channels=3, operations=comfy.ops.disable_weight_init)
    generator = torch.Generator().manual_seed(11)
    state = {key: random_tensor(key, value, generator) for key, value in network.state_dict().items()}
    return comfy.controlnet.load_controlnet_state_dict(state)


def test_a_controlnet_through_core_nodes_is_cropped_to_each_tile(comfy_runtime):
    """Core's ControlNetApplyAdvanced with a random-weight ControlNet: core computes the residuals for the whole
    latent before the model function; each tile reads its own window of them (the test checkpoint's UNet has
    one level, so its residuals are at the latent's resolution)."""
    runtime, latent = comfy_runtime, {"samples": random_latent(24, 30)}
    hint = torch.rand(1, 192, 240, 3, generator=torch.Generator().manual_seed(4))
    positive, negative = runtime.nodes.ControlNetApplyAdvanced().apply_controlnet(
        runtime.positive, runtime.negative, tiny_controlnet(), hint, 0.8, 0.0, 1.0
    )
    model = with_wrapper(runtime.model, reading_denoiser)

    def run(model, positive, negative):
        return runtime.nodes.KSampler().sample(
            model, SEED, 3, CFG, "euler_ancestral", "karras", positive, negative, latent, 0.6
        )[0]["samples"]

    untiled = run(model, positive, negative)
    assert difference(run(tiled(runtime, model, 128, 32), positive, negative), untiled) <= RUN_TOLERANCE
    assert difference(run(model, runtime.positive, runtime.negative), untiled) > 0.1


def test_settings_in_latent_pixels_and_bad_ones(comfy_runtime, tiled_model):
    model = comfy_runtime.model
    assert tiled_model.latent_downscale(model) == 8
    assert tiled_model.tile_settings(model, 512, 128, 0) == tiled_model.TileSettings(64, 16, 4, 0)
    assert tiled_model.tile_settings(model, 64, 8, 2) == tiled_model.TileSettings(8, 1, 0, 2)
    with pytest.raises(ValueError, match="less than half of tile_size"):
        tiled_model.tile_settings(model, 256, 128, 0)
    patched = tiled(comfy_runtime, model, 256, 64)
    # ModelPatcher.clone deep-copies model_options: the model function must not carry the model's weights along
    assert patched.clone().model_options["model_function_wrapper"] is patched.model_options["model_function_wrapper"]

"""Strength maps, kept pixels and kept colours through a real server: the sampler's strength_map against
the plain sampler and core's masking (saved latents), Img2ImgVAEDecode's source, strength_map and
color_correction in the example graphs (strength map, regional) and on the demo model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from host_servers import host_harness
from pack_under_test import PACK_ROOT

EXAMPLES = PACK_ROOT / "example_workflows"


def example(name: str, server, seed: int) -> dict:
    """An example API graph on the test checkpoint, its input files copied to the server."""
    graph = json.loads((EXAMPLES / "api" / f"{name}.json").read_text(encoding="utf-8"))
    for node in graph.values():
        image = node["inputs"].get("image")
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = host_harness.TEST_CHECKPOINT
        elif image and not (server.input_dir / image).exists():
            shutil.copy(EXAMPLES / "input" / image, server.input_dir / image)
        if "seed" in node["inputs"]:
            node["inputs"]["seed"] = seed
    return graph


def rgb(path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def test_pixels_of_strength_0_are_the_input_files_bytes_and_the_rest_changed(server):
    entry = server.wait(server.queue(example("img2img_strength_map", server, seed=1501)))
    [path] = server.saved_paths(entry)
    strength = rgb(EXAMPLES / "input" / "strength_gradient.png")[..., 0]
    output, source = rgb(path), rgb(EXAMPLES / "input" / "sample.png")
    kept, strongest = strength == 0, strength == 255
    assert kept.sum() == 128 * 33  # the map's first 33 columns are 0
    assert np.array_equal(output[kept], source[kept])
    assert np.abs(output[strongest].astype(int) - source[strongest]).mean() > 10  # the random model's noise
    [line] = entry["outputs"]["6"]["text"]
    assert line.startswith("strength map 0–0.8: steps 5–20 of 20 for the strongest pixels")


def test_the_regional_example_gives_back_the_unmasked_area_untouched(server):
    [path] = server.saved_paths(server.wait(server.queue(example("img2img_regional", server, seed=1502))))
    with Image.open(EXAMPLES / "input" / "sample_regional.png") as regional:
        source = np.asarray(regional.convert("RGBA"))
    kept = source[..., 3] == 255
    output = rgb(path)
    assert np.array_equal(output[kept], source[..., :3][kept])
    assert not np.array_equal(output[~kept], source[..., :3][~kept])


def test_without_source_a_strength_map_on_the_decoder_is_refused_naming_the_input(server):
    graph = example("img2img_strength_map", server, seed=1503)
    del graph["7"]["inputs"]["source"]
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "error"
    assert "source" in json.dumps(entry["status"]["messages"])


@pytest.mark.parametrize("denoise", [0.3, 0.6])
def test_color_correction_brings_the_demo_models_colours_to_the_sources(server, denoise):
    from kept_pixels_figures import colour_error, corrected_and_not

    corrected, plain, source = corrected_and_not(server, denoise, seed=1504)
    with_correction, without = colour_error(corrected, source), colour_error(plain, source)
    # Histogram matching makes the result's L, a and b distributions the source's: means and spreads meet.
    assert with_correction["channel_mean_gap"] < 0.5 * without["channel_mean_gap"] + 0.05
    assert with_correction["channel_std_gap"] < 0.5 * without["channel_std_gap"] + 0.05


def latent_graph(server, seed: int, sampler: dict, *, mask: dict | None = None) -> dict:
    """The strength-map example's sampler (its inputs overridden), its latent saved as a .latent file."""
    graph = example("img2img_strength_map", server, seed)
    for node in ("7", "8"):
        del graph[node]
    graph["6"]["inputs"].update(sampler)
    if mask is not None:
        graph["11"] = mask
    graph["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"maps/{seed}"}}
    return graph


def saved_latent(server, graph: dict):
    from safetensors.torch import load_file

    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", entry["status"]
    [latent] = entry["outputs"]["9"]["latents"]
    return load_file(server.output_dir / latent["subfolder"] / latent["filename"])["latent_tensor"]


def test_through_the_server_a_uniform_map_is_the_plain_sampler_and_a_0_1_map_is_core_masking(server):
    solid = {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 128, "height": 128}}
    mapped = saved_latent(server, latent_graph(server, 1505, {"strength_map": ["11", 0]}, mask=solid))
    plain_inputs = {"denoise": 0.4}
    plain = latent_graph(server, 1505, plain_inputs)
    del plain["6"]["inputs"]["strength_map"], plain["10"]
    assert float((mapped - saved_latent(server, plain)).abs().max()) <= 1e-4

    halves = np.zeros((128, 128), np.uint8)
    halves[:, 40:] = 255
    Image.fromarray(halves).save(server.input_dir / "halves.png")
    binary = latent_graph(server, 1506, {"denoise": 0.6})
    binary["10"]["inputs"]["image"] = "halves.png"
    core = latent_graph(server, 1506, {})
    core["6"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["11", 0],
            "add_noise": "enable",
            "noise_seed": 1506,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "start_at_step": 8,
            "end_at_step": 20,
            "return_with_leftover_noise": "disable",
        },
    }
    core["11"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["10", 0]}}
    core["10"]["inputs"]["image"] = "halves.png"
    assert float((saved_latent(server, binary) - saved_latent(server, core)).abs().max()) <= 1e-4

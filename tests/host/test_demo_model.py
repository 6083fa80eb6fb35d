"""What img2img means, seen on the project's trained demo model through a real server.

The random test checkpoint proves every code path but draws noise; the demo model (models/, trained by
scripts/train_demo_model.py) draws pictures, so here the meaning of the strength is asserted: the output
follows the input at low strength and departs from it as the strength rises, an area outside the noise
mask keeps the input, and denoise 0 is the VAE round trip exactly. The input is a photo the model never
saw in training (example_workflows/input/sample.png).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from host_servers import host_harness
from pack_under_test import SAMPLE

STRENGTHS = (0.2, 0.4, 0.6, 0.8)


def pixels(path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.float64) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def demo(api_graph, seed: int, denoise: float, **overrides) -> dict:
    return api_graph(seed, **{"1.ckpt_name": host_harness.DEMO_CHECKPOINT, "6.denoise": denoise, **overrides})


def output(server, graph: dict) -> np.ndarray:
    [path] = server.saved_paths(server.wait(server.queue(graph)))
    return pixels(path)


def round_trip_graph(api_graph, seed: int) -> dict:
    """Load, encode, decode, save: the picture through the VAE alone."""
    graph = demo(api_graph, seed, 0.0)
    graph["9"]["inputs"]["images"] = ["8", 0]
    graph["8"]["inputs"]["samples"] = ["5", 0]
    for node in ("2", "3", "6", "7"):
        del graph[node]
    return graph


@pytest.fixture
def round_trip(server, api_graph):
    return output(server, round_trip_graph(api_graph, 900))


def test_denoise_0_is_the_vae_round_trip_exactly(server, api_graph, round_trip):
    assert np.array_equal(output(server, demo(api_graph, 901, 0.0)), round_trip)


def test_the_picture_departs_from_the_input_as_the_strength_rises(server, api_graph, round_trip):
    source = pixels(SAMPLE)
    assert psnr(round_trip, source) >= 24.0
    similarity = [psnr(output(server, demo(api_graph, 902, strength)), source) for strength in STRENGTHS]
    assert all(low > high for low, high in itertools.pairwise(similarity)), similarity
    # Well above the random test checkpoint's 8 dB: the layout and colours survive 0.8. (The targets,
    # 22 dB at 0.2, are measured by scripts/measure_demo_model.py; README says which the model meets.)
    assert similarity[0] >= 20.0 and similarity[-1] >= 12.0, similarity


def test_at_0_9_it_is_a_picture_not_noise(server, api_graph):
    def variation(image: np.ndarray) -> float:
        return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean()) / 2

    assert variation(output(server, demo(api_graph, 903, 0.9))) <= 2 * variation(pixels(SAMPLE))


def test_the_area_outside_the_noise_mask_keeps_the_input(server, api_graph, round_trip):
    """The right half transparent: Img2ImgLoadImage's MASK (1 - alpha) repaints it, the left half stays."""
    source = pixels(SAMPLE)
    width = source.shape[1]
    picture = Image.open(SAMPLE).convert("RGBA")
    alpha = np.full(source.shape[:2], 255, dtype=np.uint8)
    alpha[:, width // 2 :] = 0
    picture.putalpha(Image.fromarray(alpha))
    picture.save(server.input_dir / "half_masked.png")
    graph = demo(api_graph, 904, 0.8, **{"4.image": "half_masked.png"})
    graph["5"]["inputs"]["mask"] = ["4", 1]
    result = output(server, graph)
    kept = slice(0, width // 2 - 8)  # a latent pixel's width of margin: the mask is resized to the latent
    changed = slice(width // 2, width)
    assert psnr(result[:, kept], source[:, kept]) >= psnr(round_trip[:, kept], source[:, kept]) - 1.0
    assert psnr(result[:, changed], source[:, changed]) < psnr(round_trip[:, changed], source[:, changed]) - 3.0

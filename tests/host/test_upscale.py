"""Upscale and refine on the demo model through a real server: example_workflows/api/img2img_upscale.json, the
held-out sample photo 128 → 512 px (Lanczos) refined at strength 0.3, with the model in tiles of 64 px (overlap
24) and 128 px (overlap 32) against the same refine untiled. The figures of docs/any-size.md come from here.

The seam score (core.tiles.seam_score): the mean absolute step between neighbouring pixels across the middle of
each overlap of the model's tiles, over the mean across the other lines of the VAE's 8-pixel grid (its decoder
leaves that grid in every picture: the untiled refine scores 1.21 across the same lines against all lines)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from host_servers import host_harness
from pack_under_test import PACK_ROOT

GRAPH = PACK_ROOT / "example_workflows" / "api" / "img2img_upscale.json"
SIDE = 512  # the upscaled picture
MAX_SEAM_SCORE = 1.10
MIN_PSNR = 30.0


def refine(server, tile: int | None, overlap: int, seed: int) -> np.ndarray:
    graph = json.loads(GRAPH.read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
    graph["8"]["inputs"]["seed"] = seed
    if tile is None:
        del graph["7"]
        graph["8"]["inputs"]["model"] = ["1", 0]
    else:
        graph["7"]["inputs"].update(tile_size=tile, overlap=overlap)
    [path] = server.saved_paths(server.wait(server.queue(graph)))
    with Image.open(path) as picture:
        assert picture.size == (SIDE, SIDE)
        return np.asarray(picture.convert("RGB"), dtype=np.float64) / 255.0


def tile_boundaries(tile: int, overlap: int) -> list[int]:
    """The middle of each overlap of the model's tiles, in pixels: where one tile hands over to the next."""
    from comfyui_img2img.nodes.core.tiles import window_starts

    size, latent = tile // 8, SIDE // 8
    starts = window_starts(latent, size, overlap // 8)
    return [8 * (start + previous + size) // 2 for previous, start in itertools.pairwise(starts)]


@pytest.fixture(scope="module")
def untiled(server) -> np.ndarray:
    return refine(server, None, 0, 3001)


@pytest.mark.parametrize(("tile", "overlap"), [(64, 24), (128, 32)])
def test_refining_in_tiles_leaves_no_seam_and_stays_close_to_the_untiled_refine(server, untiled, tile, overlap):
    from comfyui_img2img.nodes.core.tiles import seam_score

    tiled = refine(server, tile, overlap, 3001)
    boundaries = tile_boundaries(tile, overlap)
    score = seam_score(torch.from_numpy(tiled).permute(2, 0, 1), boundaries, boundaries, grid=8)
    psnr = float(10 * np.log10(1.0 / np.mean((tiled - untiled) ** 2)))
    print(f"tile {tile} px, overlap {overlap}: seam score {score:.3f}, tiled vs untiled {psnr:.1f} dB")
    assert score <= MAX_SEAM_SCORE
    assert psnr >= MIN_PSNR

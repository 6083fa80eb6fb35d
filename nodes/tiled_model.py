"""Img2ImgTiledModel: a MODEL whose every call is computed over overlapping latent tiles and merged.

MultiDiffusion (Bar-Tal et al., arXiv 2302.08113) and Mixture of Diffusers (Jiménez, arXiv 2302.02412): at each
step the denoiser runs on overlapping windows of the latent, and each latent pixel's prediction is the weighted
mean of the predictions of the windows that hold it. The patch sits at ComfyUI's ``model_function_wrapper``, the
one place every sampler's model call goes through (guidance, noise, masks and schedules stay the samplers'), so
it works under any sampler node, core's or the pack's, and any sampler function, ancestral and SDE included.

Windows and weights are ``core.tiles``' ``overlapping`` and ``blend_weights``, in latent pixels: windows of
tile_size / d (d the model's pixels per latent pixel, 8 for SD) spread evenly, neighbours sharing o ≥ overlap / d
of them. The blending window, for two neighbours sharing o latent pixels, with m = (overlap / d) // 4 (the
default 512 / 128 px on SD: windows of 64 latent pixels, o ≥ 16, m = 4, a ramp over 8 or more):

- the m pixels at each tile's shared edge are discarded (weight 0): there the tile's model call saw zero padding
  where the whole latent has neighbours, so a model whose reach is at most m matches the untiled call;
- across the middle o - 2m pixels the weights ramp as a raised cosine (sin², at pixel centres) from one tile to
  the other, summing to 1;
- elsewhere a pixel's value is its one tile's.

A latent within one window is the model's own call, unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import comfy.model_management
import torch

from .core.tiles import Tile, blend_weights, crop, overlapping

# Pixels per latent pixel where the latent format does not say (ComfyUI after 0.3.75 publishes it as
# ``spacial_downscale_ratio``): the formats of 0.3.75 whose VAE does not downscale by 8.
LATENT_DOWNSCALE = {
    "ChromaRadiance": 1,  # pixel space
    "SD_X4": 4,
    "SC_B": 4,
    "Wan22": 16,
    "HunyuanImage21Refiner": 16,
    "HunyuanVideo15": 16,
    "Flux2": 16,
    "HunyuanImage21": 32,
    "LTXV": 32,
    "SC_Prior": 32,  # Stable Cascade's stage C
}
MAX_TILE_SIZE = 16384  # ComfyUI's largest picture side
ModelFunction = Callable[[Callable, dict], torch.Tensor]


@dataclass(frozen=True)
class TileSettings:
    """The tiling in latent pixels: window side, overlap wanted, margin discarded, tiles per call (0: auto)."""

    size: int
    overlap: int
    margin: int
    per_call: int


def latent_downscale(model) -> int:
    """Picture pixels per latent pixel, from the model's latent format."""
    latent_format = model.get_model_object("latent_format")
    ratio = getattr(latent_format, "spacial_downscale_ratio", None)
    return int(ratio) if ratio else LATENT_DOWNSCALE.get(type(latent_format).__name__, 8)


def tile_settings(model, tile_size: int, overlap: int, tile_batch: int) -> TileSettings:
    """The node's pixel inputs in the model's latent pixels; the overlap at least one latent pixel, as the
    blend needs room to ramp."""
    downscale = latent_downscale(model)
    size, overlap_latent = max(tile_size // downscale, 1), max(overlap // downscale, 1)
    if 2 * overlap_latent >= size:
        raise ValueError(
            f"overlap ({overlap} px, {overlap_latent} latent px) must be less than half of tile_size "
            f"({tile_size} px, {size} latent px at this model's {downscale} px per latent pixel)"
        )
    if tile_batch < 0:
        raise ValueError(f"tile_batch must be 0 (as many as memory allows) or more, got {tile_batch}")
    return TileSettings(size, overlap_latent, overlap_latent // 4, tile_batch)


@functools.lru_cache(maxsize=16)
def tile_layout(height: int, width: int, settings: TileSettings) -> tuple[list[Tile], list[torch.Tensor]]:
    """The windows of a height × width latent and their blend weights (float64, on the CPU). Cached: a run
    asks for the same latent size at every step."""
    tiles = overlapping(height, width, settings.size, settings.overlap)
    return tiles, blend_weights(tiles, height, width, settings.margin)


def residual_span(start: int, stop: int, full: int, part: int) -> tuple[int, int]:
    """Rows ``start:stop`` of a ``full``-row latent at a resolution of ``part`` rows (a ControlNet residual).
    A UNet level of stride f has ceil(n / f) rows for n latent rows, so the tile's own level has
    ceil((stop - start) / f) rows: that many from floor(start / f), which stays inside the residual. Where a
    window does not start on a multiple of f its own levels do not line up with the whole latent's: the crop is
    then the nearest one, shifted by start mod f latent pixels (less than one of the level's pixels)."""
    factor = 1
    while factor <= full and -(-full // factor) != part:
        factor *= 2
    if factor > full:  # not a strided level: the same fraction of the rows
        return start * part // full, -(-stop * part // full)
    first = start // factor
    return first, first + -(-(stop - start) // factor)


def crop_residual(residual: torch.Tensor, tile: Tile, height: int, width: int) -> torch.Tensor:
    """A residual computed for the whole latent, cropped to the tile at the residual's resolution."""
    rows = residual_span(tile.window[0], tile.window[1], height, residual.shape[-2])
    columns = residual_span(tile.window[2], tile.window[3], width, residual.shape[-1])
    return crop(residual, (*rows, *columns))


def tile_control(control: dict, group: list[Tile], x: torch.Tensor) -> dict:
    """``c["control"]`` (each level's ControlNet residuals, which core computes for the whole latent before the
    model function) for a batch of tiles: every residual cropped to each tile, the tiles one after another."""
    height, width = x.shape[-2:]
    tiled = {}
    for level, residuals in control.items():
        if any(r is not None and r.ndim != x.ndim for r in residuals):
            raise ValueError(
                f"Img2ImgTiledModel: this model's ControlNet residuals ({level}) are not laid out like the latent, "
                "so they cannot be cropped to the tiles; apply the ControlNet without the tiled model"
            )
        tiled[level] = [
            None if r is None else torch.cat([crop_residual(r, tile, height, width) for tile in group])
            for r in residuals
        ]
    return tiled


def tile_conditioning(c: dict, group: list[Tile], x: torch.Tensor) -> dict:
    """The model's keyword arguments for a batch of tiles: spatial tensors (c_concat and the like: the latent's
    height and width) cropped to each tile, per-sample ones (c_crossattn, y, ...) repeated once per tile, the
    batch layout in transformer_options repeated alike (patches that split the batch by it), the rest as is."""
    count, tiled = len(group), {}
    for key, value in c.items():
        if key == "control" and value is not None:
            tiled[key] = tile_control(value, group, x)
        elif key == "transformer_options":
            repeated = {name: list(value[name]) * count for name in ("cond_or_uncond", "uuids") if name in value}
            tiled[key] = {**value, **repeated}
        elif torch.is_tensor(value) and value.ndim == x.ndim and value.shape[-2:] == x.shape[-2:]:
            tiled[key] = torch.cat([crop(value, tile.window) for tile in group])
        elif torch.is_tensor(value) and value.ndim >= 1 and value.shape[0] == x.shape[0]:
            tiled[key] = torch.cat([value] * count)
        else:
            tiled[key] = value
    return tiled


def tile_arguments(args: dict, group: list[Tile]) -> dict:
    """The model function's arguments for a batch of tiles: tile after tile along the batch, each tile holding
    the call's whole batch (cond and uncond) in its order."""
    x, count = args["input"], len(group)
    return {
        **args,
        "input": torch.cat([crop(x, tile.window) for tile in group]),
        "timestep": torch.cat([args["timestep"]] * count),
        "c": tile_conditioning(args["c"], group, x),
        "cond_or_uncond": list(args["cond_or_uncond"]) * count,
    }


def tiles_per_call(base_model, x: torch.Tensor, tile: Tile, count: int) -> int:
    """As many tiles per model call as free memory holds by the model's own estimate for one tile (with the
    1.5 headroom core's batching of conds uses), at least 1 and at most all."""
    top, bottom, left, right = tile.window
    one_tile = base_model.memory_required([x.shape[0], *x.shape[1:-2], bottom - top, right - left])
    free = comfy.model_management.get_free_memory(x.device)
    return max(1, min(count, int(free // max(1.5 * one_tile, 1.0))))


def merge(parts: list[tuple[torch.Tensor, torch.Tensor, Tile]], height: int, width: int) -> torch.Tensor:
    """The tiles' outputs weighted and summed over the latent, in at least float32 (a half-precision sum of
    weights would not be 1), returned in the outputs' dtype on their device."""
    first = parts[0][0]
    total_dtype = torch.promote_types(first.dtype, torch.float32)
    merged = first.new_zeros((*first.shape[:-2], height, width), dtype=total_dtype)
    for output, weight, tile in parts:
        top, bottom, left, right = tile.window
        merged[..., top:bottom, left:right] += output.to(total_dtype) * weight.to(first.device, total_dtype)
    return merged.to(first.dtype)


def call_model(previous: ModelFunction | None, apply_model: Callable, args: dict) -> torch.Tensor:
    """The model call as it was before the patch: through the wrapper the model already had, or directly."""
    if previous is not None:
        return previous(apply_model, args)
    return apply_model(args["input"], args["timestep"], **args["c"])


def tiled_model_function(previous: ModelFunction | None, base_model, settings: TileSettings) -> ModelFunction:
    """The model function that computes each call over tiles. A closure, not an object: ModelPatcher.clone
    deep-copies model_options, which copies a function by reference but an object with everything it holds
    (the model's weights among them)."""

    def tiled_call(apply_model: Callable, args: dict) -> torch.Tensor:
        x = args["input"]
        height, width = x.shape[-2:]
        if height <= settings.size and width <= settings.size:
            return call_model(previous, apply_model, args)  # one tile: the model's own call, to the bit
        tiles, weights = tile_layout(height, width, settings)
        per_call = settings.per_call or tiles_per_call(base_model, x, tiles[0], len(tiles))
        parts = []
        for first in range(0, len(tiles), per_call):
            group = tiles[first : first + per_call]
            outputs = call_model(previous, apply_model, tile_arguments(args, group)).chunk(len(group))
            parts += zip(outputs, weights[first : first + per_call], group, strict=True)
        return merge(parts, height, width)

    return tiled_call


class Img2ImgTiledModel:
    DESCRIPTION = (
        "Any size: the model computed over overlapping tiles (MultiDiffusion / Mixture of Diffusers). Every model "
        "call runs on tile_size windows of the latent, and where windows overlap their results are blended: "
        "overlap/4 at each tile's shared edge is discarded and a raised cosine blends the rest of the overlap. "
        "Works with every sampler node and sampler; a picture that fits in one tile runs exactly as untiled. "
        "ControlNet residuals and inpainting latents (c_concat) are cropped to each tile."
    )
    CATEGORY = "img2img"
    FUNCTION = "patch"
    RETURN_TYPES = ("MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model with tiled calls; connect it to any sampler node in place of the model.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to compute over tiles."}),
                "tile_size": (
                    "INT",
                    {
                        "default": 512,
                        "min": 64,
                        "max": MAX_TILE_SIZE,
                        "step": 8,
                        "tooltip": (
                            "Side of a tile in image pixels: about the size the model was trained at (512 for "
                            "SD1.5, 1024 for SDXL and Flux). A picture that fits in one tile runs untiled."
                        ),
                    },
                ),
                "overlap": (
                    "INT",
                    {
                        "default": 128,
                        "min": 8,
                        "max": MAX_TILE_SIZE // 2,
                        "step": 8,
                        "tooltip": (
                            "Least overlap of neighbouring tiles in image pixels, under half of tile_size. Of "
                            "each overlap, overlap / 4 at each tile's edge is discarded and the middle is "
                            "blended (the default: 32 px discarded, a 64 px blend)."
                        ),
                    },
                ),
                "tile_batch": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 256,
                        "tooltip": (
                            "Tiles per model call: more is faster and takes more memory. 0: as many as free "
                            "memory holds, by the model's own memory estimate."
                        ),
                    },
                ),
            }
        }

    def patch(self, model, tile_size: int, overlap: int, tile_batch: int) -> tuple:
        settings = tile_settings(model, tile_size, overlap, tile_batch)
        tiled = model.clone()
        previous = tiled.model_options.get("model_function_wrapper")  # another patch's: each tile goes through it
        tiled.set_model_unet_function_wrapper(tiled_model_function(previous, tiled.model, settings))
        return (tiled,)

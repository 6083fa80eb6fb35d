"""Stand-in models: cheap functions in place of a network, through ComfyUI's own patch points, so that what is
proven about the code around the network (samplers, masks, tiles) is proven at a thousandth of the cost."""

from __future__ import annotations

import torch


def stand_in_denoiser(apply_model, args: dict) -> torch.Tensor:
    """A denoiser in place of the UNet, through ComfyUI's own ``model_function_wrapper``: nonlinear in x, mixing
    neighbours, following sigma and the prompt (so that guidance, steps and masks all show), and a thousand times
    cheaper. Everything around the model call (guidance, sampler functions, KSAMPLER, masks, schedulers) stays
    ComfyUI's and runs for real."""
    x, sigma, conditioning = args["input"], args["timestep"], args["c"]["c_crossattn"]
    prompt = conditioning.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
    scale = (1 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
    return torch.tanh(x * scale) + 0.1 * prompt + 0.05 * x.roll(1, dims=-1) * scale


def _sigma_and_prompt(x: torch.Tensor, args: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of the batch: the noise level's input scale and the prompt's mean, shaped to broadcast over x."""
    shape = (-1,) + (1,) * (x.ndim - 1)
    prompt = args["c"]["c_crossattn"].mean(dim=(1, 2)).reshape(shape)
    return (1 + args["timestep"] ** 2).rsqrt().reshape(shape), prompt


def pointwise_denoiser(apply_model, args: dict) -> torch.Tensor:
    """A denoiser whose output at a latent pixel depends only on x at that pixel, sigma and the prompt: tiled
    and untiled calls of it agree wherever the tiles' weights sum to 1."""
    x = args["input"]
    scale, prompt = _sigma_and_prompt(x, args)
    return torch.tanh(x * scale) * (1 + 0.1 * prompt) + 0.1 * prompt


# Fixed weights (drawn once, seeded) of the 3×3 convolution stand-in: 4 latent channels in and out.
CONVOLUTION = torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(3)) / 6


def convolution_denoiser(apply_model, args: dict) -> torch.Tensor:
    """A denoiser that mixes each latent pixel's 3×3 neighbourhood (zero padding at the border, reach 1 latent
    pixel): a tile's border pixels differ from the untiled call's, its inner ones do not."""
    x = args["input"]
    scale, prompt = _sigma_and_prompt(x, args)
    mixed = torch.nn.functional.conv2d(x * scale, CONVOLUTION.to(x), padding=1)
    return torch.tanh(mixed) + 0.1 * prompt
